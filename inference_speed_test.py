"""Model speed: tensor throughput of RVM, batch 1, one frame a step, recurrent states carried, no I/O.

By default it times the fastest correct path for the device (``model.fast_path.optimize_for_inference``, compiled;
``--compile off`` skips the minutes of compilation on a small CPU);
``--faithful`` times the plain eager MattingNetwork; ``--compare`` times both in alternating rounds in one process
(the fair way on a shared machine) and reports the speedup and how far apart their outputs are.

    python inference_speed_test.py --model-variant mobilenetv3 --resolution 1920 1080 --downsample-ratio 0.25 \
        --precision float32 --device cpu --compare

Human-readable lines first, then one JSON line (the last line) with frames/s, latency percentiles (ms), peak GPU
memory, device, dtype, path and commit. Without ``--checkpoint`` the golden-recipe deterministic weights are used: speed does not
depend on the weight values.

float32 on CUDA runs in full IEEE float32 (TF32 off, see ``model/tf32.py``) unless ``--allow-tf32``: the compare's
max |Δ| is then held to float32's bound, and the timings are those of real float32. Both paths fold BatchNorm (the
fast path) or run (the faithful path) from the float32 weights cast once to ``--precision``.

``--disable-refiner``: when ``--downsample-ratio`` < 1 the low-resolution fgr residual and pha are brought to full
size by plain bilinear upsampling (align_corners=False) instead of the guided-filter refiner.
"""
import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from tqdm import tqdm

from model import REFINERS, VARIANTS, MattingNetwork
from model.devices import DTYPES, resolve_device
from model.fast_path import optimize_for_inference
from model.tf32 import no_tf32, tf32_enabled
from model.weights.deterministic import load_deterministic_weights

Step = Callable[[Tensor, List[Optional[Tensor]]], List[Tensor]]


class BilinearRefiner(nn.Module):
    """The "disabled" refiner: bilinear upsampling of the low-res fgr residual and pha to the source size.

    A :class:`model.guided_filter.Refiner` whose ``coefficients`` are (None, [fgr, pha]), meaning A = 0: both
    ``compose`` stages (faithful and fused) then upsample the prediction itself.
    """

    def coefficients(
        self, base_src: Tensor, base_fgr: Tensor, base_pha: Tensor, base_hid: Tensor
    ) -> Tuple[None, Tensor]:
        """A = None (zero), b = the low-res prediction ``[N, 4, h, w]``."""
        return None, torch.cat([base_fgr, base_pha], dim=1)  # b [N, 4, h, w]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-variant", choices=VARIANTS, default="mobilenetv3")
    parser.add_argument("--refiner", choices=REFINERS, default="deep_guided_filter")
    parser.add_argument("--resolution", type=int, nargs=2, metavar=("W", "H"), default=[1920, 1080])
    parser.add_argument("--downsample-ratio", type=float, default=0.25)
    parser.add_argument("--precision", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--disable-refiner", action="store_true", help="bilinear upsampling instead of the refiner")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--frames", type=int, default=50, help="timed frames (per round with --compare)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed frames first (compilation happens here)")
    parser.add_argument("--checkpoint", default=None, help="a .pth state dict; default: golden-recipe weights")
    parser.add_argument("--faithful", action="store_true", help="time the plain eager MattingNetwork")
    parser.add_argument("--compare", action="store_true", help="time faithful and fast paths in alternating rounds")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds with --compare")
    parser.add_argument(
        "--channels-last", choices=["auto", "on", "off"], default="auto", help="NHWC in the fast path (auto: device default)"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument(
        "--compile",
        choices=["on", "off"],
        default="on",
        help="torch.compile the fast path (fastest steady state; compiling takes minutes on a small CPU)",
    )
    parser.add_argument(
        "--allow-tf32", action="store_true", help="let CUDA run float32 convolutions in TF32 (PyTorch's default)"
    )
    parser.add_argument("--disable-progress", action="store_true")
    args = parser.parse_args(argv)
    width, height = args.resolution
    if width < 1 or height < 1:
        parser.error(f"--resolution needs positive W H; got {width} {height}.")
    if not 0 < args.downsample_ratio <= 1:
        parser.error(f"--downsample-ratio must be in (0, 1]; got {args.downsample_ratio}.")
    if args.frames < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--frames and --rounds must be at least 1 and --warmup at least 0.")
    if args.faithful and args.compare:
        parser.error("--faithful and --compare exclude each other; --compare already times the faithful path.")
    try:
        args.device = str(resolve_device(args.device))
    except ValueError as error:
        parser.error(str(error))
    return args


def git_commit() -> str:
    """The short commit of this checkout (with ``-dirty`` when files changed), or ``unknown`` outside git."""
    root = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    """The GPU's name, or ``cpu (<processor>)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def build_model(args: argparse.Namespace) -> MattingNetwork:
    """The faithful network (eval mode) in float32 on the requested device; :func:`measure` casts it to
    ``--precision`` after the fast path has folded BatchNorm in float32 (as conversion does)."""
    if args.checkpoint is not None:
        from model.weights import load_model

        model = load_model(args.model_variant, args.refiner, checkpoint=args.checkpoint)
    else:
        model = load_deterministic_weights(MattingNetwork(args.model_variant, args.refiner))
    if args.disable_refiner:
        model.refiner = BilinearRefiner()
    return model.eval().to(device=args.device)


def make_fast(model: MattingNetwork, args: argparse.Namespace) -> nn.Module:
    """The fast path in ``--precision`` from ``model``'s float32 weights, compiled unless ``--compile off``."""
    channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
    return optimize_for_inference(
        model, dtype=DTYPES[args.precision], compile_network=args.compile == "on", channels_last=channels_last
    )


def stepper(network: nn.Module, downsample_ratio: float) -> Step:
    """One frame through ``network`` with the states carried in ``rec`` (updated in place)."""

    def step(src: Tensor, rec: List[Optional[Tensor]]) -> List[Tensor]:
        out = network(src, *rec, downsample_ratio=downsample_ratio)
        rec[:] = out[2:]
        return out

    return step


def time_frames(
    step: Step, src: Tensor, rec: List[Optional[Tensor]], frames: int, progress: bool
) -> List[Tuple[float, float]]:
    """Per frame: (wall-clock seconds, this process's CPU seconds); CUDA is synchronised before each clock read.

    On a CPU shared with other jobs the CPU seconds (with ``--threads 1``) measure the work itself, without the
    time spent waiting for a core."""
    sync = torch.cuda.synchronize if src.device.type == "cuda" else (lambda: None)
    timings = []
    for _ in tqdm(range(frames), disable=not progress, leave=False):
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        step(src, rec)
        sync()
        timings.append((time.perf_counter() - wall, time.process_time() - cpu))
    return timings


def summary(timings: List[Tuple[float, float]], peak_memory: int = 0) -> Dict[str, object]:
    """frames/s (from the mean latency), latency percentiles in ms, frames per CPU-second, and the peak GPU memory
    allocated while these frames ran (MiB, both models resident; None on the CPU)."""
    ordered = sorted(wall for wall, _ in timings)

    def percentile(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "fps": round(len(timings) / sum(ordered), 3),
        "latency_ms": {"p50": percentile(0.5), "p90": percentile(0.9), "p99": percentile(0.99)},
        "frames_per_cpu_second": round(len(timings) / sum(cpu for _, cpu in timings), 3),
        "frames": len(timings),
        "peak_gpu_memory_mib": round(peak_memory / 2**20, 1) if peak_memory else None,
    }


@torch.no_grad()
def max_differences(faithful: nn.Module, fast: nn.Module, src: Tensor, ratio: float) -> Dict[str, float]:
    """max |Δ| between the two paths on two frames (states carried), per output."""
    rec_a: List[Optional[Tensor]] = [None] * 4
    rec_b: List[Optional[Tensor]] = [None] * 4
    worst: Dict[str, float] = {}
    for _ in range(2):
        a = stepper(faithful, ratio)(src, rec_a)
        b = stepper(fast, ratio)(src, rec_b)
        for name, x, y in zip(["fgr", "pha", "r1", "r2", "r3", "r4"], a, b):
            worst[name] = max(worst.get(name, 0.0), (x.float() - y.float()).abs().max().item())
    return worst


def run(args: argparse.Namespace) -> Dict[str, object]:
    """Build the model(s), time them and return the result record (``--threads`` and TF32 off apply only
    meanwhile)."""
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        with contextlib.nullcontext() if args.allow_tf32 else no_tf32():
            return measure(args)
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def measure(args: argparse.Namespace) -> Dict[str, object]:
    """The body of :func:`run`."""
    commit = git_commit()  # the code being timed, read before anything can change the checkout
    torch.manual_seed(0)
    dtype = DTYPES[args.precision]
    width, height = args.resolution
    src = torch.rand(1, 3, height, width, device=args.device).to(dtype)  # [B=1, 3, H, W]
    model = build_model(args)  # float32
    paths: Dict[str, nn.Module] = {}
    if not args.faithful:
        paths["fast"] = make_fast(model, args)  # BatchNorm folded in float32, then cast
    if args.faithful or args.compare:
        paths = {"faithful": model.to(dtype), **paths}
    progress = not args.disable_progress
    recs: Dict[str, List[Optional[Tensor]]] = {name: [None] * 4 for name in paths}
    steps = {name: stepper(network, args.downsample_ratio) for name, network in paths.items()}
    for name, step in steps.items():
        time_frames(step, src, recs[name], args.warmup, progress)
    timings: Dict[str, List[Tuple[float, float]]] = {name: [] for name in paths}
    peak_memory: Dict[str, int] = {name: 0 for name in paths}
    ratios: List[float] = []
    cpu_ratios: List[float] = []
    for round_index in range(args.rounds if args.compare else 1):
        names = list(paths) if round_index % 2 == 0 else list(reversed(paths))
        wall, cpu = {}, {}
        for name in names:
            if src.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(src.device)
            timed = time_frames(steps[name], src, recs[name], args.frames, progress)
            if src.device.type == "cuda":
                peak_memory[name] = max(peak_memory[name], torch.cuda.max_memory_allocated(src.device))
            timings[name] += timed
            wall[name] = sum(w for w, _ in timed)
            cpu[name] = sum(c for _, c in timed)
        if args.compare:
            ratios.append(wall["faithful"] / wall["fast"])
            cpu_ratios.append(cpu["faithful"] / cpu["fast"])
    record: Dict[str, object] = {
        "variant": args.model_variant,
        "refiner": "disabled (bilinear)" if args.disable_refiner else args.refiner,
        "resolution": [width, height],
        "downsample_ratio": args.downsample_ratio,
        "device": device_name(src.device),
        "threads": torch.get_num_threads(),
        "dtype": args.precision,
        "tf32": src.device.type == "cuda" and tf32_enabled(),
        "weights": args.checkpoint or "golden-recipe (deterministic)",
        "warmup": args.warmup,
        "commit": commit,
    }
    if args.compare:
        record["path"] = "compare"
        record["faithful"] = summary(timings["faithful"], peak_memory["faithful"])
        record["fast"] = summary(timings["fast"], peak_memory["fast"])
        record["speedup_per_round"] = [round(r, 3) for r in ratios]
        record["speedup_median"] = round(statistics.median(ratios), 3)
        record["cpu_speedup_median"] = round(statistics.median(cpu_ratios), 3)
        record["max_abs_diff"] = max_differences(paths["faithful"], paths["fast"], src, args.downsample_ratio)
    else:
        name = next(iter(paths))
        record["path"] = name
        record.update(summary(timings[name], peak_memory[name]))
    return record


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    record = run(args)
    for name in ("faithful", "fast"):
        result = record.get(name, record if record["path"] == name else None)
        if isinstance(result, dict):
            latency = result["latency_ms"]
            print(
                f"{name:9s} {result['fps']:9.2f} frames/s  p50 {latency['p50']:.2f} ms  p90 {latency['p90']:.2f} ms"
                f"  p99 {latency['p99']:.2f} ms  {result['frames_per_cpu_second']:.2f} frames per CPU-second"
            )
    if "speedup_median" in record:
        print(
            f"speedup (median of per-round ratios): wall {record['speedup_median']:.2f}x, "
            f"CPU time {record['cpu_speedup_median']:.2f}x; max |Δ|: {record['max_abs_diff']}"
        )
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
