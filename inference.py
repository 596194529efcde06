"""Video conversion: ``convert_video`` (the published signature and more), ``convert_videos``, ``Converter`` and
the command line.

Frames are decoded in a thread, stay uint8 until they reach the model's device, and are encoded in one thread per
output, so decoding, the model and encoding overlap. On the CPU the fast path goes further: the model's thread
computes only low-resolution coefficients and each output's thread renders its 8-bit image from them (the frame
loop is ``model.runner.RecurrentRunner``; see ``_run``). Every argument is checked before any work starts.
"""
import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import av.error
import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from tqdm.auto import tqdm

from inference_footage import Damage, FrameTiming, output_colour
from inference_utils import (
    IMAGE_EXTENSIONS,
    LIMITED_RANGE_CODECS,
    VIDEO_FORMATS,
    BackgroundWriter,
    ImageSequenceWriter,
    Prefetcher,
    Reader,
    VideoReader,
    VideoWriter,
    audio_start,
    open_reader,
    run_writers,
)
from model import REFINERS, VARIANTS, MattingNetwork, auto_downsample_ratio
from model.devices import DTYPES, resolve_device, resolve_dtype
from model.fast_path import FastMattingNetwork, optimize_for_inference
from model.runner import MattedChunk, RecurrentRunner, chunk_frames
from model.weights import load_model

logger = logging.getLogger(__name__)

OUTPUT_TYPES = ("video", "png_sequence")
COLOURS = {"green": (120, 255, 155), "white": (255, 255, 255), "black": (0, 0, 0)}
TRANSPARENT = "transparent"
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
ALPHA_CONTAINERS = tuple(suffix for suffix, (_, _, alpha) in VIDEO_FORMATS.items() if alpha is not None)

Colour = Tuple[int, int, int]
BackgroundSpec = Union[None, str, Colour]
Progress = Union[bool, Callable[[int], Any]]  # True: a tqdm bar per input; a callable: told each number of frames written


# ----------------------------------------------------------------------------------------------- backgrounds
def parse_colour(spec: str) -> Optional[Colour]:
    """``'green'``, ``'#78ff9b'`` or ``'120,255,155'`` → an RGB triple; anything else → None."""
    text = spec.strip().lower()
    if text in COLOURS:
        return COLOURS[text]
    try:
        if text.startswith("#") and len(text) == 7:
            return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        parts = [int(part) for part in text.split(",")]
    except ValueError:
        return None
    if len(parts) == 3 and all(0 <= part <= 255 for part in parts):
        return tuple(parts)  # type: ignore[return-value]
    return None


def cover_size(source: Tuple[int, int], target: Tuple[int, int]) -> Tuple[int, int]:
    """The smallest (width, height) ≥ ``target`` with ``source``'s aspect ratio (then centre-cropped)."""
    scale = max(target[0] / source[0], target[1] / source[1])
    return max(target[0], round(source[0] * scale)), max(target[1], round(source[1] * scale))


def centre_crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The centre ``height × width`` of ``image`` ``[H, W, C]``."""
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[top : top + height, left : left + width]


class ColourBackground:
    """A solid colour."""

    def __init__(self, colour: Colour) -> None:
        self.colour = colour

    def frames(self, count: int, width: int, height: int) -> Tensor:
        return torch.tensor(self.colour, dtype=torch.uint8).view(1, 1, 1, 3)  # broadcast over [T, H, W, 3]


class ImageBackground:
    """A still image, resized to cover the frame and centre-cropped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with Image.open(path) as image:
                self.image = ImageOps.exif_transpose(image).convert("RGB")  # upright, as viewers show it
        except OSError as error:
            raise ValueError(f"Background image {path} cannot be read ({error}); pass another image.") from error
        self._cached: Optional[Tensor] = None

    def frames(self, count: int, width: int, height: int) -> Tensor:
        if self._cached is None:
            fitted = np.array(ImageOps.fit(self.image, (width, height), Image.BILINEAR))  # [H, W, 3]
            self._cached = torch.from_numpy(fitted).unsqueeze(0)  # [1, H, W, 3]
        return self._cached


class VideoBackground:
    """Another video, decoded in a thread, resized to cover the frame, centre-cropped, looped when shorter."""

    def __init__(self, path: Path) -> None:
        self.path = path
        probe = VideoReader(str(path))  # fails here for a bad file
        self._size = (probe.width, probe.height)
        probe.close()
        self._frames: Optional[Iterator[np.ndarray]] = None
        self._prefetcher: Optional[Prefetcher] = None

    def _loop(self, width: int, height: int) -> Iterator[np.ndarray]:
        size = cover_size(self._size, (width, height))
        while True:
            for frame in VideoReader(str(self.path), size=size):
                yield centre_crop(frame, width, height)  # [H, W, 3]

    def frames(self, count: int, width: int, height: int) -> Tensor:
        if self._frames is None:
            self._prefetcher = Prefetcher(self._loop(width, height))
            self._frames = iter(self._prefetcher)
        return torch.from_numpy(np.stack([next(self._frames) for _ in range(count)]))  # [T, H, W, 3]

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()


Background = Union[ColourBackground, ImageBackground, VideoBackground]


def parse_background(spec: BackgroundSpec) -> Optional[Background]:
    """A colour name/``#RRGGBB``/``R,G,B``/RGB tuple, an image or video path, or ``'transparent'`` (→ None)."""
    if isinstance(spec, (tuple, list)):
        if len(spec) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in spec):
            raise ValueError(f"Background colour {spec!r} must be three integers in 0–255, e.g. (120, 255, 155).")
        return ColourBackground(tuple(spec))  # type: ignore[arg-type]
    if not isinstance(spec, str):
        raise ValueError(f"Background {spec!r} must be a colour, an image or video path, or 'transparent'.")
    if spec.strip().lower() == TRANSPARENT:
        return None
    colour = parse_colour(spec)
    if colour is not None:
        return ColourBackground(colour)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"Background {spec!r} is neither a colour ({', '.join(COLOURS)}, #RRGGBB, R,G,B, transparent) "
            "nor an existing image or video file; fix the value or the path."
        )
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageBackground(path)
    return VideoBackground(path)


# ----------------------------------------------------------------------------------------------- checks
def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _check_writable_folder(folder: Path, output: Path) -> None:
    """Prove a file can be made in ``folder`` or, while it does not exist yet, in its nearest existing parent
    (nothing is created here: the writers make the folder when the conversion starts)."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".rvm-write-test-"):
            pass
    except OSError as error:
        raise ValueError(f"Output {output} cannot be written ({error}); choose a writable folder.") from error


def check_output(path: Path, *, input_source: Path, output_type: str, overwrite: bool) -> None:
    """Raise before any work when ``path`` cannot or must not be written."""
    if _same_file(path, input_source):
        raise ValueError(f"Output {path} is the input itself; choose another output name.")
    if output_type == "video" and path.suffix.lower() not in VIDEO_FORMATS:
        raise ValueError(
            f"Output {path} needs a video extension: {', '.join(VIDEO_FORMATS)} (.mov/.webm keep alpha); "
            "for frames use output_type='png_sequence'."
        )
    exists = path.exists() and not (path.is_dir() and output_type == "png_sequence" and not any(path.iterdir()))
    if exists and not overwrite:
        raise ValueError(f"Output {path} already exists; pass overwrite=True (--overwrite) or choose another name.")
    if exists and (path.is_dir() != (output_type == "png_sequence")):
        kind = "a folder" if path.is_dir() else "a file"
        raise ValueError(f"Output {path} is {kind}; it cannot be replaced by this output, choose another name.")
    _check_writable_folder(path.parent, path)


# ----------------------------------------------------------------------------------------------- conversion
@dataclass
class ConversionResult:
    """What a conversion did: frames converted, wall seconds, the outputs written, the input's frame timing
    (constant or variable rate, duration) and, for a damaged input converted with ``allow_partial``, where its
    good frames end (else None)."""

    frames: int
    seconds: float
    outputs: Dict[str, str]
    timing: Optional[FrameTiming] = None
    damage: Optional[Damage] = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Plan:
    """Checked arguments of one conversion."""

    reader: Reader
    outputs: Dict[str, Path]  # 'composition' | 'alpha' | 'foreground' → path
    output_type: str
    background: Optional[Background]  # None = transparent
    downsample_ratio: float
    seq_chunk: int
    bit_rate: Optional[int]
    preset: Optional[str]
    audio: bool
    start_time: Fraction  # the input time that becomes 0 in video outputs: the video's start, or the audio's if earlier


@dataclass(frozen=True)
class _RenderItem:
    """What the model's thread queues for every writer: one matted chunk and the background under it."""

    matte: MattedChunk
    background: Optional[Tensor]  # uint8 [T|1, H|1, W|1, 3]; None = transparent


def _renderer(kind: str) -> Callable[[_RenderItem], np.ndarray]:
    """A writer's ``prepare``: its output image, rendered in the writer's own thread → uint8 ``[T, H, W, C]``."""

    def prepare(item: _RenderItem) -> np.ndarray:
        return item.matte.render(kind, item.background).numpy()

    return prepare


def _plan(
    input_source: str,
    outputs: Dict[str, Optional[str]],
    *,
    output_type: str = "video",
    input_resize: Optional[Tuple[int, int]] = None,
    downsample_ratio: Optional[float] = None,
    output_background: BackgroundSpec = None,
    output_video_mbps: Optional[float] = None,
    output_video_preset: Optional[str] = None,
    seq_chunk: int = 1,
    num_workers: int = 0,
    overwrite: bool = False,
    keep_audio: bool = True,
    allow_partial: bool = False,
) -> _Plan:
    """Check every argument (raising ValueError/FileNotFoundError naming the fix) and open the input."""
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"Unknown output_type {output_type!r}; use one of {', '.join(OUTPUT_TYPES)}.")
    chosen = {name: Path(path) for name, path in outputs.items() if path is not None}
    if not chosen:
        raise ValueError("No output asked for; give at least one of output_composition, output_alpha, output_foreground.")
    if len({path.resolve() for path in chosen.values()}) != len(chosen):
        raise ValueError(f"Two outputs share one path ({', '.join(map(str, chosen.values()))}); give each its own.")
    if input_resize is not None and (len(input_resize) != 2 or not all(int(v) == v and v > 0 for v in input_resize)):
        raise ValueError(f"input_resize {input_resize!r} must be two positive integers (width, height).")
    if downsample_ratio is not None and not 0 < downsample_ratio <= 1:
        raise ValueError(f"downsample_ratio {downsample_ratio} must be in (0, 1]; or None to pick it from the size.")
    if not isinstance(seq_chunk, int) or seq_chunk < 1:
        raise ValueError(f"seq_chunk {seq_chunk!r} must be a positive integer (frames per model call).")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers {num_workers!r} must be an integer ≥ 0 (decoder threads, 0 = FFmpeg's choice).")
    if output_video_mbps is not None and not output_video_mbps > 0:
        raise ValueError(f"output_video_mbps {output_video_mbps} must be positive (megabits per second).")
    if output_video_preset is not None and output_video_preset not in X264_PRESETS:
        raise ValueError(f"output_video_preset {output_video_preset!r} is not an x264 preset; use one of {', '.join(X264_PRESETS)}.")

    source = Path(input_source)
    if not source.exists():
        raise FileNotFoundError(f"Input {source} does not exist; pass a video file or a folder of images.")
    for path in chosen.values():
        check_output(path, input_source=source, output_type=output_type, overwrite=overwrite)

    transparent_ok = output_type == "png_sequence" or (
        "composition" in chosen and chosen["composition"].suffix.lower() in ALPHA_CONTAINERS
    )
    if output_background is None:
        output_background = TRANSPARENT if transparent_ok else "green"
    background = parse_background(output_background)
    if background is None and "composition" in chosen and not transparent_ok:
        raise ValueError(
            f"Output {chosen['composition']} cannot be transparent; use .mov or .webm, PNG frames, or a background."
        )

    size = (int(input_resize[0]), int(input_resize[1])) if input_resize is not None else None
    reader = open_reader(str(source), size=size, threads=num_workers, allow_partial=allow_partial)
    try:
        if downsample_ratio is None:
            downsample_ratio = auto_downsample_ratio(reader.height, reader.width)
        bit_rate = int(output_video_mbps * 1_000_000) if output_video_mbps is not None else None
        sound = audio_start(str(source)) if keep_audio and output_type == "video" else None
        start_time = reader.start_time if sound is None else min(reader.start_time, sound)
    except BaseException:
        reader.close()
        raise
    return _Plan(
        reader, chosen, output_type, background, downsample_ratio, seq_chunk, bit_rate, output_video_preset,
        sound is not None, start_time,
    )


def _open_writer(name: str, path: Path, plan: _Plan) -> Any:
    if plan.output_type == "png_sequence":
        return ImageSequenceWriter(str(path))
    reader = plan.reader
    codec = VIDEO_FORMATS[path.suffix.lower()][0]
    colour = output_colour(reader.colour, reader.width, reader.height, full_range_ok=codec not in LIMITED_RANGE_CODECS)
    return VideoWriter(
        str(path),
        reader.frame_rate,
        bit_rate=plan.bit_rate,
        preset=plan.preset,
        audio_source=str(reader.path) if plan.audio else None,
        start_time=plan.start_time,
        time_base=reader.time_base,
        colour=colour,
    )


def _run(model: Callable, plan: _Plan, *, device: torch.device, dtype: torch.dtype, progress: Progress, queue_depth: int) -> int:
    """Decode → model → encode with the three stages overlapped; returns the number of frames written.

    A reader thread hands on chunks of frames with their presentation times (the last one padded to the chunk
    length, so that a compiled model keeps its shapes); this thread steps the ``RecurrentRunner``
    (model/runner.py), which picks the route the model can serve (on the CPU the 8-bit route: only low-resolution
    coefficients here) and drops the padding's outputs; each writer thread renders its own output from the matted
    chunk and encodes it at the frames' times."""
    reader = plan.reader
    runner = RecurrentRunner(model, downsample_ratio=plan.downsample_ratio, device=device, dtype=dtype)
    chunks = Prefetcher(chunk_frames(reader.timed(), plan.seq_chunk, pad=True), depth=queue_depth)
    writers = [
        BackgroundWriter(_open_writer(name, path, plan), prepare=_renderer(name), depth=queue_depth)
        for name, path in plan.outputs.items()
    ]
    bar = tqdm(total=reader.frame_count, disable=progress is not True, unit="frame", desc=reader.path.name, dynamic_ncols=True)
    frames_written: Callable[[int], Any] = progress if callable(progress) else bar.update
    count = 0

    def produce() -> None:
        nonlocal count
        for matte in runner.run(chunks):
            background = None  # uint8 [T|1, H|1, W|1, 3]
            if plan.background is not None and "composition" in plan.outputs:
                background = plan.background.frames(len(matte), reader.width, reader.height)
            for writer in writers:
                writer.write(_RenderItem(matte, background), matte.timestamps)
            count += len(matte)
            frames_written(len(matte))

    try:
        run_writers(writers, produce)
    finally:
        chunks.close()
        reader.close()
        bar.close()
        if isinstance(plan.background, VideoBackground):
            plan.background.close()
    return count


def prepare_model(
    model: Any, *, device: torch.device, dtype: torch.dtype, fast: bool, compile_network: Optional[bool] = None
) -> Callable:
    """What convert_video runs: with ``fast`` an optimised copy of a ``MattingNetwork``
    (``model.fast_path.optimize_for_inference``, compiled when ``compile_network``; None: its default, on for CUDA
    only), else the model itself in eval mode on ``device``/``dtype``. An already optimised copy, or any other
    callable, is used as it is."""
    if isinstance(model, FastMattingNetwork) or not isinstance(model, torch.nn.Module):
        return model
    if fast and isinstance(model, MattingNetwork):
        return optimize_for_inference(model, device=device, dtype=dtype, compile_network=compile_network)
    return model.eval().to(device=device, dtype=dtype)


def convert_video(
    model: Any,
    input_source: str,
    input_resize: Optional[Tuple[int, int]] = None,
    downsample_ratio: Optional[float] = None,
    output_type: str = "video",
    output_composition: Optional[str] = None,
    output_alpha: Optional[str] = None,
    output_foreground: Optional[str] = None,
    output_video_mbps: Optional[float] = None,
    seq_chunk: int = 1,
    num_workers: int = 0,
    progress: Progress = True,
    device: Union[None, str, torch.device] = None,
    dtype: Union[None, str, torch.dtype] = None,
    *,
    output_background: BackgroundSpec = None,
    output_video_preset: Optional[str] = None,
    overwrite: bool = False,
    keep_audio: bool = True,
    allow_partial: bool = False,
    fast: bool = True,
    compile_network: Optional[bool] = None,
    queue_depth: int = 4,
    threads: Optional[int] = None,
) -> ConversionResult:
    """Matte ``input_source`` (a video file or a folder of images) and write the asked outputs.

    Args (published): input_resize (width, height) resizes the input first; downsample_ratio None picks
        ``min(512 / max(h, w), 1)``; output_type 'video' (paths are files: .mp4/.mkv H.264, .mov ProRes 4444,
        .webm VP9) or 'png_sequence' (paths are folders); output_video_mbps the bit rate; seq_chunk frames per
        model call; num_workers decoder threads (0 = FFmpeg's choice); progress True shows a tqdm bar, a callable
        is called instead with the number of frames each time some are written (a caller's own display); device None = the model's, 'auto' = CUDA
        when present; dtype None = the model's, or 'float32'/'float16'/'bfloat16'.
    Args (added): output_background a colour ('green', '#RRGGBB', 'R,G,B', a tuple), an image or a video path,
        or 'transparent'; None = transparent for .mov/.webm/PNG compositions, else the published green.
        output_video_preset the x264 preset of H.264 outputs (None: x264's default, medium, as published).
        overwrite replaces existing outputs (only once the new one is complete); keep_audio copies the input's
        audio into video outputs, its offset to the video kept; allow_partial converts the good frames of a damaged
        or cut-short input and reports the damage in the result (without it such an input raises
        ``DamagedInputError`` and nothing is written); fast uses ``model.fast_path.optimize_for_inference``;
        compile_network compiles that copy with torch.compile (None: on for CUDA, off for CPU, where it takes
        about a minute per input size and pays off only on long videos; see documentation/benchmarks.md);
        queue_depth bounds the chunks waiting between stages; threads sets torch's CPU threads during the run (None: unchanged; 1 suits
        small or busy CPUs, leaving cores to decoding and encoding).
    Footage (documentation/inference.md): frames are turned upright by the input's display matrix or EXIF
    orientation (``input_resize`` is the upright size), every video output keeps each frame's presentation time,
    decodes with the input's colour matrix and range and declares its colour; HDR input is refused with the
    command that converts it to SDR. A failed or interrupted run leaves no output and replaces no file.
    Returns a ``ConversionResult`` (frames, seconds, fps, outputs, timing, damage).
    """
    device = resolve_device(device, model)
    dtype = resolve_dtype(dtype, model)
    plan = _plan(
        input_source,
        {"composition": output_composition, "alpha": output_alpha, "foreground": output_foreground},
        output_type=output_type,
        input_resize=input_resize,
        downsample_ratio=downsample_ratio,
        output_background=output_background,
        output_video_mbps=output_video_mbps,
        output_video_preset=output_video_preset,
        seq_chunk=seq_chunk,
        num_workers=num_workers,
        overwrite=overwrite,
        keep_audio=keep_audio,
        allow_partial=allow_partial,
    )
    runner = prepare_model(model, device=device, dtype=dtype, fast=fast, compile_network=compile_network)
    return _execute(runner, plan, device=device, dtype=dtype, progress=progress, queue_depth=queue_depth, threads=threads)


def _execute(
    runner: Callable,
    plan: _Plan,
    *,
    device: torch.device,
    dtype: torch.dtype,
    progress: Progress,
    queue_depth: int,
    threads: Optional[int],
) -> ConversionResult:
    """Run one checked plan, with torch's intra-op threads set to ``threads`` for its duration (None: as is)."""
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        plan.reader.close()
        raise ValueError(f"threads {threads!r} must be a positive integer (torch CPU threads), or None.")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        count = _run(runner, plan, device=device, dtype=dtype, progress=progress, queue_depth=queue_depth)
    finally:
        torch.set_num_threads(previous)
    outputs = {name: str(path) for name, path in plan.outputs.items()}
    return ConversionResult(count, time.perf_counter() - start, outputs, plan.reader.timing, plan.reader.damage)


def convert_videos(
    model: Any,
    input_sources: Sequence[str],
    output_dir: str,
    *,
    output_composition: Optional[str] = None,
    output_alpha: Optional[str] = None,
    output_foreground: Optional[str] = None,
    device: Union[None, str, torch.device] = None,
    dtype: Union[None, str, torch.dtype] = None,
    fast: bool = True,
    compile_network: Optional[bool] = None,
    progress: Progress = True,
    queue_depth: int = 4,
    threads: Optional[int] = None,
    **options: Any,
) -> List[ConversionResult]:
    """Convert several inputs, writing ``output_dir/<input name>/<output name>`` (e.g. ``out/clip1/alpha.mov``).

    The output names are file (or folder) names such as ``'alpha.mp4'``; ``options`` are ``convert_video``'s
    other keyword arguments. Every input and output is checked before the first conversion starts.
    """
    stems = [Path(source).stem for source in input_sources]
    if not stems:
        raise ValueError("No input given; pass at least one video file or image folder.")
    if len(set(stems)) != len(stems):
        raise ValueError(f"Inputs share a name ({', '.join(input_sources)}); their outputs would collide, rename them.")
    names = {"composition": output_composition, "alpha": output_alpha, "foreground": output_foreground}
    for name in names.values():
        if name is not None and Path(name).name != name:
            raise ValueError(f"With an output folder, {name!r} must be a plain name such as 'alpha.mp4', not a path.")
    device = resolve_device(device, model)
    dtype = resolve_dtype(dtype, model)
    plans: List[_Plan] = []
    try:
        for source in input_sources:
            folder = Path(output_dir) / Path(source).stem
            outputs = {key: str(folder / name) if name is not None else None for key, name in names.items()}
            plans.append(_plan(source, outputs, **options))
    except BaseException:
        for plan in plans:
            plan.reader.close()
        raise
    runner = prepare_model(model, device=device, dtype=dtype, fast=fast, compile_network=compile_network)
    return [
        _execute(runner, plan, device=device, dtype=dtype, progress=progress, queue_depth=queue_depth, threads=threads)
        for plan in plans
    ]


class Converter:
    """A model loaded once (weights through ``model.weights.load_model``) and converting any number of inputs.

    ``Converter('mobilenetv3', 'rvm_mobilenetv3.pth').convert('in.mp4', output_alpha='alpha.mov')``.
    """

    def __init__(
        self,
        variant: str = "mobilenetv3",
        checkpoint: Optional[str] = None,
        device: Union[str, torch.device] = "auto",
        *,
        refiner: str = "deep_guided_filter",
        dtype: Union[None, str, torch.dtype] = None,
        fast: bool = True,
        compile_network: Optional[bool] = None,
        progress: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        model = load_model(variant, refiner, checkpoint, device=str(self.device), progress=progress)
        self.model = prepare_model(model, device=self.device, dtype=self.dtype, fast=fast, compile_network=compile_network)

    def convert(self, input_source: str, **kwargs: Any) -> ConversionResult:
        """``convert_video`` with this converter's model, device and dtype."""
        return convert_video(self.model, input_source, device=self.device, dtype=self.dtype, fast=False, **kwargs)

    def convert_many(self, input_sources: Sequence[str], output_dir: str, **kwargs: Any) -> List[ConversionResult]:
        """``convert_videos`` with this converter's model, device and dtype."""
        return convert_videos(self.model, input_sources, output_dir, device=self.device, dtype=self.dtype, fast=False, **kwargs)

    __call__ = convert


# ----------------------------------------------------------------------------------------------- command line
def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model flags shared by every command that runs the network on video (inference.py, inference_live.py)."""
    parser.add_argument("--variant", default="mobilenetv3", choices=VARIANTS)
    parser.add_argument("--refiner", default="deep_guided_filter", choices=REFINERS)
    parser.add_argument("--checkpoint", help="a .pth state dict; default: the published weights (model.weights)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default=None, choices=list(DTYPES), help="model precision (float16/bfloat16 for CUDA)")
    parser.add_argument("--downsample-ratio", type=float, help="default: min(512 / max(h, w), 1)")
    parser.add_argument("--threads", type=int, help="torch CPU threads during the run (default: torch's)")
    parser.add_argument("--plain-model", action="store_true", help="use the eager model, not the fast path")
    parser.add_argument(
        "--compile", dest="compile_network", action=argparse.BooleanOptionalAction, default=None,
        help="torch.compile the fast path (default: on for CUDA; on CPU about a minute per size, for long runs)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Robust Video Matting: convert videos or image folders.")
    add_model_arguments(parser)
    parser.add_argument("--input-source", nargs="+", default=[], help="video files and/or image folders")
    parser.add_argument("--input-list", help="a text file naming one input per line (with --output-dir)")
    parser.add_argument("--input-resize", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--output-type", default="video", choices=list(OUTPUT_TYPES))
    parser.add_argument("--output-composition", help="composition file (.mp4/.mkv/.mov/.webm) or PNG folder")
    parser.add_argument("--output-alpha", help="alpha file or PNG folder")
    parser.add_argument("--output-foreground", help="foreground file or PNG folder")
    parser.add_argument("--output-background", help="colour (green, #RRGGBB, R,G,B), image, video, or transparent")
    parser.add_argument("--output-dir", help="OUTPUT_DIR/<input name>/<output name>: a resumable job (torchrun too)")
    parser.add_argument("--output-video-mbps", type=float)
    parser.add_argument("--output-video-preset", choices=list(X264_PRESETS), help="x264 preset (default: medium)")
    parser.add_argument("--seq-chunk", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=0, help="decoder threads (0 = FFmpeg's choice)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (once complete)")
    parser.add_argument("--no-audio", action="store_true", help="do not copy the input's audio")
    parser.add_argument(
        "--allow-partial", action="store_true",
        help="for a damaged or cut-short input, keep the good frames (exit code 0) instead of writing nothing (1)",
    )
    parser.add_argument("--disable-progress", action="store_true")
    return parser


# what the command line reports as a one-line error (exit code 1) instead of a traceback: problems with the input,
# the outputs, the weights or the machine; other exceptions are bugs and keep their traceback
SETUP_ERRORS = (ValueError, FileNotFoundError, OSError, torch.OutOfMemoryError, av.error.FFmpegError)


def _summary(result: ConversionResult) -> str:
    timing = f", input: {result.timing.describe()}" if result.timing is not None else ""
    damage = " (partial: the input is damaged)" if result.damage is not None else ""
    return (
        f"{result.frames} frames in {result.seconds:.1f} s ({result.fps:.2f} frames/s){timing}{damage}: "
        + ", ".join(f"{name} → {path}" for name, path in result.outputs.items())
    )


def conversion_options(args: argparse.Namespace) -> Dict[str, Any]:
    """``convert_video``'s keyword arguments from the parsed command line (all but the model and the input)."""
    return dict(
        input_resize=args.input_resize,
        downsample_ratio=args.downsample_ratio,
        output_type=args.output_type,
        output_composition=args.output_composition,
        output_alpha=args.output_alpha,
        output_foreground=args.output_foreground,
        output_background=args.output_background,
        output_video_mbps=args.output_video_mbps,
        output_video_preset=args.output_video_preset,
        seq_chunk=args.seq_chunk,
        num_workers=args.num_workers,
        progress=not args.disable_progress,
        overwrite=args.overwrite,
        keep_audio=not args.no_audio,
        allow_partial=args.allow_partial,
        threads=args.threads,
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The command line. One input: exit 0 done (with ``--allow-partial`` also for a damaged input, reported), 1 an
    input, output or setup problem (one line on stderr, nothing written), 2 bad arguments, 130 interrupted. With
    ``--output-dir`` or ``--input-list``: a resumable job (``conversion_jobs``), exit 0 when every input succeeded."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.input_source and args.input_list is None:
        raise SystemExit("error: give --input-source (files or image folders) or --input-list FILE.")
    if args.output_dir is not None or args.input_list is not None:
        from conversion_jobs import run_job  # a job of many inputs, under torchrun or alone (imports this module)

        try:
            code = run_job(args)
        except SETUP_ERRORS as error:
            raise SystemExit(f"error: {error}") from error
        if code != 0:
            raise SystemExit(code)
        return
    if len(args.input_source) > 1:
        raise SystemExit("Several inputs need --output-dir (outputs go to OUTPUT_DIR/<input name>/<output name>).")
    try:
        converter = Converter(
            args.variant, args.checkpoint, args.device, refiner=args.refiner, dtype=args.dtype,
            fast=not args.plain_model, compile_network=args.compile_network, progress=not args.disable_progress,
        )
        result = converter.convert(args.input_source[0], **conversion_options(args))
    except SETUP_ERRORS as error:
        raise SystemExit(f"error: {error}") from error
    except KeyboardInterrupt:
        print("interrupted: the unfinished outputs were removed", file=sys.stderr)
        raise SystemExit(130) from None
    print(_summary(result))


if __name__ == "__main__":
    main()
