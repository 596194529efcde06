"""The recurrent frame-stream runner the live session drives, as an adapter over today's public model pieces.

The project gets ONE runner (issue 13's ``model.runner.RecurrentRunner``: states, device/dtype casting, the 8-bit
or float route chosen by the model). Until it is on main this module implements the same shape (``eight_bit``
tells the route), so that moving to it changes only the import in ``live/session.py``:

    runner = FrameRunner(network, downsample_ratio=0.5)     # MattingNetwork or optimised copy
    out = runner.step(frames)           # uint8 RGB [T, H, W, 3] CPU tensor; recurrent states carried
    image = out.render(kind, background)   # uint8 [T, H, W, C] CPU tensor; thread-safe
    runner.reset()                      # forget the states (new scene, restarted source)

Routes: an optimised copy (``model.fast_path.optimize_for_inference``) on the CPU in float32 with a ratio below 1
computes only the low-resolution coefficients from the uint8 frames, and ``render`` makes each 8-bit output from
them in one pass (``fused_compose.render_uint8``); otherwise the network returns fgr and pha, and ``render`` is
``fused_compose.output_image``.
"""
from typing import Any, List, Optional, Union

import torch
from torch import Tensor

from inference import resolve_device, resolve_dtype
from model.fast_path import FastMattingNetwork
from model.fused_compose import output_image, render_uint8


class RunnerOutput:
    """One step's result; :meth:`render` makes any output image from it, from any thread."""

    def __init__(
        self, frames: Tensor, *, coefficients: Optional[tuple] = None, fgr: Optional[Tensor] = None,
        pha: Optional[Tensor] = None,
    ) -> None:  # fmt: skip
        self.frames = frames  # uint8 [T, H, W, 3]
        self._coefficients = coefficients  # (A, b) [T, 4, h, w] each, 8-bit route
        self._fgr, self._pha = fgr, pha  # [T, 3, H, W], [T, 1, H, W], float route

    def render(self, kind: str, background: Optional[Tensor]) -> Tensor:
        """'composition', 'alpha' or 'foreground' as uint8 ``[T, H, W, C]`` on the CPU; ``background`` uint8
        broadcastable to ``[T, H, W, 3]``, or None for a transparent RGBA composition."""
        if self._coefficients is not None:
            return render_uint8(kind, *self._coefficients, self.frames, background)
        with torch.inference_mode():
            return output_image(kind, self._fgr, self._pha, background).cpu()


class FrameRunner:
    """Runs ``network`` over a stream of uint8 frames, carrying its recurrent states between calls."""

    def __init__(
        self,
        network: Any,
        *,
        downsample_ratio: float,
        device: Union[None, str, torch.device] = None,
        dtype: Union[None, str, torch.dtype] = None,
    ) -> None:
        self.network = network
        self.downsample_ratio = downsample_ratio
        self.device = resolve_device(device, network)
        self.dtype = resolve_dtype(dtype, network)
        self.eight_bit = isinstance(network, FastMattingNetwork) and network.uint8_route_available(downsample_ratio)
        self._states: List[Optional[Tensor]] = [None] * 4

    def step(self, frames: Tensor) -> RunnerOutput:
        """uint8 RGB frames ``[T, H, W, 3]`` (CPU) of one stream, in order → their outputs; states carried."""
        with torch.inference_mode():
            if self.eight_bit:
                A, b, *self._states = self.network.coefficients_uint8(
                    frames, *self._states, downsample_ratio=self.downsample_ratio
                )  # A, b [T, 4, h, w]
                return RunnerOutput(frames, coefficients=(A, b))
            src = frames.to(self.device).permute(0, 3, 1, 2).to(self.dtype).div(255)  # [T, 3, H, W]
            fgr, pha, *self._states = self.network(
                src.unsqueeze(0), *self._states, downsample_ratio=self.downsample_ratio
            )  # fgr [1, T, 3, H, W], pha [1, T, 1, H, W]
            return RunnerOutput(frames, fgr=fgr[0], pha=pha[0])

    def reset(self) -> None:
        """Zero the recurrent states: the next frame starts a new scene."""
        self._states = [None] * 4
