"""Readers and writers for video conversion: frames move as uint8 ``[H, W, C]`` numpy arrays with their times.

``VideoReader`` decodes a video sequentially into upright RGB frames and their presentation times (seconds, exact
fractions), decoded with the file's colour matrix and range; ``ImageSequenceReader`` reads a folder of images (or
one image), upright by their EXIF orientation. What the file says about orientation, colour, timing and damage is
interpreted in ``inference_footage``.

``VideoWriter`` encodes H.264 (``.mp4``/``.mkv``), ProRes 4444 with alpha (``.mov``) or VP9 with alpha (``.webm``)
with each frame at its input time and declared colour tags, optionally carrying the audio of another file with its
offset to the video kept; ``ImageSequenceWriter`` writes sRGB PNG frames. Writers work under a temporary name next
to the destination, take the final name only when closed after success and delete it when aborted, so a failed run
leaves nothing behind and never replaces a file the user had. ``Prefetcher`` and ``BackgroundWriter`` move reading
and writing to threads so decoding, the model and encoding overlap.
"""
import logging
import os
import queue
import shutil
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import av
import av.error
import numpy as np
from av.video.reformatter import Interpolation
from PIL import Image, PngImagePlugin

from inference_footage import (
    RANGE_FULL,
    ColourTags,
    Damage,
    DamagedInputError,
    FrameTiming,
    Orientation,
    check_not_hdr,
    declared_end,
    decoding_colour,
    frame_timing,
    transport_stream_cut,
)

from file_types import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

IMAGE_SEQUENCE_FRAME_RATE = Fraction(30)
# extension → (codec, pixel format without alpha, pixel format with alpha or None)
VIDEO_FORMATS = {
    ".mp4": ("libx264", "yuv420p", None),
    ".mkv": ("libx264", "yuv420p", None),
    ".mov": ("prores_ks", "yuv444p10le", "yuva444p10le"),
    ".webm": ("libvpx-vp9", "yuv420p", "yuva420p"),
}
# codecs with no full-range flag: their outputs are limited range whatever the input's
LIMITED_RANGE_CODECS = ("prores_ks",)
# channels of a uint8 frame → PyAV pixel format
PIXEL_FORMATS = {1: "gray", 3: "rgb24", 4: "rgba"}
# container extension → audio codec used when the source's audio cannot be copied as is
AUDIO_TRANSCODE = {".mp4": "aac", ".mkv": "aac", ".mov": "aac", ".webm": "libopus"}
# YUV ↔ RGB conversions with exact rounding and full chroma interpolation: swscale's fast path is 1–2 levels low
# on 4:2:0 input (measured: 200,30,40 coded in BT.709 came back as 198,28,38; with these flags 199,30,39, the
# exact value of the coded YUV).
EXACT = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
# what the first frame of an image sequence or a still image is declared as: sRGB pixels, shown as BT.709 video
IMAGE_COLOUR = ColourTags()
# a PNG chunk saying the pixels are sRGB (rendering intent 0, perceptual)
SRGB_CHUNK = (b"sRGB", b"\x00")
# how far (seconds) a video stream may end before its declared end before it counts as cut short, beyond two frames
END_TOLERANCE = 0.1
ALLOW_PARTIAL_HINT = "Nothing was written; pass --allow-partial (allow_partial=True) to keep the good frames."

Size = Tuple[int, int]  # (width, height)
Timed = Tuple[np.ndarray, Fraction]  # an upright uint8 frame [H, W, 3] and its presentation time in seconds


def _open_input(path: Path) -> "av.container.InputContainer":
    """Open ``path`` with FFmpeg, turning its errors into messages that name the file and the fix."""
    if not path.is_file():
        raise FileNotFoundError(f"Input {path} does not exist; check the path (video file or image folder).")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as error:
        raise ValueError(
            f"Input {path} cannot be read as video ({error}): it is not a video file, or it is damaged or cut short "
            "(an MP4/MOV recording that was cut loses its index); pass a complete video file or a folder of images."
        ) from error


def _display_matrix(frame: "av.VideoFrame") -> Optional[np.ndarray]:
    """The display matrix FFmpeg attaches to decoded frames (from the container or the bitstream), or None."""
    for side_data in frame.side_data:
        if side_data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            return np.frombuffer(bytes(side_data), dtype="<i4")
    return None


class VideoReader:
    """Sequential decoder of the first video stream of ``path`` into upright uint8 RGB frames ``[H, W, 3]``.

    The first frame is decoded when the reader is made, so files with no video stream, no frames, HDR transfer or
    a broken start fail here, before any output is created. From it come ``orientation`` (the display matrix:
    frames are turned upright, and ``width``/``height`` are the upright size), ``colour`` (what frames are decoded
    with: the file's matrix and range, or what players assume when untagged) and ``start_time``. ``size``
    (width, height, upright) resizes while converting to RGB. ``threads`` is FFmpeg's decoder thread count (0 lets
    FFmpeg choose).

    ``timed()`` yields frames with their presentation times; iterating the reader yields the frames alone.
    Damage (a decoder error, missing data, a stream that ends before its declared end) stops the frames at the last
    good one: with ``allow_partial`` it is logged and kept in ``damage``, otherwise ``DamagedInputError`` is raised.
    Once all frames are read, ``timing`` says whether they came at a constant rate.
    """

    def __init__(
        self, path: str, *, size: Optional[Size] = None, threads: int = 0, allow_partial: bool = False
    ) -> None:
        self.path = Path(path)
        self.allow_partial = allow_partial
        self.damage: Optional[Damage] = None
        self.timing: Optional[FrameTiming] = None
        self._problem: Optional[str] = None
        self._times: List[Fraction] = []
        self._last_duration: Optional[Fraction] = None
        self._container = _open_input(self.path)
        try:
            self._start(size, threads)
        except BaseException:
            self._container.close()
            raise
        self._used = False

    def _start(self, size: Optional[Size], threads: int) -> None:
        if not self._container.streams.video:
            raise ValueError(f"Input {self.path} has no video stream; pass a file with video in it.")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = threads
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self.frame_rate: Fraction = Fraction(rate) if rate else IMAGE_SEQUENCE_FRAME_RATE
        self.frame_count: Optional[int] = self._stream.frames or None  # container's count; may be absent
        self.time_base = Fraction(self._stream.time_base) if self._stream.time_base else Fraction(1, 90000)
        self._frames = self._decoded()
        self._first = next(self._frames, None)
        if self._first is None:
            if self._problem is not None:
                raise DamagedInputError(Damage(str(self.path), self._problem, 0, None), "Nothing was written.")
            raise ValueError(f"Input {self.path} has a video stream with no frames; pass a video with at least one frame.")
        first = self._first
        matrix = _display_matrix(first)
        self.orientation = Orientation.from_display_matrix(matrix) if matrix is not None else Orientation()
        self.colour = decoding_colour(
            matrix=int(first.colorspace), colour_range=int(first.color_range), primaries=int(first.color_primaries),
            transfer=int(first.color_trc), pixel_format=first.format.name, width=first.width, height=first.height,
        )
        check_not_hdr(str(self.path), self.colour)
        upright = self.orientation.upright_size(first.width, first.height)
        self.width, self.height = size if size is not None else upright
        self._decode_size = self.orientation.upright_size(self.width, self.height)  # stored orientation
        self.start_time: Fraction = self._times[0]
        if not self.orientation.upright:
            logger.info("%s: stored %s, turned upright to %d×%d", self.path, self.orientation.describe(), *upright)

    def _time(self, frame: "av.VideoFrame") -> Fraction:
        """The frame's presentation time in seconds; a frame without one follows the previous by one frame."""
        if frame.pts is not None:
            return Fraction(frame.pts) * self.time_base
        return self._times[-1] + 1 / self.frame_rate if self._times else Fraction(0)

    def _decoded(self) -> Iterator["av.VideoFrame"]:
        """Frames in presentation order up to the first sign of damage, which is noted in ``_problem``; frames
        flagged corrupt before the first good one (a stream starting mid-GOP) are skipped."""
        codec = self._stream.codec_context
        try:
            for packet in self._container.demux(self._stream):
                if packet.is_corrupt and packet.size:
                    self._problem = f"video data is missing after {float(self._elapsed()):.3f} s (corrupt packet)"
                    break
                for frame in codec.decode(packet if packet.size else None):
                    if frame.is_corrupt:
                        if not self._times:
                            logger.warning("%s: skipping an incomplete frame before the first good one", self.path)
                            continue
                        after = float(self._elapsed())
                        self._problem = f"the frame after {after:.3f} s could not be decoded completely"
                        return
                    yield self._keep(frame)
        except av.error.FFmpegError as error:
            self._problem = f"decoding failed after {float(self._elapsed()):.3f} s ({error})"
            return
        if self._problem is None:
            return
        try:  # the decoder may still hold good frames that came before the damaged data
            for frame in codec.decode(None):
                if not frame.is_corrupt:
                    yield self._keep(frame)
        except av.error.FFmpegError:
            pass

    def _keep(self, frame: "av.VideoFrame") -> "av.VideoFrame":
        self._times.append(self._time(frame))
        self._last_duration = Fraction(frame.duration) * self.time_base if frame.duration else None
        return frame

    def _elapsed(self) -> Fraction:
        """Seconds from the first frame to the last good one (0 before any)."""
        return self._times[-1] - self._times[0] if self._times else Fraction(0)

    def _ends_early(self) -> Optional[str]:
        """Why the stream looks cut short, or None: its last frame ends well before the end the container declares
        for it (or, when it declares nothing for this stream, before the file's end with no other stream reaching
        it), or an MPEG-TS file ends inside a packet."""
        if self._container.format.name == "mpegts" and transport_stream_cut(self.path.stat().st_size):
            return "the file ends inside a transport-stream packet (it was cut)"
        intervals = [b - a for a, b in zip(self._times, self._times[1:])]
        typical = sorted(intervals)[len(intervals) // 2] if intervals else 1 / self.frame_rate
        video_end = self._times[-1] + (self._last_duration or typical)
        tolerance = 2 * typical + Fraction(END_TOLERANCE)
        stream = self._stream
        start = Fraction(stream.start_time) * self.time_base if stream.start_time is not None else self._times[0]
        declared = declared_end(
            stream_duration=float(stream.duration * self.time_base) if stream.duration else None,
            stream_tag=stream.metadata.get("DURATION"), frame_count=stream.frames, frame_rate=self.frame_rate,
        )
        if declared is not None:
            if video_end < start + Fraction(declared) - tolerance:
                return (
                    f"the video stops at {float(video_end - self._times[0]):.3f} s but the file declares "
                    f"{declared:.3f} s (cut short or data missing)"
                )
            return None
        container = self._container
        if container.duration is None:
            return None
        file_end = Fraction(container.start_time or 0, 1_000_000) + Fraction(container.duration, 1_000_000)
        if video_end >= file_end - tolerance or self._other_streams_reach(file_end - tolerance):
            return None
        return (
            f"the video stops at {float(video_end - self._times[0]):.3f} s but the file declares "
            f"{float(file_end - self._times[0]):.3f} s and no stream reaches it (cut short)"
        )

    def _other_streams_reach(self, end: Fraction) -> bool:
        """Whether a stream other than the video has packets up to ``end`` (seconds): the video is just shorter."""
        with av.open(str(self.path)) as container:
            others = [stream for stream in container.streams if stream.type != "video"]
            if not others:
                return False
            for packet in container.demux(others):
                if packet.pts is not None and (packet.pts + (packet.duration or 0)) * packet.time_base >= end:
                    return True
        return False

    def _finish(self) -> None:
        """After the last frame: record the timing; report damage (raise unless ``allow_partial``)."""
        self.timing = frame_timing(self._times, tick=self.time_base, nominal_rate=self.frame_rate)
        problem = self._problem or self._ends_early()
        if problem is None:
            return
        self.damage = Damage(str(self.path), problem, len(self._times), float(self._elapsed()))
        if not self.allow_partial:
            raise DamagedInputError(self.damage, ALLOW_PARTIAL_HINT)
        logger.warning("%s Keeping the %d good frames (allow_partial).", self.damage.describe(), len(self._times))

    def _rgb(self, frame: "av.VideoFrame") -> np.ndarray:
        """The frame as upright uint8 RGB ``[H, W, 3]``, decoded with ``colour``'s matrix and range."""
        width, height = self._decode_size
        image = frame.reformat(
            width=width, height=height, format="rgb24", src_colorspace=self.colour.sws_matrix,
            src_color_range=self.colour.range, interpolation=EXACT,
        ).to_ndarray()  # [h, w, 3] as stored
        return self.orientation.apply(image)  # [H, W, 3]

    def timed(self) -> Iterator[Timed]:
        """Upright frames ``[H, W, 3]`` with their presentation times (seconds); a reader is read once."""
        if self._used:
            raise ValueError(f"VideoReader for {self.path} is sequential and was already read; make a new one.")
        self._used = True
        try:
            frame = self._first
            index = 0
            while frame is not None:
                yield self._rgb(frame), self._times[index]
                index += 1
                frame = next(self._frames, None)
            self._finish()
        finally:
            self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        for image, _ in self.timed():
            yield image

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


def _exif_orientation(image: Image.Image) -> Orientation:
    return Orientation.from_exif(image.getexif().get(0x0112))  # 0x0112: the EXIF orientation tag


class ImageSequenceReader:
    """The images of a folder (sorted by name, non-image files skipped), or one image file, as upright uint8 RGB
    frames ``[H, W, 3]`` (each turned by its EXIF orientation) at 30 frames/s.

    Every image's header is read when the reader is made: an empty folder, an unreadable image or images of
    different (upright) sizes fail here, before any work.
    """

    def __init__(self, path: str, *, size: Optional[Size] = None) -> None:
        self.path = Path(path)
        if self.path.is_file():
            self.files = [self.path]
        elif self.path.is_dir():
            self.files = list_images(self.path)
        else:
            raise FileNotFoundError(f"Input {self.path} does not exist; check the path (image file or folder).")
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
                    f"{first_size[0]}×{first_size[1]} (upright); all frames of a sequence must have one size "
                    "(resize them)."
                )
        self.frame_rate = IMAGE_SEQUENCE_FRAME_RATE
        self.frame_count: Optional[int] = len(self.files)
        self.time_base = 1 / IMAGE_SEQUENCE_FRAME_RATE
        self.start_time = Fraction(0)
        self.colour = IMAGE_COLOUR
        self.damage: Optional[Damage] = None
        self.timing = FrameTiming(True, self.frame_rate, float(len(self.files) / self.frame_rate), len(self.files))
        self.width, self.height = size if size is not None else first_size

    @staticmethod
    def _probe(file: Path) -> Size:
        """The upright (width, height) of ``file``."""
        try:
            with Image.open(file) as image:
                return _exif_orientation(image).upright_size(*image.size)
        except (OSError, ValueError) as error:
            raise ValueError(f"Image {file} cannot be read ({error}); remove or replace it.") from error

    def timed(self) -> Iterator[Timed]:
        """Upright frames ``[H, W, 3]`` with their times (index / 30 s)."""
        for index, file in enumerate(self.files):
            with Image.open(file) as image:
                orientation = _exif_orientation(image)
                stored = orientation.upright_size(self.width, self.height)
                rgb = image.convert("RGB")
                if rgb.size != stored:
                    rgb = rgb.resize(stored, Image.BILINEAR)
                yield orientation.apply(np.asarray(rgb)), index / self.frame_rate  # [H, W, 3]

    def __iter__(self) -> Iterator[np.ndarray]:
        for image, _ in self.timed():
            yield image

    def close(self) -> None:
        """Nothing to release: each image is opened and closed as it is read."""


Reader = Union[VideoReader, ImageSequenceReader]


def open_reader(path: str, *, size: Optional[Size] = None, threads: int = 0, allow_partial: bool = False) -> Reader:
    """A ``VideoReader`` for a video file, an ``ImageSequenceReader`` for a folder or an image file."""
    if Path(path).is_dir() or Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSequenceReader(path, size=size)
    return VideoReader(path, size=size, threads=threads, allow_partial=allow_partial)


def partial_path(path: Path) -> Path:
    """Where a writer works before the result takes ``path``'s name: ``name.partial.ext`` in the same folder."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def make_folders(folders: Iterable[Path]) -> List[Path]:
    """Create the missing ones of ``folders`` and their parents; returns those made, outermost first (for
    :func:`remove_empty_folders` after a failure)."""
    made: List[Path] = []
    for folder in folders:
        missing = [folder, *folder.parents]
        missing = [path for path in reversed(missing) if not path.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        made += [path for path in missing if path not in made]
    return made


def remove_empty_folders(folders: List[Path]) -> None:
    """Remove those of ``folders`` (as :func:`make_folders` returns them) that are empty, innermost first."""
    for folder in reversed(folders):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def audio_start(path: str) -> Optional[Fraction]:
    """When the first audio stream of ``path`` starts (seconds), or None when there is none or it has no data
    (e.g. a recording cut before its first audio packet; logged)."""
    if Path(path).is_dir() or Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        return None
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        if not stream.codec_context.sample_rate:
            logger.warning("%s: its audio track holds no usable data; the outputs will have no audio", path)
            return None
        if stream.start_time is not None:
            return Fraction(stream.start_time) * Fraction(stream.time_base)
        for packet in container.demux(stream):
            if packet.pts is not None:
                return Fraction(packet.pts) * Fraction(stream.time_base)
    return None


class _AudioCopier:
    """Feeds the first audio stream of ``source`` into ``output``, copied as is when the container accepts the
    codec, else transcoded. Every time is shifted by ``start_time`` (the moment that becomes 0 in the output, the
    same shift as the video's), so audio keeps its offset to the video exactly. Packets are written up to a time
    so audio and video stay interleaved."""

    def __init__(self, source: Path, output: "av.container.OutputContainer", suffix: str, start_time: Fraction) -> None:
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
        # encoder priming packets (flagged discard, before 0) are honoured by MP4/MOV edit lists; Matroska/WebM would
        # play them and shift the sound by their length (as ffmpeg -c copy does), so they are left out there
        self._drop_priming = self._copy and suffix in (".mkv", ".webm")
        self._offset = int(round(start_time / Fraction(self._in_stream.time_base)))  # input ticks
        self._encoded_shift: Optional[int] = None  # transcoding: output ticks added to the encoder's own times
        self._packets = self._input.demux(self._in_stream)
        self._done = False

    def write_until(self, seconds: Fraction) -> None:
        """Write source audio whose start is before ``seconds`` (output time)."""
        while not self._done:
            packet = next(self._packets, None)
            if packet is None or packet.dts is None and packet.size == 0:
                self._done = True
                break
            if packet.pts is None or packet.is_discard and self._drop_priming:
                continue
            packet.pts -= self._offset
            packet.dts = packet.dts - self._offset if packet.dts is not None else None
            self._write(packet)
            if packet.pts * packet.time_base >= seconds:
                break

    def _write(self, packet: "av.Packet") -> None:
        if self._copy:
            packet.stream = self._out_stream
            self._output.mux(packet)
            return
        for frame in packet.decode():
            if self._encoded_shift is None:  # the encoder numbers samples from 0: start them where the audio starts
                start = Fraction(packet.pts) * Fraction(packet.time_base)
                self._encoded_shift = int(round(start * self._out_stream.codec_context.sample_rate))
            frame.pts = None
            self._mux_encoded(self._out_stream.encode(frame))

    def _mux_encoded(self, packets: Sequence["av.Packet"]) -> None:
        for packet in packets:
            if packet.pts is not None:
                packet.pts += self._encoded_shift or 0
            if packet.dts is not None:
                packet.dts += self._encoded_shift or 0
            self._output.mux(packet)

    def close(self) -> None:
        """Flush a transcoding encoder and release the source."""
        if not self._copy:
            self._mux_encoded(self._out_stream.encode(None))
        self._input.close()

    def abort(self) -> None:
        """Release the source without flushing (the output is being deleted)."""
        self._input.close()


class VideoWriter:
    """Encodes uint8 frames ``[N, H, W, 1|3|4]`` (grey, RGB, RGBA) to ``path``, each at its given time.

    The codec follows the extension (``VIDEO_FORMATS``); 4-channel frames keep their alpha in ``.mov``
    (ProRes 4444) and ``.webm`` (VP9). ``bit_rate`` (bits/s) applies to H.264 and VP9; ``preset`` is the x264
    preset for H.264 (None: x264's default, medium; 'veryfast' encodes about 3× faster).

    Timing: ``write(frames, times)`` places each frame at its time (seconds) minus ``start_time``, in ``time_base``
    (the input's, where the container allows; Matroska/WebM count milliseconds), so constant and variable rates
    alike come out as they went in; without times frames follow each other at ``frame_rate``, which is also the
    declared rate. Colour: RGB is converted to YUV with ``colour``'s matrix and range, and the output declares that
    matrix, range, primaries and transfer (ProRes: always limited range). ``audio_source``: a file whose first audio
    stream is carried along, shifted by the same ``start_time``, up to the last written frame.

    Nothing touches the disk before the first frame. Frames go to ``name.partial.ext``; ``close()`` renames it to
    ``path`` (``finish()`` flushes and closes, ``commit()`` renames: ``run_writers`` renames only once every output is
finished), ``abort()`` deletes it (``path`` is left as it was).
    """

    def __init__(
        self,
        path: str,
        frame_rate: Fraction,
        *,
        bit_rate: Optional[int] = None,
        preset: Optional[str] = None,
        audio_source: Optional[str] = None,
        start_time: Fraction = Fraction(0),
        time_base: Optional[Fraction] = None,
        colour: Optional[ColourTags] = None,
    ) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in VIDEO_FORMATS:
            raise ValueError(
                f"Output {self.path} has an unsupported extension; use one of {', '.join(VIDEO_FORMATS)}."
            )
        self.frame_rate = Fraction(frame_rate)
        self.time_base = Fraction(time_base) if time_base is not None else 1 / self.frame_rate
        self.start_time = Fraction(start_time)
        self.bit_rate = bit_rate
        self.preset = preset
        self.colour = colour or ColourTags()
        self.partial = partial_path(self.path)
        self._container: Optional["av.container.OutputContainer"] = None
        self._stream = None
        self._audio: Optional[_AudioCopier] = None
        self._audio_source = audio_source
        self._index = 0
        self._last_pts: Optional[int] = None

    def _open(self, height: int, width: int, channels: int) -> None:
        codec, pix_fmt, alpha_pix_fmt = VIDEO_FORMATS[self.suffix]
        if channels == 4 and alpha_pix_fmt is None:
            raise ValueError(f"Output {self.path} cannot carry alpha; use a .mov or .webm file for transparent video.")
        self._container = av.open(str(self.partial), mode="w")
        stream = self._container.add_stream(codec, rate=self.frame_rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = alpha_pix_fmt if channels == 4 else pix_fmt
        if codec == "libx264" and (width % 2 or height % 2):
            stream.pix_fmt = "yuv444p"  # 4:2:0 needs even sizes
            logger.warning("%s: odd frame size %d×%d, writing H.264 4:4:4", self.path, width, height)
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        if codec in LIMITED_RANGE_CODECS:
            self.colour = ColourTags(self.colour.matrix, 1, self.colour.primaries, self.colour.transfer)
        context = stream.codec_context
        context.colorspace, context.color_range = self.colour.matrix, self.colour.range
        context.color_primaries, context.color_trc = self.colour.primaries, self.colour.transfer
        if codec == "prores_ks":
            context.options = {"profile": "4444"}
        elif codec == "libvpx-vp9":
            context.options = {"row-mt": "1", "deadline": "realtime", "cpu-used": "8"}
        if codec == "libx264" and self.preset is not None:
            context.options = {"preset": self.preset}
        if self.bit_rate and codec != "prores_ks":
            stream.bit_rate = self.bit_rate
        self._stream = stream
        if self._audio_source is not None:
            self._audio = _AudioCopier(Path(self._audio_source), self._container, self.suffix, self.start_time)

    def _pts(self, time: Optional[Fraction]) -> int:
        """``time`` (seconds) as a timestamp in ``time_base`` from ``start_time``, kept strictly increasing."""
        if time is None:
            pts = int(round(self._index / self.frame_rate / self.time_base))
        else:
            pts = int(round((time - self.start_time) / self.time_base))
        if self._last_pts is not None and pts <= self._last_pts:
            if time is not None:
                logger.warning("%s: input times do not increase at frame %d; moved one tick on", self.path, self._index)
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    def _frame(self, image: np.ndarray, channels: int) -> "av.VideoFrame":
        """uint8 ``[H, W, C]`` → a frame in the stream's pixel format, converted and tagged with ``colour``."""
        pixels = np.ascontiguousarray(image[..., 0] if channels == 1 else image)  # [H, W] or [H, W, C]
        frame = av.VideoFrame.from_ndarray(pixels, format=PIXEL_FORMATS[channels]).reformat(
            format=self._stream.pix_fmt, dst_colorspace=self.colour.sws_matrix, dst_color_range=self.colour.range,
            src_color_range=RANGE_FULL,
        )
        frame.colorspace, frame.color_range = self.colour.matrix, self.colour.range
        frame.color_primaries, frame.color_trc = self.colour.primaries, self.colour.transfer
        return frame

    def write(self, frames: np.ndarray, times: Optional[Sequence[Optional[Fraction]]] = None) -> None:
        """Append frames ``[N, H, W, 1|3|4]`` (uint8) at ``times`` (seconds; None: one frame after another)."""
        n, height, width, channels = frames.shape  # [N, H, W, C]
        if self._stream is None:
            self._open(height, width, channels)
        for i, image in enumerate(frames):
            frame = self._frame(image, channels)
            frame.pts = self._pts(times[i] if times is not None else None)
            frame.time_base = self.time_base
            self._container.mux(self._stream.encode(frame))
            self._index += 1
            if self._audio is not None:  # audio up to the end of this frame
                self._audio.write_until(frame.pts * self.time_base + 1 / self.frame_rate)

    def finish(self) -> None:
        """Flush the encoder and close the file, still under its partial name."""
        if self._container is None:
            raise ValueError(f"Output {self.path}: no frame was written, so there is no video to save.")
        self._container.mux(self._stream.encode(None))
        if self._audio is not None:
            self._audio.close()
        self._container.close()

    def commit(self) -> None:
        """Give the finished file its final name (replacing an older file only now)."""
        os.replace(self.partial, self.path)

    def close(self) -> None:
        """``finish`` then ``commit``."""
        self.finish()
        self.commit()

    def abort(self) -> None:
        """Drop what was written: close and delete ``name.partial.ext``; ``path`` is left as it was."""
        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError) as error:  # the file is deleted anyway
                logger.debug("Closing %s after a failure: %s", self.partial, error)
            if self._audio is not None:
                self._audio.abort()
        self.partial.unlink(missing_ok=True)


class ImageSequenceWriter:
    """Writes uint8 frames ``[N, H, W, 1|3|4]`` as ``0000.png``, ``0001.png``… in folder ``path``, marked sRGB.

    Frames go to ``path.partial/`` (made at the first frame); ``close()`` (``finish()`` then ``commit()``) moves the
    folder to ``path``, replacing an older one only then; ``abort()`` deletes ``path.partial/``.
    """

    def __init__(self, path: str, *, extension: str = "png") -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.extension = extension
        self._info = PngImagePlugin.PngInfo()
        self._info.add(*SRGB_CHUNK)
        self._index = 0

    def write(self, frames: np.ndarray, times: Optional[Sequence[Optional[Fraction]]] = None) -> None:
        """Append frames ``[N, H, W, 1|3|4]`` (uint8); ``times`` are not stored (PNG frames have none)."""
        if self._index == 0:
            if self.partial.exists():
                shutil.rmtree(self.partial)
            self.partial.mkdir(parents=True)
        for image in frames:
            pixels = image[..., 0] if image.shape[-1] == 1 else image  # [H, W] or [H, W, C]
            Image.fromarray(pixels).save(self.partial / f"{self._index:04d}.{self.extension}", pnginfo=self._info)
            self._index += 1

    def finish(self) -> None:
        """Check that there is something to save (every frame is already on disk)."""
        if self._index == 0:
            raise ValueError(f"Output {self.path}: no frame was written, so there is no sequence to save.")

    def commit(self) -> None:
        """Give the folder its final name (replacing an older one only now)."""
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.partial, self.path)

    def close(self) -> None:
        """``finish`` then ``commit``."""
        self.finish()
        self.commit()

    def abort(self) -> None:
        """Delete the frames written so far; ``path`` is left as it was."""
        shutil.rmtree(self.partial, ignore_errors=True)


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
    """Runs ``writer.write(prepare(item), times)`` in a thread fed by a queue of ``depth`` items.

    ``prepare`` (e.g. compositing and converting model outputs to uint8) runs in the thread too, so the producer
    only queues; ``times`` (the frames' presentation times) go to the writer untouched. ``write`` re-raises an
    error of the thread. ``finish`` asks the thread to finish the writer after the queued items (encoders flush
    their delayed frames there, all writers at once), ``wait`` waits for it and ``commit`` gives the output its
    final name; ``abort`` drops what is queued and aborts the writer, which deletes what it wrote.
    """

    def __init__(self, writer: Any, *, prepare: Callable[[Any], np.ndarray] = np.asarray, depth: int = 4) -> None:
        self.writer = writer
        self.committed = False
        self._prepare = prepare
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._aborting = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is _END:
                if self._error is None and not self._aborting:
                    try:
                        self.writer.finish()
                    except BaseException as error:  # handed to the producer thread
                        self._error = error
                return
            if self._error is None and not self._aborting:
                item, times = entry
                try:
                    self.writer.write(self._prepare(item), times)
                except BaseException as error:  # handed to the producer thread
                    self._error = error

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, item: Any, times: Optional[Sequence[Any]] = None) -> None:
        """Queue ``item`` and its frames' ``times`` (blocks while the queue is full)."""
        self._raise_error()
        self._queue.put((item, times))

    def finish(self) -> None:
        """Finish the writer in the thread once the queued items are written."""
        self._queue.put(_END)

    def wait(self) -> None:
        """Wait for ``finish`` to complete; re-raise the thread's error."""
        self._thread.join()
        self._raise_error()

    def commit(self) -> None:
        """Give the finished output its final name."""
        self.writer.commit()
        self.committed = True

    def abort(self) -> None:
        """Drop what is queued and abort the writer (deleting its partial output), unless it is committed."""
        self._aborting = True
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        if not self.committed:
            self.writer.abort()


def run_writers(writers: List[BackgroundWriter], produce: Callable[[], None]) -> None:
    """Make the outputs' folders, call ``produce`` (which feeds ``writers``), finish them all (in parallel), then
    give every output its final name. On any error or Ctrl-C before that, abort every writer and remove the
    folders made here, so no partial output or empty folder stays behind and no existing file is replaced, and
    re-raise."""
    made = make_folders(writer.writer.path.parent for writer in writers)
    try:
        produce()
        for writer in writers:
            writer.finish()
        for writer in writers:
            writer.wait()
        for writer in writers:
            writer.commit()
    except BaseException:
        for writer in writers:
            try:
                writer.abort()
            except Exception:  # keep aborting the others; the original error is what the user needs
                logger.exception("Could not remove the partial output of %s", writer.writer.path)
        remove_empty_folders(made)
        raise
