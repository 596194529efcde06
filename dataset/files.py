"""Reading the training folders: listing and image loading that name the file and the fix on any failure.

Nothing is skipped silently: a missing folder, an empty one, or a file PIL cannot decode raises an error that
names the path, so one bad file stops training instead of quietly biasing the data.
"""
import json
import os
from typing import List

from PIL import Image, UnidentifiedImageError

from file_types import IMAGE_EXTENSIONS


def list_folder(path: str, what: str = "data", images_only: bool = False) -> List[str]:
    """Sorted entry names of folder ``path`` (image files only when ``images_only``); never empty."""
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"The {what} folder {path} does not exist. Prepare the data (documentation/training.md) or point "
            "train.py at it with --data-root / --data-path."
        )
    names = sorted(n for n in os.listdir(path) if not n.startswith("."))
    if images_only:
        names = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    if not names:
        raise ValueError(f"The {what} folder {path} is empty; put the {what} there or fix the path.")
    return names


def read_image(path: str, mode: str = "RGB", shortest_side: int = 0) -> Image.Image:
    """Load ``path`` as a PIL image in ``mode``; when ``shortest_side`` > 0 shrink it so its short side is at most that.

    Shrinking on load keeps CPU work proportional to the training resolution (4K sources at 512 px training).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Training file {path} is missing; restore it or remove it from the dataset.")
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"Training file {path} cannot be read as an image ({error}); re-export or remove it.") from error
    return shrink(image, shortest_side)


def shrink(image: Image.Image, shortest_side: int = 0) -> Image.Image:
    """``image`` scaled down (bilinear) so its short side is at most ``shortest_side``; 0 keeps it as it is."""
    width, height = image.size
    if shortest_side > 0 and min(width, height) > shortest_side:
        scale = shortest_side / min(width, height)
        image = image.resize((int(width * scale), int(height * scale)), Image.BILINEAR)
    return image


def read_json(path: str, what: str) -> dict:
    """Parse the ``what`` annotation file at ``path``, naming it on failure."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The {what} file {path} is missing; download it (documentation/training.md) or fix the path.")
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"The {what} file {path} is not valid JSON ({error}); download it again.") from error


def paired_names(fgr_dir: str, pha_dir: str, what: str) -> List[str]:
    """Image names present in both a foreground and an alpha folder; any mismatch is an error naming both."""
    fgr = list_folder(fgr_dir, f"{what} foreground", images_only=True)
    pha = list_folder(pha_dir, f"{what} alpha", images_only=True)
    if fgr != pha:
        only = sorted(set(fgr).symmetric_difference(pha))[:3]
        raise ValueError(
            f"{what}: {fgr_dir} and {pha_dir} hold different frames (e.g. {only}); every foreground needs an alpha "
            "of the same name."
        )
    return fgr
