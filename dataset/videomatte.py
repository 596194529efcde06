"""VideoMatte240K-style clips (``<root>/fgr/<clip>/<frame>.jpg`` + ``<root>/pha/<clip>/<frame>.jpg``) over backgrounds."""
import os
from typing import List, Tuple, Union

from torch import Tensor

from .backgrounds import CompositedMattingDataset
from .files import list_folder, paired_names, read_image
from .sampler import SampleKey, unpack_key


class VideoMatteDataset(CompositedMattingDataset):
    """Sequences of ``seq_length`` frames from each clip, composited later over a random background.

    Each item starts every ``seq_length`` frames of a clip; ``seq_sampler`` picks the frame offsets (wrapping
    around the clip). Arguments and outputs as in ``CompositedMattingDataset``.
    """

    def scan(self) -> None:
        self.clips = list_folder(os.path.join(self.root, "fgr"), "VideoMatte foreground")
        self.frames = [
            paired_names(os.path.join(self.root, "fgr", c), os.path.join(self.root, "pha", c), "VideoMatte")
            for c in self.clips
        ]
        self.index: List[Tuple[int, int]] = [
            (clip, start) for clip in range(len(self.clips)) for start in range(0, len(self.frames[clip]), self.seq_length)
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
