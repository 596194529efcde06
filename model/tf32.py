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

    Sets the legacy ``allow_tf32`` flags, which parts of torch itself still read (inductor's convolution templates)
    and which then read back consistently through both APIs. Where the newer per-operator ``fp32_precision``
    settings were already used (reading the legacy cuDNN flag then raises), those are set instead."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    try:
        previous = (cudnn.allow_tf32, matmul.allow_tf32)
    except RuntimeError:  # per-operator settings in use: mixing in the legacy flags would raise
        with _ieee_per_operator():
            yield
        return
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = previous


@contextlib.contextmanager
def _ieee_per_operator() -> Iterator[None]:
    """:func:`no_tf32` through the per-operator ``fp32_precision`` settings (torch ≥ 2.9)."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    previous = (conv.fp32_precision, matmul.fp32_precision)
    conv.fp32_precision, matmul.fp32_precision = "ieee", "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = previous


def tf32_enabled() -> bool:
    """Whether cuDNN convolutions currently run float32 inputs in TF32 (PyTorch's default); read through the
    per-operator setting, which reflects either API."""
    return torch.backends.cudnn.conv.fp32_precision == "tf32"
