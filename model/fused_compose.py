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

/* Branch-free after vectorisation; NaN stays NaN like torch.clamp (fminf/fmaxf would block vectorisation). */
static inline float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

/* Horizontal pass of one low-res row: out[p][x] = u0[x]·in[p][x0[x]] + u1[x]·in[p][x1[x]] for every plane p. */
static void widen_row(const float *restrict in, int64_t plane_stride, int planes, int64_t w, int64_t W,
                      const int64_t *restrict x0, const int64_t *restrict x1, const float *restrict u0,
                      const float *restrict u1, float *restrict out) {
    for (int p = 0; p < planes; ++p) {
        const float *restrict row = in + p * plane_stride;
        float *restrict o = out + p * W;
        for (int64_t x = 0; x < W; ++x) o[x] = u0[x] * row[x0[x]] + u1[x] * row[x1[x]];
    }
    (void)w;
}

/* One output row from the two widened coefficient rows (top, bottom) and their weights; has_a is a constant at
   each call site, so the compiler emits two branch-free loops. */
static inline void compose_row(const float *restrict top, const float *restrict bottom, float wt, float wb,
                               const float *restrict s, int64_t HW, float *restrict f, float *restrict q,
                               int64_t W, const int has_a) {
    const int b_off = has_a ? 4 : 0;
    const float *restrict sr = s, *restrict sg = s + HW, *restrict sb = s + 2 * HW;
    for (int64_t x = 0; x < W; ++x) {
        const float r = sr[x], g = sg[x], bl = sb[x];
        const float luma = (r + g + bl) / 3.0f;
#define COEF(p) (wt * top[(p) * W + x] + wb * bottom[(p) * W + x])
        const float a0 = has_a ? COEF(0) : 0.0f, a1 = has_a ? COEF(1) : 0.0f;
        const float a2 = has_a ? COEF(2) : 0.0f, a3 = has_a ? COEF(3) : 0.0f;
        f[x] = clamp01(a0 * r + COEF(b_off + 0) + r);
        f[HW + x] = clamp01(a1 * g + COEF(b_off + 1) + g);
        f[2 * HW + x] = clamp01(a2 * bl + COEF(b_off + 2) + bl);
        q[x] = clamp01(a3 * luma + COEF(b_off + 3));
#undef COEF
    }
}

/* coef [n, planes, h, w] with planes = 8 (A then b) when has_a, else 4 (b only, A = 0).
   src [n, 3, H, W]; fgr [n, 3, H, W]; pha [n, 1, H, W]; all float32, contiguous. Returns 0 on success. */
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
        /* Two cached widened low-res rows [planes, W]; a thread walks consecutive output rows, which reuse them. */
        float *slot[2] = {(float *)malloc(sizeof(float) * planes * W), (float *)malloc(sizeof(float) * planes * W)};
        int64_t key[2] = {-1, -1};
        if (!slot[0] || !slot[1]) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < n * H; ++t) {
            if (!slot[0] || !slot[1]) continue;
            const int64_t img = t / H, y = t % H;
            const int64_t want[2] = {img * h + yi[y], img * h + yi[H + y]};
            const float *rows[2];
            for (int k = 0; k < 2; ++k) {
                int found = key[0] == want[k] ? 0 : (key[1] == want[k] ? 1 : -1);
                if (found < 0) {
                    found = (k == 1 && key[0] == want[0]) ? 1 : (k == 1 && key[1] == want[0] ? 0 : k);
                    widen_row(coef + img * planes * h * w + (want[k] - img * h) * w, h * w, planes, w, W, xi, xi + W,
                              xl, xl + W, slot[found]);
                    key[found] = want[k];
                }
                rows[k] = slot[found];
            }
            const float *s = src + img * 3 * H * W + y * W;
            float *f = fgr + img * 3 * H * W + y * W;
            float *q = pha + img * H * W + y * W;
            if (has_a)
                compose_row(rows[0], rows[1], yl[y], yl[H + y], s, H * W, f, q, W, 1);
            else
                compose_row(rows[0], rows[1], yl[y], yl[H + y], s, H * W, f, q, W, 0);
        }
        free(slot[0]);
        free(slot[1]);
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
        raise MemoryError("The fused CPU kernel could not allocate its row buffers; free memory or use smaller input.")
    return fgr, pha
