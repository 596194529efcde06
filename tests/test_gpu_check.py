"""benchmarks/gpu_check.py: the dry run of the whole orchestration on the CPU, and the parts' failure handling."""
import importlib.util
import json
import re
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# loaded from its file: putting benchmarks/ on sys.path would make its live.py shadow the live/ package
_SPEC = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_SPEC)
sys.modules["gpu_check"] = gpu_check
_SPEC.loader.exec_module(gpu_check)

PART_NAMES = ["install", "environment", "cuda_tests", "speed_fp16_1080p", "speed_fp16_2160p", "conversion",
              "speed_fp32_1080p", "speed_fp32_2160p"]  # fmt: skip


def fake_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, standing in for the carried ones (nothing is downloaded in tests)."""
    folder.mkdir(parents=True)
    path = folder / "gpucheckprobe-0.1-py3-none-any.whl"
    info = "gpucheckprobe-0.1.dist-info"
    files = {
        "gpucheckprobe/__init__.py": "VALUE = 1\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: gpucheckprobe\nVersion: 0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(f"{info}/RECORD", "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"]))
    return path


@pytest.mark.slow
def test_dry_run_runs_every_part_and_reports_it(shared_dir, tmp_path, capsys):
    """The same parts as on the GPU, in the same order, at tiny sizes on the CPU: every part passes (the CUDA tests
    skip), results.json and results.md hold each part's figures, and the folder fits what the GPU machine returns."""
    bundle = tmp_path / "bundle"
    fake_wheel(bundle / "wheels")
    out = tmp_path / "out"
    gpu_check.main(["--dry-run", "--output", str(out), "--bundle", str(bundle)])
    assert capsys.readouterr().out.strip().endswith("results.json")
    record = json.loads((out / "results.json").read_text())
    parts = {part["name"]: part for part in record["parts"]}
    assert list(parts) == PART_NAMES and record["finished"]
    assert parts["install"]["status"] == "passed"
    assert parts["install"]["wheels"] == ["gpucheckprobe-0.1-py3-none-any.whl"]
    assert parts["cuda_tests"]["status"] == "skipped" and set(parts["cuda_tests"]["counts"]) == {"SKIPPED"}
    assert any(name.startswith("tests/test_cuda.py::test_fast_path_equals") for name in parts["cuda_tests"]["tests"])
    for name in PART_NAMES[3:]:
        assert parts[name]["status"] == "passed", (name, parts[name].get("output_tail"))
    assert parts["speed_fp16_2160p"]["figures"]["dtype"] == "float16"
    assert max(parts["speed_fp32_1080p"]["figures"]["max_abs_diff"].values()) <= 1e-4
    assert parts["conversion"]["figures"]["serial_fps"] > 0
    assert record["environment"]["torch"] and record["commit"]
    report = (out / "results.md").read_text()
    assert "| conversion | passed |" in report and "| 128×72 | 0.125 | float16 |" in report
    log = (out / "check.log").read_text()
    assert all(f"===== {name}:" in log for name in PART_NAMES)
    names = [p.name for p in out.iterdir()]  # what the GPU machine's $OUT gives back: ≤ 8 plain files, plain names
    assert len(names) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names)
    assert all(p.is_file() for p in out.iterdir())


def test_a_failing_or_overlong_part_is_recorded_and_the_next_one_runs(tmp_path):
    check = gpu_check.Check(tmp_path / "out", "test", budget_s=60)
    python = sys.executable
    peek = f"import json; print(json.dumps({{'seen': json.load(open({str(tmp_path / 'out' / 'results.json')!r}))}}))"
    parts = [
        gpu_check.Part("fails", [python, "-c", "print('boom'); raise SystemExit(3)"], 30, lambda text, code: {}),
        gpu_check.Part("sleeps", [python, "-c", "import time; time.sleep(60)"], 1, lambda text, code: {}),
        gpu_check.Part("garbled", [python, "-c", "print('no json')"], 30, gpu_check.read_conversion),
        gpu_check.Part("peeks", [python, "-c", peek], 30, gpu_check.read_environment),
    ]
    for part in parts:
        gpu_check.run_part(check, part, env={"PATH": "/usr/bin:/bin"})
    fails, sleeps, garbled, peeks = json.loads((tmp_path / "out" / "results.json").read_text())["parts"]
    assert fails["status"] == "failed" and fails["exit_code"] == 3 and "boom" in fails["output_tail"]
    assert sleeps["status"] == "timed out" and sleeps["seconds"] < 30
    assert garbled["status"] == "failed" and "no JSON result line" in garbled["reason"]
    assert peeks["status"] == "passed"
    seen = peeks["figures"]["seen"]["parts"][-1]  # results.json as the part itself found it: already rewritten
    assert seen["name"] == "peeks" and seen["status"] == "running"
    check.budget_s = 0  # nothing left: the next part is not started
    gpu_check.run_part(check, parts[0], env={})
    assert check.record["parts"][-1]["status"] == "skipped" and "out of time" in check.record["parts"][-1]["reason"]


def test_pytest_lines_are_read_per_test():
    text = "\n".join([
        "tests/test_cuda.py::test_a[x] PASSED                [ 10%]",
        "tests/test_cuda.py::test_b FAILED                   [ 20%]",
        "tests/test_evaluation_metrics.py::test_c[cuda] SKIPPED (needs a CUDA GPU) [ 30%]",
        "FAILED tests/test_cuda.py::test_b - AssertionError",
    ])  # fmt: skip
    result = gpu_check.read_tests(text, 1)
    assert result["tests"] == {"tests/test_cuda.py::test_a[x]": "PASSED", "tests/test_cuda.py::test_b": "FAILED",
                               "tests/test_evaluation_metrics.py::test_c[cuda]": "SKIPPED"}  # fmt: skip
    assert result["status"] == "failed" and result["counts"] == {"FAILED": 1, "PASSED": 1, "SKIPPED": 1}
    assert gpu_check.read_tests("collected 0 items", 5)["status"] == "failed"
    passed = "tests/test_cuda.py::test_a PASSED [ 50%]\nERROR tests/test_web.py - ModuleNotFoundError: selenium"
    result = gpu_check.read_tests(passed, 1)  # a file that needs a package the GPU machine lacks
    assert result["status"] == "incomplete" and result["collection_errors"] == ["tests/test_web.py"]
    assert gpu_check.read_tests("tests/test_cuda.py::test_a PASSED [100%]", 0)["status"] == "passed"


def test_float32_speed_beyond_its_bound_fails_the_part():
    record = {"dtype": "float32", "max_abs_diff": {"fgr": 2e-4, "pha": 1e-6}}
    assert gpu_check.read_speed(json.dumps(record), 0)["status"] == "failed"
    assert "status" not in gpu_check.read_speed(json.dumps({**record, "dtype": "float16"}), 0)


def test_flags():
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--dry-run"])
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--prepare", "--output", "x"])
    assert gpu_check.pinned_version("av") and gpu_check.pinned_version("kornia")
