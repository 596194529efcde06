"""What can be checked on the CPU of the risks of the GPU paths (benchmarks/gpu_check.py checks the rest on a GPU).

Each test names the risk it guards against: CUDA graph outputs fed back as states, host synchronisation in the
per-frame loop, recompiles for a short last chunk or a new size, half precision in the fast guided filter, BatchNorm
folded after casting, TF32 against float32 bounds, tests that take the GPU when one is present, resuming a CPU
training state on CUDA, DDP keywords and the process group of torch 2.11, and the evaluator needing PyAV.
"""
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, List

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

import export
import inference_speed_test as speed
import train
import train_state
from inference import convert_video
from model import MattingNetwork
from model.weights.deterministic import load_deterministic_weights
from model.fast_path import FastMattingNetwork, optimize_for_inference
from model.tf32 import no_tf32, tf32_enabled
from test_fast_path import portrait
from test_speed_test import TINY
from test_train import tiny_flags

ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=None)
def make_model(refiner: str = "deep_guided_filter") -> MattingNetwork:
    """Golden-recipe weights, built once per refiner (every user here makes its own copy or leaves it alone)."""
    return load_deterministic_weights(MattingNetwork("mobilenetv3", refiner)).eval()


# --- CUDA graphs: outputs of consecutive calls never share storage ---------------------------------------------


def replaying(function: Callable) -> Callable:
    """``function`` as a CUDA graph replays it: every call returns the same static tensors, refilled."""
    static: dict = {}

    def refill(key, x):
        if isinstance(x, (list, tuple)):  # the states of the encode stage
            return [refill((key, index), y) for index, y in enumerate(x)]
        return None if x is None else static.setdefault(key, torch.empty_like(x)).copy_(x)

    def call(*args):
        return tuple(refill(index, x) for index, x in enumerate(function(*args)))

    return call


def storages(outputs: List[Tensor]) -> set:
    return {x.untyped_storage().data_ptr() for x in outputs}


@pytest.mark.parametrize("graph_like", [True, False])
@torch.no_grad()
def test_consecutive_calls_never_share_storage(graph_like):
    """Risk: with CUDA graphs every replay writes into the same memory; the states of frame t are the inputs of
    frame t + 1 and the outputs of frame t are still being encoded by the writer threads, so the fast path must hand
    out copies. Here the compiled parts are replaced by replaying stand-ins (static outputs, as CUDA graphs give)."""
    fast = FastMattingNetwork(make_model(), cuda_graphs=graph_like)
    if graph_like:
        fast.stages = type(fast.stages)(*(replaying(stage) for stage in fast.stages))
    first_src, second_src = torch.rand(2, 1, 3, 48, 64)
    first = fast(first_src, downsample_ratio=0.5)
    kept = [x.clone() for x in first]
    second = fast(second_src, *first[2:], downsample_ratio=0.5)
    assert not storages(first) & storages(second)
    for name, before, after in zip(["fgr", "pha", "r1", "r2", "r3", "r4"], kept, first):
        assert torch.equal(before, after), f"{name} of the first call was overwritten by the second"


# --- no host synchronisation inside the per-frame loop ---------------------------------------------------------


SYNCING_OPS = {"_local_scalar_dense", "item", "is_nonzero", "nonzero", "equal", "allclose", "masked_select", "unique"}


class HostSyncRecorder(TorchDispatchMode):
    """Records every operator that would make the host wait for the device: reading a value (``.item()``,
    ``bool(tensor)``, data-dependent shapes) or moving a tensor to another device (``.cpu()``, ``.to('cpu')``)."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        # recorded before running: on meta tensors these raise
        devices = {x.device if isinstance(x, Tensor) else x for x in pytree.tree_leaves((args, kwargs))
                   if isinstance(x, (Tensor, torch.device))}  # fmt: skip
        if func._schema.name.split("::")[-1] in SYNCING_OPS:
            self.syncs.append(str(func))
        elif len(devices) > 1:
            self.syncs.append(f"{func} across {sorted(map(str, devices))}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "refiner,ratio", [("deep_guided_filter", 0.5), ("fast_guided_filter", 0.5), ("deep_guided_filter", 1)]
)
@torch.no_grad()
def test_fast_forward_never_synchronises_with_the_host(refiner, ratio):
    """Risk: one ``.item()`` or ``.cpu()`` per frame stalls the GPU queue every frame. The fast path runs on the meta
    device, where every such call shows up (a CPU tensor's ``.cpu()`` is invisible) or fails."""
    fast = optimize_for_inference(make_model(refiner), device="meta")
    src = torch.rand(1, 3, 48, 64, device="meta")
    with HostSyncRecorder() as recorder:
        out = fast(src, downsample_ratio=ratio)  # first frame: no states
        out = fast(src, *out[2:], downsample_ratio=ratio)  # later frames
        fast(src.unsqueeze(1).expand(1, 2, 3, 48, 64), *out[2:], downsample_ratio=ratio)  # a chunk of frames
    assert recorder.syncs == []


def test_the_recorder_sees_host_synchronisation():
    x = torch.rand(2, 3, device="meta")
    with HostSyncRecorder() as recorder:
        x.sum() * 2
        for sync in (x.cpu, x.sum().item):
            with pytest.raises(Exception):  # meta tensors hold no data
                sync()
    assert len(recorder.syncs) == 2 and "_to_copy" in recorder.syncs[0] and "_local_scalar_dense" in recorder.syncs[1]


# --- fixed-shape compiles: the short last chunk and new sizes ---------------------------------------------------


class CountingBackend:
    """A torch.compile backend that runs the captured graph as it is and counts the graphs it was given."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


def image_folder(folder: Path, count: int) -> Path:
    folder.mkdir()
    generator = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(generator.integers(0, 256, (36, 52, 3), dtype=np.uint8)).save(folder / f"{index:04d}.png")
    return folder


@pytest.mark.slow
def test_short_last_chunk_is_not_compiled_again(tmp_path):
    """Risk: shapes are fixed when compiled (and captured on CUDA), so a short last chunk (7 frames in chunks of 3)
    was compiled anew, minutes on a CPU, for one chunk. convert_video pads it instead."""
    backend = CountingBackend()
    fast = optimize_for_inference(make_model(), compile_network=True, compile_backend=backend)
    options = dict(output_type="png_sequence", seq_chunk=3, downsample_ratio=0.5, progress=False, fast=False)
    result = convert_video(fast, str(image_folder(tmp_path / "six", 6)), output_alpha=str(tmp_path / "a6"), **options)
    graphs = backend.graphs
    assert result.frames == 6 and graphs > 0
    result = convert_video(fast, str(image_folder(tmp_path / "seven", 7)), output_alpha=str(tmp_path / "a7"), **options)
    assert result.frames == 7 and len(list((tmp_path / "a7").iterdir())) == 7
    assert backend.graphs == graphs, "the short last chunk was compiled again"


@pytest.mark.slow
@torch.no_grad()
def test_every_new_size_is_compiled(caplog):
    """Risk: torch's recompile limit (8 graphs per function, shared by every copy in the process) made the fifth
    input size run uncompiled, silently apart from a log line. Here the limit starts at 2, so the third size
    would be the first one left uncompiled."""
    backend = CountingBackend()
    counts = []
    # torch's own patch: pytest's monkeypatch deletes the setting on undo, which hides it from later readers
    with torch._dynamo.config.patch(recompile_limit=2):
        fast = optimize_for_inference(make_model(), compile_network=True, compile_backend=backend)
        for width in (32, 40, 48):
            fast(torch.rand(1, 3, 32, width), downsample_ratio=0.5)
            counts.append(backend.graphs)
    assert counts[0] < counts[1] < counts[2], counts
    assert "recompile_limit" not in caplog.text


# --- half precision in the fast guided filter -----------------------------------------------------------------


# The documented bounds of the half precisions (tests/test_fast_path.py, documentation/benchmarks.md): mean |Δ| of
# fgr and pha against the float32 faithful path, and 20 times that for the largest |Δpha|.
@pytest.mark.parametrize("dtype,bound", [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
@torch.no_grad()
def test_fast_guided_filter_in_half_precision(data_dir, dtype, bound):
    """Risk: var = E[x²] − E[x]² cancels in float16/bfloat16 (error ~1e-3 against eps = 1e-5), and A = cov / (var +
    eps) became noise of size 100 in flat regions. The statistics are now computed in float32."""
    model = make_model("fast_guided_filter")
    src = portrait(data_dir, 1, (192, 108))  # [1, 3, 108, 192]
    expected = model(src, downsample_ratio=0.5)
    fgr, pha, *_ = optimize_for_inference(model, dtype=dtype)(src, downsample_ratio=0.5)
    assert pha.dtype == dtype
    assert (pha.float() - expected[1]).abs().mean().item() < bound
    assert (fgr.float() - expected[0]).abs().mean().item() < bound
    assert (pha.float() - expected[1]).abs().max().item() < 20 * bound
    # the refiner alone, on a smooth alpha over the real portrait (flat regions of the guide included)
    refiner = model.refiner
    base_src = torch.nn.functional.interpolate(src, scale_factor=0.25, mode="bilinear", align_corners=False)
    base_pha = torch.nn.functional.interpolate(torch.rand(1, 1, 4, 4), base_src.shape[-2:], mode="bilinear")
    base_fgr = torch.zeros(1, 3, *base_src.shape[-2:])
    inputs = (src, base_src, base_fgr, base_pha, None)
    reference = refiner(*inputs)[1]
    half = refiner(*[x.to(dtype) if x is not None else None for x in inputs])[1]
    assert (half.float() - reference).abs().mean().item() < bound


# --- BatchNorm folded in float32, then cast -------------------------------------------------------------------


def test_speed_test_folds_batchnorm_before_casting(monkeypatch):
    """Risk: the speed test cast the model to float16 and then folded BatchNorm in float16, while conversion folds
    in float32 first: the timed weights were not the converted ones."""
    timed = []

    def spy(model, **options):
        timed.append(optimize_for_inference(model, **options))
        return timed[-1]

    monkeypatch.setattr(speed, "optimize_for_inference", spy)
    record = speed.main(TINY + ["--precision", "float16", "--compare", "--rounds", "1", "--downsample-ratio", "0.5"])
    converted = optimize_for_inference(make_model(), dtype=torch.float16)
    assert len(timed) == 1 and record["dtype"] == "float16"
    for (name, a), b in zip(timed[0].state_dict().items(), converted.state_dict().values()):
        assert a.dtype == b.dtype == torch.float16 and torch.equal(a, b), name


# --- TF32 against float32 bounds ------------------------------------------------------------------------------


def test_no_tf32_turns_tf32_off_and_restores_it():
    cudnn = torch.backends.cudnn
    assert tf32_enabled()  # PyTorch's default
    with no_tf32():
        assert not tf32_enabled() and not cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert tf32_enabled() and cudnn.allow_tf32
    # after the per-operator API was used, the legacy cuDNN flag cannot be read: that API is used instead
    cudnn.rnn.fp32_precision = "ieee"
    try:
        with no_tf32():
            assert not tf32_enabled()
        assert tf32_enabled() and cudnn.rnn.fp32_precision == "ieee"
    finally:
        cudnn.rnn.fp32_precision = "tf32"
    assert cudnn.allow_tf32  # the default state again, readable through both APIs


def test_float32_checks_run_without_tf32(monkeypatch, tmp_path):
    """Risk: TF32 convolutions (PyTorch's CUDA default) differ from float32 by ~1e-3, and the export check and the
    speed test's compare hold float32 to 1e-4."""
    seen = []
    original = export._torchscript_error
    monkeypatch.setattr(export, "_torchscript_error", lambda *a: seen.append(tf32_enabled()) or original(*a))
    export.export_torchscript(make_model(), tmp_path / "m.torchscript")
    assert seen == [False]
    monkeypatch.setattr(speed, "measure", lambda args: {"tf32 during the run": tf32_enabled()})
    assert speed.run(speed.parse_args(TINY)) == {"tf32 during the run": False}
    assert speed.run(speed.parse_args(TINY + ["--allow-tf32"])) == {"tf32 during the run": True}
    assert tf32_enabled()


# --- tests that take the GPU when one is present --------------------------------------------------------------


def test_cpu_tests_stay_on_the_cpu_where_cuda_is_present(monkeypatch, tmp_path):
    """Risk: flags defaulting to CUDA when present made CPU tests run on the GPU, and two torchrun processes of the
    training tests on one GPU asked for device 1."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert speed.parse_args(TINY).device == "cpu"
    args = train.parse_args(tiny_flags(str(tmp_path), 1, tmp_path))
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: pytest.fail(f"asked for cuda:{index}"))
    joined = {}
    monkeypatch.setattr(train.dist, "init_process_group", lambda backend, **kw: joined.update(backend=backend, **kw))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    process = train.init_process(args.device, args.process_group_timeout)
    assert process.device == torch.device("cpu") and joined["backend"] == "gloo"


# --- training: resuming on CUDA, DDP keywords, the process group ----------------------------------------------


def test_resuming_without_a_saved_loss_scale(caplog):
    """Risk: a state saved on the CPU (mixed precision off) holds an empty scaler state, and an enabled GradScaler
    (resuming on CUDA) raised on it. Here an enabled CPU scaler stands in for the CUDA one."""
    enabled = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=True)
    with caplog.at_level("INFO", logger=train_state.logger.name):
        train_state.load_scaler_state(enabled, torch.amp.GradScaler("cpu", enabled=False).state_dict())
    assert enabled.get_scale() == 1024.0 and "no loss scale" in caplog.text
    saved = torch.amp.GradScaler("cpu", init_scale=64.0, enabled=True).state_dict()
    train_state.load_scaler_state(enabled, saved)
    assert enabled.get_scale() == 64.0
    train_state.load_scaler_state(torch.amp.GradScaler("cpu", enabled=False), saved)  # CUDA state on the CPU


def test_ddp_buffer_keyword_fits_this_and_older_torch(monkeypatch):
    """Risk: ``forward_sync_buffers`` is new in torch 2.13; torch 2.11 (the GPU machine's) has ``broadcast_buffers``."""
    import inspect

    options = train.ddp_buffer_options()
    assert set(options) <= set(inspect.signature(train.DistributedDataParallel.__init__).parameters)

    class OldDDP:
        def __init__(self, module, device_ids=None, broadcast_buffers=True, find_unused_parameters=False):
            pass

    monkeypatch.setattr(train, "DistributedDataParallel", OldDDP)
    assert train.ddp_buffer_options() == {"broadcast_buffers": False}


@pytest.mark.slow
def test_single_torchrun_process_trains_in_a_process_group(tmp_path, monkeypatch):
    """Under torchrun even one process joins a process group (on one GPU: NCCL with one rank) and trains through DDP
    with the timeout given; here gloo on the CPU, in this process."""
    import socket

    from dataset.synthetic import SyntheticWriter

    SyntheticWriter(str(tmp_path / "data"), width=160, height=120, frames=4, seed=0).write_all()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                            TORCHELASTIC_RUN_ID="test").items():  # fmt: skip
        monkeypatch.setenv(name, value)
    joined = {}
    original = train.dist.init_process_group
    monkeypatch.setattr(train.dist, "init_process_group", lambda *a, **kw: joined.update(kw) or original(*a, **kw))
    wrapped = []
    wrap = train.distributed

    def spy(model, process):
        wrapped.append(wrap(model, process))
        return wrapped[-1]

    monkeypatch.setattr(train, "distributed", spy)
    flags = tiny_flags(str(tmp_path / "data"), 1, tmp_path, "--max-steps", "1", "--process-group-timeout", "7")
    assert train.main(flags) == 0
    assert joined["timeout"].total_seconds() == 7 * 60
    assert [type(model).__name__ for model in wrapped] == ["DistributedDataParallel"]
    assert not train.dist.is_initialized()
    assert (tmp_path / "checkpoints" / "state-step-000000001.pt").is_file()


# --- the evaluator without PyAV -------------------------------------------------------------------------------


def test_evaluators_and_training_import_without_pyav():
    """Risk: ``import av`` at module import made the evaluators (and anything importing them) need PyAV, which an
    evaluation or training machine may lack."""
    code = (
        "import sys; sys.modules['av'] = None\n"  # any `import av` now raises ImportError
        "import evaluation.evaluate_hr, evaluation.evaluate_lr, evaluation.score_model, evaluation.compose, train\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
