"""Synthetic, real-looking input for self-checks and tests: frames that look like a person in front of a wall."""
import numpy as np
import torch
from torch import Tensor


def person_like_frames(count: int, height: int, width: int, *, shift: int = 4) -> Tensor:
    """uint8 RGB ``[count, H, W, 3]``: a smooth head-and-shoulders figure (hair, face, neck, shirt) with soft
    edges and shading in front of a graded wall, moving ``shift`` pixels right per frame.

    The self-checks feed this instead of noise: noise drives the guided filter and the recurrent states far
    outside what video makes them do, where float32 rounding is amplified, and it says nothing about the edges
    a matte is for. Deterministic, no files needed.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    unit = min(height, width)

    def ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        """Coverage in [0, 1] of an ellipse, with an edge about 1.5 pixels wide."""
        distance = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)  # 1 on the outline
        return np.clip((1.0 - distance) * min(rx, ry) / 1.5 + 0.5, 0.0, 1.0)

    wall = np.stack([0.62 + 0.18 * y / height, 0.66 + 0.08 * x / width, 0.72 - 0.22 * y / height], axis=-1)
    frames = []
    for t in range(count):
        cx = 0.5 * width + shift * t
        image = wall.copy()  # [H, W, 3]
        layers = (  # (coverage, colour, shading strength), back to front
            (ellipse(cx, 1.05 * height, 0.42 * width, 0.40 * height), (0.18, 0.30, 0.55), 0.10),  # shirt
            (ellipse(cx, 0.62 * height, 0.07 * unit, 0.12 * unit), (0.80, 0.60, 0.50), 0.05),  # neck
            (ellipse(cx, 0.36 * height, 0.17 * unit, 0.22 * unit), (0.22, 0.14, 0.10), 0.05),  # hair
            (ellipse(cx, 0.42 * height, 0.15 * unit, 0.19 * unit), (0.86, 0.66, 0.56), 0.12),  # face
        )
        for coverage, colour, shading in layers:
            light = 1.0 - shading * ((x - cx) / width + y / height - 0.4)  # lit from the upper left
            shaded = np.asarray(colour) * light[..., None]  # [H, W, 3]
            image = image + (shaded - image) * coverage[..., None]
        frames.append(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8))
    return torch.from_numpy(np.stack(frames))
