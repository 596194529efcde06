"""Supervisely Person Dataset: ``img/`` photos and ``seg/`` person masks, paired by sorted file name."""
import os
from typing import Callable, Tuple, Union

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .files import list_folder, read_image
from .sampler import SampleKey, unpack_key


class SuperviselyPersonDataset(Dataset):
    """Photo and mask pairs; returns image ``[3, S, S]`` and mask ``[1, S, S]`` in [0, 1] like ``CocoPanopticDataset``."""

    def __init__(self, image_dir: str, segmentation_dir: str, transform: Callable, shortest_side: int = 0) -> None:
        self.image_dir = image_dir
        self.segmentation_dir = segmentation_dir
        self.transform = transform
        self.shortest_side = shortest_side
        self.images = list_folder(image_dir, "Supervisely image", images_only=True)
        self.masks = list_folder(segmentation_dir, "Supervisely mask", images_only=True)
        if len(self.images) != len(self.masks):
            raise ValueError(
                f"Supervisely: {image_dir} has {len(self.images)} images but {segmentation_dir} has {len(self.masks)} "
                "masks; they are paired by sorted name, so both folders need the same count."
            )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: Union[int, SampleKey]) -> Tuple[Tensor, Tensor]:
        index, rng = unpack_key(key)
        image = read_image(os.path.join(self.image_dir, self.images[index]), "RGB", self.shortest_side)
        mask = read_image(os.path.join(self.segmentation_dir, self.masks[index]), "L")
        mask = mask.point(lambda value: 255 if value > 0 else 0).resize(image.size, Image.BILINEAR)  # any label > 0
        images, masks = self.transform([image], [mask], rng)  # [1, 3, S, S], [1, 1, S, S]
        return images[0], masks[0]
