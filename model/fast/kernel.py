"""Build, cache and bind the fast path's C kernels (``kernel.c`` next to this file).

The library is compiled once with the system C compiler (``$CC``, else ``cc`` or ``gcc``) and kept in
``$RVM_KERNEL_CACHE`` (default ``~/.cache/rvm_kernels``) under a name keyed by the source's bytes, the compiler, the
flags and the machine, so an edited source or another CPU never reuses a stale build. Without a compiler, or when the
build fails, :func:`load_cpu_kernel` returns None with a warning and callers use their PyTorch versions.
"""
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from ..atomic import atomic_output

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernel.c")
# No floating-point contraction: each multiply and add rounds as in PyTorch's kernels, so 8-bit outputs match;
# no trapping maths, so selects between computed values vectorise (results are unchanged).
C_FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC")
# entry point → ctypes argument types (pointers to tensor data, sizes, the OpenMP thread count)
_POINTER, _I32, _I64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
_SIGNATURES = {
    "rvm_upsample_compose": [_POINTER, _I32, _POINTER, _POINTER, _POINTER, _I64, _I64, _I64, _I64, _I64, _I32],
    "rvm_render_u8": [_POINTER, _I32, _POINTER, _POINTER, _I64, _POINTER, _I32, _POINTER, _I64, _I64, _I64, _I64, _I64,
                      _I32],  # fmt: skip
    "rvm_downsample_u8": [_POINTER, _POINTER, _I64, _I64, _I64, _I64, _I64, ctypes.c_double, _I32],
}


def cache_dir() -> Path:
    """Where the compiled kernel is kept: ``$RVM_KERNEL_CACHE`` or ``~/.cache/rvm_kernels``."""
    return Path(os.environ.get("RVM_KERNEL_CACHE", Path.home() / ".cache" / "rvm_kernels"))


def library_path(compiler: str) -> Path:
    """The cached library for ``compiler``: named by the hash of the source bytes, compiler, flags and machine."""
    key = hashlib.sha256(SOURCE.read_bytes())
    key.update("\0".join([compiler, *C_FLAGS, platform.node()]).encode())
    return cache_dir() / f"rvm_kernels_{key.hexdigest()[:16]}.so"


@functools.lru_cache(maxsize=None)
def load_cpu_kernel() -> Optional[ctypes.CDLL]:
    """The compiled C kernels, building them on first use; None (with a warning) when no C compiler can build them."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        logger.warning("No C compiler found (set CC); the fused CPU output step falls back to PyTorch operations.")
        return None
    library = library_path(compiler)
    if not library.is_file():
        try:
            with atomic_output(library) as temporary:  # concurrent builders never see a half-written file
                command = [compiler, *C_FLAGS, str(SOURCE), "-o", str(temporary)]
                subprocess.run(command, capture_output=True, text=True, check=True)
        except (subprocess.CalledProcessError, OSError) as error:
            details = error.stderr if isinstance(error, subprocess.CalledProcessError) else str(error)
            message = "Building the fused CPU kernel with %s failed; falling back to PyTorch operations.\n%s"
            logger.warning(message, compiler, details)
            return None
    kernel = ctypes.CDLL(str(library))
    for name, argtypes in _SIGNATURES.items():
        function = getattr(kernel, name)
        function.restype, function.argtypes = ctypes.c_int, argtypes
    return kernel


def require_cpu_kernel() -> ctypes.CDLL:
    """:func:`load_cpu_kernel`, or a ``RuntimeError`` saying what is missing (for callers with no PyTorch fallback)."""
    kernel = load_cpu_kernel()
    if kernel is None:
        raise RuntimeError("The 8-bit CPU kernels need a C compiler (set CC); use the float outputs instead.")
    return kernel
