"""The fast inference path: an optimised copy of a MattingNetwork that computes the same function.

``optimize_for_inference(model)`` returns a :class:`FastMattingNetwork`, called exactly like ``MattingNetwork``
(same forward arguments, same outputs). What it changes, and why each step keeps the function:

- BatchNorm is folded into the preceding convolution (eval-mode BatchNorm is an affine map per channel);
- the refiner's full-resolution work (upsample A and b, A·guide + b, + source, clamps) is one fused pass
  (``model/fused_compose.py``) instead of about ten;
- optionally channels-last activations, ``torch.compile`` (CUDA graphs on GPU) and fp16/bf16 weights.
The caller's model is never modified.
"""
import copy
import functools
import logging
from typing import Callable, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .fused_compose import downsample_uint8, load_cpu_kernel, upsample_compose, upsample_compose_torch
from .model import MattingNetwork

logger = logging.getLogger(__name__)

# Graphs torch.compile may build per compiled function: two per input size for the decoder (first frame without
# states, later frames with them), one per size for the rest. torch's default, 8, is shared by every copy in the
# process, and past it the fifth input size silently ran uncompiled.
RECOMPILE_LIMIT = 64


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into that conv, in place.

    Handles the two layouts the network uses: ``nn.Sequential(conv, bn, ...)`` (MobileNetV3, decoder, LR-ASPP,
    refiner, ResNet downsample) and sibling attributes ``convK`` / ``bnK`` (ResNet stem and bottlenecks). The
    BatchNorm is replaced by ``nn.Identity``. Returns the number of BatchNorms folded.
    """
    folded = 0
    for parent in list(module.modules()):
        if isinstance(parent, nn.Sequential):
            for i in range(len(parent) - 1):
                if isinstance(parent[i], nn.Conv2d) and isinstance(parent[i + 1], nn.BatchNorm2d):
                    parent[i] = fuse_conv_bn_eval(parent[i], parent[i + 1])
                    parent[i + 1] = nn.Identity()
                    folded += 1
        children = dict(parent.named_children())
        for name, child in children.items():
            conv_name = "conv" + name[2:]
            conv = children.get(conv_name)
            if name.startswith("bn") and isinstance(child, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, child))
                setattr(parent, name, nn.Identity())
                folded += 1
    return folded


class FastMattingNetwork(MattingNetwork):
    """An inference-only copy of a :class:`MattingNetwork` with the optimisations of :func:`optimize_for_inference`.

    Same ``forward`` as MattingNetwork. ``src`` and the states are cast to the copy's dtype and device; outputs come
    in that dtype. The copy's parameters do not require gradients.
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
        super().__init__(network.variant, network.refiner_name)
        for name, child in network.named_children():  # share nothing with the caller's model
            setattr(self, name, copy.deepcopy(child))
        self.eval()
        folded = fold_batchnorm(self)
        left = [n for n, m in self.named_modules() if isinstance(m, nn.BatchNorm2d)]
        if left:
            logger.warning("BatchNorm layers not preceded by a conv were left unfolded: %s", left)
        logger.debug("Folded %d BatchNorm layers into convolutions.", folded)
        self.requires_grad_(False)
        self.to(device=device, dtype=dtype)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.dtype = dtype
        self.channels_last = channels_last
        self.cuda_graphs = cuda_graphs
        self.fused_kernel = fused_kernel
        decode: Callable = functools.partial(MattingNetwork._decode, self)
        coefficients: Callable = self._coefficients
        compose: Callable = functools.partial(upsample_compose, use_kernel=fused_kernel)
        if compile_network:
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
            settings = dict(backend=compile_backend, dynamic=False)
            if cuda_graphs:
                settings["mode"] = "reduce-overhead"
            elif compile_backend == "inductor" and self.device.type == "cpu":
                settings["options"] = {"freezing": True}  # constant weights: mkldnn prepacking, folded constants
            decode = torch.compile(decode, **settings)
            coefficients = torch.compile(coefficients, **settings)
            if self.device.type != "cpu" or not fused_kernel:  # on CPU the C kernel beats inductor's version
                compose = torch.compile(upsample_compose_torch, **settings)
        self._decode_impl = decode
        self._coefficients_impl = coefficients
        self._compose_impl = compose

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

    def uint8_route_available(self, downsample_ratio: float) -> bool:
        """Whether :meth:`coefficients_uint8` (with ``fused_compose.render_uint8`` for the outputs) can serve this
        copy: float32 on the CPU with the fused kernel built, and a refiner in use (``downsample_ratio`` < 1)."""
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
        """The network up to the refiner's low-resolution coefficients, from 8-bit frames; for video conversion.

        ``frames``: one clip (batch 1) of uint8 RGB frames ``[T, H, W, 3]`` on the CPU, as decoded; they are never
        made into full-size float images. Returns ``[A, b, r1, r2, r3, r4]`` with A, b ``[T, 4, h, w]`` (float32):
        ``fused_compose.render_uint8(kind, A, b, frames, background)`` then gives the same 8-bit outputs as this
        network's fgr and pha (within one 8-bit step). Needs :meth:`uint8_route_available`.
        """
        frames_sm = downsample_uint8(frames, downsample_ratio)  # [T, 3, h, w]
        hid, r1, r2, r3, r4 = self._decode(frames_sm, r1, r2, r3, r4, 1)  # hid [T, 16, h, w]
        A, b = self._coefficients_impl(frames_sm, hid)  # [T, 4, h, w] each
        return [A, b, r1, r2, r3, r4]

    def _decode(
        self,
        frames_sm: Tensor,
        r1: Optional[Tensor],
        r2: Optional[Tensor],
        r3: Optional[Tensor],
        r4: Optional[Tensor],
        batch_size: int,
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        if self.channels_last:
            frames_sm = frames_sm.contiguous(memory_format=torch.channels_last)  # [B·T, 3, h, w]
        return self._decode_impl(frames_sm, r1, r2, r3, r4, batch_size)

    def _matte(self, frames: Tensor, frames_sm: Tensor, hid: Tensor, downsample_ratio: float) -> Tuple[Tensor, Tensor]:
        if downsample_ratio == 1:
            fgr_residual, pha = self.project_mat(hid).split([3, 1], dim=1)  # [B·T, 3, H, W], [B·T, 1, H, W]
            return (fgr_residual + frames).clamp_(0.0, 1.0), pha.clamp(0.0, 1.0)
        A, b = self._coefficients_impl(frames_sm, hid)  # [B·T, 4, h, w] each (A may be None)
        return self._compose_impl(A, b, frames)

    def _coefficients(self, frames_sm: Tensor, hid: Tensor) -> Tuple[Optional[Tensor], Tensor]:
        """The low-resolution part of the matting step: projection, then the refiner's A and b ``[B·T, 4, h, w]``
        (compiled together with the decoder when ``compile_network``)."""
        fgr_residual, pha = self.project_mat(hid).split([3, 1], dim=1)  # [B·T, 3, h, w], [B·T, 1, h, w]
        return self.refiner.coefficients(frames_sm, fgr_residual, pha, hid)


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
    reference = next(model.parameters())
    device = torch.device(device) if device is not None else reference.device
    dtype = dtype if dtype is not None else reference.dtype
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16; got {dtype}.")
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
