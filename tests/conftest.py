"""Shared fixtures: the read-only reference material in ``../shared`` and small deterministic models."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RVM_SHARED", ROOT.parent / "shared"))


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Tests marked ``cuda`` skip, with the reason, where PyTorch sees no CUDA GPU (the only skips allowed in CI)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible to PyTorch here (benchmarks/gpu_check.py runs these)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _require(path: Path) -> Path:
    """Return ``path``; when it is missing, fail under CI (which always has ../shared) and skip elsewhere."""
    if not path.exists():
        message = f"{path} is missing; set RVM_SHARED to the folder holding reference/ and data/."
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "reference")


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "data")


@pytest.fixture(scope="session")
def golden(reference_dir: Path) -> dict:
    return torch.load(_require(reference_dir / "golden" / "golden.pt"), weights_only=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one CPU thread for a module (tiny tensors gain nothing from more on a busy CPU); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def published_weights(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published mobilenetv3 weights (ONNX release, converted by ``model.weights.convert_weights``) as a
    ``.pth`` in a temp dir.

    ``project_seg`` is not in the ONNX file: it holds a fixed-seed initialisation, so segmentation outputs
    made with these weights mean nothing. Where the reference folder holds that conversion already
    (``rvm_mobilenetv3.pth``, as in the GPU check's bundle) it is used as it is.
    """
    from model.weights import convert_weights, save_state_dict

    converted = reference_dir / "weights" / "rvm_mobilenetv3.pth"
    if converted.is_file():
        return converted
    source = _require(reference_dir / "weights" / "rvm_mobilenetv3_fp32.onnx")
    result = convert_weights(source, variant="mobilenetv3", refiner="deep_guided_filter")
    return save_state_dict(result.state_dict, tmp_path_factory.mktemp("weights") / "rvm_mobilenetv3.pth")


@pytest.fixture(scope="session")
def footage(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Phone and camera files made with the ffmpeg program on first use, shared by the session (tests/footage.py);
    the portrait clip comes from ../shared/data/portraits."""
    from footage import Footage

    for program in ("ffmpeg", "ffprobe"):
        _require(Path(shutil.which(program) or f"/usr/bin/{program}"))  # .ci/run installs them (Debian's ffmpeg)
    return Footage(tmp_path_factory.mktemp("footage"), _require(data_dir / "portraits" / "image" / "p_22fc0130.jpg"))


@pytest.fixture(scope="session")
def readme_export(published_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """The README's export command on the published weights, run as a user would, once per test session (an export
    costs tens of seconds on a 2-core CPU): ``python export.py onnx --checkpoint ... --output ...``, its own
    verification included. Returns (the output path, the finished process)."""
    output = tmp_path_factory.mktemp("onnx") / "rvm_mobilenetv3_fp32.onnx"
    command = [sys.executable, "export.py", "onnx", "--checkpoint", str(published_weights), "--output", str(output)]
    return output, subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="session")
def published_onnx(readme_export) -> Path:
    """Our ONNX export (dynamic ratio, float32) of the published weights, written by :func:`readme_export`; the
    export tests and the web demo's tests share it."""
    output, finished = readme_export
    assert finished.returncode == 0, finished.stderr[-2000:]
    return output
