"""``LiveSession``: a camera, stream, lavfi source or file matted in real time into any number of sinks.

Threads and hand-overs (each arrow a :class:`~live.scheduling.NewestOnly` slot, so nothing queues up):

    source thread (decode) ──▶ model thread (runner.step) ──▶ one thread per sink (render + encode/send)
                                                          └─▶ the calling thread for the preview window

The model always takes the newest decoded frame; frames it had no time for are dropped and counted, and the
recurrent states carry across them. They are reset when the source restarts or pauses longer than
``reset_after`` seconds. The model waits (at most ``SINK_WAIT_S``) until every sink has taken its previous
output, so a slow encoder makes the model skip source frames instead of computing outputs nobody takes.
Compilation and warm-up run before the first frame is taken; frames that arrive meanwhile are skipped.
"""
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from inference import (
    TRANSPARENT,
    Background,
    BackgroundSpec,
    VideoBackground,
    parse_background,
    prepare_model,
)
from model import auto_downsample_ratio
from model.devices import resolve_device, resolve_dtype
from model.outputs import OUTPUT_KINDS
from model.runner import MattedChunk, RecurrentRunner

from .scheduling import NewestOnly
from .sinks import RecordSink, Sink, StreamSink, VirtualCameraSink
from .sources import FrameStamp, LiveSource, SourceFrame
from .statistics import LiveStatistics
from .window import PreviewWindow, WindowClosed

logger = logging.getLogger(__name__)

Size = Tuple[int, int]  # (width, height)
SINK_WAIT_S = 1.0  # longest the model waits for a sink to take its previous output before replacing it
STATUS_INTERVAL_S = 1.0
DEFAULT_BACKGROUND = "green"  # for compositions in sinks that cannot carry alpha, as inference.py's .mp4 default


@dataclass
class Delivery:
    """One model output on its way to the sinks: the runner's output, each background's frame, the source stamp.
    :meth:`image` renders each (kind, background) once, however many sinks show it."""

    output: MattedChunk
    backgrounds: Dict[str, Optional[torch.Tensor]]  # background spec → uint8 [1, H|1, W|1, 3], None = transparent
    stamp: FrameStamp
    _images: Dict[Tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def image(self, kind: str, background: str) -> np.ndarray:
        """The uint8 image ``[H, W, C]`` of ``kind`` over ``background`` (rendered by the first sink that asks;
        sinks only read it)."""
        with self._lock:
            key = (kind, background)
            if key not in self._images:
                self._images[key] = self.output.render(kind, self.backgrounds[background])[0].numpy()
            return self._images[key]


@dataclass
class LiveResult:
    """The session's figures (``summary``, printed as one JSON line by the command line) and, when it stopped
    because of a fault (source lost, every sink failed), the message."""

    summary: Dict[str, Any]
    failure: Optional[str] = None


class SinkWorker:
    """Feeds one sink from its own slot: renders the sink's image from each delivery and writes it. A sink that
    raises is reported, marked failed and left alone; the other sinks go on."""

    def __init__(self, sink: Sink, *, kind: str, background: str, statistics: LiveStatistics) -> None:
        self.sink, self.kind, self.background = sink, kind, background
        self.slot: NewestOnly[Delivery] = NewestOnly()
        self.failed = False
        self._statistics = statistics
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if not self.sink.main_thread:
            self._thread = threading.Thread(target=self._run, name=f"live-{self.sink.name}", daemon=True)
            self._thread.start()

    def offer(self, delivery: Delivery) -> None:
        if not self.failed:
            self.slot.put(delivery)

    def handle(self, delivery: Delivery) -> None:
        """Render and write one delivery (in this sink's thread); a failure is recorded, not raised."""
        try:
            image = delivery.image(self.kind, self.background)  # [H, W, C]
            latency = time.monotonic() - delivery.stamp.arrival
            self.sink.write(image, delivery.stamp)
            self._statistics.handed(self.sink.name, latency)
        except WindowClosed:
            raise
        except Exception as error:  # any sink fault: report it and keep the session going
            self.fail(f"{type(error).__name__}: {error}")

    def fail(self, message: str) -> None:
        self.failed = True
        self._statistics.sinks[self.sink.name].failure = message
        logger.error("Output %s failed and was stopped (%s); the other outputs go on.", self.sink.name, message)
        self.slot.close()

    def _run(self) -> None:
        while not self.failed:
            delivery = self.slot.take(timeout=0.1)
            if delivery is not None:
                self.handle(delivery)
            elif self.slot.finished:
                return

    def pump(self, timeout: float) -> None:
        """For a main-thread sink: handle a waiting delivery (waiting up to ``timeout``) and the window events."""
        delivery = self.slot.take(timeout=timeout)
        if delivery is not None and not self.failed:
            self.handle(delivery)
        poll = getattr(self.sink, "poll", None)
        if poll is not None and not self.failed:
            poll()

    def drain(self) -> None:
        """No more deliveries: write the waiting one, then let the thread end."""
        self.slot.close()
        if self._thread is not None:
            self._thread.join()
        elif not self.failed:
            delivery = self.slot.take(timeout=0)
            if delivery is not None:
                try:
                    self.handle(delivery)
                except WindowClosed:
                    pass
        self._statistics.sinks[self.sink.name].dropped = self.slot.dropped

    def close(self) -> None:
        """Close the sink (files get their final name); errors are logged."""
        try:
            self.sink.close()
        except Exception as error:  # keep closing the others; the recordings matter more than this message
            logger.error("Closing %s failed: %s", self.sink.name, error)


def make_sinks(
    *,
    output_record: Optional[str] = None,
    output_stream: Optional[str] = None,
    output_window: bool = False,
    output_virtual_camera: bool = False,
    output_type: str = "video",
    output_video_mbps: Optional[float] = None,
    output_video_preset: Optional[str] = "veryfast",
    overwrite: bool = False,
    input_label: str = "",
) -> List[Sink]:
    """The built-in sinks asked for, each checked (raising SinkError/ValueError with the fix) but not opened."""
    if output_video_mbps is not None and not output_video_mbps > 0:
        raise ValueError(f"output_video_mbps {output_video_mbps} must be positive (megabits per second).")
    bit_rate = int(output_video_mbps * 1_000_000) if output_video_mbps is not None else None
    sinks: List[Sink] = []
    if output_record is not None:
        sinks.append(
            RecordSink(
                output_record, output_type=output_type, bit_rate=bit_rate, preset=output_video_preset,
                overwrite=overwrite, input_label=input_label,
            )  # fmt: skip
        )
    if output_stream is not None:
        sinks.append(StreamSink(output_stream, bit_rate=bit_rate))
    if output_virtual_camera:
        sinks.append(VirtualCameraSink())
    if output_window:
        sinks.append(PreviewWindow())
    return sinks


def check_outputs(sinks: Sequence[Sink]) -> None:
    """At least one sink, each with its own name (the statistics are kept by name)."""
    if not sinks:
        raise ValueError(
            "No output asked for; give at least one of --output-window, --output-virtual-camera, "
            "--output-stream URL, --output-record FILE."
        )
    names = [sink.name for sink in sinks]
    if len(set(names)) != len(names):
        raise ValueError(f"Two outputs share one name ({', '.join(names)}); give each its own.")


def plan_backgrounds(sinks: Sequence[Sink], kind: str, output_background: BackgroundSpec) -> Dict[str, str]:
    """Each sink's background spec: transparent where the sink can carry alpha and none was asked for, else
    green; an explicit 'transparent' for a sink that cannot show it is refused. Non-compositions need none."""
    if kind != "composition":
        return {sink.name: TRANSPARENT for sink in sinks}
    if output_background is None:
        return {sink.name: TRANSPARENT if sink.carries_alpha else DEFAULT_BACKGROUND for sink in sinks}
    spec = output_background if isinstance(output_background, str) else ",".join(map(str, output_background))
    if spec.strip().lower() == TRANSPARENT:
        opaque = [sink.name for sink in sinks if not sink.carries_alpha]
        if opaque:
            raise ValueError(
                f"A transparent composition cannot go to {', '.join(opaque)}; give a background colour, image or "
                "video, or record to .mov/.webm/PNG (which keep alpha)."
            )
    return {sink.name: spec for sink in sinks}


class LiveSession:
    """Matte ``input_source`` live into the asked outputs; :meth:`run` blocks until a stop and returns the figures.

    Args:
        model: a ``MattingNetwork`` (optimised with ``model.fast_path.optimize_for_inference`` when ``fast``,
            compiled when ``compile_network``; None: on for CUDA only) or an already optimised copy.
        input_source: ``camera:N``, a device path, a URL, ``lavfi:GRAPH``, a video file (see
            ``live.sources.parse_source``), or a :class:`LiveSource` (opened or not).
        output_record / output_stream / output_window / output_virtual_camera: the built-in sinks (at least one
            of these or ``sinks``); ``sinks``: more objects following ``live.sinks.Sink``.
        output_kind: 'composition', 'alpha' or 'foreground'. output_background: as in ``inference.py``; None:
            transparent where the sink keeps alpha (.mov/.webm/PNG recordings), green elsewhere.
        output_type, output_video_mbps, output_video_preset, overwrite: the recording's form (as inference.py;
            the preset defaults to 'veryfast' here) and the stream's bit rate.
        input_format, input_options, input_resize, loop, reconnect, input_timeout: how the source is opened (an
            FFmpeg format and options, a size (width, height), files restart at their end, reopen attempts after a
            stall or drop, seconds without a frame that count as a stall).
        downsample_ratio: None = ``auto_downsample_ratio`` of the frame size. reset_after: seconds of source
            silence after which the recurrent states are reset. duration, max_frames: stop after that many seconds
            (from the first frame taken) or outputs. device, dtype, threads (torch CPU threads during the run).
        progress: show the status line.
    """

    def __init__(
        self,
        model: Any,
        input_source: Union[str, LiveSource],
        *,
        output_record: Optional[str] = None,
        output_stream: Optional[str] = None,
        output_window: bool = False,
        output_virtual_camera: bool = False,
        sinks: Sequence[Sink] = (),
        output_kind: str = "composition",
        output_background: BackgroundSpec = None,
        output_type: str = "video",
        output_video_mbps: Optional[float] = None,
        output_video_preset: Optional[str] = "veryfast",
        overwrite: bool = False,
        input_format: Optional[str] = None,
        input_options: Optional[Dict[str, str]] = None,
        input_resize: Optional[Size] = None,
        loop: bool = False,
        reconnect: int = 5,
        input_timeout: float = 5.0,
        downsample_ratio: Optional[float] = None,
        reset_after: float = 1.0,
        duration: Optional[float] = None,
        max_frames: Optional[int] = None,
        device: Union[None, str, torch.device] = None,
        dtype: Union[None, str, torch.dtype] = None,
        fast: bool = True,
        compile_network: Optional[bool] = None,
        threads: Optional[int] = None,
        progress: bool = True,
    ) -> None:
        if output_kind not in OUTPUT_KINDS:
            raise ValueError(f"Unknown output_kind {output_kind!r}; use one of {', '.join(OUTPUT_KINDS)}.")
        _check_numbers(
            input_resize=input_resize, reconnect=reconnect, input_timeout=input_timeout,
            downsample_ratio=downsample_ratio, reset_after=reset_after, duration=duration, max_frames=max_frames,
            threads=threads,
        )  # fmt: skip
        label = input_source.spec.label if isinstance(input_source, LiveSource) else str(input_source)
        self.sinks: List[Sink] = make_sinks(
            output_record=output_record, output_stream=output_stream, output_window=output_window,
            output_virtual_camera=output_virtual_camera, output_type=output_type,
            output_video_mbps=output_video_mbps, output_video_preset=output_video_preset, overwrite=overwrite,
            input_label=label,
        ) + list(sinks)  # fmt: skip
        check_outputs(self.sinks)
        names = [sink.name for sink in self.sinks]
        self.output_kind = output_kind
        self.background_specs = plan_backgrounds(self.sinks, output_kind, output_background)
        self.backgrounds: Dict[str, Optional[Background]] = {
            spec: parse_background(spec) for spec in set(self.background_specs.values())
        }
        if isinstance(input_source, LiveSource):
            self.source = input_source
        else:
            self.source = LiveSource.parse(
                input_source, input_format=input_format, input_options=input_options, resize=input_resize,
                loop=loop, reconnect=reconnect, reset_after=reset_after, read_timeout=input_timeout,
            )  # fmt: skip
        self.device = resolve_device(device, model)
        self.dtype = resolve_dtype(dtype, model)
        self.network = prepare_model(
            model, device=self.device, dtype=self.dtype, fast=fast, compile_network=compile_network
        )
        self.compiled = bool(getattr(self.network, "compiled", False))  # as prepare_model (or the caller) decided
        self.downsample_ratio = downsample_ratio
        self.duration, self.max_frames, self.threads, self.progress = duration, max_frames, threads, progress
        self.statistics = LiveStatistics(names)
        self._stop = threading.Event()
        self._stop_reason = ""
        self._error: Optional[BaseException] = None

    # ------------------------------------------------------------------------------------------- control
    def stop(self, reason: str = "stopped") -> None:
        """Ask a running session to stop (from any thread); :meth:`run` then closes everything and returns."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()
            self.statistics.end()  # the run's span ends here: closing the sinks is not part of it

    def run(self) -> LiveResult:
        """Open the source and sinks, warm up, run until a stop; every sink is closed on the way out."""
        previous_threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        restore_signal = self._catch_interrupt()
        try:
            return self._run()
        finally:
            restore_signal()
            torch.set_num_threads(previous_threads)

    def _catch_interrupt(self) -> Callable[[], Any]:
        """In the main thread, the first Ctrl-C stops the session cleanly (a second one interrupts at once); returns
        what puts the previous handler back."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_interrupt(signum: int, frame: Any) -> None:
            if self._stop.is_set():
                raise KeyboardInterrupt
            logger.info("Ctrl-C: stopping (press again to interrupt at once)")
            self.stop("interrupted")

        previous = signal.signal(signal.SIGINT, on_interrupt)
        return lambda: signal.signal(signal.SIGINT, previous)

    # ------------------------------------------------------------------------------------------- running
    def _run(self) -> LiveResult:
        source = self.source
        if source.size == (0, 0):
            source.open()
        width, height = source.size
        ratio = self.downsample_ratio or auto_downsample_ratio(height, width)
        runner = RecurrentRunner(self.network, downsample_ratio=ratio, device=self.device, dtype=self.dtype)
        workers: List[SinkWorker] = []
        model_thread: Optional[threading.Thread] = None
        warmup_seconds = 0.0
        try:
            for sink in self.sinks:
                sink.open(source.size, source.frame_rate)
                background = self.background_specs[sink.name]
                workers.append(
                    SinkWorker(sink, kind=self.output_kind, background=background, statistics=self.statistics)
                )
            warmup_seconds = self._warm_up(runner, workers)
            source.slot.open_gate()
            source.start()  # a camera or stream is already read (and skipped) since it was opened
            route = "uint8" if runner.eight_bit else "float"
            logger.info("Live: started (warm-up %.1f s, %s route, ratio %g)", warmup_seconds, route, ratio)
            self.statistics.begin()
            for worker in workers:
                worker.start()
            model_thread = threading.Thread(
                target=self._model_loop, args=(runner, workers), name="live-model", daemon=True
            )
            model_thread.start()
            self._supervise(model_thread, workers)
        finally:
            self.stop("stopped")
            source.stop()
            if model_thread is not None:
                model_thread.join()
            for worker in workers:
                worker.drain()
            for worker in workers:
                worker.close()
            for background in self.backgrounds.values():
                if isinstance(background, VideoBackground):
                    background.close()
        if self._error is not None:
            raise self._error
        return self._result(runner, ratio, warmup_seconds, workers)

    def _background_frames(self, size: Size) -> Dict[str, Optional[torch.Tensor]]:
        """This step's frame of every background in use (uint8 ``[1, H|1, W|1, 3]``; None = transparent)."""
        return {
            spec: None if background is None else background.frames(1, *size)
            for spec, background in self.backgrounds.items()
        }

    def _warm_up(self, runner: RecurrentRunner, workers: List[SinkWorker]) -> float:
        """Run the model twice on blank frames (first without, then with states: a compiled network builds both
        graphs now) and render each sink's output once (kernels built or loaded now); returns the seconds."""
        start = time.monotonic()
        blank = torch.zeros((1, self.source.size[1], self.source.size[0], 3), dtype=torch.uint8)  # [1, H, W, 3]
        backgrounds = self._background_frames(self.source.size)
        for _ in range(2):
            output = runner.step(blank)
        for worker in workers:
            output.render(self.output_kind, backgrounds[worker.background])
        runner.reset()
        return time.monotonic() - start

    def _model_loop(self, runner: RecurrentRunner, workers: List[SinkWorker]) -> None:
        """Take the newest frame, step the model, offer the output to every sink; until a stop or the source ends."""
        slot = self.source.slot
        generation: Optional[int] = None
        try:
            while not self._stop.is_set():
                item: Optional[SourceFrame] = slot.take(timeout=0.1)
                if item is None:
                    if slot.finished:
                        self.stop(self.source.end_reason or "source ended")
                    continue
                if generation is not None and item.stamp.generation != generation:
                    runner.reset()  # the source restarted or paused: old states describe another scene
                    self.statistics.resets += 1
                generation = item.stamp.generation
                frames = torch.from_numpy(item.rgb(self.source.size)).unsqueeze(0)  # [1, H, W, 3]
                started = time.monotonic()
                output = runner.step(frames)
                step_seconds = time.monotonic() - started
                delivery = Delivery(output, self._background_frames(self.source.size), item.stamp)
                for worker in workers:
                    worker.offer(delivery)
                self.statistics.output(step_seconds)
                if self.max_frames is not None and self.statistics.frames_out >= self.max_frames:
                    self.stop("max frames")
                for worker in workers:
                    if not worker.sink.main_thread:
                        worker.slot.wait_empty(SINK_WAIT_S)
        except BaseException as error:  # handed to run(), which closes everything and re-raises it
            self._error = error
            self.stop("error")

    def _supervise(self, model_thread: threading.Thread, workers: List[SinkWorker]) -> None:
        """The calling thread: drive the window (if any), watch the duration, the sinks and the status line."""
        window = next((worker for worker in workers if worker.sink.main_thread), None)
        deadline = self.statistics.started + self.duration if self.duration is not None else None
        bar = tqdm(
            total=self.max_frames, unit="frame", desc="live", disable=not self.progress, dynamic_ncols=True,
            mininterval=STATUS_INTERVAL_S,
        )  # fmt: skip
        next_status = time.monotonic() + STATUS_INTERVAL_S
        try:
            while model_thread.is_alive():
                if window is not None and not window.failed:
                    try:
                        window.pump(timeout=0.01)
                    except WindowClosed:
                        self.stop("window closed")
                else:
                    self._stop.wait(0.05)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self.stop("duration")
                if all(worker.failed for worker in workers):
                    self.stop("every output failed")
                if now >= next_status:
                    next_status = now + STATUS_INTERVAL_S
                    bar.n = self.statistics.frames_out
                    bar.set_postfix_str(self.statistics.status(*self._source_counts()[:2]), refresh=False)
                    bar.refresh()
        finally:
            bar.n = self.statistics.frames_out
            bar.close()

    def _source_counts(self) -> Tuple[int, int, int]:
        """(frames in, dropped, skipped during warm-up) of the source's slot."""
        slot = self.source.slot
        return slot.put_count, slot.dropped, slot.skipped

    def _result(
        self, runner: RecurrentRunner, ratio: float, warmup_seconds: float, workers: List[SinkWorker]
    ) -> LiveResult:
        frames_in, dropped, skipped = self._source_counts()
        failure = self.source.failure
        if all(worker.failed for worker in workers):
            failure = "Every output failed: " + "; ".join(
                f"{worker.sink.name}: {self.statistics.sinks[worker.sink.name].failure}" for worker in workers
            )
        summary = self.statistics.summary(
            frames_in=frames_in,
            frames_dropped=dropped,
            frames_skipped=skipped,
            stop_reason=self._stop_reason if self._stop_reason != "stopped" else self.source.end_reason,
            reconnects=self.source.reconnects,
            settings=self._settings(runner, ratio, warmup_seconds),
        )
        return LiveResult(summary, failure)

    def _settings(self, runner: RecurrentRunner, ratio: float, warmup_seconds: float) -> Dict[str, Any]:
        source = self.source
        return {
            "input_source": source.spec.label,
            "input_kind": source.spec.kind,
            "input_size": list(source.size),
            "frame_rate": float(source.frame_rate),
            "downsample_ratio": ratio,
            "output_kind": self.output_kind,
            "outputs": {name: background for name, background in self.background_specs.items()},
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "route": "uint8" if runner.eight_bit else "float",
            "compile": self.compiled,
            "threads": torch.get_num_threads(),
            "reset_after": source.reset_after,
            "reconnect": source.reconnect,
            "warmup_s": round(warmup_seconds, 2),
        }


def _check_numbers(
    *,
    input_resize: Optional[Size],
    reconnect: int,
    input_timeout: float,
    downsample_ratio: Optional[float],
    reset_after: float,
    duration: Optional[float],
    max_frames: Optional[int],
    threads: Optional[int],
) -> None:
    """Raise ValueError naming the argument and the valid range."""
    if input_resize is not None and (len(input_resize) != 2 or not all(int(v) == v and v > 0 for v in input_resize)):
        raise ValueError(f"input_resize {input_resize!r} must be two positive integers (width, height).")
    if not isinstance(reconnect, int) or reconnect < 0:
        raise ValueError(f"reconnect {reconnect!r} must be an integer ≥ 0 (reopen attempts after a stall or drop).")
    if not input_timeout > 0:
        raise ValueError(f"input_timeout {input_timeout} must be positive (seconds without a frame = stalled).")
    if downsample_ratio is not None and not 0 < downsample_ratio <= 1:
        raise ValueError(f"downsample_ratio {downsample_ratio} must be in (0, 1]; or None to pick it from the size.")
    if not reset_after > 0:
        raise ValueError(f"reset_after {reset_after} must be positive (seconds).")
    if duration is not None and not duration > 0:
        raise ValueError(f"duration {duration} must be positive (seconds).")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max_frames {max_frames!r} must be a positive integer.")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads {threads!r} must be a positive integer (torch CPU threads), or None.")
