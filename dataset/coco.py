"""COCO panoptic (train2017 images, panoptic PNGs and their json): person, backpack and tie pixels are foreground."""
import os
from typing import Callable, List, Tuple, Union

import numpy as np
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .files import read_image, read_json
from .sampler import SampleKey, unpack_key

FOREGROUND_CATEGORIES = ("person", "backpack", "tie")


class CocoPanopticDataset(Dataset):
    """Images that contain a person, with a 0/255 mask of the foreground categories.

    Args:
        image_dir: the ``train2017`` folder of JPEG images.
        annotation_dir: the ``panoptic_train2017`` folder of PNGs (segment id = R + 256·G + 256²·B).
        annotation_file: ``panoptic_train2017.json``.
        transform: ``(images, masks, rng) -> (image [1, 3, S, S], mask [1, 1, S, S])``.
        shortest_side: shrink images on load so their short side is at most this (0 keeps them).
    Returns image ``[3, S, S]`` and mask ``[1, S, S]``, both in [0, 1].
    """

    def __init__(
        self, image_dir: str, annotation_dir: str, annotation_file: str, transform: Callable, shortest_side: int = 0
    ) -> None:
        self.image_dir = image_dir
        self.annotation_dir = annotation_dir
        self.transform = transform
        self.shortest_side = shortest_side
        data = read_json(annotation_file, "COCO panoptic annotation")
        foreground = {c["id"] for c in data["categories"] if c["name"] in FOREGROUND_CATEGORIES}
        if not foreground:
            raise ValueError(f"{annotation_file} has no 'person' category; is it a COCO panoptic annotation file?")
        image_files = {image["id"]: image["file_name"] for image in data["images"]}
        self.items: List[Tuple[str, str, List[int]]] = []
        for annotation in data["annotations"]:
            segments = [s["id"] for s in annotation["segments_info"] if s["category_id"] in foreground]
            if segments:
                self.items.append((image_files[annotation["image_id"]], annotation["file_name"], segments))
        if not self.items:
            raise ValueError(f"{annotation_file} lists no image with a person; check the annotation file.")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: Union[int, SampleKey]) -> Tuple[Tensor, Tensor]:
        index, rng = unpack_key(key)
        image_file, panoptic_file, segments = self.items[index]
        image = read_image(os.path.join(self.image_dir, image_file), "RGB", self.shortest_side)
        panoptic = np.asarray(read_image(os.path.join(self.annotation_dir, panoptic_file), "RGB"), dtype=np.int64)
        ids = panoptic[..., 0] + 256 * panoptic[..., 1] + 65536 * panoptic[..., 2]  # [H, W] segment ids
        mask = Image.fromarray((np.isin(ids, segments) * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR)
        images, masks = self.transform([image], [mask], rng)  # [1, 3, S, S], [1, 1, S, S]
        return images[0], masks[0]
