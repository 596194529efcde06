"""The CUDA paths: fast path against the faithful one (float32 to 1e-4, float16/bfloat16 to their documented bounds)
with compile and CUDA graphs, conversion on the GPU against the CPU, training steps with AMP under NCCL and gloo,
resuming a CPU training state on the GPU, TorchScript export and the speed test's compare on the GPU.

Every test here is marked ``cuda`` and skips with a reason where PyTorch sees no GPU; ``benchmarks/gpu_check.py`` runs
them on a GPU machine. Float32 comparisons run without TF32 (``model.tf32.no_tf32``, applied to every test of this
file): PyTorch's default TF32 convolutions alone differ from float32 by ~1e-3. The tests run in this order on
purpose (the most telling first), so that a check cut short by its time limit has the answers that matter most.
"""
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

import export
import inference_speed_test as speed
import train
from inference import convert_video
from model.fast_path import optimize_for_inference
from model.tf32 import no_tf32
from model.weights import load_model
from test_fast_path import assert_outputs_close, make_model, portrait
from test_train import data_root, load_state, tiny_flags  # noqa: F401 (data_root is a fixture)

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")
SIZE = (512, 288)  # (W, H) of every model input here: one compiled shape, shared through inductor's cache
RATIO = 0.25
NAMES = ["fgr", "pha", "r1", "r2", "r3", "r4"]


@pytest.fixture(autouse=True)
def _float32_without_tf32():
    with no_tf32():
        yield


def clip_on_cuda(data_dir: Path, frames: int = 6) -> torch.Tensor:
    """Two real portraits at ``SIZE``, alternating: ``[T, 1, 3, H, W]`` on the GPU."""
    pair = [portrait(data_dir, index, SIZE) for index in (0, 1)]  # [1, 3, H, W] each
    return torch.stack([pair[t % 2] for t in range(frames)]).to(CUDA)


def storages(outputs: List[torch.Tensor]) -> set:
    return {x.untyped_storage().data_ptr() for x in outputs}


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled-cuda-graphs", "eager"])
@torch.no_grad()
def test_fast_path_equals_faithful_in_float32(data_dir, compiled):
    """Six frames, states carried (the first without states, CUDA graphs recorded and then replayed), every output
    within 1e-4 of the faithful path; no output shares memory with the next frame's, nor changes after it."""
    model = make_model().to(CUDA)
    fast = optimize_for_inference(model, compile_network=compiled)  # compiled: with CUDA graphs, the CUDA default
    assert fast.cuda_graphs == compiled and fast.channels_last
    expected_states: list = [None] * 4
    got_states: list = [None] * 4
    previous, kept = None, None
    for frame in clip_on_cuda(data_dir):
        expected = model(frame, *expected_states, downsample_ratio=RATIO)
        got = fast(frame, *got_states, downsample_ratio=RATIO)
        assert_outputs_close(expected, got)
        if previous is not None:
            assert not storages(previous) & storages(got)
            assert all(torch.equal(a, b) for a, b in zip(previous, kept)), "a replay overwrote the previous outputs"
        previous, kept = got, [x.clone() for x in got]
        expected_states, got_states = expected[2:], got[2:]


def frames_folder(data_dir: Path, folder: Path, count: int = 6) -> Path:
    """``count`` PNG frames at ``SIZE``: two real portraits, alternating."""
    folder.mkdir()
    for index in range(count):
        image = portrait(data_dir, index % 2, SIZE)[0].mul(255).round().byte().permute(1, 2, 0).numpy()  # [H, W, 3]
        Image.fromarray(image).save(folder / f"{index:04d}.png")
    return folder


def test_convert_video_on_cuda_equals_the_cpu(data_dir, published_weights, tmp_path):
    """convert_video's defaults on each device (CPU: the 8-bit route; CUDA: compiled fast path with CUDA graphs,
    float route): every pixel of every output within one 8-bit step, with the published weights."""
    source = frames_folder(data_dir, tmp_path / "frames")
    model = load_model("mobilenetv3", checkpoint=str(published_weights))
    kinds = ("composition", "alpha", "foreground")
    for device in ("cpu", "cuda"):
        outputs = {f"output_{kind}": str(tmp_path / device / kind) for kind in kinds}
        result = convert_video(model, str(source), output_type="png_sequence", output_background="green",
                               downsample_ratio=RATIO, device=device, progress=False, **outputs)  # fmt: skip
        assert result.frames == 6
    for kind in kinds:
        for index in range(6):
            images = [np.asarray(Image.open(tmp_path / device / kind / f"{index:04d}.png")).astype(int)
                      for device in ("cpu", "cuda")]  # fmt: skip
            assert images[0].shape == images[1].shape
            assert np.abs(images[0] - images[1]).max() <= 1, (kind, index)
    alpha = np.asarray(Image.open(tmp_path / "cuda" / "alpha" / "0000.png"))
    assert 0.05 < (alpha > 127).mean() < 0.95  # a real matte


def launch(processes: int, flags: List[str]) -> subprocess.Popen:
    """train.py under torchrun with ``processes`` processes, in the background."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "train.py", *flags]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="2")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(jobs: dict) -> None:
    for name, job in jobs.items():
        output, _ = job.communicate(timeout=300)
        assert job.returncode == 0, f"{name}:\n{output[-4000:]}"


def test_one_training_step_per_stage(data_root, tmp_path):  # noqa: F811 (the fixture)
    """Stage 1 on the GPU with AMP as a one-process torchrun job (NCCL with one rank, DDP), beside it two gloo
    processes on the CPU with the GPU visible (they used to ask for cuda:1); then stages 2–4 from stage 1's weights,
    at once. Each saves a state whose loss scaler is in use."""
    finish({
        "stage 1": launch(1, tiny_flags(data_root, 1, tmp_path / "stage1", "--device", "cuda", "--max-steps", "1")),
        "gloo": launch(2, tiny_flags(data_root, 1, tmp_path / "gloo", "--max-steps", "1")),
    })  # fmt: skip
    weights = str(tmp_path / "stage1" / "checkpoints" / "epoch-0.pth")
    finish({
        f"stage {stage}": launch(1, tiny_flags(data_root, stage, tmp_path / f"stage{stage}", "--device", "cuda",
                                               "--max-steps", "1", "--checkpoint", weights))
        for stage in (2, 3, 4)
    })  # fmt: skip
    for stage in (1, 2, 3, 4):
        state = load_state(tmp_path / f"stage{stage}" / "checkpoints" / "state-step-000000001.pt")
        assert state["args"]["device"] == "cuda" and state["scaler"]["scale"] > 0, stage
    assert load_state(tmp_path / "gloo" / "checkpoints" / "state-step-000000001.pt")["scaler"] == {}


def test_cpu_training_state_resumes_on_cuda(data_root, tmp_path):  # noqa: F811 (the fixture)
    """A state saved on the CPU (no loss scaler) resumes on the GPU with AMP."""
    train.main(tiny_flags(data_root, 1, tmp_path, "--max-steps", "1"))
    train.main(tiny_flags(data_root, 1, tmp_path, "--max-steps", "2", "--resume", "--device", "cuda"))
    state = load_state(tmp_path / "checkpoints" / "state-step-000000002.pt")
    assert state["step"] == 2 and state["scaler"]["scale"] > 0


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled-cuda-graphs", "eager"])
@torch.no_grad()
def test_fast_path_never_synchronises_per_frame(compiled):
    """Once warm, frames run with CUDA's sync debug mode set to error: no call waits for the GPU."""
    fast = optimize_for_inference(make_model().to(CUDA), compile_network=compiled)
    src = torch.rand(1, 3, SIZE[1], SIZE[0], device=CUDA)
    out = fast(src, downsample_ratio=RATIO)
    for _ in range(3):  # compile, record, replay
        out = fast(src, *out[2:], downsample_ratio=RATIO)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            out = fast(src, *out[2:], downsample_ratio=RATIO)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_speed_test_compare_holds_the_float32_bound(capsys):
    record = speed.main(["--device", "cuda", "--resolution", str(SIZE[0]), str(SIZE[1]), "--downsample-ratio",
                         str(RATIO), "--compare", "--frames", "5", "--rounds", "2", "--warmup", "4",
                         "--disable-progress"])  # fmt: skip
    assert record["tf32"] is False and max(record["max_abs_diff"].values()) <= 1e-4, record["max_abs_diff"]
    assert record["fast"]["peak_gpu_memory_mib"] > 0 and record["device"] == torch.cuda.get_device_name()


@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_torchscript_export_verifies_on_cuda(tmp_path, precision):
    """The export's own check (reloaded file against eager on the GPU) passes: float32 to 1e-4, float16 to 2e-2."""
    path = export.export_torchscript(make_model(), tmp_path / "m.torchscript", precision=precision, device="cuda")
    assert path.is_file()


# The documented bounds of the half precisions (tests/test_fast_path.py, documentation/benchmarks.md): mean |Δ| of
# fgr and pha against the float32 faithful path, and 20 times that for the largest |Δpha|.
@pytest.mark.parametrize("dtype,bound", [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)], ids=["float16", "bfloat16"])
@torch.no_grad()
def test_half_precisions_compiled_with_cuda_graphs(data_dir, dtype, bound):
    model = make_model().to(CUDA)
    fast = optimize_for_inference(model, dtype=dtype)  # compiled, CUDA graphs, channels-last: the CUDA defaults
    assert fast.cuda_graphs
    expected_states: list = [None] * 4
    got_states: list = [None] * 4
    for frame in clip_on_cuda(data_dir, frames=4):
        expected = model(frame, *expected_states, downsample_ratio=RATIO)
        got = fast(frame, *got_states, downsample_ratio=RATIO)
        assert all(x.dtype == dtype for x in got)
        for name, a, b in zip(NAMES[:2], expected, got):
            assert (b.float() - a).abs().mean().item() < bound, name
        assert (got[1].float() - expected[1]).abs().max().item() < 20 * bound
        expected_states, got_states = expected[2:], got[2:]
