"""Live sources through PyAV: cameras, network streams, FFmpeg lavfi test sources and files played in real time.

``parse_source`` turns what the user typed into a :class:`SourceSpec` (what ``av.open`` gets, and how to pace
it); :class:`LiveSource` opens it, decodes in its own thread, hands every frame to a
:class:`~live.scheduling.NewestOnly` slot with the moment it was decoded, and reopens a stream that stalls or
drops with bounded back-off. Frames stay decoded PyAV frames until the model takes one, so the frames that are
dropped are never converted to RGB.
"""
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import av
import av.error
import numpy as np
from av.codec.context import Flags

from .scheduling import NewestOnly, sleep_until

logger = logging.getLogger(__name__)

Size = Tuple[int, int]  # (width, height)

CAMERA_FORMATS = ("v4l2", "video4linux2", "avfoundation", "dshow")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "tcp", "rtp", "http", "https")
FALLBACK_FRAME_RATE = Fraction(30)
# Open options for live inputs: probe at most about a second before the first frame (the frames read while probing
# come out first and are skipped during warm-up), decode without delay. Not "fflags=nobuffer": it throws the probed
# packets away, so a stream would start a second late.
LOW_LATENCY_OPTIONS = {"flags": "low_delay", "analyzeduration": "1000000", "probesize": "1000000"}
SCHEME_OPTIONS = {
    "rtsp": {"rtsp_transport": "tcp"},  # TCP: no lost packets, no smeared frames; override with rtsp_transport=udp
    "rtsps": {"rtsp_transport": "tcp"},
    "udp": {"overrun_nonfatal": "1", "fifo_size": "1000000"},
}
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0


class SourceError(ValueError):
    """A source that cannot be opened or read; the message names the source and what to do."""


@dataclass(frozen=True)
class SourceSpec:
    """What ``av.open`` gets for one source, and how frames are timed.

    ``kind``: 'camera', 'stream', 'lavfi' or 'file'. ``paced``: frames are released at the source's own frame
    rate (files and lavfi, which FFmpeg would otherwise decode as fast as it can); cameras and streams arrive in
    real time by themselves.
    """

    label: str
    target: str
    format: Optional[str]
    kind: str
    options: Dict[str, str] = field(default_factory=dict)

    @property
    def paced(self) -> bool:
        return self.kind in ("file", "lavfi")

    @property
    def reconnectable(self) -> bool:
        return self.kind in ("camera", "stream")


def camera_target(name: str, platform: str = sys.platform) -> Tuple[str, str]:
    """``camera:NAME`` → (target, format) for this platform's capture API: v4l2 ``/dev/videoN`` on Linux,
    AVFoundation device index on macOS, DirectShow device name on Windows."""
    if platform.startswith("linux"):
        return (f"/dev/video{name}" if name.isdigit() else name), "v4l2"
    if platform == "darwin":
        return f"{name}:none", "avfoundation"  # video device NAME (index or name), no audio
    if platform.startswith("win"):
        if name.isdigit():
            raise SourceError(
                f"camera:{name}: DirectShow selects cameras by name, not number; pass camera:\"<name>\" "
                "(list them with: ffmpeg -list_devices true -f dshow -i dummy)."
            )
        return f"video={name}", "dshow"
    raise SourceError(
        f"camera:{name}: no camera support for platform {platform!r}; pass --input-format and the device."
    )


def parse_source(
    text: str,
    *,
    input_format: Optional[str] = None,
    input_options: Optional[Dict[str, str]] = None,
    platform: str = sys.platform,
) -> SourceSpec:
    """Read ``--input-source``: ``camera:N``, a device path (``/dev/video0``), a URL (rtsp, rtmp, srt, udp, tcp,
    http/HLS…), ``lavfi:GRAPH`` (e.g. ``lavfi:testsrc2=size=640x480:rate=25``) or a video file. With
    ``input_format`` the text goes to FFmpeg unchanged in that format (e.g. ``dshow`` and ``video=Cam``).
    ``input_options`` (FFmpeg demuxer options such as ``video_size``, ``framerate``, ``input_format``) are
    added to, and override, the defaults."""
    extra = dict(input_options or {})
    if not text:
        raise SourceError("--input-source is empty; pass camera:0, a URL, lavfi:GRAPH or a video file.")
    if input_format is not None:
        kind = "camera" if input_format in CAMERA_FORMATS else "lavfi" if input_format == "lavfi" else "stream"
        options = dict(LOW_LATENCY_OPTIONS) if kind != "lavfi" else {}
        return SourceSpec(text, text, input_format, kind, {**options, **extra})
    if text.startswith("camera:"):
        target, fmt = camera_target(text[len("camera:") :], platform)
        return SourceSpec(text, target, fmt, "camera", {**LOW_LATENCY_OPTIONS, **extra})
    if text.startswith("/dev/video"):
        return SourceSpec(text, text, "v4l2", "camera", {**LOW_LATENCY_OPTIONS, **extra})
    if text.startswith("lavfi:"):
        return SourceSpec(text, text[len("lavfi:") :], "lavfi", "lavfi", extra)
    scheme, separator, _ = text.partition("://")
    if separator:
        options = {**LOW_LATENCY_OPTIONS, **SCHEME_OPTIONS.get(scheme.lower(), {}), **extra}
        return SourceSpec(text, text, None, "stream", options)
    if not Path(text).is_file():
        raise FileNotFoundError(
            f"Input {text} is not a file, a URL (rtsp://, tcp://, …), camera:N or lavfi:GRAPH; check the spelling."
        )
    return SourceSpec(text, text, None, "file", extra)


@dataclass(frozen=True)
class FrameStamp:
    """When and which frame: ``arrival`` is the moment it was decoded (``time.monotonic()``; for paced sources,
    the moment it was due); ``sequence`` counts every frame decoded since the source was opened (restarts
    included, skipped and dropped frames too); ``generation`` changes when the source restarts or pauses longer
    than the reset gap, telling the model to forget its recurrent states."""

    arrival: float
    sequence: int
    generation: int


@dataclass
class SourceFrame:
    """One decoded frame (kept in FFmpeg's format until the model takes it) and its stamp."""

    frame: "av.VideoFrame"
    stamp: FrameStamp

    def rgb(self, size: Size) -> np.ndarray:
        """uint8 RGB ``[H, W, 3]`` at ``size`` (width, height)."""
        return self.frame.to_ndarray(format="rgb24", width=size[0], height=size[1])


def _explain(spec: SourceSpec, error: Exception) -> str:
    """A message for a source that cannot be opened: what FFmpeg said and what the user can do."""
    if spec.kind == "camera":
        return (
            f"Camera {spec.label} ({spec.format} {spec.target}) cannot be opened ({error}); check that it is "
            "connected, not used by another program, and readable by you (Linux: the 'video' group)."
        )
    if isinstance(error, av.error.ProtocolNotFoundError):
        return (
            f"Input {spec.label}: this PyAV build has no support for that protocol ({error}); relay it with ffmpeg "
            "(e.g. ffmpeg -i URL -c copy -f mpegts udp://127.0.0.1:5000, then --input-source udp://127.0.0.1:5000) "
            "or install PyAV built against an FFmpeg that has it (pip install av --no-binary av)."
        )
    if spec.kind == "stream":
        return (
            f"Input {spec.label} cannot be opened ({error}); check the address, that the server or camera is "
            "running and reachable, and any user name or password in the URL."
        )
    if spec.kind == "lavfi":
        return f"Input {spec.label}: FFmpeg cannot build this filter graph ({error}); check the lavfi syntax."
    return f"Input {spec.label} is not a video FFmpeg can read ({error}); pass a video file."


class LiveSource:
    """An opened source decoded in its own thread into a :class:`NewestOnly` slot of :class:`SourceFrame`.

    :meth:`open` connects and decodes the first frame (so a missing camera, an unreachable URL or an unreadable
    file fail there, with a message), fixing ``size`` (``resize`` or the first frame's) and ``frame_rate``.
    :meth:`start` runs the decoding thread: paced sources release each frame at its timestamp; a file restarts at
    its end when ``loop``. A camera or stream that ends, errs or delivers nothing for ``read_timeout`` seconds is
    reopened up to ``reconnect`` times in a row, waiting 0.5, 1, 2, … 8 s between attempts. Any restart, and any
    pause between frames longer than ``reset_after`` seconds, starts a new ``generation``. When the source is
    finished the slot is closed and ``end_reason`` says why (``failure`` holds the message when it was a fault).
    """

    def __init__(
        self,
        spec: SourceSpec,
        *,
        resize: Optional[Size] = None,
        loop: bool = False,
        reconnect: int = 5,
        reset_after: float = 1.0,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
    ) -> None:
        self.spec = spec
        self.resize = resize
        self.loop = loop
        self.reconnect = reconnect
        self.reset_after = reset_after
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.slot: NewestOnly[SourceFrame] = NewestOnly(gated=not spec.paced)
        self.size: Size = (0, 0)
        self.frame_rate: Fraction = FALLBACK_FRAME_RATE
        self.generation = 0
        self.reconnects = 0
        self.end_reason = ""
        self.failure: Optional[str] = None
        self._container: Optional["av.container.InputContainer"] = None
        self._frames: Optional[Iterator["av.VideoFrame"]] = None
        self._first: Optional["av.VideoFrame"] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._last_arrival: Optional[float] = None
        self._sequence = 0
        self._delivered = 0

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        input_format: Optional[str] = None,
        input_options: Optional[Dict[str, str]] = None,
        resize: Optional[Sequence[int]] = None,
        **options: Any,
    ) -> "LiveSource":
        """A source for ``text`` as :func:`parse_source` reads it; ``resize`` (width, height) and ``options`` as
        the constructor's."""
        spec = parse_source(text, input_format=input_format, input_options=input_options)
        return cls(spec, resize=tuple(resize) if resize else None, **options)

    # ------------------------------------------------------------------------------------------- opening
    def _connect(self) -> "av.VideoFrame":
        """Open the container and decode its first frame (raises av errors)."""
        spec = self.spec
        timeout = None if spec.kind == "file" else (self.open_timeout, self.read_timeout)
        container = av.open(spec.target, format=spec.format, options=spec.options, timeout=timeout)
        try:
            if not container.streams.video:
                raise SourceError(f"Input {spec.label} has no video stream; pass a source with video.")
            stream = container.streams.video[0]
            if spec.paced:
                stream.thread_type = "AUTO"  # decoding ahead is free: frames wait for their time anyway
            else:
                stream.thread_type = "SLICE"  # frame threads would hold back one frame per thread
                stream.codec_context.flags |= Flags.low_delay
            frames = container.decode(stream)
            first = next(frames, None)
            if first is None:
                raise SourceError(f"Input {spec.label} has a video stream with no frames; pass a source with frames.")
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        except BaseException:
            container.close()
            raise
        self._container, self._frames = container, frames
        if rate and self.size == (0, 0):
            self.frame_rate = Fraction(rate)
        return first

    def open(self) -> None:
        """Open the source and decode its first frame; raises :class:`SourceError` with a message. A camera or
        stream is read from now on (into the gated slot: frames that come before the session is ready are
        skipped, not left to pile up in buffers); a paced source waits for :meth:`start`."""
        try:
            first = self._connect()
        except av.error.FFmpegError as error:
            raise SourceError(_explain(self.spec, error)) from error
        self.size = self.resize or (first.width, first.height)
        self._first = first
        logger.info(
            "Source %s: %d×%d at %s frames/s (%s)", self.spec.label, *self.size, float(self.frame_rate), self.spec.kind
        )
        if not self.spec.paced:
            self.start()

    # ------------------------------------------------------------------------------------------- decoding
    def start(self) -> None:
        """Start the decoding thread (after :meth:`open`; once)."""
        if self._thread is not None:
            return
        if self._container is None:
            raise RuntimeError("LiveSource.start() needs open() first.")
        self._thread = threading.Thread(target=self._run, name="live-source", daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Ask the thread to stop and wait for it (a blocked read returns within ``read_timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.read_timeout + 1 if timeout is None else timeout)
        if self._thread is None or not self._thread.is_alive():
            self._close_container()
        self.slot.close()

    def _close_container(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container, self._frames = None, None

    def _deliver(self, frame: "av.VideoFrame", arrival: float) -> None:
        if self._last_arrival is not None and arrival - self._last_arrival > self.reset_after:
            self.generation += 1  # a pause long enough that the recurrent states no longer describe the scene
        self._last_arrival = arrival
        self.slot.put(SourceFrame(frame, FrameStamp(arrival, self._sequence, self.generation)))
        self._sequence += 1

    def _play(self, first: "av.VideoFrame") -> None:
        """Deliver ``first`` and the rest of the open container, paced when the source is, counting them in
        ``_delivered`` (from 0; raises av errors)."""
        frame: Optional["av.VideoFrame"] = first
        start = time.monotonic()
        first_time = first.time if first.time is not None else 0.0
        self._delivered = 0
        while frame is not None and not self._stop.is_set():
            if self.spec.paced:
                offset = frame.time - first_time if frame.time is not None else self._delivered / self.frame_rate
                due = start + float(offset)
                if due < time.monotonic() - 1.0:  # more than a second late (slow decoding): restart the clock
                    start, first_time, due = time.monotonic(), float(frame.time or 0.0), time.monotonic()
                if not sleep_until(due, self._stop):
                    break
            self._deliver(frame, time.monotonic())
            self._delivered += 1
            frame = next(self._frames, None)

    def _play_until_interrupted(self, first: "av.VideoFrame") -> str:
        """:meth:`_play`, returning why it ended: 'end of input', a stall or a read error."""
        try:
            self._play(first)
            return "end of input"
        except av.error.ExitError:
            return f"no frame for {self.read_timeout:g} s"
        except av.error.FFmpegError as error:
            return f"read error ({error})"
        finally:
            self._close_container()

    def _run(self) -> None:
        first, self._first = self._first, None
        attempts = 0
        while first is not None and not self._stop.is_set():
            reason = self._play_until_interrupted(first)
            first = None
            if self._stop.is_set():
                break
            if self.spec.kind == "file" and self.loop and reason == "end of input":
                first = self._restart(reason)
            elif not self.spec.reconnectable or self.reconnect == 0:
                failed = reason != "end of input"
                self._finish(
                    f"source {'failed' if failed else 'ended'}: {reason}",
                    failure=f"Input {self.spec.label} failed: {reason}." if failed else None,
                )
            else:
                attempts = 0 if self._delivered > 1 else attempts  # it ran: a new fault gets all attempts
                first, attempts = self._reconnect(reason, attempts)
        self._finish("stopped")

    def _restart(self, reason: str) -> Optional["av.VideoFrame"]:
        """Open the source again (a new generation); None, with the slot closed, when that fails."""
        try:
            first = self._connect()
        except (av.error.FFmpegError, SourceError) as error:
            self._finish(f"source failed: {reason}", failure=_explain(self.spec, error))
            return None
        self.generation += 1
        return first

    def _reconnect(self, reason: str, attempts: int) -> Tuple[Optional["av.VideoFrame"], int]:
        """Reopen a camera or stream with back-off; (first frame, attempts used), or (None, …) with the slot closed
        when every attempt failed or a stop was asked for."""
        while attempts < self.reconnect:
            delay = min(BACKOFF_FIRST_S * 2**attempts, BACKOFF_MAX_S)
            attempts += 1
            logger.warning(
                "Source %s: %s; reopening in %.1f s (attempt %d of %d)",
                self.spec.label, reason, delay, attempts, self.reconnect,
            )  # fmt: skip
            if self._stop.wait(delay):
                return None, attempts
            try:
                first = self._connect()
            except (av.error.FFmpegError, SourceError) as error:
                reason = f"reopening failed ({error})"
                continue
            self.generation += 1
            self.reconnects += 1
            logger.info("Source %s reopened", self.spec.label)
            return first, attempts
        self._finish(
            f"source lost: {reason}",
            failure=f"Input {self.spec.label} was lost ({reason}) and could not be reopened in "
            f"{self.reconnect} attempts.",
        )
        return None, attempts

    def _finish(self, reason: str, *, failure: Optional[str] = None) -> None:
        if not self.end_reason:
            self.end_reason, self.failure = reason, failure
        self.slot.close()


def parse_options(pairs: Sequence[str]) -> Dict[str, str]:
    """``['video_size=640x480', 'framerate=30']`` → a dict; raises ValueError for an item without '='."""
    options = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--input-option {pair!r} must be KEY=VALUE, e.g. video_size=1280x720.")
        options[key] = value
    return options
