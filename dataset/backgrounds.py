"""Background sources for compositing: still images (``<root>/<name>.jpg``) and video clips (``<root>/<clip>/<frame>.jpg``)."""
import os
import random
from typing import Callable, List

from PIL import Image

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
