"""VideoMatte240K-style clips (``<root>/fgr/<clip>/<frame>.jpg`` + ``<root>/pha/<clip>/<frame>.jpg``) over backgrounds."""
import os
from typing import Callable, List, Tuple, Union

from torch import Tensor
from torch.utils.data import Dataset

from .backgrounds import Backgrounds
from .files import list_folder, read_image
from .sampler import SampleKey, unpack_key


def paired_frames(root: str, clip: str, what: str) -> List[str]:
    """Frame names of ``clip`` present in both ``fgr/`` and ``pha/``; a mismatch is an error naming the clip."""
    fgr = list_folder(os.path.join(root, "fgr", clip), f"{what} foreground", images_only=True)
    pha = list_folder(os.path.join(root, "pha", clip), f"{what} alpha", images_only=True)
    if fgr != pha:
        only = sorted(set(fgr).symmetric_difference(pha))[:3]
        raise ValueError(
            f"{what} {os.path.join(root, '*', clip)}: fgr/ and pha/ hold different frames (e.g. {only}); "
            "every foreground needs an alpha of the same name."
        )
    return fgr


class VideoMatteDataset(Dataset):
    """Sequences of ``seq_length`` frames from each clip, composited later over a random background.

    Items are addressed by ``(index, seed)`` keys (see ``dataset.sampler``). Each item starts every
    ``seq_length`` frames of a clip; ``seq_sampler`` picks the frame offsets (wrapping around the clip).
    Returns ``transform(fgrs, phas, bgrs, rng)``: fgr ``[T, 3, S, S]``, pha ``[T, 1, S, S]``, bgr ``[T, 3, S, S]``.
    """

    def __init__(
        self,
        videomatte_dir: str,
        background_image_dir: str,
        background_video_dir: str,
        size: int,
        seq_length: int,
        seq_sampler: Callable,
        transform: Callable,
    ) -> None:
        self.root = videomatte_dir
        self.size = size
        self.seq_length = seq_length
        self.seq_sampler = seq_sampler
        self.transform = transform
        self.backgrounds = Backgrounds(background_image_dir, background_video_dir, shortest_side=size)
        self.clips = list_folder(os.path.join(videomatte_dir, "fgr"), "VideoMatte foreground")
        self.frames = [paired_frames(videomatte_dir, clip, "VideoMatte") for clip in self.clips]
        self.index: List[Tuple[int, int]] = [
            (clip, start) for clip in range(len(self.clips)) for start in range(0, len(self.frames[clip]), seq_length)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Union[int, SampleKey]) -> Tuple[Tensor, Tensor, Tensor]:
        index, rng = unpack_key(key)
        bgrs = self.backgrounds.draw(rng, self.seq_length, self.seq_sampler)
        clip, start = self.index[index]
        frames = self.frames[clip]
        fgrs, phas = [], []
        for offset in self.seq_sampler(self.seq_length, rng):
            name = frames[(start + offset) % len(frames)]
            fgrs.append(read_image(os.path.join(self.root, "fgr", self.clips[clip], name), "RGB", self.size))
            phas.append(read_image(os.path.join(self.root, "pha", self.clips[clip], name), "L", self.size))
        return self.transform(fgrs, phas, bgrs, rng)
