"""What a phone or camera file says about how its frames are meant to be shown, read once and applied on purpose.

- ``Orientation``: the display matrix of a video (rotation by 90/180/270° and mirror flips, as phones write them) or
  the EXIF orientation of a photo, turned into the array operations that make stored pixels upright.
- ``ColourTags``: matrix, range, primaries and transfer of a video; ``decoding_colour`` picks what to decode with
  (the file's tags, or what players assume when they are missing), ``output_colour`` what every output declares,
  and ``check_not_hdr`` refuses PQ/HLG input with a command that converts it to SDR first.
- ``FrameTiming``: whether the input's frames come at a constant rate, and how long it lasts.
- ``Damage`` / ``DamagedInputError``: where a damaged or cut-short input stops being readable.

Colour codes are FFmpeg's (``AVColorSpace``, ``AVColorRange``, ``AVColorPrimaries``, ``AVColorTransferCharacteristic``),
the values PyAV frames and codec contexts carry.
"""
import shlex
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

Size = Tuple[int, int]  # (width, height)

# ------------------------------------------------------------------------------------------------ orientation
# EXIF orientation tag → (transpose, flip left-right, flip top-bottom), applied in that order (as in the TIFF spec:
# 1 upright, 3 rotated 180°, 6 needs 90° clockwise, 8 needs 90° counter-clockwise, 2/4/5/7 mirrored).
_EXIF = {
    1: (False, False, False),
    2: (False, True, False),
    3: (False, True, True),
    4: (False, False, True),
    5: (True, False, False),
    6: (True, True, False),
    7: (True, True, True),
    8: (True, False, True),
}


@dataclass(frozen=True)
class Orientation:
    """How stored pixels become upright: transpose (swap rows and columns) first, then mirror."""

    transpose: bool = False
    flip_horizontal: bool = False
    flip_vertical: bool = False

    @classmethod
    def from_display_matrix(cls, matrix: Sequence[int]) -> "Orientation":
        """FFmpeg's 3×3 display matrix (9 int32, row-major ``a b u / c d v / x y w``; libavutil/display.h).

        A stored pixel (p, q) (column, row, y pointing down) is displayed at (a·p + c·q, b·p + d·q), shifted to
        start at 0. Only the signs of a, b, c, d matter for the eight right-angle orientations; other angles are
        rounded to the nearest one.
        """
        a, b, c, d = (int(matrix[i]) for i in (0, 1, 3, 4))
        if abs(a) >= abs(b):  # no axis swap: p' = a·p, q' = d·q
            return cls(False, a < 0, d < 0)
        return cls(True, c < 0, b < 0)  # swap: p' = c·q, q' = b·p

    @classmethod
    def from_exif(cls, value: Optional[int]) -> "Orientation":
        """The EXIF orientation tag (1–8); anything else is treated as upright."""
        return cls(*_EXIF.get(value or 1, _EXIF[1]))

    @property
    def upright(self) -> bool:
        return not (self.transpose or self.flip_horizontal or self.flip_vertical)

    def upright_size(self, width: int, height: int) -> Size:
        """The displayed (width, height) of a stored ``width × height`` frame; also the inverse, since it only swaps."""
        return (height, width) if self.transpose else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Stored ``[H, W, C]`` (or ``[H, W]``) → upright, contiguous."""
        if self.upright:
            return image
        if self.transpose:
            image = image.swapaxes(0, 1)  # [W, H, C]
        if self.flip_horizontal:
            image = image[:, ::-1]
        if self.flip_vertical:
            image = image[::-1]
        return np.ascontiguousarray(image)

    def describe(self) -> str:
        """Words for logs: 'rotated 90° clockwise', 'mirrored left-right', …"""
        turns = {
            (False, False, False): "upright",
            (False, True, True): "rotated 180°",
            (True, True, False): "rotated 90° clockwise",
            (True, False, True): "rotated 90° counter-clockwise",
            (False, True, False): "mirrored left-right",
            (False, False, True): "mirrored top-bottom",
            (True, False, False): "transposed (mirrored along the diagonal)",
            (True, True, True): "transposed along the other diagonal",
        }
        return turns[(self.transpose, self.flip_horizontal, self.flip_vertical)]


# ------------------------------------------------------------------------------------------------ colour
UNSPECIFIED = 2  # AVCOL_SPC/PRI/TRC_UNSPECIFIED
RANGE_LIMITED, RANGE_FULL = 1, 2  # AVCOL_RANGE_MPEG, AVCOL_RANGE_JPEG
BT709, BT470BG, SMPTE170M = 1, 5, 6  # shared by AVColorSpace and AVColorPrimaries
TRANSFER_BT709, TRANSFER_SMPTE170M, TRANSFER_PQ, TRANSFER_HLG = 1, 6, 16, 18

# AVColorSpace → swscale's name for the YUV↔RGB matrix
SWS_MATRIX = {1: "itu709", 4: "fcc", 5: "itu601", 6: "itu601", 7: "smpte240m", 9: "bt2020"}
# matrices every output codec here (H.264 VUI, VP9, ProRes) can declare
OUTPUT_MATRICES = (BT709, BT470BG, SMPTE170M)

# ffprobe's names, for messages and documentation
MATRIX_NAMES = {
    0: "gbr", 1: "bt709", 2: "unknown", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc",
    10: "bt2020c",
}
PRIMARIES_NAMES = {
    1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
    11: "smpte431", 12: "smpte432",
}
TRANSFER_NAMES = {
    1: "bt709", 2: "unknown", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
    13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67",
}
RANGE_NAMES = {0: "unknown", 1: "tv", 2: "pc"}


def is_hd(width: int, height: int) -> bool:
    """Larger than standard definition: players assume BT.709 for such untagged video, BT.601 below."""
    return width >= 1280 or height > 576


@dataclass(frozen=True)
class ColourTags:
    """A video's colour description: YUV matrix, range, primaries, transfer (FFmpeg codes)."""

    matrix: int = BT709
    range: int = RANGE_LIMITED
    primaries: int = BT709
    transfer: int = TRANSFER_BT709

    @property
    def sws_matrix(self) -> str:
        return SWS_MATRIX.get(self.matrix, "itu709")

    def describe(self) -> str:
        """ffprobe's words: 'bt709/tv, primaries bt709, transfer bt709'."""
        return (
            f"{MATRIX_NAMES.get(self.matrix, self.matrix)}/{RANGE_NAMES.get(self.range, self.range)}, "
            f"primaries {PRIMARIES_NAMES.get(self.primaries, self.primaries)}, "
            f"transfer {TRANSFER_NAMES.get(self.transfer, self.transfer)}"
        )


def default_colour(width: int, height: int) -> ColourTags:
    """What players assume for untagged video: BT.709 for HD, BT.601 (SMPTE 170M) below; limited range."""
    if is_hd(width, height):
        return ColourTags(BT709, RANGE_LIMITED, BT709, TRANSFER_BT709)
    return ColourTags(SMPTE170M, RANGE_LIMITED, SMPTE170M, TRANSFER_SMPTE170M)


def decoding_colour(
    *, matrix: int, colour_range: int, primaries: int, transfer: int, pixel_format: str, width: int, height: int
) -> ColourTags:
    """The tags to decode a frame with: its own where set, else what players assume for its size; full range for
    ``yuvj*`` formats. RGB frames (matrix 0) keep their values."""
    fallback = default_colour(width, height)
    return ColourTags(
        matrix=matrix if matrix in SWS_MATRIX or matrix == 0 else fallback.matrix,
        range=colour_range if colour_range in (RANGE_LIMITED, RANGE_FULL) else (
            RANGE_FULL if pixel_format.startswith("yuvj") else RANGE_LIMITED
        ),
        primaries=primaries if primaries in PRIMARIES_NAMES and primaries != UNSPECIFIED else fallback.primaries,
        transfer=transfer if transfer in TRANSFER_NAMES and transfer != UNSPECIFIED else fallback.transfer,
    )


def output_colour(source: ColourTags, width: int, height: int, *, full_range_ok: bool) -> ColourTags:
    """What an output declares (and encodes with): the source's primaries and transfer (the RGB values are theirs),
    its matrix when every codec here can declare it (else BT.709 for HD, BT.601 below) and its range when the codec
    has a full-range flag (``full_range_ok``; ProRes has none)."""
    fallback = default_colour(width, height)
    return ColourTags(
        matrix=source.matrix if source.matrix in OUTPUT_MATRICES else fallback.matrix,
        range=source.range if full_range_ok else RANGE_LIMITED,
        primaries=source.primaries,
        transfer=source.transfer,
    )


SDR_COMMAND = (
    "ffmpeg -i {path} -vf zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=hable:desat=0,"
    "zscale=t=bt709:m=bt709:r=tv,format=yuv420p -c:a copy {output}"
)


def check_not_hdr(path: str, tags: ColourTags) -> None:
    """Refuse PQ (HDR10, Dolby Vision) and HLG input: the model works on SDR frames, and squeezing HDR into 8-bit
    SDR here would shift every colour without telling; the message gives the command that tone-maps it first."""
    if tags.transfer not in (TRANSFER_PQ, TRANSFER_HLG):
        return
    kind = "PQ (HDR10/Dolby Vision)" if tags.transfer == TRANSFER_PQ else "HLG"
    primaries = PRIMARIES_NAMES.get(tags.primaries, tags.primaries)
    raise ValueError(
        f"Input {path} is HDR video ({kind} transfer, {primaries} primaries). "
        "The model works on SDR frames and this tool does not tone-map; convert it to SDR first, e.g.\n  "
        + SDR_COMMAND.format(path=shlex.quote(path), output=shlex.quote(f"{Path(path).with_suffix('')}_sdr.mp4"))
        + "\nthen convert the _sdr.mp4 file."
    )


# ------------------------------------------------------------------------------------------------ timing
@dataclass(frozen=True)
class FrameTiming:
    """The input's frame timing: constant or variable rate, its average rate, duration (first frame's start to the
    last frame's end, seconds) and the number of frames."""

    constant: bool
    frame_rate: Fraction
    duration: float
    frames: int

    def describe(self) -> str:
        """'constant frame rate, 25.000 frames/s, 2.000 s' or 'variable frame rate, 8.333 frames/s on average, …'."""
        if self.constant:
            return f"constant frame rate, {float(self.frame_rate):.3f} frames/s, {self.duration:.3f} s"
        return f"variable frame rate, {float(self.frame_rate):.3f} frames/s on average, {self.duration:.3f} s"


def frame_timing(times: List[Fraction], *, tick: Fraction, nominal_rate: Fraction) -> FrameTiming:
    """Classify presentation ``times`` (seconds): constant when every interval is within one ``tick`` (the time
    base) of the median interval. The last frame lasts the median interval (``1 / nominal_rate`` for one frame);
    ``nominal_rate`` (the container's average rate) is reported as the rate."""
    intervals = [b - a for a, b in zip(times, times[1:])]
    typical = sorted(intervals)[len(intervals) // 2] if intervals else Fraction(1) / nominal_rate
    constant = all(abs(interval - typical) <= tick for interval in intervals)
    duration = (times[-1] - times[0] + typical) if times else Fraction(0)
    return FrameTiming(constant, nominal_rate, float(duration), len(times))


# ------------------------------------------------------------------------------------------------ damage
@dataclass(frozen=True)
class Damage:
    """Where a damaged or cut-short input stops: the problem, how many good frames came before it and the time of
    the last one (seconds from the first frame; None when there was none)."""

    path: str
    problem: str
    good_frames: int
    last_good_time: Optional[float]

    def describe(self) -> str:
        if self.good_frames == 0:
            return f"Input {self.path} is damaged: {self.problem}; no frame could be read before it."
        return (
            f"Input {self.path} is damaged: {self.problem}; the last good frame is frame {self.good_frames - 1} "
            f"at {self.last_good_time:.3f} s ({self.good_frames} good frames)."
        )


class DamagedInputError(ValueError):
    """A damaged or cut-short input, without ``allow_partial``: nothing was written. ``damage`` says where."""

    def __init__(self, damage: Damage, hint: str) -> None:
        super().__init__(f"{damage.describe()} {hint}")
        self.damage = damage


def declared_end(
    *, stream_duration: Optional[float], stream_tag: Optional[str], frame_count: int, frame_rate: Fraction
) -> Optional[float]:
    """How long the video stream says it lasts (seconds from its start): its own duration, the Matroska
    ``DURATION`` tag, or frames ÷ rate; None when the container says nothing about this stream."""
    if stream_duration:
        return stream_duration
    if stream_tag:
        hours, minutes, seconds = stream_tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if frame_count:
        return float(frame_count / frame_rate)
    return None


def transport_stream_cut(size: int) -> bool:
    """An MPEG-TS file whose size is not a whole number of 188-, 192- (M2TS) or 204-byte packets was cut."""
    return all(size % packet for packet in (188, 192, 204))

