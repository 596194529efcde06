"""Test helpers for the export tests: clips made from the real portraits in ``../shared/data/portraits`` (read in
place, never copied) and the code examples of ``documentation/inference.md``."""
import re
from pathlib import Path
from typing import Callable, List

import numpy as np
import torch
from PIL import Image

FRAMES = 3
SHIFT = 6  # pixels the crop moves per frame, so that the recurrent states see motion


def portrait_clip(path: Path, long_side: int) -> torch.Tensor:
    """A 3-frame clip ``[T, 1, 3, H, W]`` from one portrait: shrunk to ``long_side``, a crop moving right each frame."""
    image = Image.open(path).convert("RGB")
    scale = long_side / max(image.size)
    width, height = round(image.width * scale), round(image.height * scale)
    array = np.asarray(image.resize((width + SHIFT * FRAMES, height), Image.BILINEAR), dtype=np.float32) / 255
    frames = [array[:, t * SHIFT : t * SHIFT + width] for t in range(FRAMES)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).unsqueeze(1).contiguous()  # [T, 1, 3, H, W]


def portraits(data_dir: Path) -> List[Path]:
    """The eight portrait images, sorted by name."""
    return sorted((data_dir / "portraits" / "image").glob("*.jpg"))


DOCUMENT = Path(__file__).resolve().parents[1] / "documentation" / "inference.md"


def documented_function(name: str) -> Callable:
    """Execute the ```python block of documentation/inference.md that defines ``name`` and return that function."""
    blocks = re.findall(r"```python\n(.*?)```", DOCUMENT.read_text(), flags=re.S)
    source = next(block for block in blocks if f"def {name}(" in block)
    namespace: dict = {}
    exec(compile(source, str(DOCUMENT), "exec"), namespace)
    return namespace[name]
