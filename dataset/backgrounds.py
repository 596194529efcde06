"""Background sources for compositing: still images (``<root>/<name>.jpg``) and video clips (``<root>/<clip>/<frame>.jpg``),
and the base of the matting datasets that composite over them."""
import os
import random
from typing import Callable, List

from PIL import Image
from torch.utils.data import Dataset

from .files import list_folder, read_image


class Backgrounds:
    """Draws a background sequence: half of the time one still image repeated, else frames of a video clip."""

    def __init__(self, image_dir: str, video_dir: str, shortest_side: int = 0) -> None:
        self.image_dir = image_dir
        self.video_dir = video_dir
        self.shortest_side = shortest_side
        self.images = list_folder(image_dir, "background image", images_only=True)
        self.clips = list_folder(video_dir, "background video")
        self.clip_frames = [
            list_folder(os.path.join(video_dir, clip), "background video clip", images_only=True) for clip in self.clips
        ]

    @property
    def count(self) -> int:
        """Number of distinct backgrounds (images plus clips)."""
        return len(self.images) + len(self.clips)

    def draw(self, rng: random.Random, seq_length: int, frame_sampler: Callable) -> List[Image.Image]:
        """``seq_length`` RGB frames of one randomly chosen background."""
        if rng.random() < 0.5:
            name = rng.choice(self.images)
            return [read_image(os.path.join(self.image_dir, name), "RGB", self.shortest_side)] * seq_length
        clip_index = rng.randrange(len(self.clips))
        frames = self.clip_frames[clip_index]
        start = rng.randrange(max(1, len(frames) - seq_length))
        folder = os.path.join(self.video_dir, self.clips[clip_index])
        return [
            read_image(os.path.join(folder, frames[(start + offset) % len(frames)]), "RGB", self.shortest_side)
            for offset in frame_sampler(seq_length, rng)
        ]


class CompositedMattingDataset(Dataset):
    """What VideoMatte and ImageMatte share: a matting root, backgrounds, output size, sequence length and sampling.

    Args: the matting folder, the background image and video folders, the output size ``S``, the sequence
    length ``T``, the frame sampler and the transform. Items are addressed by ``(index, seed)`` keys (see ``dataset.sampler``); ``transform(fgrs, phas, bgrs, rng)``
    turns the loaded frames into fgr ``[T, 3, S, S]``, pha ``[T, 1, S, S]`` and bgr ``[T, 3, S, S]``.
    """

    def __init__(
        self,
        matting_dir: str,
        background_image_dir: str,
        background_video_dir: str,
        size: int,
        seq_length: int,
        seq_sampler: Callable,
        transform: Callable,
    ) -> None:
        self.root = matting_dir
        self.size = size
        self.seq_length = seq_length
        self.seq_sampler = seq_sampler
        self.transform = transform
        self.backgrounds = Backgrounds(background_image_dir, background_video_dir, shortest_side=size)
        self.scan()

    def scan(self) -> None:
        """List the foreground and alpha files under ``self.root`` (each dataset knows its layout)."""
        raise NotImplementedError
