"""What a live session measures: frames in, out, dropped and skipped, the latency of every output, and the
model's step time (the network's share of each output: when it nears the source's frame interval, the machine's
compute is the limit, not the scheduling).

Latency is the time from the moment a frame was decoded (for files and lavfi: the moment it was due) to the
moment its output image is handed to a sink. The session shows a status line while it runs (:meth:`status`)
and prints one JSON line at the end (:meth:`summary`).
"""
import resource
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np


@dataclass
class SinkCounters:
    """One sink's share: outputs written, outputs it was too slow for (replaced before it took them), its
    latencies in seconds, and its failure message if it failed."""

    written: int = 0
    dropped: int = 0
    latencies: List[float] = field(default_factory=list)
    failure: Optional[str] = None


def process_cpu_seconds() -> float:
    """CPU time used so far by every thread of this process (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile_ms(latencies: List[float], q: float) -> Optional[float]:
    """The ``q``-th percentile of ``latencies`` (seconds) in milliseconds, rounded to 0.1; None when empty."""
    return round(float(np.percentile(np.asarray(latencies) * 1000, q)), 1) if latencies else None


class LiveStatistics:
    """Thread-safe counters of one session, from :meth:`begin` (warm-up done) to :meth:`end`."""

    def __init__(self, sink_names: List[str]) -> None:
        self._lock = threading.Lock()
        self.sinks: Dict[str, SinkCounters] = {name: SinkCounters() for name in sink_names}
        self.step_seconds: List[float] = []  # one per output
        self.resets = 0
        self.started = self.ended = 0.0
        self._cpu_start = self._cpu_stop = 0.0
        self._last_status = (0.0, 0, 0)  # (time, frames in, frames out) at the previous status line

    def begin(self) -> None:
        self.started = time.monotonic()
        self._cpu_start = process_cpu_seconds()
        self._last_status = (self.started, 0, 0)

    def end(self) -> None:
        """The run's span ends now (a second call changes nothing; before :meth:`begin` there is no span)."""
        if self.started and not self.ended:
            self.ended = time.monotonic()
            self._cpu_stop = process_cpu_seconds()

    def output(self, step_seconds: float) -> None:
        """The model produced one output (handed to every sink's slot) in ``step_seconds``."""
        with self._lock:
            self.step_seconds.append(step_seconds)

    @property
    def frames_out(self) -> int:
        """Outputs the model produced so far."""
        return len(self.step_seconds)

    def handed(self, sink: str, latency: float) -> None:
        """``sink`` received an output ``latency`` seconds after its frame was decoded."""
        with self._lock:
            counters = self.sinks[sink]
            counters.written += 1
            counters.latencies.append(latency)

    def all_latencies(self, last: Optional[int] = None) -> List[float]:
        """Every output's latencies (seconds), or only the ``last`` of each output's."""
        with self._lock:
            return [value for counters in self.sinks.values() for value in counters.latencies[-last if last else 0 :]]

    def status(self, frames_in: int, frames_dropped: int) -> str:
        """'in 25.0/s out 24.1/s | dropped 3 (1.2 %) | latency p50 41 ms p95 63 ms', rates since the last call."""
        now = time.monotonic()
        then, last_in, last_out = self._last_status
        span = max(now - then, 1e-9)
        self._last_status = (now, frames_in, self.frames_out)
        latencies = self.all_latencies(last=200)  # recent ones, from every output
        share = 100 * frames_dropped / frames_in if frames_in else 0.0
        text = (
            f"in {(frames_in - last_in) / span:.1f}/s out {(self.frames_out - last_out) / span:.1f}/s | "
            f"dropped {frames_dropped} ({share:.1f} %)"
        )
        if latencies:
            text += f" | latency p50 {percentile_ms(latencies, 50):.0f} ms p95 {percentile_ms(latencies, 95):.0f} ms"
        return text

    def summary(self, *, frames_in: int, frames_dropped: int, frames_skipped: int, **extra: Any) -> Dict[str, Any]:
        """The final figures (``extra`` — settings, stop reason — is added as is)."""
        seconds = max((self.ended or time.monotonic()) - self.started, 1e-9)
        latencies = self.all_latencies()
        cpu = (self._cpu_stop or process_cpu_seconds()) - self._cpu_start
        return {
            "frames_in": frames_in,
            "frames_out": self.frames_out,
            "frames_dropped": frames_dropped,
            "frames_skipped_warmup": frames_skipped,
            "dropped_share": round(frames_dropped / frames_in, 4) if frames_in else 0.0,
            "seconds": round(seconds, 3),
            "fps_in": round(frames_in / seconds, 2),
            "fps_out": round(self.frames_out / seconds, 2),
            "latency_ms_p50": percentile_ms(latencies, 50),
            "latency_ms_p95": percentile_ms(latencies, 95),
            "latency_ms_max": round(max(latencies) * 1000, 1) if latencies else None,
            "step_ms_p50": percentile_ms(self.step_seconds, 50),
            "step_ms_p95": percentile_ms(self.step_seconds, 95),
            "cpu_s_per_frame": round(cpu / self.frames_out, 4) if self.frames_out else None,
            "resets": self.resets,
            "sinks": {
                name: {
                    "written": c.written,
                    "dropped": c.dropped,
                    "latency_ms_p50": percentile_ms(c.latencies, 50),
                    "latency_ms_p95": percentile_ms(c.latencies, 95),
                    **({"failure": c.failure} if c.failure else {}),
                }
                for name, c in self.sinks.items()
            },
            **extra,
        }
