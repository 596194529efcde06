"""Still image mattes (``<root>/fgr/<name>.jpg`` + ``<root>/pha/<name>.jpg``) turned into clips over backgrounds."""
import os
from typing import Tuple, Union

from torch import Tensor

from .backgrounds import CompositedMattingDataset
from .files import paired_names, read_image
from .sampler import SampleKey, unpack_key


class ImageMatteDataset(CompositedMattingDataset):
    """One still foreground repeated ``seq_length`` times (motion comes from augmentation) over a background.

    The length is the larger of the foreground and background counts (published), so every background is
    used once an epoch; foregrounds cycle. Arguments and outputs as in ``CompositedMattingDataset``.
    """

    def scan(self) -> None:
        self.files = paired_names(os.path.join(self.root, "fgr"), os.path.join(self.root, "pha"), "ImageMatte")

    def __len__(self) -> int:
        return max(len(self.files), self.backgrounds.count)

    def __getitem__(self, key: Union[int, SampleKey]) -> Tuple[Tensor, Tensor, Tensor]:
        index, rng = unpack_key(key)
        bgrs = self.backgrounds.draw(rng, self.seq_length, self.seq_sampler)
        name = self.files[index % len(self.files)]
        fgr = read_image(os.path.join(self.root, "fgr", name), "RGB", self.size)
        pha = read_image(os.path.join(self.root, "pha", name), "L", self.size)
        return self.transform([fgr] * self.seq_length, [pha] * self.seq_length, bgrs, rng)
