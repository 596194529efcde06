"""What rank 0 shows of the whole job: a progress bar while it runs, a summary when it ends.

Every worker adds to the store's counters: the frames it writes, about once a second while it converts, and each
input it finishes (done or failed). Rank 0 reads them from a thread. The bar counts frames (so frames/s and the
time left are tqdm's), with inputs done and failed after it, so it moves within long inputs too.
"""
import threading
import time
from dataclasses import dataclass
from typing import Optional

import torch.distributed as dist
from tqdm.auto import tqdm

from conversion_jobs.placement import counter

INPUTS_DONE = "inputs_done"  # finished, whether converted or failed
INPUTS_FAILED = "inputs_failed"
FRAMES_DONE = "frames_done"


def count_finished(store: dist.Store, *, failed: bool) -> None:
    """One input finished on this worker (converted, or ``failed``); its frames were counted by a FrameCounter."""
    if failed:
        store.add(INPUTS_FAILED, 1)
    store.add(INPUTS_DONE, 1)


class FrameCounter:
    """A worker's frames written, added to the store at most once every ``interval`` seconds (a store call is a
    round trip to rank 0's server) and on ``flush``. Called as ``convert_video``'s ``progress``."""

    def __init__(self, store: dist.Store, *, interval: float = 1.0) -> None:
        self.store = store
        self.interval = interval
        self._pending = 0
        self._sent_at = time.monotonic()

    def __call__(self, frames: int) -> None:
        self._pending += frames
        if time.monotonic() - self._sent_at >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.store.add(FRAMES_DONE, self._pending)
            self._pending = 0
        self._sent_at = time.monotonic()


class JobProgress:
    """A tqdm bar over the frames of every input of this run, refreshed from the store every ``interval`` seconds."""

    def __init__(self, store: dist.Store, *, inputs: int, frames: int, enabled: bool, interval: float = 1.0) -> None:
        self.store = store
        self.inputs = inputs
        self.interval = interval
        self._bar = tqdm(total=frames, unit="frame", desc="job", disable=not enabled, dynamic_ncols=True)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        if enabled:
            self._thread = threading.Thread(target=self._follow, name="job-progress", daemon=True)
            self._thread.start()

    def _refresh(self) -> None:
        done, failed = counter(self.store, INPUTS_DONE), counter(self.store, INPUTS_FAILED)
        frames = counter(self.store, FRAMES_DONE)
        if frames > self._bar.total:  # probed counts are estimates for some containers
            self._bar.total = frames
        self._bar.update(frames - self._bar.n)
        self._bar.set_postfix_str(f"inputs {done}/{self.inputs}" + (f", {failed} failed" if failed else ""))

    def _follow(self) -> None:
        while not self._stop.wait(self.interval):
            self._refresh()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._refresh()
        self._bar.close()


@dataclass(frozen=True)
class JobSummary:
    """The outcome of one run of a job."""

    inputs: int
    skipped: int  # already complete before this run
    converted: int
    failed: int
    frames: int
    seconds: float  # rank 0's wall time from the hand-out to the end
    workers: int

    @property
    def succeeded(self) -> bool:
        return self.failed == 0 and self.skipped + self.converted == self.inputs

    def line(self) -> str:
        rate = ""
        if self.converted and self.seconds > 0:
            rate = f" ({self.frames / self.seconds:.2f} frames/s, {self.converted / self.seconds:.3f} inputs/s)"
        return (
            f"{self.inputs} input{'s' * (self.inputs != 1)}: {self.converted} converted, "
            f"{self.skipped} already complete, {self.failed} failed; "
            f"{self.frames} frames in {self.seconds:.1f} s{rate} on {self.workers} worker{'s' * (self.workers != 1)}"
        )
