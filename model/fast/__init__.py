"""The fast inference path (documentation/architecture.md, "The fast path"):

- ``network``: :func:`optimize_for_inference` → :class:`FastMattingNetwork`, a BatchNorm-folded copy of a network
  whose pipeline stages run compiled or fused;
- ``folding``: BatchNorm folding;
- ``compose``: the fused full-resolution step and the 8-bit input and outputs of video conversion;
- ``kernel``: builds, caches and binds ``kernel.c``, the C source of those steps on the CPU.
"""
from .folding import fold_batchnorm
from .network import FastMattingNetwork, optimize_for_inference

__all__ = ["FastMattingNetwork", "fold_batchnorm", "optimize_for_inference"]
