"""Export MattingNetwork to ONNX (dynamic or fixed downsample ratio, fp32/fp16) and TorchScript, then verify.

Command line::

    python export.py onnx --checkpoint rvm_mobilenetv3.pth --output rvm_mobilenetv3_fp32.onnx
    python export.py onnx --checkpoint rvm_mobilenetv3.pth --downsample-ratio 0.25 --output rvm_fixed_0.25.onnx
    python export.py torchscript --checkpoint rvm_mobilenetv3.pth --output rvm_mobilenetv3_fp32.torchscript

ONNX graphs keep the published interface (inputs ``src, r1i..r4i, downsample_ratio``; outputs ``fgr, pha,
r1o..r4o``; dynamic batch, height and width; zero states ``[1, 1, 1, 1]`` accepted for the first frame). With
``--downsample-ratio`` the ratio is baked in as static Resize scales and the ``downsample_ratio`` input is gone.
Every file is written atomically, reloaded and compared with the eager model before the command succeeds: on a
synthetic head-and-shoulders clip (real-looking input, not noise), against a bound derived from float rounding
(:func:`rounding_bound`); the figure measured is logged.
"""
import argparse
import copy
import logging
import math
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from model import REFINERS, VARIANTS, MattingNetwork
from model.atomic import atomic_output
from model.devices import DTYPES, resolve_device
from model.export_module import INPUT_NAMES, OUTPUT_NAMES, ExportableMattingNetwork, sizes_agree
from model.pipeline import downsample
from model.runner import RecurrentRunner, model_input
from model.synthetic import person_like_frames
from model.tf32 import no_tf32

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "float16")
MIN_OPSET = 18  # torch 2.14's exporter writes opset 18; its conversion down to 17 fails on this model
DEFAULT_OPSET = 18
VERIFY_RATIO = 0.375  # the ratio a dynamic-ratio graph is verified at (exact in float32, not the tracing ratio)
TORCHSCRIPT_RATIOS = (0.5, 1.0)  # a reloaded TorchScript file is checked at both: with and without the refiner
AXIS_NAMES = ("batch", "channels", "height", "width")


def _check_precision(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    return DTYPES[precision]


def _accept(error: float, bound: float, dtype: torch.dtype, what: str) -> None:
    """Raise (so that the file is not written) when ``error`` against eager PyTorch exceeds ``bound``; log both."""
    if error > bound:
        raise RuntimeError(
            f"{what} differs from eager PyTorch by {error:.2e} ({_STATISTIC[dtype]} |Δ| > {bound:.1e}); the file "
            "was not written. Please report this with the command you ran."
        )
    logger.info("%s matches eager PyTorch: %s |Δ| %.2e (bound %.1e)", what, _STATISTIC[dtype], error, bound)


# ------------------------------------------------------------------------------------------------ verification
# What verification measures: the largest difference in float32; in float16 the mean one (see rounding_bound).
_STATISTIC = {torch.float32: "max", torch.float16: "mean"}


def _difference(got: Tensor, expected: Tensor, dtype: torch.dtype) -> float:
    """max |Δ| (float32) or mean |Δ| (float16) between two outputs, computed in float32."""
    difference = (got.float() - expected.float()).abs()
    return float(difference.max() if _STATISTIC[dtype] == "max" else difference.mean())


def rounding_bound(network: MattingNetwork, frames: Tensor, downsample_ratio: float, refine: bool) -> float:
    """How far a correct export of ``network`` (in its dtype) may be from eager PyTorch on ``frames`` (uint8
    ``[T, H, W, 3]``), by the measure verification uses: max |Δ| in float32, mean |Δ| in float16.

    Two correct implementations of one network differ by rounding only: float32 runtimes add up sums in different
    orders (vector widths, blocking and threads differ between runtimes and between AVX2 and AVX-512 CPUs).
    Reordering a sum of n terms moves it by at most about n·u·Σ|terms|, with u the unit roundoff (2^-24 in float32;
    the classic summation error bound). Here n is the longest accumulation in the network, the largest convolution
    fan-in (1539 for mobilenetv3: a 3×3 kernel over 171 channels), and Σ|terms| is bounded by M, the largest
    magnitude the compared values are made from on this input: the refiner's max |A| + max |b| (alpha and
    foreground are A·guide + b with a guide in [0, 1]), the hidden features, and 1 (the scale of the states and
    outputs). The float32 bound n·u·M is the worst case of one reordered layer; the typical effect of all L layers,
    adding up like a random walk, is √(L·n)·u·M, about five times less, so a correct export stays well inside
    (mobilenetv3 on this clip: 3e-5 measured against 7e-4), while a wrong graph (weights, resize, state wiring) is
    off by 1e-2 or more.

    float16 graphs also round every stored activation (u = 2^-11), and the runtimes round at different places, so
    single values can differ by a few percent (5e-2 measured on a state) and no small bound holds for the largest
    difference. The typical difference is what the random walk over the L convolutions predicts, √L·u·M, and the
    float16 check bounds the mean |Δ| by it (mobilenetv3 on this clip: 2e-3 measured against 4e-2).
    """
    convolutions = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    reference = next(network.parameters())
    with torch.inference_mode():
        src_sm = downsample(model_input(frames[:1], reference.device, reference.dtype), downsample_ratio)
        hid, _ = network.encode(src_sm, [None] * 4, 1)  # [1, 16, h, w]
        A, b = network.coefficients(src_sm, hid, refine)  # [1, 4, ·, ·]
        terms = b.abs().max().item() + (0.0 if A is None else A.abs().max().item())
        magnitude = max(1.0, terms, hid.abs().max().item())
    unit_roundoff = float(torch.finfo(reference.dtype).eps) / 2
    if reference.dtype == torch.float16:
        return math.sqrt(len(convolutions)) * unit_roundoff * magnitude
    fan_in = max(conv.weight[0].numel() for conv in convolutions)
    return fan_in * unit_roundoff * magnitude


def _agreeing_side(side: int, ratio: float) -> int:
    """The first size from ``side`` up whose downsampled size is the same in float64 (PyTorch's floor(side·r))
    and in float32 (onnxruntime's), so that both runtimes resize alike (see evaluation/weights_check.py)."""
    while not sizes_agree(side, ratio):
        side += 1
    return side


def _prepared_copy(model: MattingNetwork, dtype: torch.dtype, device: str = "cpu") -> MattingNetwork:
    """A detached eval-mode copy of ``model`` in ``dtype`` on ``device`` (the caller's model is left alone)."""
    if not isinstance(model, MattingNetwork):
        raise ValueError(
            f"Expected a MattingNetwork; got {type(model).__name__}. Build one with model.weights.load_model."
        )
    return copy.deepcopy(model).eval().to(device=device, dtype=dtype).requires_grad_(False)


# ----------------------------------------------------------------------------------------------------- ONNX


def zero_states(dtype: torch.dtype = torch.float32) -> List[Tensor]:
    """The first-frame states the exported graphs accept: four zero tensors ``[1, 1, 1, 1]``."""
    return [torch.zeros(1, 1, 1, 1, dtype=dtype) for _ in range(4)]


def _example_inputs(wrapper: ExportableMattingNetwork, dtype: torch.dtype, dynamic_ratio: bool) -> Tuple[Tensor, ...]:
    """Tracing inputs: batch 2 and full-size states, so that no dimension is specialised to 1 while exporting."""
    generator = torch.Generator().manual_seed(0)
    src = torch.rand(2, 3, 144, 256, generator=generator).to(dtype)  # [B, 3, H, W]
    ratio = torch.tensor([0.5])
    with torch.no_grad():
        states = wrapper(src, *zero_states(dtype), ratio)[2:]  # each [B, C, h, w]
    return (src, *states, ratio) if dynamic_ratio else (src, *states)


def _dynamic_shapes(dynamic_ratio: bool) -> Tuple[Optional[Dict[int, object]], ...]:
    """Dynamic batch, height and width for src; fully free state shapes (zeros [1, 1, 1, 1] or full states)."""
    dim = torch.export.Dim
    src = {0: dim("batch"), 2: dim("height", min=16, max=16384), 3: dim("width", min=16, max=16384)}
    states = tuple({axis: dim(f"{name}_{AXIS_NAMES[axis]}") for axis in range(4)} for name in INPUT_NAMES[1:5])
    return (src, *states, None) if dynamic_ratio else (src, *states)


def _tidy_dimension_names(model_proto) -> None:
    """Name the state outputs' dimensions ``r1o_height`` etc. instead of the exporter's size formulas."""
    for value in model_proto.graph.output:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_param") and not dim.dim_param.isidentifier():
                dim.dim_param = f"{value.name}_{AXIS_NAMES[axis]}"


def _set_metadata(model_proto, metadata: Dict[str, str]) -> None:
    for key, value in metadata.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


def export_onnx(
    model: MattingNetwork,
    output: Union[str, Path],
    *,
    downsample_ratio: Optional[float] = None,
    precision: str = "float32",
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
) -> Path:
    """Export ``model`` to an ONNX file at ``output`` and return its path.

    Args:
        model: the network (left unchanged; a copy is exported).
        output: the ``.onnx`` path, written atomically as one self-contained file.
        downsample_ratio: ``None`` for a graph that takes ``downsample_ratio`` as an input (float32 ``[1]``); a
            ratio in (0, 1] to bake static Resize scales in (TensorRT, OpenVINO, mobile runtimes).
        precision: ``'float32'`` or ``'float16'`` (weights, src, states and outputs; the ratio stays float32).
        opset: ONNX opset, at least 18 (what the exporter writes natively).
        verify: check the file with ``onnx.checker`` and compare onnxruntime with the eager model before renaming.
    """
    import onnx

    dtype = _check_precision(precision)
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be at least {MIN_OPSET}; got {opset}. Pass --opset {DEFAULT_OPSET}.")
    wrapper = ExportableMattingNetwork(_prepared_copy(model, dtype), downsample_ratio, opset=opset).eval()
    dynamic_ratio = downsample_ratio is None
    args = _example_inputs(wrapper, dtype, dynamic_ratio)
    names = list(INPUT_NAMES if dynamic_ratio else INPUT_NAMES[:5])
    ratio_text = "dynamic" if dynamic_ratio else str(downsample_ratio)
    logger.info("Exporting %s ONNX (%s, ratio %s, opset %d)", model.variant, precision, ratio_text, opset)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        program = torch.onnx.export(
            wrapper,
            args,
            input_names=names,
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=_dynamic_shapes(dynamic_ratio),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    model_proto = program.model_proto
    written = max(o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx"))
    if written != opset:
        raise RuntimeError(f"The exporter wrote opset {written} instead of {opset}; pass --opset {written}.")
    _tidy_dimension_names(model_proto)
    _set_metadata(
        model_proto,
        {
            "variant": model.variant,
            "refiner": model.refiner_name,
            "precision": precision,
            "downsample_ratio": "input" if dynamic_ratio else repr(float(downsample_ratio)),
        },
    )
    with atomic_output(output) as temporary:
        onnx.save_model(model_proto, str(temporary))
        if verify:
            onnx.checker.check_model(str(temporary), full_check=True)
            ratio = VERIFY_RATIO if dynamic_ratio else downsample_ratio
            frames = person_like_frames(2, _agreeing_side(180, ratio), _agreeing_side(320, ratio))  # a new size
            bound = rounding_bound(wrapper.model, frames, ratio, dynamic_ratio or ratio != 1)
            error = _onnx_error(temporary, wrapper.model, frames, dtype, downsample_ratio)
            _accept(error, bound, dtype, "The exported ONNX model")
    return Path(output)


def run_onnx(
    session, src: np.ndarray, states: Sequence[np.ndarray], downsample_ratio: Optional[float]
) -> List[np.ndarray]:
    """One frame through an onnxruntime ``session``: returns ``[fgr, pha, r1o, r2o, r3o, r4o]``.

    ``downsample_ratio`` is fed only to graphs that have that input (fixed-ratio graphs have it baked in).
    """
    feed = {name: state for name, state in zip(INPUT_NAMES[1:5], states)}
    feed["src"] = src
    if any(node.name == "downsample_ratio" for node in session.get_inputs()):
        feed["downsample_ratio"] = np.array([downsample_ratio], dtype=np.float32)
    return session.run(list(OUTPUT_NAMES), feed)


def _onnx_error(
    path: Path, network: MattingNetwork, frames: Tensor, dtype: torch.dtype, downsample_ratio: Optional[float]
) -> float:
    """Largest difference (:func:`_difference`) between onnxruntime and eager ``network`` over uint8 ``frames``
    ``[T, H, W, 3]`` fed one at a time, each side carrying its own states (zeros ``[1, 1, 1, 1]`` first for
    onnxruntime)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ratio = VERIFY_RATIO if downsample_ratio is None else downsample_ratio
    runner = RecurrentRunner(network, downsample_ratio=ratio, device="cpu", dtype=dtype)
    onnx_states = [s.numpy() for s in zero_states(dtype)]
    error = 0.0
    for frame in frames.split(1):  # [1, H, W, 3]
        got = run_onnx(session, model_input(frame, torch.device("cpu"), dtype).numpy(), onnx_states, ratio)
        matte = runner.step(frame)
        expected = [matte.fgr, matte.pha, *runner.states]
        error = max(error, *(_difference(torch.from_numpy(g), e, dtype) for g, e in zip(got, expected)))
        onnx_states = got[2:]
    return error


# ---------------------------------------------------------------------------------------------- TorchScript


def export_torchscript(
    model: MattingNetwork,
    output: Union[str, Path],
    *,
    precision: str = "float32",
    device: str = "cpu",
    verify: bool = True,
) -> Path:
    """Script, freeze and save ``model`` (called exactly like ``MattingNetwork``); reload and compare with eager.

    Args:
        model: the network (left unchanged; a copy is exported).
        output: the file to write atomically (``torch.jit.load`` reads it back).
        precision: ``'float32'``, or ``'float16'`` (meant for CUDA; it also runs, slowly, on CPU).
        device: where the frozen model lives (freezing bakes the device into the constants).
        verify: reload the file and compare it with the eager model on a two-frame clip before renaming.
    """
    dtype = _check_precision(precision)
    device = str(resolve_device(device))  # a clear error for an unknown device or missing CUDA
    if precision == "float16" and not device.startswith("cuda"):
        logger.warning("float16 TorchScript is meant for CUDA; on %s it runs but slowly.", device)
    eager = _prepared_copy(model, dtype, device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        frozen = torch.jit.freeze(torch.jit.script(eager))
        with atomic_output(output) as temporary:
            torch.jit.save(frozen, str(temporary))
            if verify:
                loaded = torch.jit.load(str(temporary), map_location=device)
                frames = person_like_frames(3, 64, 112)  # [T, H, W, 3]
                with no_tf32():  # TF32 convolutions on CUDA alone exceed the float32 bound
                    bound = max(rounding_bound(eager, frames, ratio, ratio != 1) for ratio in TORCHSCRIPT_RATIOS)
                    error = _torchscript_error(loaded, eager, frames, dtype, device)
                _accept(error, bound, dtype, "The reloaded TorchScript model")
    return Path(output)


def _torchscript_error(
    loaded: torch.jit.ScriptModule, eager: MattingNetwork, frames: Tensor, dtype: torch.dtype, device: str
) -> float:
    """Largest difference (:func:`_difference`) between a reloaded TorchScript model and eager on ``frames``
    (uint8 ``[3, H, W, 3]``) at each of TORCHSCRIPT_RATIOS: at 0.5 a two-frame clip, then the next frame with the
    states carried; at 1 (no refiner) the first frame."""
    differences = []
    half, whole = TORCHSCRIPT_RATIOS
    for ratio, chunks in ((half, (frames[:2], frames[2:])), (whole, (frames[:1],))):
        runners = [RecurrentRunner(net, downsample_ratio=ratio, device=device, dtype=dtype) for net in (loaded, eager)]
        for chunk in chunks:
            got, expected = (runner.step(chunk) for runner in runners)
            pairs = [(got.fgr, expected.fgr), (got.pha, expected.pha), *zip(*(runner.states for runner in runners))]
            differences += [_difference(a, b, dtype) for a, b in pairs]
    return max(differences)


# ----------------------------------------------------------------------------------------------- command line


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export Robust Video Matting to ONNX or TorchScript.")
    formats = parser.add_subparsers(dest="format", required=True)
    helps = {"onnx": "ONNX graph for onnxruntime, TensorRT, OpenVINO", "torchscript": "frozen TorchScript"}
    for name, help_text in helps.items():
        sub = formats.add_parser(name, help=help_text)
        sub.add_argument("--variant", default="mobilenetv3", choices=VARIANTS)
        sub.add_argument("--refiner", default="deep_guided_filter", choices=REFINERS)
        sub.add_argument("--checkpoint", default=None, help="weights file (.pth); default: the published weights")
        sub.add_argument("--precision", default="float32", choices=PRECISIONS)
        sub.add_argument("--output", required=True, help="file to write")
        sub.add_argument("--disable-verify", action="store_true", help="skip reloading and comparing with PyTorch")
        if name == "onnx":
            sub.add_argument(
                "--downsample-ratio", type=float, default=None, help="bake this ratio in (static resize, for TensorRT)"
            )
            sub.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (at least {MIN_OPSET})")
        else:
            sub.add_argument("--device", default="cpu", help="device the frozen model is built for (cpu, cuda)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python export.py {onnx,torchscript} ...``; prints the path written."""
    from model.weights import load_model

    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = load_model(args.variant, args.refiner, args.checkpoint)
    if args.format == "onnx":
        path = export_onnx(
            model,
            args.output,
            downsample_ratio=args.downsample_ratio,
            precision=args.precision,
            opset=args.opset,
            verify=not args.disable_verify,
        )
    else:
        path = export_torchscript(
            model, args.output, precision=args.precision, device=args.device, verify=not args.disable_verify
        )
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
