"""Write a tiny synthetic training set in all seven published folder formats, to try every stage on a CPU.

    python -m dataset.synthetic OUT_DIR [--size 160 120] [--frames 12] [--seed 0]

then ``python train.py --data-root OUT_DIR ...``. Foregrounds are textured blobs with soft alpha edges that move
over the clip; backgrounds are textured; COCO gets panoptic PNGs and json (one person, one backpack, one car);
YouTubeVIS gets a json with person masks as COCO RLE (one video uncompressed, one compressed).
"""
import argparse
import json
import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from train_config import DATA_PATHS

PERSON, BACKPACK, CAR = 1, 27, 3  # COCO category ids
YTVIS_PERSON, YTVIS_DOG = 26, 8  # YouTubeVIS 2021 category ids


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A colourful ``[H, W, 3]`` uint8 pattern: random stripes per channel plus fine noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.02, 0.3), rng.uniform(0.02, 0.3), rng.uniform(0, 2 * np.pi)
        channels.append(0.5 + 0.35 * np.sin(fx * x + fy * y + phase))
    image = np.stack(channels, axis=-1) + rng.normal(0, 0.05, (height, width, 3))  # [H, W, 3]
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def soft_blob(height: int, width: int, center: Tuple[float, float], radii: Tuple[float, float]) -> np.ndarray:
    """A ``[H, W]`` float alpha: a head-and-body silhouette with a soft edge a few pixels wide."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = center
    rx, ry = radii
    body = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy - 0.3 * ry) / ry) ** 2)
    head = np.sqrt(((x - cx) / (0.45 * rx)) ** 2 + ((y - cy + 0.9 * ry) / (0.45 * ry)) ** 2)
    distance = np.minimum(body, head)
    return np.clip((1.0 - distance) * min(rx, ry) / 3.0 + 0.5, 0.0, 1.0)


def moving_alpha(rng: np.random.Generator, frames: int, height: int, width: int) -> List[np.ndarray]:
    """Alpha frames ``[H, W]`` (uint8) of one blob sliding along a random line."""
    radii = (rng.uniform(0.15, 0.25) * width, rng.uniform(0.2, 0.3) * height)
    start = np.array([rng.uniform(0.3, 0.7) * width, rng.uniform(0.45, 0.6) * height])
    velocity = rng.uniform(-0.02, 0.02, 2) * np.array([width, height])
    return [(soft_blob(height, width, tuple(start + t * velocity), radii) * 255).astype(np.uint8) for t in range(frames)]


def save(image: np.ndarray, path: str) -> None:
    """Write a uint8 array (``[H, W]`` or ``[H, W, 3]``) to ``path``, creating folders."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path, quality=95)  # quality applies to JPEG only


def encode_rle(mask: np.ndarray) -> List[int]:
    """Uncompressed COCO RLE counts of a bool ``[H, W]`` mask (column-major runs, background first)."""
    flat = mask.T.reshape(-1).astype(np.int8)  # [H·W], column by column
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return ([0] + counts) if flat[0] else counts


def compress_counts(counts: List[int]) -> str:
    """COCO's compressed string form of RLE counts (deltas from two back, 5-bit groups offset by 48)."""
    characters = []
    for i, value in enumerate(counts):
        if i > 2:
            value -= counts[i - 2]
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            characters.append(chr(chunk + (0x20 if more else 0) + 48))
    return "".join(characters)


class SyntheticWriter:
    """Writes each dataset of ``train_config.DATA_PATHS`` under ``root`` with frames of ``width``×``height``."""

    def __init__(self, root: str, width: int = 160, height: int = 120, frames: int = 12, seed: int = 0) -> None:
        self.root = root
        self.width = width
        self.height = height
        self.frames = frames
        self.rng = np.random.default_rng(seed)

    def path(self, key: str, field: str, *parts: str) -> str:
        return os.path.join(self.root, DATA_PATHS[key][field], *parts)

    def write_all(self) -> None:
        steps = [
            self.videomatte, self.imagematte, self.background_images, self.background_videos, self.coco, self.spd,
            self.youtubevis,
        ]
        for step in tqdm(steps, desc="synthetic datasets"):
            step()

    def videomatte(self) -> None:
        for split, clips in (("train", 2), ("valid", 1)):
            for c in range(clips):
                fgr = texture(self.rng, self.height, self.width)
                for t, alpha in enumerate(moving_alpha(self.rng, self.frames, self.height, self.width)):
                    save(np.roll(fgr, t, axis=1), self.path("videomatte", split, "fgr", f"clip{c:03d}", f"{t:05d}.jpg"))
                    save(alpha, self.path("videomatte", split, "pha", f"clip{c:03d}", f"{t:05d}.jpg"))

    def imagematte(self) -> None:
        for split, count in (("train", 3), ("valid", 1)):
            for i in range(count):
                save(texture(self.rng, self.height, self.width), self.path("imagematte", split, "fgr", f"matte{i:03d}.jpg"))
                save(moving_alpha(self.rng, 1, self.height, self.width)[0], self.path("imagematte", split, "pha", f"matte{i:03d}.jpg"))

    def background_images(self) -> None:
        for split, count in (("train", 3), ("valid", 1)):
            for i in range(count):
                save(texture(self.rng, self.height, self.width), self.path("background_images", split, f"bg{i:03d}.jpg"))

    def background_videos(self) -> None:
        for split, clips in (("train", 2), ("valid", 1)):
            for c in range(clips):
                base = texture(self.rng, self.height, self.width)
                for t in range(self.frames):
                    save(np.roll(base, 2 * t, axis=0), self.path("background_videos", split, f"clip{c:03d}", f"{t:05d}.jpg"))

    def coco(self) -> None:
        images, annotations = [], []
        for i in range(3):
            name = f"{i:012d}"
            save(texture(self.rng, self.height, self.width), self.path("coco_panoptic", "imgdir", name + ".jpg"))
            person = moving_alpha(self.rng, 1, self.height, self.width)[0] > 127
            ids = np.zeros((self.height, self.width), dtype=np.int64)
            ids[person] = 1000 + i  # segment ids wider than one byte exercise the R + 256·G + 256²·B decoding
            ids[: self.height // 6, : self.width // 4] = 70000 + i  # a car: not foreground
            segments = [
                {"id": 1000 + i, "category_id": PERSON, "iscrowd": 0},
                {"id": 70000 + i, "category_id": CAR, "iscrowd": 0},
            ]
            if i == 0:
                ids[-self.height // 6 :, -self.width // 4 :] = 5  # a backpack: foreground
                segments.append({"id": 5, "category_id": BACKPACK, "iscrowd": 0})
            rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)  # [H, W, 3]
            save(rgb, self.path("coco_panoptic", "anndir", name + ".png"))
            images.append({"id": i, "file_name": name + ".jpg", "width": self.width, "height": self.height})
            annotations.append({"image_id": i, "file_name": name + ".png", "segments_info": segments})
        categories = [
            {"id": PERSON, "name": "person", "isthing": 1, "supercategory": "person"},
            {"id": CAR, "name": "car", "isthing": 1, "supercategory": "vehicle"},
            {"id": BACKPACK, "name": "backpack", "isthing": 1, "supercategory": "accessory"},
        ]
        self._json({"images": images, "annotations": annotations, "categories": categories}, self.path("coco_panoptic", "annfile"))

    def spd(self) -> None:
        for i in range(3):
            save(texture(self.rng, self.height, self.width), self.path("spd", "imgdir", f"person{i:03d}.jpg"))
            mask = (moving_alpha(self.rng, 1, self.height, self.width)[0] > 127).astype(np.uint8) * 255
            save(mask, self.path("spd", "segdir", f"person{i:03d}.png"))

    def youtubevis(self) -> None:
        videos, annotations = [], []
        for v in range(2):
            folder = f"vid{v:04d}"
            names = [f"{folder}/{t:05d}.jpg" for t in range(self.frames)]
            base = texture(self.rng, self.height, self.width)
            alphas = moving_alpha(self.rng, self.frames, self.height, self.width)
            segmentations: List[Dict] = []
            for t, (name, alpha) in enumerate(zip(names, alphas)):
                save(np.roll(base, t, axis=1), os.path.join(self.root, DATA_PATHS["youtubevis"]["videodir"], name))
                counts = encode_rle(alpha > 127)
                # The second video stores masks compressed; frame 1 has no mask (the person is occluded).
                rle_counts = compress_counts(counts) if v == 1 else counts
                segmentations.append(None if t == 1 else {"size": [self.height, self.width], "counts": rle_counts})
            videos.append({"id": v + 1, "width": self.width, "height": self.height, "length": self.frames, "file_names": names})
            annotations.append({"id": v + 1, "video_id": v + 1, "category_id": YTVIS_PERSON, "segmentations": segmentations, "iscrowd": 0})
        dog = encode_rle(np.zeros((self.height, self.width), bool))
        annotations.append({"id": 9, "video_id": 1, "category_id": YTVIS_DOG, "iscrowd": 0,
                            "segmentations": [{"size": [self.height, self.width], "counts": dog}] * self.frames})
        categories = [{"id": YTVIS_PERSON, "name": "person"}, {"id": YTVIS_DOG, "name": "dog"}]
        self._json({"videos": videos, "annotations": annotations, "categories": categories}, self.path("youtubevis", "annfile"))

    @staticmethod
    def _json(data: dict, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as file:
            json.dump(data, file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="folder to write into (used as train.py --data-root)")
    parser.add_argument("--size", type=int, nargs=2, default=(160, 120), metavar=("W", "H"))
    parser.add_argument("--frames", type=int, default=12, help="frames per clip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    SyntheticWriter(args.out_dir, args.size[0], args.size[1], args.frames, args.seed).write_all()
    print(f"Synthetic training data written to {args.out_dir}; train with: python train.py --data-root {args.out_dir} ...")


if __name__ == "__main__":
    main()
