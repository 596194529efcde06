"""Where live outputs go: a recording, a network stream, a virtual camera (the preview window is in
``live/window.py``).

Every sink is made (and checked) before anything is opened, then :meth:`open`-ed with the frame size and rate
once the source is open, and fed uint8 images ``[H, W, C]`` (C = 1 alpha, 3 RGB, 4 RGBA) with the stamp of
their source frame (when it was decoded, and which one it was). A sink that cannot be made or opened raises
:class:`SinkError` with a message naming the fix. Sinks that encode turn the decode moments into frame numbers
(:class:`FrameClock`), so a recording or stream keeps real time when frames are dropped.
"""
import contextlib
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Tuple

import av
import av.error
import numpy as np

from inference import ALPHA_CONTAINERS, check_output
from inference_utils import PIXEL_FORMATS, ImageSequenceWriter, VideoWriter, make_folders, remove_empty_folders

from .sources import FrameStamp

logger = logging.getLogger(__name__)

Size = Tuple[int, int]  # (width, height)

# URL scheme → (FFmpeg muxer, muxer options) for --output-stream
STREAM_FORMATS: Dict[str, Tuple[str, Dict[str, str]]] = {
    "udp": ("mpegts", {"flush_packets": "1"}),
    "tcp": ("mpegts", {"flush_packets": "1"}),
    "srt": ("mpegts", {"flush_packets": "1"}),
    "rtp": ("rtp_mpegts", {}),
    "rtmp": ("flv", {"flvflags": "no_duration_filesize"}),
    "rtmps": ("flv", {"flvflags": "no_duration_filesize"}),
    "rtsp": ("rtsp", {"rtsp_transport": "tcp"}),
}
STREAM_GOP_SECONDS = 1.0  # a keyframe every second: a viewer that joins, or loses packets, recovers within 1 s


class SinkError(ValueError):
    """A sink that cannot be made or opened; the message names the sink and the fix."""


class Sink(Protocol):
    """What the live session needs from an output."""

    name: str
    carries_alpha: bool  # can show a transparent (RGBA) composition
    main_thread: bool  # must be driven from the thread that runs LiveSession.run (GUI toolkits)

    def open(self, size: Size, frame_rate: Fraction) -> None: ...

    def write(self, image: np.ndarray, stamp: FrameStamp) -> None: ...

    def close(self) -> None: ...


class FrameClock:
    """Decode moments → frame numbers at ``frame_rate``, counted from the first frame and strictly increasing, so
    an encoded output keeps the source's real timing however many frames the model had to skip."""

    def __init__(self, frame_rate: Fraction) -> None:
        self.frame_rate = frame_rate
        self._start: Optional[float] = None
        self._last = -1

    @property
    def started(self) -> bool:
        """Whether a frame has been numbered."""
        return self._start is not None

    def index(self, arrival: float) -> int:
        if self._start is None:
            self._start = arrival
        index = max(round((arrival - self._start) * self.frame_rate), self._last + 1)
        self._last = index
        return index


class RecordSink:
    """``--output-record``: a video file (.mp4/.mkv H.264, .mov ProRes 4444, .webm VP9) or a folder of PNG frames,
    written as ``inference.py`` writes them: under a partial name, renamed when closed, so a stop of any kind
    leaves a complete, playable file. Dropped frames leave the previous frame on screen (the recording lasts as
    long as the session did)."""

    main_thread = False

    def __init__(
        self,
        path: str,
        *,
        output_type: str = "video",
        bit_rate: Optional[int] = None,
        preset: Optional[str] = "veryfast",
        overwrite: bool = False,
        input_label: str = "",
    ) -> None:
        self.path = Path(path)
        self.name = f"record {path}"
        self.output_type = output_type
        check_output(self.path, input_source=Path(input_label), output_type=output_type, overwrite=overwrite)
        self.carries_alpha = output_type == "png_sequence" or self.path.suffix.lower() in ALPHA_CONTAINERS
        self.bit_rate, self.preset = bit_rate, preset
        self._writer: Any = None
        self._clock: Optional[FrameClock] = None
        self._written = 0
        self._made: List[Path] = []  # folders made for the recording (removed again when it gets no frame)

    def open(self, size: Size, frame_rate: Fraction) -> None:
        self._made = make_folders([self.path.parent])
        if self.output_type == "png_sequence":
            self._writer = ImageSequenceWriter(str(self.path))
        else:
            self._writer = VideoWriter(str(self.path), frame_rate, bit_rate=self.bit_rate, preset=self.preset)
            self._clock = FrameClock(frame_rate)

    def write(self, image: np.ndarray, stamp: FrameStamp) -> None:
        times = None  # PNG frames have no times
        if self._clock is not None:
            times = [self._clock.index(stamp.arrival) / self._clock.frame_rate]  # seconds, a whole frame time
        self._writer.write(image[None], times)  # [1, H, W, C]
        self._written += 1

    def close(self) -> None:
        """Give the recording its final name; one that got no frame is removed instead (nothing to play)."""
        if self._writer is None:
            return
        if self._written == 0:
            self._writer.abort()
            remove_empty_folders(self._made)
            logger.warning("%s: no frame was recorded, so no file was written", self.path)
            return
        self._writer.close()
        logger.info("Recording written: %s", self.path)


class StreamSink:
    """``--output-stream URL``: low-latency H.264 (x264 ``ultrafast`` + ``zerolatency``: no B-frames, no
    look-ahead; a keyframe every second) in MPEG-TS over udp/tcp/srt, RTP-MPEG-TS over rtp, FLV over rtmp(s),
    or pushed to an RTSP server. ``bit_rate`` (bits/s) caps the rate with a one-second buffer; None: x264's
    constant quality."""

    carries_alpha = False
    main_thread = False

    def __init__(self, url: str, *, bit_rate: Optional[int] = None, timeout: float = 10.0) -> None:
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in STREAM_FORMATS:
            raise SinkError(
                f"--output-stream {url}: unsupported address; use udp://, tcp://, srt:// (MPEG-TS), rtp://, "
                "rtmp:// or rtmps:// (FLV), or rtsp:// (push to an RTSP server)."
            )
        self.url, self.name = url, f"stream {url}"
        self.format, self.options = STREAM_FORMATS[scheme]
        self.bit_rate, self.timeout = bit_rate, timeout
        self._container: Optional["av.container.OutputContainer"] = None
        self._stream: Any = None
        self._clock: Optional[FrameClock] = None

    def open(self, size: Size, frame_rate: Fraction) -> None:
        width, height = size
        if width % 2 or height % 2:
            raise SinkError(
                f"{self.name}: H.264 streams need an even frame size, not {width}×{height}; use --input-resize."
            )
        try:
            self._container = av.open(
                self.url, mode="w", format=self.format, container_options=self.options, timeout=self.timeout
            )
            self._add_stream(size, frame_rate)
            self._container.start_encoding()  # connects now: an unreachable receiver fails before the first frame
        except av.error.FFmpegError as error:
            with contextlib.suppress(av.error.FFmpegError):
                self.close()
            hint = (
                "this PyAV build has no support for that protocol; relay with ffmpeg (e.g. stream to "
                "udp://127.0.0.1:5000 and run: ffmpeg -i udp://127.0.0.1:5000 -c copy -f mpegts URL)"
                if isinstance(error, av.error.ProtocolNotFoundError)
                else "check the address and that the receiving server is running"
            )
            raise SinkError(f"{self.name} cannot be opened ({error}); {hint}.") from error

    def _add_stream(self, size: Size, frame_rate: Fraction) -> None:
        stream = self._container.add_stream("libx264", rate=frame_rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        options = {"preset": "ultrafast", "tune": "zerolatency"}
        if self.bit_rate:
            stream.bit_rate = self.bit_rate
            options.update(maxrate=str(self.bit_rate), bufsize=str(self.bit_rate))
        stream.codec_context.options = options
        stream.codec_context.gop_size = max(1, round(frame_rate * Fraction(STREAM_GOP_SECONDS)))
        self._stream, self._clock = stream, FrameClock(frame_rate)

    def write(self, image: np.ndarray, stamp: FrameStamp) -> None:
        channels = image.shape[-1]
        pixels = np.ascontiguousarray(image[..., 0] if channels == 1 else image)  # [H, W] or [H, W, 3]
        frame = av.VideoFrame.from_ndarray(pixels, format=PIXEL_FORMATS[channels])
        frame.pts = self._clock.index(stamp.arrival)  # in the encoder's time base, 1 / frame_rate
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            if self._stream is not None and self._clock is not None and self._clock.started:
                container.mux(self._stream.encode(None))
        finally:
            container.close()


class VirtualCameraSink:
    """``--output-virtual-camera``: frames to a virtual webcam that video-call apps and OBS can pick, through the
    optional ``pyvirtualcam`` package (v4l2loopback on Linux, OBS's virtual camera on Windows and macOS)."""

    carries_alpha = False
    main_thread = False

    def __init__(self, *, device: Optional[str] = None) -> None:
        try:
            import pyvirtualcam
        except ImportError as error:
            raise SinkError(
                "--output-virtual-camera needs the optional package pyvirtualcam: pip install pyvirtualcam "
                "(see documentation/live.md for the virtual camera driver it needs)."
            ) from error
        self._module = pyvirtualcam
        self.device = device
        self.name = f"virtual camera {device}" if device else "virtual camera"
        self._camera: Any = None

    def open(self, size: Size, frame_rate: Fraction) -> None:
        try:
            self._camera = self._module.Camera(
                size[0], size[1], float(frame_rate), fmt=self._module.PixelFormat.RGB, device=self.device
            )
        except (RuntimeError, ValueError, OSError) as error:
            raise SinkError(
                f"{self.name} cannot be opened ({error}). Linux: load the v4l2loopback driver (sudo modprobe "
                "v4l2loopback devices=1 exclusive_caps=1 card_label=RVM); Windows/macOS: install OBS Studio and "
                "start its virtual camera once."
            ) from error
        logger.info("Virtual camera: %s", self._camera.device)

    def write(self, image: np.ndarray, stamp: FrameStamp) -> None:
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)  # alpha as grey RGB [H, W, 3]
        self._camera.send(np.ascontiguousarray(image))

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
