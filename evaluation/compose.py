"""Compose a matting test set: foregrounds with alpha over background images or videos, seeded.

Foregrounds are image mattes (``--fgr-dir/<name>.*`` + ``--pha-dir/<name>.*``, paired by file stem) or
VideoMatte-style clips (``--fgr-dir/<clip>/<frame>`` + ``--pha-dir/<clip>/<frame>``). Backgrounds are
images (a folder of them) or videos (video files, folders of frame folders, or frame folders). Each of the
N samples is M frames; still images get a smooth synthetic camera motion. Written in the layout the
evaluators read::

    <output-dir>/<clip>/{com,fgr,pha,bgr}/<frame:04d>.png      (+ <output-dir>/composition.json)

Foregrounds are scaled to fit the frame and stand on its bottom edge (a portrait cut at the bottom stays cut
by the frame border); backgrounds are scaled to cover it and centre-cropped.
"""
import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from tqdm import tqdm

from .frames import list_frames, read_image, write_image

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass
class Video:
    """A background or foreground video: a video file or a folder of frame images."""

    path: Path

    def frame_count(self) -> int:
        if self.path.is_dir():
            return len(list_frames(self.path))
        capture = cv2.VideoCapture(str(self.path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        if count <= 0:
            raise ValueError(f"Cannot read video {self.path}; convert it to frames or a common format (mp4, avi).")
        return count

    def read(self, start: int, count: int, grey: bool = False) -> List[np.ndarray]:
        """Frames ``start … start+count-1`` (8-bit BGR, or grey)."""
        if self.path.is_dir():
            return [read_image(p, grey) for p in list_frames(self.path)[start : start + count]]
        capture = cv2.VideoCapture(str(self.path))
        for _ in range(start):
            capture.grab()
        frames = []
        for i in range(count):
            ok, frame = capture.read()
            if not ok:
                raise ValueError(f"{self.path} ended before frame {start + i}; the file may be truncated.")
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if grey else frame)
        capture.release()
        return frames


def list_image_mattes(fgr_dir: Path, pha_dir: Path) -> List[Tuple[Path, Path]]:
    """(foreground, alpha) image pairs matched by file stem."""
    fgrs, phas = list_frames(_existing_dir(fgr_dir, "--fgr-dir")), list_frames(_existing_dir(pha_dir, "--pha-dir"))
    by_stem = {p.stem: p for p in phas}
    missing = [p.name for p in fgrs if p.stem not in by_stem]
    if missing or not fgrs:
        raise FileNotFoundError(
            f"Foregrounds without an alpha of the same name in {pha_dir}: {missing or '(no images found)'}; "
            "give every foreground image an alpha image with the same file stem."
        )
    return [(p, by_stem[p.stem]) for p in fgrs]


def list_video_mattes(fgr_dir: Path, pha_dir: Path) -> List[Tuple[Video, Video]]:
    """(foreground, alpha) frame-folder clips matched by clip name, with equal frame counts."""
    clips = sorted(c for c in _existing_dir(fgr_dir, "--fgr-dir").iterdir() if c.is_dir())
    if not clips:
        raise FileNotFoundError(f"{fgr_dir} holds no clip folders; VideoMatte needs --fgr-dir/<clip>/<frame>.")
    pairs = []
    for clip in clips:
        fgr, pha = Video(clip), Video(_existing_dir(pha_dir / clip.name, "the alpha clip"))
        if fgr.frame_count() != pha.frame_count():
            raise ValueError(f"{clip} and {pha.path} have different frame counts; fix or remove the clip.")
        pairs.append((fgr, pha))
    return pairs


def list_background_videos(paths: Sequence[Path]) -> List[Video]:
    """Every background video under ``paths``: video files, frame folders, or folders of either."""
    videos: List[Video] = []
    for path in paths:
        if path.is_file():
            videos.append(Video(path))
            continue
        _existing_dir(path, "--background")
        if list_frames(path):
            videos.append(Video(path))
            continue
        for child in sorted(path.iterdir()):
            if (child.is_file() and child.suffix.lower() in VIDEO_SUFFIXES) or (child.is_dir() and list_frames(child)):
                videos.append(Video(child))
    if not videos:
        raise FileNotFoundError(f"No background videos in {[str(p) for p in paths]}; give video files or frame folders.")
    return videos


def list_background_images(paths: Sequence[Path]) -> List[Path]:
    """Every background image in the folders (or image files) ``paths``."""
    images = [p for path in paths for p in ([path] if path.is_file() else list_frames(_existing_dir(path, "--background")))]
    if not images:
        raise FileNotFoundError(f"No background images in {[str(p) for p in paths]}; give image files or folders.")
    return images


def _existing_dir(path: Path, name: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{name} {path} is not a folder; check the path.")
    return path


def fit_bottom(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale ``image`` to fit inside ``width×height`` and place it bottom-centre on a zero canvas."""
    scale = min(width / image.shape[1], height / image.shape[0])
    w, h = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width) + image.shape[2:], dtype=image.dtype)  # [H, W(, 3)]
    left = (width - w) // 2
    canvas[height - h :, left : left + w] = resized
    return canvas


def cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale ``image`` to cover ``width×height`` and crop the centre."""
    scale = max(width / image.shape[1], height / image.shape[0])
    w, h = max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale))
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (h - height) // 2, (w - width) // 2
    return resized[top : top + height, left : left + width]


@dataclass
class MotionRange:
    """Limits of the random start and end poses of a synthetic camera move (shifts as fractions of the size)."""

    shift_x: Tuple[float, float]
    shift_y: Tuple[float, float]
    scale: Tuple[float, float]
    degrees: Tuple[float, float]


FOREGROUND_MOTION = MotionRange(shift_x=(-0.15, 0.15), shift_y=(0.0, 0.05), scale=(1.0, 1.1), degrees=(-3.0, 3.0))
BACKGROUND_MOTION = MotionRange(shift_x=(-0.05, 0.05), shift_y=(-0.05, 0.05), scale=(1.05, 1.15), degrees=(-2.0, 2.0))


def motion_matrices(
    rng: np.random.Generator, width: int, height: int, num_frames: int, motion: MotionRange, pivot: Tuple[float, float]
) -> List[np.ndarray]:
    """``num_frames`` affine matrices ``[2, 3]`` easing (smoothstep) from one random pose to another about ``pivot``."""
    start, end = ([rng.uniform(*r) for r in (motion.shift_x, motion.shift_y, motion.scale, motion.degrees)] for _ in range(2))
    matrices = []
    for i in range(num_frames):
        t = i / (num_frames - 1) if num_frames > 1 else 0.0
        eased = t * t * (3 - 2 * t)
        dx, dy, scale, degrees = (a + (b - a) * eased for a, b in zip(start, end))
        matrix = cv2.getRotationMatrix2D(pivot, degrees, scale)  # [2, 3]
        matrix[:, 2] += (dx * width, dy * height)
        matrices.append(matrix)
    return matrices


def _warp(image: np.ndarray, matrix: np.ndarray, border: int) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=border)


def composite(fgr: np.ndarray, pha: np.ndarray, bgr: np.ndarray) -> np.ndarray:
    """8-bit ``fgr·α + bgr·(1 − α)`` with α = pha / 255 (fgr, bgr ``[H, W, 3]``, pha ``[H, W]``)."""
    alpha = pha.astype(np.float32)[..., None] / 255  # [H, W, 1]
    com = fgr.astype(np.float32) * alpha + bgr.astype(np.float32) * (1 - alpha)
    return np.clip(np.round(com), 0, 255).astype(np.uint8)


def _window(rng: np.random.Generator, video: Video, num_frames: int) -> int:
    available = video.frame_count()
    if available < num_frames:
        raise ValueError(f"{video.path} has {available} frames, fewer than --num-frames {num_frames}; lower it.")
    return int(rng.integers(0, available - num_frames + 1))


ImageMatte = Tuple[Path, Path]  # (foreground image, alpha image)
VideoMatte = Tuple[Video, Video]  # (foreground clip, alpha clip)
Frames = List[np.ndarray]


def _foreground_clip(
    rng: np.random.Generator, source: Union[ImageMatte, VideoMatte], size: Tuple[int, int], num_frames: int
) -> Tuple[Frames, Frames, Dict[str, object]]:
    """Foreground and alpha frames for one sample (a moved still, or a window of a clip) and their provenance."""
    width, height = size
    fgr_source, pha_source = source
    if isinstance(fgr_source, Video) and isinstance(pha_source, Video):
        start = _window(rng, fgr_source, num_frames)
        fgrs = [fit_bottom(f, width, height) for f in fgr_source.read(start, num_frames)]
        phas = [fit_bottom(f, width, height) for f in pha_source.read(start, num_frames, grey=True)]
        return fgrs, phas, {"fgr": str(fgr_source.path), "pha": str(pha_source.path), "fgr_start": start}
    fgr_still = fit_bottom(read_image(fgr_source), width, height)
    pha_still = fit_bottom(read_image(pha_source, grey=True), width, height)
    moves = motion_matrices(rng, width, height, num_frames, FOREGROUND_MOTION, (width / 2, float(height)))
    fgrs = [_warp(fgr_still, m, cv2.BORDER_CONSTANT) for m in moves]
    phas = [_warp(pha_still, m, cv2.BORDER_CONSTANT) for m in moves]
    return fgrs, phas, {"fgr": str(fgr_source), "pha": str(pha_source)}


def _background_clip(
    rng: np.random.Generator, sources: Union[List[Path], List[Video]], size: Tuple[int, int], num_frames: int
) -> Tuple[Frames, Dict[str, object]]:
    """Background frames for one sample (a random image, moved, or a random window of a random video)."""
    width, height = size
    source = sources[int(rng.integers(len(sources)))]
    if isinstance(source, Video):
        start = _window(rng, source, num_frames)
        return [cover(f, width, height) for f in source.read(start, num_frames)], {"bgr": str(source.path), "bgr_start": start}
    still = cover(read_image(source), width, height)
    moves = motion_matrices(rng, width, height, num_frames, BACKGROUND_MOTION, (width / 2, height / 2))
    return [_warp(still, m, cv2.BORDER_REFLECT_101) for m in moves], {"bgr": str(source)}


def compose_test_set(
    output_dir: str,
    fgr_dir: str,
    pha_dir: str,
    backgrounds: Sequence[str],
    foreground_type: str = "image",
    background_type: str = "video",
    num_samples: int = 8,
    num_frames: int = 30,
    size: Tuple[int, int] = (512, 288),
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write ``num_samples`` clips of ``num_frames`` frames at ``size`` (W, H) into ``output_dir``; return it.

    Sample i takes foreground i (cycling through a seeded shuffle, so all are used evenly) and a random
    background (and random windows of videos); the same seed gives the same files.
    """
    if foreground_type not in ("image", "video") or background_type not in ("image", "video"):
        raise ValueError("--foreground-type and --background-type must each be 'image' or 'video'.")
    if num_samples < 1 or num_frames < 1 or min(size) < 8:
        raise ValueError("--num-samples and --num-frames must be ≥ 1 and --size at least 8×8.")
    rng = np.random.default_rng(seed)
    foregrounds: Union[List[ImageMatte], List[VideoMatte]] = (
        list_image_mattes(Path(fgr_dir), Path(pha_dir))
        if foreground_type == "image"
        else list_video_mattes(Path(fgr_dir), Path(pha_dir))
    )
    background_paths = [Path(p) for p in backgrounds]
    bgr_sources: Union[List[Path], List[Video]] = (
        list_background_images(background_paths)
        if background_type == "image"
        else list_background_videos(background_paths)
    )
    order = rng.permutation(len(foregrounds))
    out = Path(output_dir)
    manifest = []
    for sample in tqdm(range(num_samples), desc="Composing", unit="clip", disable=not progress):
        fgrs, phas, fgr_note = _foreground_clip(rng, foregrounds[order[sample % len(foregrounds)]], size, num_frames)
        bgrs, bgr_note = _background_clip(rng, bgr_sources, size, num_frames)
        clip = out / f"{sample:04d}"
        for name in ("com", "fgr", "pha", "bgr"):
            (clip / name).mkdir(parents=True, exist_ok=True)
        for i, (fgr, pha, bgr) in enumerate(zip(fgrs, phas, bgrs)):
            for name, image in (("com", composite(fgr, pha, bgr)), ("fgr", fgr), ("pha", pha), ("bgr", bgr)):
                write_image(clip / name / f"{i:04d}.png", image)
        manifest.append({"clip": clip.name, **fgr_note, **bgr_note})
    settings = {"seed": seed, "size": list(size), "num_frames": num_frames, "foreground_type": foreground_type}
    (out / "composition.json").write_text(json.dumps({**settings, "clips": manifest}, indent=1) + "\n")
    logger.info("Composed %d clips of %d frames into %s", num_samples, num_frames, out)
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line: ``python -m evaluation.compose --fgr-dir … --pha-dir … --background … --output-dir …``."""
    parser = argparse.ArgumentParser(description="Compose a seeded matting test set (com/, fgr/, pha/, bgr/ per clip).")
    parser.add_argument("--fgr-dir", required=True, help="foreground images, or clip folders of frames")
    parser.add_argument("--pha-dir", required=True, help="alpha images/clips with the same names")
    parser.add_argument("--foreground-type", choices=["image", "video"], default="image")
    parser.add_argument("--background", nargs="+", required=True, help="background folders, images or video files")
    parser.add_argument("--background-type", choices=["image", "video"], default="video")
    parser.add_argument("--output-dir", required=True, help="the dataset folder: <true-dir>/<dataset>")
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--num-frames", type=int, default=30)
    parser.add_argument("--size", type=int, nargs=2, default=[512, 288], metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--disable-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out = compose_test_set(
        args.output_dir,
        args.fgr_dir,
        args.pha_dir,
        args.background,
        foreground_type=args.foreground_type,
        background_type=args.background_type,
        num_samples=args.num_samples,
        num_frames=args.num_frames,
        size=tuple(args.size),
        seed=args.seed,
        progress=not args.disable_progress,
    )
    print(f"Composed {args.num_samples} clips × {args.num_frames} frames into {out}")


if __name__ == "__main__":
    main()
