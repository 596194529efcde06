"""YouTubeVIS 2021 (``JPEGImages/<video>/<frame>.jpg`` + ``instances.json``): clips with person masks.

Masks are COCO run-length encodings, either uncompressed (``counts`` a list) or compressed (``counts`` a
string); both are decoded here without pycocotools.
"""
import os
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .files import read_image, read_json
from .sampler import SampleKey, unpack_key


def decode_counts_string(text: str) -> List[int]:
    """COCO's compressed RLE counts: 5-bit groups in characters offset by 48, deltas from the count two back."""
    counts: List[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            chunk = ord(text[position]) - 48
            value |= (chunk & 0x1F) << shift
            more = bool(chunk & 0x20)
            position += 1
            shift += 5
            if not more and chunk & 0x10:
                value |= -1 << shift  # sign-extend
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def decode_rle(rle: Dict) -> np.ndarray:
    """A COCO RLE dict (``size`` [h, w], ``counts`` list or string) → bool mask ``[h, w]``."""
    height, width = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = decode_counts_string(counts)
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True  # runs alternate, starting with background
    flat = np.repeat(values, counts)
    if flat.size != height * width:
        raise ValueError(f"An RLE mask covers {flat.size} pixels but its size is {height}×{width}; the annotation is corrupt.")
    return flat.reshape(width, height).T  # [w, h] → [h, w]: RLE runs down columns


class YouTubeVISDataset(Dataset):
    """Sequences of ``seq_length`` frames from every video that has a person, with the union of person masks.

    Returns images ``[T, 3, S, S]`` and masks ``[T, 1, S, S]`` in [0, 1]; frames without a person mask get an
    empty mask.
    """

    def __init__(
        self, video_dir: str, annotation_file: str, size: int, seq_length: int, seq_sampler: Callable, transform: Callable
    ) -> None:
        self.video_dir = video_dir
        self.size = size
        self.seq_length = seq_length
        self.seq_sampler = seq_sampler
        self.transform = transform
        data = read_json(annotation_file, "YouTubeVIS annotation")
        person = [c["id"] for c in data["categories"] if c["name"] == "person"]
        if not person:
            raise ValueError(f"{annotation_file} has no 'person' category; is it a YouTubeVIS instances file?")
        videos = {video["id"]: video for video in data["videos"]}
        self.videos: List[Dict] = []
        masks_of: Dict[int, List[List[Dict]]] = {}
        for annotation in data["annotations"]:
            if annotation["category_id"] not in person:
                continue
            video = videos[annotation["video_id"]]
            if video["id"] not in masks_of:
                masks_of[video["id"]] = [[] for _ in video["file_names"]]
                self.videos.append({"file_names": video["file_names"], "masks": masks_of[video["id"]]})
            for frame, rle in enumerate(annotation["segmentations"]):
                if rle is not None:
                    masks_of[video["id"]][frame].append(rle)
        if not self.videos:
            raise ValueError(f"{annotation_file} has no video with a person; check the annotation file.")
        self.index: List[Tuple[int, int]] = [
            (video, start)
            for video in range(len(self.videos))
            for start in range(0, len(self.videos[video]["file_names"]), seq_length)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def _mask(self, rles: List[Dict], size: Tuple[int, int]) -> Image.Image:
        """Union of the person masks of one frame as a 0/255 image of ``size`` (w, h)."""
        union: Optional[np.ndarray] = None
        for rle in rles:
            mask = decode_rle(rle)
            union = mask if union is None else union | mask
        if union is None:
            return Image.new("L", size, 0)
        return Image.fromarray(union.astype(np.uint8) * 255).resize(size, Image.BILINEAR)

    def __getitem__(self, key: Union[int, SampleKey]) -> Tuple[Tensor, Tensor]:
        index, rng = unpack_key(key)
        video, start = self.index[index]
        names = self.videos[video]["file_names"]
        images, masks = [], []
        for offset in self.seq_sampler(self.seq_length, rng):
            frame = (start + offset) % len(names)
            image = read_image(os.path.join(self.video_dir, names[frame]), "RGB", self.size)
            images.append(image)
            masks.append(self._mask(self.videos[video]["masks"][frame], image.size))
        return self.transform(images, masks, rng)
