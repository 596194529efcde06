"""Image-folder helpers shared by the composer, the evaluators and the model runner."""
from pathlib import Path
from typing import List

import cv2
import numpy as np

from file_types import IMAGE_EXTENSIONS


def list_frames(folder: Path) -> List[Path]:
    """The image files of ``folder``, sorted by name (other files are skipped)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def read_image(path: Path, grey: bool = False) -> np.ndarray:
    """An 8-bit image: ``[H, W, 3]`` in OpenCV's BGR order, or ``[H, W]`` when ``grey``."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"Cannot read image {path}; replace or remove the damaged file.")
    return image


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an 8-bit image (PNG when ``path`` ends in .png), creating no folders."""
    if not cv2.imwrite(str(path), image):
        raise OSError(f"Could not write {path}; check that its folder exists, the disk space and permissions.")
