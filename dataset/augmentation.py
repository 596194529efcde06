"""Augmentation for matting clips and segmentation images, driven by one ``random.Random`` per item.

The recipe and its probabilities: documentation/training.md, "Augmentation".

Matting clips get motion augmentation: affine motion whose parameters ease from a start to an end value over
the clip (easing curves from ``easing-functions``), for the foreground, the background, or both together (a
camera move); then a static affine, a random crop, flips, noise, colour jitter that drifts over time,
grayscale, sharpness, blur and pauses. Foreground and alpha travel as one 4-channel tensor through every
geometric step, so they cannot drift apart.

Outputs are float tensors in [0, 1]: fgr ``[T, 3, S, S]``, pha ``[T, 1, S, S]``, bgr ``[T, 3, S, S]``.
"""
import math
import random
from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import easing_functions
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode

BILINEAR = InterpolationMode.BILINEAR

EASINGS = [
    easing_functions.LinearInOut,
    easing_functions.QuadEaseInOut,
    easing_functions.CubicEaseInOut,
    easing_functions.SineEaseInOut,
    easing_functions.CircularEaseInOut,
    easing_functions.ExponentialEaseInOut,
    easing_functions.BackEaseInOut,
    easing_functions.ElasticEaseOut,
    easing_functions.BounceEaseOut,
]


def images_to_tensor(images: Sequence[Image.Image]) -> Tensor:
    """PIL images of one size → float ``[N, C, H, W]`` in [0, 1]."""
    arrays = np.stack([np.asarray(image) for image in images])  # [N, H, W] or [N, H, W, C]
    if arrays.ndim == 3:
        arrays = arrays[..., None]  # [N, H, W, 1]
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div(255)  # [N, C, H, W]


def eased_values(rng: random.Random, start: float, end: float, count: int) -> List[float]:
    """``count`` values going from ``start`` to ``end`` along a randomly chosen easing curve."""
    curve = rng.choice(EASINGS)(start=0.0, end=1.0, duration=1.0)
    steps = [i / (count - 1) if count > 1 else 0.0 for i in range(count)]
    return [start + (end - start) * curve.ease(t) for t in steps]


@dataclass
class AffineRange:
    """Ranges of an affine transform: rotation (degrees), translation (fraction of size), scale, shear (degrees)."""

    degrees: float = 10.0
    translate: float = 0.1
    scale: Tuple[float, float] = (0.4, 1.0)
    shear: float = 5.0

    def draw(self, rng: random.Random) -> List[float]:
        """One parameter vector ``[angle, tx, ty, scale, shear_x, shear_y]``."""
        return [
            rng.uniform(-self.degrees, self.degrees),
            rng.uniform(-self.translate, self.translate),
            rng.uniform(-self.translate, self.translate),
            rng.uniform(*self.scale),
            rng.uniform(-self.shear, self.shear),
            rng.uniform(-self.shear, self.shear),
        ]


def apply_affine(x: Tensor, params: Sequence[float]) -> Tensor:
    """Affine-warp ``x`` ``[N, C, H, W]`` by ``[angle, tx, ty, scale, shear_x, shear_y]`` (translation as fractions)."""
    height, width = x.shape[-2:]
    angle, tx, ty, scale, shear_x, shear_y = params
    return TF.affine(
        x,
        angle=angle,
        translate=[tx * width, ty * height],
        scale=scale,
        shear=[shear_x, shear_y],
        interpolation=BILINEAR,
    )


def motion_affine(rng: random.Random, clips: Sequence[Tensor], ranges: AffineRange) -> List[Tensor]:
    """Warp each ``[T, C, H, W]`` clip with the same eased motion from one random affine to another."""
    count = clips[0].size(0)
    start, end = ranges.draw(rng), ranges.draw(rng)
    per_parameter = [eased_values(rng, a, b, count) for a, b in zip(start, end)]  # [6][T]
    per_frame = list(zip(*per_parameter))  # [T][6]
    return [torch.cat([apply_affine(clip[t : t + 1], per_frame[t]) for t in range(count)]) for clip in clips]


def random_resized_crop(
    rng: random.Random, x: Tensor, size: int, area: Tuple[float, float] = (1.0, 1.0), ratio: Tuple[float, float] = (1.0, 1.0)
) -> Tensor:
    """Crop a window of random area fraction and aspect (w/h) at a random place, resized to ``size``×``size``."""
    height, width = x.shape[-2:]
    target_area = rng.uniform(*area) * height * width
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    crop_w = int(round(math.sqrt(target_area * aspect)))
    crop_h = int(round(math.sqrt(target_area / aspect)))
    if crop_w > width:  # keep the aspect, shrink to fit
        crop_w, crop_h = width, max(1, int(round(width / aspect)))
    if crop_h > height:
        crop_h, crop_w = height, max(1, int(round(height * aspect)))
    top = rng.randint(0, height - crop_h)
    left = rng.randint(0, width - crop_w)
    return TF.resized_crop(x, top, left, crop_h, crop_w, [size, size], interpolation=BILINEAR, antialias=True)


@dataclass
class ColorJitterRange:
    """Maximum deviations of brightness, contrast, saturation (factors around 1) and hue (shift)."""

    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.1

    def draw(self, rng: random.Random) -> List[float]:
        """One ``[brightness, contrast, saturation, hue]``."""
        return [
            rng.uniform(1 - self.brightness, 1 + self.brightness),
            rng.uniform(1 - self.contrast, 1 + self.contrast),
            rng.uniform(1 - self.saturation, 1 + self.saturation),
            rng.uniform(-self.hue, self.hue),
        ]


def apply_color(x: Tensor, factors: Sequence[float]) -> Tensor:
    """Brightness, contrast, saturation, hue on RGB ``[N, 3, H, W]``."""
    brightness, contrast, saturation, hue = factors
    x = TF.adjust_brightness(x, brightness)
    x = TF.adjust_contrast(x, contrast)
    x = TF.adjust_saturation(x, saturation)
    return TF.adjust_hue(x, hue)


def motion_color(rng: random.Random, clip: Tensor, ranges: ColorJitterRange) -> Tensor:
    """Colour jitter drifting along an eased curve over the clip ``[T, 3, H, W]``."""
    count = clip.size(0)
    start, end = ranges.draw(rng), ranges.draw(rng)
    per_frame = list(zip(*[eased_values(rng, a, b, count) for a, b in zip(start, end)]))  # [T][4]
    return torch.cat([apply_color(clip[t : t + 1], per_frame[t]) for t in range(count)]).clamp(0, 1)


def motion_blur(rng: random.Random, clips: Sequence[Tensor], max_sigma: float = 2.0) -> List[Tensor]:
    """Gaussian blur whose sigma eases over the clip, the same for every ``[T, C, H, W]`` clip given."""
    count = clips[0].size(0)
    sigmas = eased_values(rng, rng.uniform(0, max_sigma), rng.uniform(0, max_sigma), count)
    out = []
    for clip in clips:
        frames = []
        for t in range(count):
            sigma = max(sigmas[t], 1e-3)
            kernel = 2 * math.ceil(3 * sigma) + 1
            frames.append(TF.gaussian_blur(clip[t : t + 1], [kernel, kernel], [sigma, sigma]))
        out.append(torch.cat(frames))
    return out


def sensor_noise(rng: random.Random, size: Tuple[int, int, int], max_strength: float = 0.1) -> Tensor:
    """Grainy noise ``[T, 3, H, W]``: Gaussian at 1/grain resolution, upsampled, monochrome half of the time."""
    count, height, width = size
    grain = rng.uniform(1.0, 3.0)
    generator = torch.Generator().manual_seed(rng.getrandbits(62))
    channels = 1 if rng.random() < 0.5 else 3
    small = (max(1, int(height / grain)), max(1, int(width / grain)))
    noise = torch.randn((count, channels) + small, generator=generator)  # [T, 1|3, h, w]
    noise = torch.nn.functional.interpolate(noise, (height, width), mode="bilinear", align_corners=False)
    return noise.expand(count, 3, height, width) * rng.uniform(0, max_strength)


def pause(rng: random.Random, clips: Sequence[Tensor]) -> List[Tensor]:
    """Freeze a random stretch of frames on its first frame, in every clip alike (the subject stops moving)."""
    count = clips[0].size(0)
    if count < 2:
        return list(clips)
    first = rng.randrange(count - 1)
    length = rng.randrange(count - first)
    out = []
    for clip in clips:
        clip = clip.clone()
        clip[first + 1 : first + length] = clip[first]
        out.append(clip)
    return out


@dataclass
class MotionProbabilities:
    """How often each matting augmentation fires (published values per dataset: see the presets below)."""

    fgr_affine: float = 0.0
    bgr_affine: float = 0.0
    noise: float = 0.0
    color_jitter: float = 0.0
    grayscale: float = 0.0
    sharpness: float = 0.0
    blur: float = 0.0
    hflip: float = 0.0
    pause: float = 0.0


class MotionAugmentation:
    """Augment one matting sample: foreground frames, alpha frames, background frames (PIL) → tensors.

    Args:
        size: output side length (square; train.py crops randomly afterwards).
        probabilities: per-augmentation probabilities.
        static_affine: also apply one fixed random affine (foreground scale 0.5–1, background 1–1.5).
        aspect_ratio: range of the crop window's aspect before resizing to ``size``.
    """

    def __init__(
        self,
        size: int,
        probabilities: MotionProbabilities = MotionProbabilities(),
        static_affine: bool = True,
        aspect_ratio: Tuple[float, float] = (0.9, 1.1),
    ) -> None:
        self.size = size
        self.p = probabilities
        self.static_affine = static_affine
        self.aspect_ratio = aspect_ratio
        self.motion_range = AffineRange()
        self.fgr_static = AffineRange(degrees=10, translate=0.1, scale=(0.5, 1.0), shear=5)
        self.bgr_static = AffineRange(degrees=10, translate=0.1, scale=(1.0, 1.5), shear=5)
        self.jitter = ColorJitterRange()

    def __call__(
        self, fgrs: List[Image.Image], phas: List[Image.Image], bgrs: List[Image.Image], rng: random.Random
    ) -> Tuple[Tensor, Tensor, Tensor]:
        p = self.p
        fg = torch.cat([images_to_tensor(fgrs), images_to_tensor(phas)], dim=1)  # [T, 4, H, W]: rgb + alpha
        bg = images_to_tensor(bgrs)  # [T, 3, h, w]
        if rng.random() < p.fgr_affine:
            (fg,) = motion_affine(rng, [fg], self.motion_range)
        if rng.random() < p.bgr_affine / 2:
            (bg,) = motion_affine(rng, [bg], self.motion_range)
        if rng.random() < p.bgr_affine / 2:  # a camera move: both layers share the motion
            fg, bg = motion_affine(rng, [fg, bg], self.motion_range)
        if self.static_affine:
            fg = apply_affine(fg, self.fgr_static.draw(rng))
            bg = apply_affine(bg, self.bgr_static.draw(rng))
        fg = random_resized_crop(rng, fg, self.size, ratio=self.aspect_ratio)  # [T, 4, S, S]
        bg = random_resized_crop(rng, bg, self.size, ratio=self.aspect_ratio)  # [T, 3, S, S]
        if rng.random() < p.hflip:
            fg = TF.horizontal_flip(fg)
        if rng.random() < p.hflip:
            bg = TF.horizontal_flip(bg)
        fgr, pha = fg.split([3, 1], dim=1)  # [T, 3, S, S], [T, 1, S, S]
        if rng.random() < p.noise:
            noise = sensor_noise(rng, (fgr.size(0), self.size, self.size))
            fgr, bg = (fgr + noise).clamp(0, 1), (bg + noise).clamp(0, 1)
        if rng.random() < p.color_jitter:
            fgr = motion_color(rng, fgr, self.jitter)
        if rng.random() < p.color_jitter:
            bg = motion_color(rng, bg, self.jitter)
        if rng.random() < p.grayscale:
            fgr = TF.rgb_to_grayscale(fgr, num_output_channels=3)
            bg = TF.rgb_to_grayscale(bg, num_output_channels=3)
        if rng.random() < p.sharpness:
            factor = rng.uniform(0, 8)
            fgr, pha, bg = (TF.adjust_sharpness(x, factor) for x in (fgr, pha, bg))
        if rng.random() < p.blur / 3:
            fgr, pha = motion_blur(rng, [fgr, pha])
        if rng.random() < p.blur / 3:
            (bg,) = motion_blur(rng, [bg])
        if rng.random() < p.blur / 3:
            fgr, pha, bg = motion_blur(rng, [fgr, pha, bg])
        if rng.random() < p.pause:
            fgr, pha, bg = pause(rng, [fgr, pha, bg])
        return fgr.clamp(0, 1), pha.clamp(0, 1), bg.clamp(0, 1)


# Published probabilities. VideoMatte clips already move, so affine motion is rarer than for still ImageMatte.
VIDEOMATTE_TRAIN = MotionProbabilities(
    fgr_affine=0.3, bgr_affine=0.3, noise=0.1, color_jitter=0.3, grayscale=0.02, sharpness=0.1, blur=0.02, hflip=0.5,
    pause=0.03,
)
IMAGEMATTE_TRAIN = MotionProbabilities(
    fgr_affine=0.95, bgr_affine=0.3, noise=0.05, color_jitter=0.3, grayscale=0.03, sharpness=0.05, blur=0.02,
    hflip=0.5, pause=0.03,
)


def matting_train_augmentation(dataset: str, size: int) -> MotionAugmentation:
    """The training augmentation of ``dataset`` ('videomatte' or 'imagematte') at ``size`` pixels."""
    presets = {"videomatte": VIDEOMATTE_TRAIN, "imagematte": IMAGEMATTE_TRAIN}
    if dataset not in presets:
        raise ValueError(f"Unknown matting dataset {dataset!r}; choose one of {', '.join(presets)}.")
    return MotionAugmentation(size, presets[dataset])


def matting_valid_augmentation(size: int) -> MotionAugmentation:
    """Validation: no random change besides where the square crop sits (fixed per item by its seed)."""
    return MotionAugmentation(size, MotionProbabilities(), static_affine=False, aspect_ratio=(1.0, 1.0))


class SegmentationAugmentation:
    """Augment an image (or a clip of frames) with its person mask: one affine, crop, flip, jitter, grayscale.

    Used for COCO and Supervisely stills (``affine=True``, crop area 0.3–1) and YouTubeVIS clips (no affine,
    crop area 0.8–1); the same parameters apply to every frame of a clip.
    Returns image ``[N, 3, S, S]`` and mask ``[N, 1, S, S]`` in [0, 1].
    """

    def __init__(
        self,
        size: int,
        affine: bool = True,
        crop_area: Tuple[float, float] = (0.3, 1.0),
        grayscale: float = 0.05,
        jitter: ColorJitterRange = ColorJitterRange(0.3, 0.3, 0.3, 0.15),
    ) -> None:
        self.size = size
        self.affine = AffineRange(degrees=20, translate=0.1, scale=(1.0, 1.0), shear=10) if affine else None
        self.crop_area = crop_area
        self.grayscale = grayscale
        self.jitter = jitter

    def __call__(self, images: List[Image.Image], masks: List[Image.Image], rng: random.Random) -> Tuple[Tensor, Tensor]:
        x = torch.cat([images_to_tensor(images), images_to_tensor(masks)], dim=1)  # [N, 4, H, W]
        if self.affine is not None:
            x = apply_affine(x, self.affine.draw(rng))
        x = random_resized_crop(rng, x, self.size, area=self.crop_area, ratio=(0.9, 1.1))  # [N, 4, S, S]
        if rng.random() < 0.5:
            x = TF.horizontal_flip(x)
        image, mask = x.split([3, 1], dim=1)
        image = apply_color(image, self.jitter.draw(rng)).clamp(0, 1)
        if rng.random() < self.grayscale:
            image = TF.rgb_to_grayscale(image, num_output_channels=3)
        return image, mask.clamp(0, 1)


def image_segmentation_augmentation(size: int) -> Callable:
    """COCO panoptic and Supervisely stills."""
    return SegmentationAugmentation(size, affine=True, crop_area=(0.3, 1.0))


def video_segmentation_augmentation(size: int) -> Callable:
    """YouTubeVIS clips."""
    return SegmentationAugmentation(size, affine=False, crop_area=(0.8, 1.0))
