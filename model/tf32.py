"""Full float32 on CUDA for comparisons: TF32 off while two implementations are checked against a float32 bound.

PyTorch runs cuDNN convolutions in TF32 by default on Ampere and later GPUs (10-bit mantissa inputs, relative error
about 1e-3 per convolution), so two correct float32 implementations differ there by far more than the 1e-4 this
project asserts between them. Every such check (the speed test's ``--compare``, the export verification, the CUDA
tests) runs inside :func:`no_tf32`. It changes nothing on the CPU.
"""
import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """cuDNN convolutions and CUDA matrix products in IEEE float32 inside the block; the previous settings after.

    Uses the per-backend ``fp32_precision`` settings (torch ≥ 2.9); the legacy ``allow_tf32`` flags are neither read
    nor written, since mixing the two APIs raises."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    previous = (conv.fp32_precision, matmul.fp32_precision)
    conv.fp32_precision, matmul.fp32_precision = "ieee", "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = previous


def tf32_enabled() -> bool:
    """Whether cuDNN convolutions currently run float32 inputs in TF32 (PyTorch's default)."""
    return torch.backends.cudnn.conv.fp32_precision == "tf32"
