"""One command that proves and measures every GPU path: the CUDA tests, model speed, conversion and peak memory.

    python benchmarks/gpu_check.py --prepare                 # here: gathers what the GPU machine lacks into .gpu_check/
    python benchmarks/gpu_check.py --output DIR              # on the GPU machine: about 8 minutes
    python benchmarks/gpu_check.py --dry-run --output DIR    # anywhere: the same orchestration on the CPU, tiny sizes

The GPU machine has its own Python and torch but no PyAV, kornia or easing-functions, reaches no network, and does
not get ``../shared``. ``--prepare`` therefore puts into ``.gpu_check/`` (ignored by git, carried to the machine):
the wheels of the missing packages (cp312, manylinux, the versions pinned here), the published weights converted to
``.pth``, two portraits, a short clip and the golden metrics, laid out like ``../shared``; then it prints the command
to run there. The check installs the wheels into a temporary folder, then runs its parts, each in its own process
with its own time limit, most telling first:

- ``environment``: GPU, driver, CUDA, cuDNN, torch and package versions, the commit;
- ``cuda_tests``: ``pytest -m cuda tests`` (tests/test_cuda.py and the evaluators' CUDA tests), per test;
- ``speed_*``: ``inference_speed_test.py --compare`` (faithful and fast side by side), float16 and float32 at
  1920×1080 ratio 0.25 and 3840×2160 ratio 0.125, with frames/s, latency and peak GPU memory;
- ``conversion``: ``benchmarks/conversion.py`` at 1080p, three outputs, against the plain serial loop.

A part that fails, crashes or runs out of time is recorded and the next one runs; ``results.json`` and
``results.md`` are rewritten after every part (and say which part is running), so a check killed from outside still
brings back what it did. Everything goes to ``DIR``: results.json, results.md and check.log (every part's output).
"""
import argparse
import datetime
import glob
import importlib.metadata
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VTEST = SHARED / "data" / "video" / "vtest.avi"  # the conversion's source where no bundle is at hand (dry run)
BUNDLE = ROOT / ".gpu_check"
BUDGET_S = 480  # the whole check, on the GPU machine
MIN_PART_S = 10  # a part is not started with less of the budget left
RUN_TIMEOUT_S = 570  # what the device call should allow: the budget, installing, starting Python, a margin
TRANSFER_LIMIT = 64 * 2**20  # the working tree and carried paths that travel to the GPU machine
# What the GPU machine lacks (pinned in the requirements files), and what those need that it lacks too.
CARRIED_PACKAGES = ("av", "kornia", "easing-functions")
CARRIED_DEPENDENCIES = ("kornia_rs",)
PLATFORM_FLAGS = [
    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
    *[flag for tag in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                       "manylinux2014_x86_64", "manylinux1_x86_64") for flag in ("--platform", tag)],
]  # fmt: skip
SPEED_CASES = [  # (name, width, height, ratio, precision), most wanted first
    ("speed_fp16_1080p", 1920, 1080, 0.25, "float16"),
    ("speed_fp16_2160p", 3840, 2160, 0.125, "float16"),
    ("speed_fp32_1080p", 1920, 1080, 0.25, "float32"),
    ("speed_fp32_2160p", 3840, 2160, 0.125, "float32"),
]
GOALS = {"speed_fp16_1080p": 1000.0, "speed_fp16_2160p": 600.0}  # fast-path frames/s on an H100-class GPU
CONVERSION_GOAL = 5.0  # convert_video against the serial loop
TEST_LINE = re.compile(r"^(tests/\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)")
COLLECTION_ERROR = re.compile(r"^ERROR (tests/[^\s:]+\.py)\b")  # a test file that could not be imported

logger = logging.getLogger("gpu_check")


@dataclass
class Part:
    """One step of the check: a command run in its own process, at most ``budget_s`` seconds."""

    name: str
    command: List[str]
    budget_s: float
    read: Callable[[str, int], Dict[str, object]]  # (output, exit code) → figures and a status
    note: str = ""


@dataclass
class Check:
    """The record of one check, rewritten to ``folder`` after every change."""

    folder: Path
    mode: str
    budget_s: float
    started: float = field(default_factory=time.time)
    record: Dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.record = {"check": "gpu_check", "mode": self.mode, "budget_s": self.budget_s, "started": _now(),
                       "finished": None, "commit": commit(), "environment": {}, "parts": []}  # fmt: skip
        (self.folder / "check.log").write_text("")

    def remaining(self) -> float:
        return self.budget_s - (time.time() - self.started)

    def log(self, text: str) -> None:
        with open(self.folder / "check.log", "a", encoding="utf-8") as handle:
            handle.write(text)

    def save(self) -> None:
        """results.json and results.md, each written whole under a temporary name first."""
        self.record["elapsed_s"] = round(time.time() - self.started, 1)
        for name, text in (("results.json", json.dumps(self.record, indent=2)), ("results.md", markdown(self.record))):
            temporary = self.folder / f".{name}.partial"
            temporary.write_text(text + "\n", encoding="utf-8")
            os.replace(temporary, self.folder / name)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def commit() -> str:
    """The checkout's commit (``-dirty`` when tracked files changed); where git or .git is missing (the copy on the
    GPU machine), the one ``--prepare`` wrote into the bundle's manifest."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        manifest = BUNDLE / "manifest.json"
        if manifest.is_file():
            return json.loads(manifest.read_text())["commit"] + " (from the bundle's manifest)"
        return "unknown"


# ------------------------------------------------------------------------------------------------ running parts
def run_part(check: Check, part: Part, env: Dict[str, str]) -> None:
    """Run ``part`` in its own process group within its budget and what is left of the check's; record it."""
    entry: Dict[str, object] = {"name": part.name, "status": "running", "budget_s": part.budget_s,
                                "command": shlex.join(part.command), "started": _now()}  # fmt: skip
    if part.note:
        entry["note"] = part.note
    check.record["parts"].append(entry)
    limit = min(part.budget_s, check.remaining())
    if check.remaining() < MIN_PART_S:
        entry.update(status="skipped", reason=f"out of time ({check.remaining():.0f} s of the check's budget left)")
        check.save()
        return
    check.save()
    logger.info("%s: %s (at most %.0f s)", part.name, entry["command"], limit)
    check.log(f"\n===== {part.name}: {entry['command']}\n")
    start = time.time()
    log = check.folder / "check.log"
    offset = log.stat().st_size
    with open(log, "ab") as output:  # streamed: a check killed from outside keeps what the part printed
        process = subprocess.Popen(part.command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        try:
            code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the part and whatever it started
            code = process.wait()
            entry["timed_out"] = True
    with open(log, "rb") as output:
        output.seek(offset)
        text = output.read().decode("utf-8", errors="replace")
    entry["seconds"] = round(time.time() - start, 1)
    entry["exit_code"] = code
    try:
        entry.update(part.read(text, code))
    except (ValueError, KeyError, IndexError) as error:  # output not as expected: keep the tail to see why
        entry.update(status="failed", reason=f"could not read the output ({error})")
    if entry.get("timed_out"):
        entry["status"] = "timed out"
    elif entry["status"] == "running":
        entry["status"] = "passed" if code == 0 else "failed"
    if entry["status"] != "passed":
        entry["output_tail"] = text[-3000:]
    logger.info("%s: %s in %.0f s", part.name, entry["status"], entry["seconds"])
    check.save()


def last_json(text: str) -> Dict[str, object]:
    """The last line of ``text`` that is a JSON object (the benchmarks' result line)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON result line")


def read_environment(text: str, code: int) -> Dict[str, object]:
    return {"figures": last_json(text)}


def read_tests(text: str, code: int) -> Dict[str, object]:
    """Per-test outcomes from pytest's verbose lines (present even when the run was cut short)."""
    outcomes: Dict[str, str] = {}
    for line in text.splitlines():
        match = TEST_LINE.match(line)
        if match:
            outcomes[match.group(1)] = match.group(2)
    counts = {kind: sum(1 for v in outcomes.values() if v == kind) for kind in sorted(set(outcomes.values()))}
    unimported = sorted({m.group(1) for m in map(COLLECTION_ERROR.match, text.splitlines()) if m})
    result: Dict[str, object] = {"tests": outcomes, "counts": counts, "collection_errors": unimported}
    if not outcomes:
        result.update(status="failed", reason="pytest reported no test")
    elif counts.get("FAILED") or counts.get("ERROR"):
        result["status"] = "failed"
    elif unimported:  # their CUDA tests, if any, did not run
        result.update(status="incomplete", reason="test files that could not be imported: " + ", ".join(unimported))
    elif set(counts) == {"SKIPPED"}:
        result.update(status="skipped", reason="every test skipped (no CUDA)")
    else:
        result["status"] = "passed"
    return result


def read_speed(text: str, code: int) -> Dict[str, object]:
    record = last_json(text)
    result: Dict[str, object] = {"figures": record}
    if record["dtype"] == "float32" and max(record["max_abs_diff"].values()) > 1e-4:
        result["status"] = "failed"
        result["reason"] = f"the float32 fast path is more than 1e-4 from the faithful one: {record['max_abs_diff']}"
    return result


def read_conversion(text: str, code: int) -> Dict[str, object]:
    return {"figures": last_json(text)}


# ------------------------------------------------------------------------------------------------ the parts
def plan(args: argparse.Namespace, python: str, bundle: Path) -> List[Part]:
    """The parts in the order they run: on CUDA at full size, or (dry run) on the CPU at tiny sizes."""
    dry = args.dry_run
    shared = bundle / "shared"
    tests = [python, "-m", "pytest", "-m", "cuda", "tests", "-v", "-p", "no:cacheprovider", "-rA",
             "--continue-on-collection-errors"]  # fmt: skip
    speed = []
    for name, width, height, ratio, precision in SPEED_CASES:
        if dry:
            width, height = width // 30, height // 30
            timing = ["--device", "cpu", "--compile", "off", "--threads", "1", "--frames", "2", "--rounds", "1",
                      "--warmup", "1"]  # fmt: skip
        else:
            timing = ["--device", "cuda", "--frames", "200", "--rounds", "3", "--warmup", "5"]
        command = [python, "inference_speed_test.py", "--resolution", str(width), str(height), "--downsample-ratio",
                   str(ratio), "--precision", precision, "--compare", "--disable-progress", *timing]  # fmt: skip
        speed.append(Part(name, command, 75, read_speed, "faithful and fast paths in alternating rounds"))
    clip = shared / "data" / "video" / "clip.mp4"
    conversion = [python, "benchmarks/conversion.py", "--source", str(clip if clip.is_file() else VTEST)]
    weights = shared / "reference" / "weights" / "rvm_mobilenetv3.pth"
    if weights.is_file():
        conversion += ["--checkpoint", str(weights)]
    if dry:
        conversion += ["--device", "cpu", "--frames", "3", "--width", "64", "--height", "48", "--threads", "1"]
    else:
        conversion += ["--device", "cuda", "--frames", "150"]
    parts = [
        Part("environment", [python, str(Path(__file__).resolve()), "--environment"], 60, read_environment),
        Part("cuda_tests", tests, 240, read_tests, "pytest -m cuda: the CUDA tests, per test"),
        *speed[:2],
        Part("conversion", conversion, 120, read_conversion, "three H.264 outputs, against the serial loop"),
        *speed[2:],
    ]
    if args.only:
        wanted = set(args.only.split(","))
        parts = [part for part in parts if part.name in wanted or part.name == "environment"]
    return parts


def environment() -> Dict[str, object]:
    """Versions and the GPU, as the check's parts see them (run in a child with the carried packages)."""
    import torch

    facts: Dict[str, object] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        facts["gpu_memory_gib"] = round(properties.total_memory / 2**30, 1)
        facts["compute_capability"] = f"{properties.major}.{properties.minor}"
        facts["multiprocessors"] = properties.multi_processor_count
    try:
        facts["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                         capture_output=True, text=True, timeout=30).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        facts["driver"] = None
    for name in ("torchvision", "numpy", "av", "kornia", "kornia_rs", "easing-functions", "opencv-python-headless",
                 "onnx", "onnxruntime", "triton", "pytest"):  # fmt: skip
        try:
            facts[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            facts[name] = None
    return facts


def install_wheels(bundle: Path, check: Check, dry_run: bool) -> Optional[str]:
    """pip-install the bundle's wheels into a temporary folder (returned, for PYTHONPATH); None without wheels.

    A dry run installs them as for the GPU machine's Python 3.12 (checking that the set installs there: one version
    each, cp312 manylinux), and returns None: this interpreter may be another version."""
    wheels = sorted(glob.glob(str(bundle / "wheels" / "*.whl")))
    entry: Dict[str, object] = {"name": "install", "wheels": [Path(w).name for w in wheels], "started": _now()}
    check.record["parts"].append(entry)
    if not wheels:
        entry.update(status="skipped", reason=f"no wheels in {bundle / 'wheels'}")
        check.save()
        return None
    site = tempfile.mkdtemp(prefix="gpu-check-site-")
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--upgrade", "--target", site, *(PLATFORM_FLAGS if dry_run else []),
               *wheels]  # fmt: skip
    start = time.time()
    result = subprocess.run(command, capture_output=True, text=True, timeout=max(30.0, min(120.0, check.remaining())))
    check.log(f"\n===== install: {shlex.join(command)}\n{result.stdout}{result.stderr}")
    entry.update(seconds=round(time.time() - start, 1), status="passed" if result.returncode == 0 else "failed")
    if result.returncode != 0:
        entry["output_tail"] = (result.stdout + result.stderr)[-3000:]
    check.save()
    return site if result.returncode == 0 and not dry_run else None


def run_check(args: argparse.Namespace) -> Path:
    """The check itself; returns the results file."""
    import torch  # only here: --prepare and --environment need no torch in this process

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU is visible to PyTorch here; run with --dry-run to check the orchestration.")
    bundle = Path(args.bundle).resolve()
    check = Check(Path(args.output), "dry-run (CPU, tiny sizes)" if args.dry_run else "cuda", args.budget)
    check.save()
    site = install_wheels(bundle, check, args.dry_run)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, str(ROOT), os.environ.get("PYTHONPATH")]))
    if (bundle / "shared").is_dir():
        env["RVM_SHARED"] = str(bundle / "shared")
    env.pop("CI", None)  # the bundle holds only part of ../shared: tests needing the rest skip instead of failing
    for part in plan(args, sys.executable, bundle):
        run_part(check, part, env)
        if part.name == "environment" and check.record["parts"][-1].get("figures"):
            check.record["environment"] = check.record["parts"][-1]["figures"]
    check.record["finished"] = _now()
    check.save()
    if site is not None:
        shutil.rmtree(site, ignore_errors=True)
    return check.folder / "results.json"


# ------------------------------------------------------------------------------------------------ the report
def markdown(record: Dict[str, object]) -> str:
    """results.md: what ran, how it went, and the figures in the shape documentation/benchmarks.md uses."""
    environment = record.get("environment") or {}
    lines = [
        f"# GPU check ({record['mode']})",
        "",
        f"GPU {environment.get('gpu')} ({environment.get('gpu_memory_gib')} GiB), driver {environment.get('driver')},"
        f" CUDA {environment.get('cuda')}, cuDNN {environment.get('cudnn')}, torch {environment.get('torch')},"
        f" Python {environment.get('python')}; commit {record['commit']}; started {record['started']}, "
        f"{record.get('elapsed_s')} s of {record['budget_s']} s" + ("" if record.get("finished") else " (unfinished)"),
        "",
        "| part | status | seconds | note |",
        "|---|---|---|---|",
    ]
    parts = record["parts"]
    for part in parts:
        note = part.get("reason") or part.get("note", "")
        if part["name"] == "cuda_tests" and part.get("counts"):
            note = ", ".join(f"{n} {k.lower()}" for k, n in part["counts"].items())
            if part.get("collection_errors"):
                note += "; not importable: " + ", ".join(part["collection_errors"])
        lines.append(f"| {part['name']} | {part['status']} | {part.get('seconds', '')} | {note} |")
    failed = [name for part in parts for name, outcome in part.get("tests", {}).items()
              if outcome in ("FAILED", "ERROR")]  # fmt: skip
    if failed:
        lines += ["", "Failed tests: " + ", ".join(f"`{name}`" for name in failed)]
    speed = [part for part in parts if part["name"].startswith("speed_") and part.get("figures")]
    if speed:
        lines += ["", "| resolution | ratio | dtype | faithful frames/s | fast frames/s | speedup (median) | "
                  "fast p50 ms | max \\|Δ\\| | peak GPU MiB (fast) | goal |", "|---" * 10 + "|"]
        for part in speed:
            f = part["figures"]
            goal = GOALS.get(part["name"]) if record["mode"] == "cuda" else None
            verdict = "" if goal is None else f"≥ {goal:.0f}: {'met' if f['fast']['fps'] >= goal else 'not met'}"
            lines.append(
                f"| {f['resolution'][0]}×{f['resolution'][1]} | {f['downsample_ratio']} | {f['dtype']} | "
                f"{f['faithful']['fps']:.1f} | {f['fast']['fps']:.1f} | {f['speedup_median']:.2f}× | "
                f"{f['fast']['latency_ms']['p50']:.3f} | {max(f['max_abs_diff'].values()):.1e} | "
                f"{f['fast']['peak_gpu_memory_mib']} | {verdict} |"
            )
    conversion = next((part for part in parts if part["name"] == "conversion" and part.get("figures")), None)
    if conversion:
        f = conversion["figures"]
        lines += ["", f"Conversion ({f['width']}×{f['height']}, {f['frames']} frames, three outputs, model on "
                  f"{f.get('device')}): serial loop {f['serial_fps']:.1f} frames/s, convert_video "
                  f"{f['pipelined_fps']:.1f} frames/s = **{f['speedup_pipelined']:.2f}×** "
                  f"(goal ≥ {CONVERSION_GOAL:.0f}×),"
                  f" veryfast preset {f['pipelined_veryfast_fps']:.1f} frames/s; model alone: eager "
                  f"{f['model_only_eager_fps']:.1f}, fast {f['model_only_fast_fps']:.1f} frames/s; peak GPU memory "
                  f"{f.get('peak_gpu_memory_mib', 'n/a')} MiB."]  # fmt: skip
    lines += ["", "Commands:", ""] + [f"- {part['name']}: `{part['command']}`" for part in parts if "command" in part]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ --prepare
def pinned_version(name: str) -> str:
    """The version the requirements files pin for ``name``."""
    for requirements in ("requirements_inference.txt", "requirements_training.txt"):
        for line in (ROOT / requirements).read_text().splitlines():
            if line.split("==")[0].strip().lower() == name.lower():
                return line.split("==")[1].strip()
    raise ValueError(f"{name} is not pinned in requirements_inference.txt or requirements_training.txt.")


def make_clip(source: Path, destination: Path, frames: int) -> None:
    """The first ``frames`` frames of ``source`` as H.264 (CRF 28, source size and rate): a few hundred kB."""
    import av

    with av.open(str(source)) as src, av.open(str(destination), "w") as dst:
        stream_in = src.streams.video[0]
        stream = dst.add_stream("libx264", rate=stream_in.average_rate)
        stream.width, stream.height, stream.pix_fmt = stream_in.width, stream_in.height, "yuv420p"
        stream.codec_context.options = {"crf": "28"}
        for index, frame in enumerate(src.decode(stream_in)):
            if index == frames:
                break
            out = frame.reformat(format="yuv420p")
            out.pts = index
            dst.mux(stream.encode(out))
        dst.mux(stream.encode(None))


def travelling_bytes(bundle: Path) -> int:
    """Bytes that travel to the GPU machine: tracked and untracked-not-ignored files, plus the bundle."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                            capture_output=True, text=True, check=True).stdout.split("\0")  # fmt: skip
    files = [ROOT / name for name in listed if name] + [p for p in bundle.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files if p.is_file())


def prepare(bundle: Path, shared: Path) -> Dict[str, object]:
    """Fill ``bundle`` with what the GPU machine lacks; returns the manifest (also written there)."""
    from model.weights import convert_weights, save_state_dict

    if not shared.is_dir():
        raise FileNotFoundError(f"{shared} is missing; --prepare needs ../shared (or --shared DIR) to gather from.")
    if bundle.exists():
        shutil.rmtree(bundle)
    wheels = bundle / "wheels"
    wheels.mkdir(parents=True)
    specs = [f"{name}=={pinned_version(name)}" for name in CARRIED_PACKAGES]
    specs += [f"{name}=={importlib.metadata.version(name)}" for name in CARRIED_DEPENDENCIES]
    for spec in specs:
        logger.info("Downloading the cp312 wheel of %s", spec)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PLATFORM_FLAGS, "-d", str(wheels),
                        spec], check=True)  # fmt: skip
    data = bundle / "shared" / "data"
    portraits = sorted((shared / "data" / "portraits" / "image").glob("*.jpg"))[:2]  # tests use the first two
    (data / "portraits" / "image").mkdir(parents=True)
    for path in portraits:
        shutil.copy(path, data / "portraits" / "image" / path.name)
    (data / "video").mkdir()
    make_clip(shared / VTEST.relative_to(SHARED), data / "video" / "clip.mp4", frames=150)
    reference = bundle / "shared" / "reference"
    (reference / "golden").mkdir(parents=True)
    shutil.copy(shared / "reference" / "golden" / "golden_losses_metrics.pt", reference / "golden")
    logger.info("Converting the published weights")
    result = convert_weights(shared / "reference" / "weights" / "rvm_mobilenetv3_fp32.onnx", variant="mobilenetv3",
                     refiner="deep_guided_filter")  # fmt: skip
    save_state_dict(result.state_dict, reference / "weights" / "rvm_mobilenetv3.pth")
    manifest = {
        "commit": commit(),
        "created": _now(),
        "wheels": sorted(p.name for p in wheels.iterdir()),
        "files": {str(p.relative_to(bundle)): p.stat().st_size for p in sorted(bundle.rglob("*")) if p.is_file()},
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["travelling_bytes"] = travelling_bytes(bundle)
    return manifest


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--output", help="run the check, writing results.json, results.md and check.log here")
    mode.add_argument("--prepare", action="store_true", help="gather the bundle here and print the command to run")
    mode.add_argument("--environment", action="store_true", help=argparse.SUPPRESS)  # the environment part's child
    parser.add_argument("--dry-run", action="store_true", help="with --output: CPU, tiny sizes, no GPU needed")
    parser.add_argument("--bundle", default=str(BUNDLE), help="the folder --prepare fills and the check reads")
    parser.add_argument("--shared", default=str(SHARED), help="with --prepare: the project's shared reference folder")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole check")
    parser.add_argument("--only", help="comma-separated parts to run (e.g. speed_fp32_1080p,conversion)")
    args = parser.parse_args(argv)
    if args.dry_run and args.output is None:
        parser.error("--dry-run goes with --output DIR.")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.environment:
        print(json.dumps(environment()))
        return
    if args.prepare:
        sys.path.insert(0, str(ROOT))
        bundle = Path(args.bundle).resolve()
        manifest = prepare(bundle, Path(args.shared))
        size = manifest["travelling_bytes"]
        if size > TRANSFER_LIMIT:
            logger.warning("%.1f MiB would travel, over the 64 MiB the GPU machine takes.", size / 2**20)
        command = {
            "command": "PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --output $OUT",
            "carry": [str(bundle.relative_to(ROOT))],
            "timeout_s": RUN_TIMEOUT_S,
            "travelling_mib": round(size / 2**20, 1),
        }
        print(json.dumps(command))
        return
    print(run_check(args))


if __name__ == "__main__":
    main()
