"""The refiners' full-resolution step in one pass over the pixels.

The faithful path (``guided_filter.apply_coefficients`` then ``MattingNetwork._matte``) upsamples A and b to full
size, builds the 4-channel guide, multiplies, adds, adds the source and clamps: about ten full-resolution passes,
which dominate the frame time at HD and above. :func:`upsample_compose` computes the same

    fgr = clamp(up(A)[:3]·src + up(b)[:3] + src, 0, 1)
    pha = clamp(up(A)[3]·mean(src) + up(b)[3], 0, 1)        (up = bilinear, align_corners=False)

with one read of ``src`` and one write of fgr and pha per pixel. On CPU (float32) it runs a small C kernel,
compiled once with the system C compiler and cached on disk; elsewhere (GPU, other dtypes, no compiler) it uses a
PyTorch version with few passes, which ``torch.compile`` fuses into a single kernel. ``A = None`` means A = 0
(plain bilinear upsampling of b, used when the refiner is disabled).
"""
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

_C_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>

/* Source index pairs and weights of a bilinear resize along one axis (align_corners = false, the output size
   given explicitly), following PyTorch's CPU rules: src = max(scale·(dst + 0.5) − 0.5, 0), scale = in / out. */
static void axis_weights(int64_t in, int64_t out, int64_t *i0, int64_t *i1, float *l0, float *l1) {
    const float scale = (float)in / (float)out;
    for (int64_t o = 0; o < out; ++o) {
        if (in == out) { i0[o] = o; i1[o] = o; l0[o] = 1.0f; l1[o] = 0.0f; continue; }
        float s = scale * ((float)o + 0.5f) - 0.5f;
        if (s < 0.0f) s = 0.0f;
        int64_t i = (int64_t)s;
        if (i > in - 1) i = in - 1;
        float lambda = s - (float)i;
        if (lambda > 1.0f) lambda = 1.0f;
        i0[o] = i;
        i1[o] = i + (i < in - 1 ? 1 : 0);
        l0[o] = 1.0f - lambda;
        l1[o] = lambda;
    }
}

static inline float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

/* coef [n, 8, h, w]: A (4 planes, or absent when has_a == 0, then only b's 4 planes), then b.
   src [n, 3, H, W]; fgr [n, 3, H, W]; pha [n, 1, H, W]; all float32, contiguous. */
int rvm_upsample_compose(const float *coef, int has_a, const float *src, float *fgr, float *pha,
                         int64_t n, int64_t h, int64_t w, int64_t H, int64_t W, int threads) {
    const int planes = has_a ? 8 : 4;
    int64_t *yi = (int64_t *)malloc(sizeof(int64_t) * 2 * H), *xi = (int64_t *)malloc(sizeof(int64_t) * 2 * W);
    float *yl = (float *)malloc(sizeof(float) * 2 * H), *xl = (float *)malloc(sizeof(float) * 2 * W);
    if (!yi || !xi || !yl || !xl) { free(yi); free(xi); free(yl); free(xl); return 1; }
    axis_weights(h, H, yi, yi + H, yl, yl + H);
    axis_weights(w, W, xi, xi + W, xl, xl + W);
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *row = (float *)malloc(sizeof(float) * planes * w);  /* coefficients of this output row, [planes, w] */
        if (!row) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < n * H; ++t) {
            if (!row) continue;
            const int64_t img = t / H, y = t % H;
            const float *c = coef + img * planes * h * w;
            const float *top = c + yi[y] * w, *bottom = c + yi[H + y] * w;
            const float wt = yl[y], wb = yl[H + y];
            for (int p = 0; p < planes; ++p)
                for (int64_t x = 0; x < w; ++x)
                    row[p * w + x] = wt * top[p * h * w + x] + wb * bottom[p * h * w + x];
            const float *b = row + (has_a ? 4 * w : 0);
            const float *s = src + img * 3 * H * W + y * W;
            float *f = fgr + img * 3 * H * W + y * W;
            float *q = pha + img * H * W + y * W;
            for (int64_t x = 0; x < W; ++x) {
                const int64_t x0 = xi[x], x1 = xi[W + x];
                const float u0 = xl[x], u1 = xl[W + x];
                const float r = s[x], g = s[H * W + x], bl = s[2 * H * W + x];
                const float rgb[3] = {r, g, bl};
                const float guide_luma = (r + g + bl) / 3.0f;
                for (int ch = 0; ch < 3; ++ch) {
                    const float bc = u0 * b[ch * w + x0] + u1 * b[ch * w + x1];
                    const float ac = has_a ? u0 * row[ch * w + x0] + u1 * row[ch * w + x1] : 0.0f;
                    f[ch * H * W + x] = clamp01(ac * rgb[ch] + bc + rgb[ch]);
                }
                const float b3 = u0 * b[3 * w + x0] + u1 * b[3 * w + x1];
                const float a3 = has_a ? u0 * row[3 * w + x0] + u1 * row[3 * w + x1] : 0.0f;
                q[x] = clamp01(a3 * guide_luma + b3);
            }
        }
        free(row);
    }
    free(yi); free(xi); free(yl); free(xl);
    return failed;
}
"""

_C_FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]


def _cache_dir() -> str:
    """Where the compiled kernel is kept: ``$RVM_KERNEL_CACHE`` or ``~/.cache/rvm_kernels``."""
    return os.environ.get("RVM_KERNEL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "rvm_kernels"))


@functools.lru_cache(maxsize=None)
def load_cpu_kernel() -> Optional[ctypes.CDLL]:
    """The compiled C kernel, building it on first use; None (with a warning) when no C compiler can build it."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        logger.warning("No C compiler found (set CC); the fused CPU output step falls back to PyTorch operations.")
        return None
    key = hashlib.sha256("\0".join([_C_SOURCE, compiler, *_C_FLAGS, platform.node()]).encode()).hexdigest()[:16]
    library = os.path.join(_cache_dir(), f"rvm_upsample_compose_{key}.so")
    if not os.path.isfile(library):
        os.makedirs(_cache_dir(), exist_ok=True)
        with tempfile.TemporaryDirectory(dir=_cache_dir()) as work:
            source = os.path.join(work, "kernel.c")
            with open(source, "w") as f:
                f.write(_C_SOURCE)
            built = os.path.join(work, "kernel.so")
            result = subprocess.run([compiler, *_C_FLAGS, source, "-o", built], capture_output=True, text=True)
            if result.returncode != 0:
                logger.warning(
                    "Building the fused CPU kernel with %s failed; falling back to PyTorch operations.\n%s",
                    compiler,
                    result.stderr,
                )
                return None
            os.replace(built, library)  # atomic: concurrent builders never see a half-written file
    kernel = ctypes.CDLL(library)
    kernel.rvm_upsample_compose.restype = ctypes.c_int
    kernel.rvm_upsample_compose.argtypes = [
        ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int,
    ]  # fmt: skip
    return kernel


def _coefficient_planes(A: Optional[Tensor], b: Tensor) -> Tensor:
    """``[N, 8, h, w]`` = [A, b], or just b ``[N, 4, h, w]`` when A is None (A = 0)."""
    return b if A is None else torch.cat([A, b], dim=1)


def upsample_compose_torch(A: Optional[Tensor], b: Tensor, src: Tensor) -> Tuple[Tensor, Tensor]:
    """The PyTorch version of :func:`upsample_compose`: one upsample, multiply-adds, in-place clamps."""
    coef = F.interpolate(_coefficient_planes(A, b), src.shape[-2:], mode="bilinear", align_corners=False)
    if A is None:  # coef [N, 4, H, W] = up(b)
        return (coef[:, :3] + src).clamp_(0.0, 1.0), coef[:, 3:].clamp(0.0, 1.0)
    # coef [N, 8, H, W] = [up(A), up(b)]
    fgr = torch.addcmul(coef[:, 4:7], coef[:, :3], src).add_(src).clamp_(0.0, 1.0)
    pha = torch.addcmul(coef[:, 7:], coef[:, 3:4], src.mean(1, keepdim=True)).clamp_(0.0, 1.0)
    return fgr, pha


def upsample_compose(A: Optional[Tensor], b: Tensor, src: Tensor, *, use_kernel: bool = True) -> Tuple[Tensor, Tensor]:
    """Low-res A, b ``[N, 4, h, w]`` and full-res src ``[N, 3, H, W]`` → fgr ``[N, 3, H, W]``, pha ``[N, 1, H, W]``.

    Uses the C kernel for CPU float32 input when ``use_kernel`` and it can be built, else
    :func:`upsample_compose_torch`.
    """
    kernel = load_cpu_kernel() if use_kernel and src.device.type == "cpu" and src.dtype == torch.float32 else None
    if kernel is None or torch.is_grad_enabled() and (src.requires_grad or b.requires_grad):
        return upsample_compose_torch(A, b, src)
    coef = _coefficient_planes(A, b).to(torch.float32).contiguous()  # [N, 8|4, h, w]
    src = src.contiguous()  # [N, 3, H, W]
    n, _, height, width = src.shape
    fgr = torch.empty_like(src)
    pha = torch.empty((n, 1, height, width), dtype=src.dtype)
    status = kernel.rvm_upsample_compose(
        coef.data_ptr(), int(A is not None), src.data_ptr(), fgr.data_ptr(), pha.data_ptr(),
        n, coef.size(2), coef.size(3), height, width, torch.get_num_threads(),
    )  # fmt: skip
    if status != 0:
        raise MemoryError("The fused CPU kernel could not allocate its row buffers; free memory or use a smaller input.")
    return fgr, pha
