"""The one recurrent frame-stream runner: 8-bit frames in, matted chunks out, recurrent states carried.

Every loop that feeds a stream of frames to a network goes through :class:`RecurrentRunner`: video conversion
(inference.py), live sources, test-set scoring (evaluation/score_model.py), the portrait weights check
(evaluation/weights_check.py), export verification (export.py) and the conversion benchmark. The runner owns

- the recurrent states (carried from step to step; :meth:`RecurrentRunner.reset` for a new clip or a gap);
- casting: uint8 RGB frames ``[T, H, W, 3]`` on the CPU (as decoded) to the network's device and dtype;
- the route, asked of the network for the ratio and its device: the **8-bit route** (a fast CPU copy computes only
  the refiner's low-resolution coefficients; each output is rendered from them and the 8-bit frames in one pass)
  or the **float route** (the network's fgr and pha; outputs made from them);
- the typed payloads between threads: :class:`FrameChunk` from a reader, :class:`FloatMatte` or
  :class:`CoefficientMatte` to the writers, whose ``render(kind, background)`` is safe to call from any thread.

Per-frame presentation timestamps ride along untouched (``FrameChunk.timestamps`` → ``matte.timestamps``).
documentation/architecture.md draws the path of one frame through a conversion.
"""
import logging
from dataclasses import dataclass
from numbers import Real
from typing import Callable, Iterable, Iterator, List, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from .devices import DeviceSpec, DtypeSpec, resolve_device, resolve_dtype
from .fast.compose import render_uint8
from .outputs import output_image

logger = logging.getLogger(__name__)

Frames = Union[Tensor, np.ndarray]  # uint8 RGB [T, H, W, 3]
Timestamps = Optional[Sequence[Real]]  # one presentation time (seconds: float or Fraction) per real frame, or None


def as_frames(frames: Frames) -> Tensor:
    """uint8 RGB frames ``[T, H, W, 3]`` (a tensor or numpy array) as a CPU tensor, or a ``ValueError`` naming the
    problem."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if not isinstance(tensor, Tensor) or tensor.dtype != torch.uint8 or tensor.dim() != 4 or tensor.size(-1) != 3:
        described = f"{tensor.dtype} {list(tensor.shape)}" if isinstance(tensor, Tensor) else type(frames).__name__
        raise ValueError(f"Frames must be uint8 RGB [T, H, W, 3] (as decoded); got {described}.")
    if tensor.device.type != "cpu":
        raise ValueError(f"Frames must be on the CPU (as decoded); got {tensor.device}. The runner moves them.")
    return tensor


def model_input(frames: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """uint8 ``[T, H, W, 3]`` → the network's input ``[T, 3, H, W]`` in [0, 1] on ``device`` in ``dtype`` (moved
    while still 8-bit, so the copy to a GPU is a quarter of the float one)."""
    return frames.to(device, non_blocking=True).permute(0, 3, 1, 2).to(dtype).div(255)


@dataclass(frozen=True)
class FrameChunk:
    """Consecutive frames of one stream as a reader hands them on: uint8 RGB ``[T, H, W, 3]`` on the CPU, of which
    the first ``real`` are the stream's (None: all; the rest pad a short last chunk to the usual length) and,
    optionally, each real frame's presentation time in seconds (carried to the writers untouched)."""

    frames: Tensor
    timestamps: Timestamps = None
    real: Optional[int] = None

    def __len__(self) -> int:
        return self.frames.size(0) if self.real is None else self.real


@dataclass(frozen=True)
class FloatMatte:
    """A chunk matted on the float route: fgr ``[T, 3, H, W]`` and pha ``[T, 1, H, W]`` on the network's device."""

    frames: Tensor  # the source, uint8 [T, H, W, 3] on the CPU
    timestamps: Timestamps
    fgr: Tensor
    pha: Tensor

    def __len__(self) -> int:
        return self.frames.size(0)

    def render(self, kind: str, background: Optional[Tensor] = None) -> Tensor:
        """Output ``kind`` ('composition', 'alpha', 'foreground') over ``background`` (uint8 broadcasting to
        ``[T, H, W, 3]``; None = transparent RGBA) → uint8 ``[T, H, W, C]`` on the CPU."""
        with torch.inference_mode():
            return output_image(kind, self.fgr, self.pha, background).cpu()


@dataclass(frozen=True)
class CoefficientMatte:
    """A chunk matted on the 8-bit route: the refiner's low-resolution coefficients A, b ``[T, 4, h, w]``; the
    full-size images exist only when rendered."""

    frames: Tensor  # the source, uint8 [T, H, W, 3] on the CPU
    timestamps: Timestamps
    A: Optional[Tensor]
    b: Tensor

    def __len__(self) -> int:
        return self.frames.size(0)

    def render(self, kind: str, background: Optional[Tensor] = None) -> Tensor:
        """As :meth:`FloatMatte.render` (the same images within one 8-bit step), rendered by the C kernel."""
        return render_uint8(kind, self.A, self.b, self.frames, background)


MattedChunk = Union[FloatMatte, CoefficientMatte]


@runtime_checkable
class EightBitCapable(Protocol):
    """A network that can serve the 8-bit route (the fast path's :class:`~model.fast.FastMattingNetwork`)."""

    def uint8_route_available(self, downsample_ratio: float) -> bool: ...

    def coefficients_uint8(self, frames: Tensor, *states: Optional[Tensor], downsample_ratio: float) -> List: ...


def chunk_frames(
    frames: Iterable[Union[Frames, Tuple[Frames, Real]]], size: int, *, pad: bool = False
) -> Iterator[FrameChunk]:
    """Group single frames ``[H, W, 3]`` (uint8, numpy or tensor) into chunks of ``size`` frames. Items may be
    ``(frame, presentation time)`` pairs, as readers' ``timed()`` yields them: the chunks then carry the times.

    With ``pad`` the last, short chunk is filled up with copies of its last frame (``real`` says how many are real),
    so that a compiled network (fixed shapes) is not compiled again for it; the padding comes after the real frames,
    which a recurrent network does not let see the future, and the runner drops its outputs.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"Chunk size {size!r} must be a positive integer (frames per model call).")
    images: List[Frames] = []
    times: List[Real] = []
    timed = False
    for item in frames:
        if isinstance(item, tuple):
            timed = True
            item, time = item
            times.append(time)
        images.append(item)
        if len(images) == size:
            yield FrameChunk(as_frames(np.stack(images)), times if timed else None)
            images, times = [], []
    if images:
        real = len(images)
        if pad:
            images += images[-1:] * (size - real)
        yield FrameChunk(as_frames(np.stack(images)), times if timed else None, real if pad else None)


class RecurrentRunner:
    """Runs ``network`` over a stream of 8-bit frames, one chunk a step, carrying its recurrent states.

    Args:
        network: a ``MattingNetwork``, a fast copy (``model.fast_path.optimize_for_inference``) or any callable
            with ``MattingNetwork.forward``'s signature (a TorchScript module, a wrapper). Left as it is: put it in
            eval mode on its device first.
        downsample_ratio: the network's ratio for every step, in (0, 1].
        device, dtype: where and in what precision the frames are fed; None: the network's own (CPU and float32
            for a callable without parameters). ``resolve_device`` / ``resolve_dtype`` rules.
        eight_bit: force the route (True: the 8-bit route, or a ``ValueError`` when the network cannot serve it;
            False: the float route); None asks the network (``uint8_route_available``).

    ``step(frames)`` mattes one chunk; ``run(chunks)`` steps through an iterable; ``reset()`` forgets the states.
    A chunk of another frame size than the last one starts fresh states (logged).
    """

    def __init__(
        self,
        network: Callable,
        *,
        downsample_ratio: float,
        device: DeviceSpec = None,
        dtype: DtypeSpec = None,
        eight_bit: Optional[bool] = None,
    ) -> None:
        if not isinstance(downsample_ratio, (int, float)) or not 0 < downsample_ratio <= 1:
            raise ValueError(f"downsample_ratio {downsample_ratio!r} must be in (0, 1].")
        self.network = network
        self.downsample_ratio = float(downsample_ratio)
        self.device = resolve_device(device, network)
        self.dtype = resolve_dtype(dtype, network)
        available = isinstance(network, EightBitCapable) and network.uint8_route_available(self.downsample_ratio)
        if eight_bit and not available:
            raise ValueError(
                f"The 8-bit route needs a fast CPU float32 copy (optimize_for_inference) with the C kernel built and "
                f"a ratio below 1; {type(network).__name__} at ratio {self.downsample_ratio} cannot serve it."
            )
        self.eight_bit = available if eight_bit is None else eight_bit
        self.states: List[Optional[Tensor]] = [None] * 4
        self._size: Optional[torch.Size] = None

    def reset(self) -> None:
        """Start the next step from zero states (a new clip, or a gap in a live stream)."""
        self.states = [None] * 4
        self._size = None

    def step(self, frames: Frames, timestamps: Timestamps = None, *, real: Optional[int] = None) -> MattedChunk:
        """Matte uint8 RGB frames ``[T, H, W, 3]`` (CPU tensor or numpy) with the states carried; returns the
        chunk's :class:`CoefficientMatte` (8-bit route) or :class:`FloatMatte` (float route).

        ``real``: only the first ``real`` frames are the stream's (a padded last chunk, see :func:`chunk_frames`);
        the matte holds those only. ``timestamps``: one per real frame, handed on untouched."""
        frames = as_frames(frames)
        real = frames.size(0) if real is None else real
        if not 0 < real <= frames.size(0):
            raise ValueError(f"real {real} must count between 1 and all {frames.size(0)} frames of the chunk.")
        if timestamps is not None and len(timestamps) != real:
            raise ValueError(f"{len(timestamps)} timestamps for {real} frames; give one per frame.")
        if self._size is not None and frames.shape[1:3] != self._size:
            logger.info("Frame size changed from %s to %s; the states start afresh.", tuple(self._size), frames.shape[1:3])
            self.reset()
        self._size = frames.shape[1:3]
        matte: MattedChunk
        with torch.inference_mode():
            if self.eight_bit:
                A, b, *states = self.network.coefficients_uint8(
                    frames, *self.states, downsample_ratio=self.downsample_ratio
                )  # A, b [T, 4, h, w]
                matte = CoefficientMatte(frames[:real], timestamps, None if A is None else A[:real], b[:real])
            else:
                src = model_input(frames, self.device, self.dtype).unsqueeze(0)  # [1, T, 3, H, W]
                fgr, pha, *states = self.network(src, *self.states, downsample_ratio=self.downsample_ratio)
                matte = FloatMatte(frames[:real], timestamps, fgr[0, :real], pha[0, :real])  # [T, 3|1, H, W]
        self.states = list(states)
        return matte

    def run(self, chunks: Iterable[Union[FrameChunk, Frames]]) -> Iterator[MattedChunk]:
        """Step through ``chunks`` (``FrameChunk`` or bare ``[T, H, W, 3]`` frames) in order, states carried."""
        for chunk in chunks:
            if isinstance(chunk, FrameChunk):
                yield self.step(chunk.frames, chunk.timestamps, real=chunk.real)
            else:
                yield self.step(chunk)
