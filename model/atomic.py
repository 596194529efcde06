"""Atomic file output: a file appears under its final name complete, or not at all."""
import contextlib
import os
from pathlib import Path
from typing import Iterator, Union


@contextlib.contextmanager
def atomic_output(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only when the block succeeds.

    The temporary file is removed on failure, so a crash or Ctrl-C never leaves a half-written file under the
    final name nor replaces a file that was already there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
