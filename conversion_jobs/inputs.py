"""The inputs of a conversion job: gathered from the command line and an input list, given their output folders,
and sized so that the largest are handed out first.

An input's outputs go to ``OUTPUT_DIR/<input name without extension>/<output name>``, as ``convert_videos`` writes
them, so input names must be unique within a job. An input's size is its frame count × pixels per frame when the
container or folder says so cheaply (headers only, nothing decoded), else its bytes; inputs that could not be probed
go last (most are unreadable and fail in an instant).
"""
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import av
import av.error
from PIL import Image

from inference_utils import list_images

logger = logging.getLogger(__name__)

OUTPUT_KINDS = ("composition", "alpha", "foreground")


def read_input_list(path: str) -> List[str]:
    """The inputs named in ``path``: one per line; blank lines and lines starting with ``#`` are skipped.
    Relative paths are relative to the current folder, as on the command line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as error:
        message = f"Input list {path} does not exist; pass a text file with one input per line."
        raise FileNotFoundError(message) from error
    except (OSError, UnicodeDecodeError) as error:
        message = f"Input list {path} cannot be read ({error}); pass a UTF-8 text file, one input per line."
        raise ValueError(message) from error
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def gather_inputs(sources: Sequence[str], input_list: Optional[str]) -> List[str]:
    """``--input-source`` then ``--input-list``'s entries, as absolute paths; raises when there are none or when two
    would write the same output folder."""
    named = list(sources) + (read_input_list(input_list) if input_list is not None else [])
    if not named:
        raise ValueError("No input given; pass --input-source files/folders or an --input-list, one input per line.")
    absolute = [os.path.abspath(source) for source in named]
    folders: Dict[str, str] = {}
    for source in absolute:
        folder = output_folder_name(source)
        if folder in folders:
            raise ValueError(
                f"Inputs {folders[folder]} and {source} would both write {folder}/ in the output folder (outputs are "
                "named after the input without its extension); rename one or convert them in separate jobs."
            )
        folders[folder] = source
    return absolute


def output_folder_name(source: str) -> str:
    """The folder of ``source``'s outputs inside the output folder."""
    return Path(source).stem


def output_names(requested: Dict[str, Optional[str]]) -> Dict[str, str]:
    """The asked outputs (kind → plain file or folder name such as ``alpha.mov``); raises for none or for paths."""
    names = {kind: name for kind, name in requested.items() if name is not None}
    if not names:
        raise ValueError(
            "No output asked for; give at least one of --output-composition, --output-alpha, --output-foreground."
        )
    for name in names.values():
        if Path(name).name != name:
            raise ValueError(f"With an output folder, {name!r} must be a plain name such as 'alpha.mp4', not a path.")
    return names


def relative_outputs(source: str, names: Dict[str, str]) -> Dict[str, str]:
    """kind → output path relative to the output folder, e.g. ``{'alpha': 'clip/alpha.mov'}``."""
    folder = output_folder_name(source)
    return {kind: f"{folder}/{name}" for kind, name in names.items()}


def input_identity(source: str) -> Optional[Tuple[int, int]]:
    """(bytes, modification time in ns) of ``source``, or None when it does not exist. A re-run redoes an input
    whose identity changed; for an image folder this sees files added, removed or renamed, not edited in place."""
    try:
        status = os.stat(source)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


@dataclass(frozen=True)
class InputSize:
    """How much work an input is: ``work`` = frames × pixels when probed, else None; ``bytes`` on disk."""

    frames: Optional[int]
    work: Optional[int]
    bytes: int


def _video_frames_and_pixels(path: str) -> Tuple[int, int]:
    """(frames, width × height) from the container's header: the declared count, else duration × rate."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = stream.frames
        if not frames and stream.average_rate:
            if stream.duration is not None:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = (container.duration or 0) / av.time_base
            frames = round(seconds * float(stream.average_rate))
        return int(frames), stream.codec_context.width * stream.codec_context.height


def _folder_frames_and_pixels(folder: Path) -> Tuple[int, int]:
    """(images, width × height of the first) without decoding any."""
    images = list_images(folder)
    if not images:
        return 0, 0
    with Image.open(images[0]) as first:
        width, height = first.size
    return len(images), width * height


def probe_size(source: str, resize: Optional[Sequence[int]] = None) -> InputSize:
    """``source``'s size for ordering; with ``resize`` (width, height) the pixels are those of the resized frames."""
    path = Path(source)
    try:
        size = sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size
    except OSError:
        return InputSize(None, None, 0)
    try:
        frames, pixels = _folder_frames_and_pixels(path) if path.is_dir() else _video_frames_and_pixels(source)
    except (av.error.FFmpegError, OSError, IndexError, ValueError) as error:
        logger.debug("Could not probe %s (%s); ordered by bytes.", source, error)
        return InputSize(None, None, size)
    if resize is not None:
        pixels = resize[0] * resize[1]
    if frames <= 0 or pixels <= 0:
        return InputSize(None, None, size)
    return InputSize(frames, frames * pixels, size)


def largest_first(sizes: Sequence[InputSize]) -> List[int]:
    """Indices of ``sizes`` in hand-out order: probed inputs by work, most first, then the rest by bytes; ties keep
    the given order, so every process computes the same order."""
    return sorted(
        range(len(sizes)),
        key=lambda i: (sizes[i].work is None, -(sizes[i].work if sizes[i].work is not None else sizes[i].bytes), i),
    )
