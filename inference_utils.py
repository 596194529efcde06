"""Readers and writers for video conversion: frames move as uint8 ``[H, W, C]`` numpy arrays.

``VideoReader`` decodes a video sequentially; ``ImageSequenceReader`` reads a folder of images.
``VideoWriter`` encodes H.264 (``.mp4``/``.mkv``), ProRes 4444 with alpha (``.mov``) or VP9 with alpha (``.webm``),
optionally carrying the audio of another file; ``ImageSequenceWriter`` writes PNG frames. Writers work under a
temporary name next to the destination and take the final name only when closed after success, so an interrupted
run never replaces a file the user had. ``Prefetcher`` and ``BackgroundWriter`` move reading and writing to
threads so decoding, the model and encoding overlap.
"""
import logging
import os
import queue
import shutil
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

import av
import av.error
import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_SEQUENCE_FRAME_RATE = Fraction(30)
# extension → (codec, pixel format without alpha, pixel format with alpha or None)
VIDEO_FORMATS = {
    ".mp4": ("libx264", "yuv420p", None),
    ".mkv": ("libx264", "yuv420p", None),
    ".mov": ("prores_ks", "yuv444p10le", "yuva444p10le"),
    ".webm": ("libvpx-vp9", "yuv420p", "yuva420p"),
}
# channels of a uint8 frame → PyAV pixel format
PIXEL_FORMATS = {1: "gray", 3: "rgb24", 4: "rgba"}
# container extension → audio codec used when the source's audio cannot be copied as is
AUDIO_TRANSCODE = {".mp4": "aac", ".mkv": "aac", ".mov": "aac", ".webm": "libopus"}

Size = Tuple[int, int]  # (width, height)


def _open_input(path: Path) -> "av.container.InputContainer":
    """Open ``path`` with FFmpeg, turning its errors into messages that name the file and the fix."""
    if not path.is_file():
        raise FileNotFoundError(f"Input {path} does not exist; check the path (video file or image folder).")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as error:
        raise ValueError(
            f"Input {path} is not a video FFmpeg can read ({error}); pass a video file or a folder of images."
        ) from error


class VideoReader:
    """Sequential decoder of the first video stream of ``path`` into uint8 RGB frames ``[H, W, 3]``.

    The first frame is decoded when the reader is made, so files with no video stream, no frames or a broken
    start fail here, before any output is created. ``size`` (width, height) resizes while converting to RGB.
    ``threads`` is FFmpeg's decoder thread count (0 lets FFmpeg choose).
    """

    def __init__(self, path: str, *, size: Optional[Size] = None, threads: int = 0) -> None:
        self.path = Path(path)
        self._container = _open_input(self.path)
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"Input {self.path} has no video stream; pass a file with video in it.")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = threads
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self.frame_rate: Fraction = Fraction(rate) if rate else IMAGE_SEQUENCE_FRAME_RATE
        self.frame_count: Optional[int] = self._stream.frames or None  # container's count; may be absent
        self.start_time: float = float(self._stream.start_time * self._stream.time_base) if self._stream.start_time else 0.0
        self._frames = self._decode()
        self._first = next(self._frames, None)
        if self._first is None:
            self._container.close()
            raise ValueError(f"Input {self.path} has a video stream with no frames; pass a video with at least one frame.")
        self.width, self.height = size if size is not None else (self._first.width, self._first.height)
        self._used = False

    def _decode(self) -> Iterator["av.VideoFrame"]:
        index = 0
        try:
            for frame in self._container.decode(self._stream):
                yield frame
                index += 1
        except av.error.FFmpegError as error:
            raise ValueError(
                f"Input {self.path} is damaged: decoding failed after frame {index} ({error}); re-encode or trim it."
            ) from error
        if self.frame_count is not None and index < self.frame_count:
            logger.warning(
                "%s: decoded %d frames but the container declares %d; the file may be damaged (FFmpeg skipped data).",
                self.path, index, self.frame_count,
            )

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._used:
            raise ValueError(f"VideoReader for {self.path} is sequential and was already read; make a new one.")
        self._used = True
        try:
            frame = self._first
            while frame is not None:
                yield frame.to_ndarray(format="rgb24", width=self.width, height=self.height)  # [H, W, 3]
                frame = next(self._frames, None)
        finally:
            self.close()

    def close(self) -> None:
        self._container.close()


def list_images(folder: Path) -> List[Path]:
    """The image files of ``folder`` sorted by name; other files are skipped (logged)."""
    images = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(entry)
        else:
            logger.debug("Skipping %s: not an image file", entry)
    return images


class ImageSequenceReader:
    """The images of a folder (sorted by name, non-image files skipped) as uint8 RGB frames ``[H, W, 3]``.

    Every image's header is read when the reader is made: an empty folder, an unreadable image or images of
    different sizes fail here, before any work. The frame rate is 30.
    """

    def __init__(self, path: str, *, size: Optional[Size] = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"Image folder {self.path} does not exist; check the path.")
        self.files = list_images(self.path)
        if not self.files:
            raise ValueError(
                f"Image folder {self.path} has no images ({', '.join(IMAGE_EXTENSIONS)}); put the frames there."
            )
        sizes = {file: self._probe(file) for file in self.files}
        first_size = sizes[self.files[0]]
        for file, file_size in sizes.items():
            if file_size != first_size:
                raise ValueError(
                    f"Image {file} is {file_size[0]}×{file_size[1]} but {self.files[0]} is "
                    f"{first_size[0]}×{first_size[1]}; all frames of a sequence must have one size (resize them)."
                )
        self.frame_rate = IMAGE_SEQUENCE_FRAME_RATE
        self.frame_count: Optional[int] = len(self.files)
        self.start_time = 0.0
        self.width, self.height = size if size is not None else first_size

    @staticmethod
    def _probe(file: Path) -> Size:
        try:
            with Image.open(file) as image:
                return image.size
        except (OSError, ValueError) as error:
            raise ValueError(f"Image {file} cannot be read ({error}); remove or replace it.") from error

    def __iter__(self) -> Iterator[np.ndarray]:
        for file in self.files:
            with Image.open(file) as image:
                image = image.convert("RGB")
                if image.size != (self.width, self.height):
                    image = image.resize((self.width, self.height), Image.BILINEAR)
                yield np.asarray(image)  # [H, W, 3]

    def close(self) -> None:
        """Nothing to release: each image is opened and closed as it is read."""


def open_reader(path: str, *, size: Optional[Size] = None, threads: int = 0):
    """A ``VideoReader`` for a file or an ``ImageSequenceReader`` for a folder."""
    if Path(path).is_dir():
        return ImageSequenceReader(path, size=size)
    return VideoReader(path, size=size, threads=threads)


def partial_path(path: Path) -> Path:
    """Where a writer works before the result takes ``path``'s name: ``name.partial.ext`` in the same folder."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


class _AudioCopier:
    """Feeds the first audio stream of ``source`` into ``output``, copied as is when the container accepts the
    codec, else transcoded. Packets are written up to a time so audio and video stay interleaved; times are
    shifted by ``start_time`` (the source video's first timestamp) so both start together."""

    def __init__(self, source: Path, output: "av.container.OutputContainer", suffix: str, start_time: float) -> None:
        self._input = av.open(str(source))
        self._in_stream = self._input.streams.audio[0]
        self._copy = self._in_stream.codec_context.name in output.supported_codecs
        if self._copy:
            self._out_stream = output.add_stream_from_template(self._in_stream)
        else:
            rate = 48000 if AUDIO_TRANSCODE[suffix] == "libopus" else self._in_stream.codec_context.sample_rate
            self._out_stream = output.add_stream(AUDIO_TRANSCODE[suffix], rate=rate)
            self._out_stream.layout = self._in_stream.codec_context.layout
        self._output = output
        self._offset = int(round(start_time / self._in_stream.time_base)) if start_time else 0
        self._packets = self._input.demux(self._in_stream)
        self._done = False

    def write_until(self, seconds: float) -> None:
        """Write source audio whose start time is before ``seconds`` (output time)."""
        while not self._done:
            packet = next(self._packets, None)
            if packet is None or packet.dts is None and packet.size == 0:
                self._done = True
                break
            if packet.pts is None:
                continue
            packet.pts -= self._offset
            packet.dts = packet.dts - self._offset if packet.dts is not None else None
            self._write(packet)
            if float(packet.pts * packet.time_base) >= seconds:
                break

    def _write(self, packet: "av.Packet") -> None:
        if packet.pts < 0:
            return  # audio before the first video frame
        if self._copy:
            packet.stream = self._out_stream
            self._output.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # the encoder numbers samples itself, starting where the video starts
            self._output.mux(self._out_stream.encode(frame))

    def close(self) -> None:
        if not self._copy:
            self._output.mux(self._out_stream.encode(None))
        self._input.close()


def has_audio(path: str) -> bool:
    """Whether ``path`` is a media file with an audio stream."""
    if Path(path).is_dir():
        return False
    with av.open(str(path)) as container:
        return bool(container.streams.audio)


class VideoWriter:
    """Encodes uint8 frames ``[N, H, W, 1|3|4]`` (grey, RGB, RGBA) to ``path`` at exactly ``frame_rate``.

    The codec follows the extension (``VIDEO_FORMATS``); 4-channel frames keep their alpha in ``.mov``
    (ProRes 4444) and ``.webm`` (VP9). ``bit_rate`` (bits/s) applies to H.264 and VP9; ``preset`` is the x264
    preset for H.264 (None: x264's default, medium; 'veryfast' encodes about 3× faster). ``audio_source``: a file
    whose first audio stream is carried along, in sync, up to the last written frame. Frames are written to
    ``name.partial.ext``; ``close()`` renames it to ``path``, ``abort()`` closes it (playable) and leaves it there.
    """

    def __init__(
        self,
        path: str,
        frame_rate: Fraction,
        *,
        bit_rate: Optional[int] = None,
        preset: Optional[str] = None,
        audio_source: Optional[str] = None,
        audio_start_time: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in VIDEO_FORMATS:
            raise ValueError(
                f"Output {self.path} has an unsupported extension; use one of {', '.join(VIDEO_FORMATS)}."
            )
        self.frame_rate = Fraction(frame_rate)
        self.bit_rate = bit_rate
        self.preset = preset
        self.partial = partial_path(self.path)
        self._container = av.open(str(self.partial), mode="w")
        self._stream = None
        self._audio = None
        self._audio_source = audio_source
        self._audio_start_time = audio_start_time
        self._index = 0

    def _open_stream(self, height: int, width: int, channels: int) -> None:
        codec, pix_fmt, alpha_pix_fmt = VIDEO_FORMATS[self.suffix]
        stream = self._container.add_stream(codec, rate=self.frame_rate)
        stream.width, stream.height = width, height
        if channels == 4 and alpha_pix_fmt is None:
            raise ValueError(f"Output {self.path} cannot carry alpha; use a .mov or .webm file for transparent video.")
        stream.pix_fmt = alpha_pix_fmt if channels == 4 else pix_fmt
        if codec == "libx264" and (width % 2 or height % 2):
            stream.pix_fmt = "yuv444p"  # 4:2:0 needs even sizes
            logger.warning("%s: odd frame size %d×%d, writing H.264 4:4:4", self.path, width, height)
        if codec == "prores_ks":
            stream.codec_context.options = {"profile": "4444"}
        elif codec == "libvpx-vp9":
            stream.codec_context.options = {"row-mt": "1", "deadline": "realtime", "cpu-used": "8"}
        if codec == "libx264" and self.preset is not None:
            stream.codec_context.options = {"preset": self.preset}
        if self.bit_rate and codec != "prores_ks":
            stream.bit_rate = self.bit_rate
        self._stream = stream
        if self._audio_source is not None:
            self._audio = _AudioCopier(Path(self._audio_source), self._container, self.suffix, self._audio_start_time)

    def write(self, frames: np.ndarray) -> None:
        """Append frames ``[N, H, W, 1|3|4]`` (uint8)."""
        n, height, width, channels = frames.shape  # [N, H, W, C]
        if self._stream is None:
            self._open_stream(height, width, channels)
        for image in frames:
            pixels = np.ascontiguousarray(image[..., 0] if channels == 1 else image)  # [H, W] or [H, W, C]
            frame = av.VideoFrame.from_ndarray(pixels, format=PIXEL_FORMATS[channels])
            frame.pts = self._index  # in the encoder's time base, 1 / frame_rate
            self._container.mux(self._stream.encode(frame))
            self._index += 1
            if self._audio is not None:
                self._audio.write_until(float(self._index / self.frame_rate))

    def skip(self, frames: int) -> None:
        """Leave ``frames`` frame times empty before the next frame, so the previous one stays on screen: a live
        recording keeps real time across frames that were dropped."""
        self._index += frames

    def _finish(self) -> None:
        if self._stream is not None:
            self._container.mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.close()
        self._container.close()

    def close(self) -> None:
        """Flush, close and give the file its final name (replacing an older file only now)."""
        self._finish()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Flush and close what was written (a playable file under ``name.partial.ext``); leave ``path`` alone."""
        self._finish()
        if self._index == 0:
            self.partial.unlink()
            return
        logger.warning("Interrupted: %d frames written to %s (%s left untouched)", self._index, self.partial, self.path)


class ImageSequenceWriter:
    """Writes uint8 frames ``[N, H, W, 1|3|4]`` as ``0000.png``, ``0001.png``… in folder ``path``.

    Frames go to ``path.partial/``; ``close()`` moves the folder to ``path`` (replacing an older one only then),
    ``abort()`` leaves the frames written so far in ``path.partial/``.
    """

    def __init__(self, path: str, *, extension: str = "png") -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        self.extension = extension
        self._index = 0

    def write(self, frames: np.ndarray) -> None:
        """Append frames ``[N, H, W, 1|3|4]`` (uint8)."""
        for image in frames:
            pixels = image[..., 0] if image.shape[-1] == 1 else image  # [H, W] or [H, W, C]
            Image.fromarray(pixels).save(self.partial / f"{self._index:04d}.{self.extension}")
            self._index += 1

    def close(self) -> None:
        """Give the folder its final name."""
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Keep the frames written so far in ``path.partial/`` (removed when there are none)."""
        if self._index == 0:
            self.partial.rmdir()
            return
        logger.warning("Interrupted: %d frames written to %s (%s left untouched)", self._index, self.partial, self.path)


_END = object()


class Prefetcher:
    """Runs an iterable in a thread, ``depth`` items ahead; errors are re-raised in the consumer."""

    def __init__(self, iterable: Iterable[Any], *, depth: int = 4) -> None:
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(iterable,), daemon=True)
        self._thread.start()

    def _run(self, iterable: Iterable[Any]) -> None:
        try:
            for item in iterable:
                if not self._put(item):
                    return
        except BaseException as error:  # handed to the consumer thread
            self._error = error
        self._put(_END)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _END:
                if self._error is not None:
                    raise self._error
                return
            yield item

    def close(self) -> None:
        """Stop the thread (it may be blocked on a full queue) and wait for it."""
        self._stop.set()
        self._thread.join()


class BackgroundWriter:
    """Runs ``writer.write(prepare(item))`` in a thread fed by a queue of ``depth`` items.

    ``prepare`` (e.g. compositing and converting model outputs to uint8) runs in the thread too, so the producer
    only queues. ``write`` re-raises an error of the thread. ``finish`` asks the thread to close the writer after
    the queued items (encoders flush their delayed frames there, all writers at once) and ``wait`` waits for it;
    ``abort`` lets the thread write what is already queued (at most ``depth`` items), then aborts the writer, so
    every frame computed before an interruption is in the playable partial file.
    """

    def __init__(self, writer: Any, *, prepare: Callable[[Any], np.ndarray] = np.asarray, depth: int = 4) -> None:
        self.writer = writer
        self.closed = False
        self._prepare = prepare
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._aborting = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                if self._error is None and not self._aborting:
                    try:
                        self.writer.close()
                        self.closed = True
                    except BaseException as error:  # handed to the producer thread
                        self._error = error
                return
            if self._error is None:
                try:
                    self.writer.write(self._prepare(item))
                except BaseException as error:  # handed to the producer thread
                    self._error = error

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, item: Any) -> None:
        """Queue ``item`` (blocks while the queue is full)."""
        self._raise_error()
        self._queue.put(item)

    def finish(self) -> None:
        """Close the writer in the thread once the queued items are written."""
        self._queue.put(_END)

    def wait(self) -> None:
        """Wait for ``finish`` to complete; re-raise the thread's error."""
        self._thread.join()
        self._raise_error()

    def abort(self) -> None:
        """Write what is queued, then abort the writer (unless it already closed)."""
        self._aborting = True
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        if not self.closed:
            self.writer.abort()


def run_writers(writers: List[BackgroundWriter], produce: Callable[[], None]) -> None:
    """Call ``produce`` (which feeds ``writers``), then close them all (in parallel); on any error or Ctrl-C abort
    those not closed, so each keeps what it wrote, playable, under its partial name."""
    try:
        produce()
        for writer in writers:
            writer.finish()
        for writer in writers:
            writer.wait()
    except BaseException:
        for writer in writers:
            try:
                writer.abort()
            except Exception:  # keep aborting the others; the original error is what the user needs
                logger.exception("Could not close %s after the interruption", writer.writer.path)
        raise
