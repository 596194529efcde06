"""The fast inference path: an optimised copy of a MattingNetwork that computes the same function.

``optimize_for_inference(model)`` returns a :class:`FastMattingNetwork`, called exactly like ``MattingNetwork``
(same forward arguments, same outputs: the forward is the shared :class:`~model.pipeline.MattingPipeline`'s). It is
built by composition, and what it changes keeps the function:

- a copy of the network with every BatchNorm folded into the preceding convolution (eval-mode BatchNorm is an
  affine map per channel; :mod:`model.fast.folding`) runs the ``encode`` and ``coefficients`` stages;
- the ``compose`` stage (upsample A and b, A·guide + b, + source, clamps) is one fused pass
  (:mod:`model.fast.compose`, a C kernel on the CPU) instead of about ten;
- optionally channels-last activations, ``torch.compile`` of the stages (CUDA graphs on GPU) and fp16/bf16.
The caller's model is never modified.
"""
import copy
import functools
import logging
from typing import Callable, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..devices import resolve_device, resolve_dtype
from ..model import MattingNetwork
from ..pipeline import MattingPipeline
from .compose import downsample_uint8, upsample_compose, upsample_compose_torch
from .folding import fold_batchnorm
from .kernel import load_cpu_kernel

logger = logging.getLogger(__name__)

# Graphs torch.compile may build per compiled function: two per input size for the decoder (first frame without
# states, later frames with them), one per size for the rest. torch's default, 8, is shared by every copy in the
# process, and past it the fifth input size silently ran uncompiled.
RECOMPILE_LIMIT = 64


class Stages(NamedTuple):
    """What the fast copy runs for the pipeline's stages: the folded network's methods, compiled or not, and the
    fused full-resolution step."""

    encode: Callable[..., Tuple[Tensor, List[Tensor]]]
    coefficients: Callable[..., Tuple[Optional[Tensor], Tensor]]
    compose: Callable[..., Tuple[Tensor, Tensor]]


def folded_copy(network: MattingNetwork) -> MattingNetwork:
    """An eval-mode copy of ``network`` with its BatchNorms folded and no gradients (``network`` is left alone)."""
    folded = copy.deepcopy(network).eval()
    count = fold_batchnorm(folded)
    left = [name for name, module in folded.named_modules() if isinstance(module, nn.BatchNorm2d)]
    if left:
        logger.warning("BatchNorm layers not preceded by a conv were left unfolded: %s", left)
    logger.debug("Folded %d BatchNorm layers into convolutions.", count)
    return folded.requires_grad_(False)


def build_stages(
    network: MattingNetwork,
    *,
    device: torch.device,
    compile_network: bool,
    compile_backend: str,
    cuda_graphs: bool,
    fused_kernel: bool,
) -> Stages:
    """The stage implementations for ``network`` (already folded, on ``device``): its own ``encode`` and
    ``coefficients``, compiled together with ``torch.compile`` when ``compile_network``, and the fused compose."""
    encode: Callable = network.encode
    coefficients: Callable = network.coefficients
    compose: Callable = functools.partial(upsample_compose, use_kernel=fused_kernel)
    if compile_network:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        settings: dict = dict(backend=compile_backend, dynamic=False)
        if cuda_graphs:
            settings["mode"] = "reduce-overhead"
        elif compile_backend == "inductor" and device.type == "cpu":
            # freezing: constant weights (mkldnn prepacking, folded constants); cpp_wrapper: the graph's glue code in
            # C++ instead of Python, about 8 % more frames/s at 640×480 r0.5 on 2 cores (documentation/benchmarks.md)
            settings["options"] = {"freezing": True, "cpp_wrapper": True}
        encode = torch.compile(encode, **settings)
        coefficients = torch.compile(coefficients, **settings)
        if device.type != "cpu" or not fused_kernel:  # on CPU the C kernel beats inductor's version
            compose = torch.compile(upsample_compose_torch, **settings)
    return Stages(encode, coefficients, compose)


class FastMattingNetwork(MattingPipeline):
    """An inference-only copy of a :class:`MattingNetwork` with the optimisations of :func:`optimize_for_inference`.

    Same ``forward`` as MattingNetwork. ``src`` and the states are cast to the copy's dtype and device; outputs come
    in that dtype. ``network`` is the folded copy (its parameters do not require gradients); ``stages`` what runs;
    ``compiled`` whether they were built with ``torch.compile``.
    """

    def __init__(
        self,
        network: MattingNetwork,
        *,
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        compile_network: bool = False,
        compile_backend: str = "inductor",
        cuda_graphs: bool = False,
        fused_kernel: bool = True,
    ) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.dtype = dtype
        self.channels_last = channels_last
        self.cuda_graphs = cuda_graphs
        self.fused_kernel = fused_kernel
        self.compiled = compile_network
        self.network = folded_copy(network).to(device=self.device, dtype=dtype)
        if channels_last:
            self.network.to(memory_format=torch.channels_last)
        self.stages = build_stages(
            self.network,
            device=self.device,
            compile_network=compile_network,
            compile_backend=compile_backend,
            cuda_graphs=cuda_graphs,
            fused_kernel=fused_kernel,
        )

    def forward(
        self,
        src: Tensor,
        r1: Optional[Tensor] = None,
        r2: Optional[Tensor] = None,
        r3: Optional[Tensor] = None,
        r4: Optional[Tensor] = None,
        downsample_ratio: float = 1.0,
        segmentation_pass: bool = False,
    ) -> List[Tensor]:
        """As :meth:`MattingNetwork.forward`, with inputs moved to this copy's device and dtype."""
        src = src.to(device=self.device, dtype=self.dtype)
        states = [None if r is None else r.to(device=self.device, dtype=self.dtype) for r in (r1, r2, r3, r4)]
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        outputs = super().forward(src, *states, downsample_ratio=downsample_ratio, segmentation_pass=segmentation_pass)
        if self.cuda_graphs:  # graph outputs live in memory the next replay overwrites
            outputs = [x.clone() for x in outputs]
        return outputs

    # ---- the pipeline's stages ---------------------------------------------------------------------------------
    def encode(self, src_sm: Tensor, states: List[Optional[Tensor]], batch_size: int) -> Tuple[Tensor, List[Tensor]]:
        if self.channels_last:
            src_sm = src_sm.contiguous(memory_format=torch.channels_last)  # [B·T, 3, h, w]
        return self.stages.encode(src_sm, states, batch_size)

    def segment(self, hid: Tensor) -> Tensor:
        return self.network.segment(hid)

    def coefficients(self, src_sm: Tensor, hid: Tensor, refine: bool) -> Tuple[Optional[Tensor], Tensor]:
        return self.stages.coefficients(src_sm, hid, refine)

    def compose(self, A: Optional[Tensor], b: Tensor, src: Tensor) -> Tuple[Tensor, Tensor]:
        return self.stages.compose(A, b, src)

    # ---- the 8-bit route of video conversion -------------------------------------------------------------------
    def uint8_route_available(self, downsample_ratio: float) -> bool:
        """Whether :meth:`coefficients_uint8` (with ``model.fast.compose.render_uint8`` for the outputs) can serve
        this copy: float32 on the CPU with the fused kernel built, and a refiner in use (``downsample_ratio`` < 1)."""
        return (
            self.device.type == "cpu"
            and self.dtype == torch.float32
            and self.fused_kernel
            and 0 < downsample_ratio < 1
            and load_cpu_kernel() is not None
        )

    def coefficients_uint8(
        self,
        frames: Tensor,
        r1: Optional[Tensor] = None,
        r2: Optional[Tensor] = None,
        r3: Optional[Tensor] = None,
        r4: Optional[Tensor] = None,
        downsample_ratio: float = 0.25,
    ) -> List[Optional[Tensor]]:
        """The pipeline up to the ``coefficients`` stage, from 8-bit frames; for video conversion.

        ``frames``: one clip (batch 1) of uint8 RGB frames ``[T, H, W, 3]`` on the CPU, as decoded; they are never
        made into full-size float images. Returns ``[A, b, r1, r2, r3, r4]`` with A, b ``[T, 4, h, w]`` (float32):
        ``render_uint8(kind, A, b, frames, background)`` then gives the same 8-bit outputs as this network's fgr
        and pha (within one 8-bit step). Needs :meth:`uint8_route_available`.
        """
        frames_sm = downsample_uint8(frames, downsample_ratio)  # [T, 3, h, w]
        hid, states = self.encode(frames_sm, [r1, r2, r3, r4], 1)  # hid [T, 16, h, w]
        A, b = self.coefficients(frames_sm, hid, True)  # [T, 4, h, w] each
        return [A, b, *states]


def optimize_for_inference(
    model: MattingNetwork,
    *,
    device: Optional[Union[str, torch.device]] = None,
    dtype: Optional[torch.dtype] = None,
    channels_last: Optional[bool] = None,
    compile_network: Optional[bool] = None,
    compile_backend: str = "inductor",
    cuda_graphs: Optional[bool] = None,
    fused_kernel: bool = True,
) -> FastMattingNetwork:
    """An optimised inference copy of ``model`` (the model itself is left untouched).

    Args:
        device, dtype: where and in what precision the copy runs; default: those of ``model``'s parameters.
            float16/bfloat16 are meant for GPUs (their CPU speed was not measured).
        channels_last: NHWC activations; default on for CUDA and whenever the network is compiled; off for eager
            CPU (measured at 1920×1080 on one core: 1.52× instead of 1.58× eager, 2.02× instead of 1.73× compiled).
        compile_network: ``torch.compile`` the network; default on for CUDA, off on CPU, where compiling takes
            minutes per input shape (worth it for long videos: 2.08× instead of 1.58× at 1920×1080, one core).
            Shapes are fixed: each new input size is compiled (and on CUDA captured) anew; torch's recompile limit
            is raised to ``RECOMPILE_LIMIT`` so that this keeps happening past the fourth size.
        compile_backend: the ``torch.compile`` backend (``'eager'`` checks the capture without code generation).
        cuda_graphs: capture the compiled graphs in CUDA graphs (fixed shapes); default on for CUDA.
        fused_kernel: use the C kernel for the full-resolution step on CPU (float32).
    """
    if not isinstance(model, MattingNetwork):
        raise ValueError(
            f"optimize_for_inference expects a MattingNetwork, got {type(model).__name__}; build one with "
            "model.MattingNetwork(...) or model.weights.load_model(...)."
        )
    device = resolve_device(device, model)
    dtype = resolve_dtype(dtype, model)
    on_cuda = device.type == "cuda"
    if cuda_graphs and not on_cuda:
        raise ValueError("cuda_graphs=True needs device='cuda'; leave it unset on other devices.")
    compile_network = on_cuda if compile_network is None else compile_network
    return FastMattingNetwork(
        model,
        device=device,
        dtype=dtype,
        channels_last=(on_cuda or compile_network) if channels_last is None else channels_last,
        compile_network=compile_network,
        compile_backend=compile_backend,
        cuda_graphs=(on_cuda and compile_network) if cuda_graphs is None else cuda_graphs,
        fused_kernel=fused_kernel,
    )
