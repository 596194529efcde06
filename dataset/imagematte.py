"""Still image mattes (``<root>/fgr/<name>.jpg`` + ``<root>/pha/<name>.jpg``) turned into clips over backgrounds."""
import os
from typing import Callable, Tuple, Union

from torch import Tensor
from torch.utils.data import Dataset

from .backgrounds import Backgrounds
from .files import list_folder, read_image
from .sampler import SampleKey, unpack_key


class ImageMatteDataset(Dataset):
    """One still foreground repeated ``seq_length`` times (motion comes from augmentation) over a background.

    The length is the larger of the foreground and background counts (published), so every background is
    used once an epoch; foregrounds cycle. Returns what ``VideoMatteDataset`` returns.
    """

    def __init__(
        self,
        imagematte_dir: str,
        background_image_dir: str,
        background_video_dir: str,
        size: int,
        seq_length: int,
        seq_sampler: Callable,
        transform: Callable,
    ) -> None:
        self.root = imagematte_dir
        self.size = size
        self.seq_length = seq_length
        self.seq_sampler = seq_sampler
        self.transform = transform
        self.backgrounds = Backgrounds(background_image_dir, background_video_dir, shortest_side=size)
        self.files = list_folder(os.path.join(imagematte_dir, "fgr"), "ImageMatte foreground", images_only=True)
        alphas = list_folder(os.path.join(imagematte_dir, "pha"), "ImageMatte alpha", images_only=True)
        if alphas != self.files:
            only = sorted(set(self.files).symmetric_difference(alphas))[:3]
            raise ValueError(
                f"ImageMatte {imagematte_dir}: fgr/ and pha/ hold different files (e.g. {only}); every foreground "
                "needs an alpha of the same name."
            )

    def __len__(self) -> int:
        return max(len(self.files), self.backgrounds.count)

    def __getitem__(self, key: Union[int, SampleKey]) -> Tuple[Tensor, Tensor, Tensor]:
        index, rng = unpack_key(key)
        bgrs = self.backgrounds.draw(rng, self.seq_length, self.seq_sampler)
        name = self.files[index % len(self.files)]
        fgr = read_image(os.path.join(self.root, "fgr", name), "RGB", self.size)
        pha = read_image(os.path.join(self.root, "pha", name), "L", self.size)
        return self.transform([fgr] * self.seq_length, [pha] * self.seq_length, bgrs, rng)
