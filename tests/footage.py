"""Real-shaped phone and camera files for the footage tests, made with the ``ffmpeg`` program, and the
``ffprobe``/``ffmpeg`` readings that judge outputs as a player would.

``Footage(folder, portrait)`` builds each file the first time it is asked for (a few frames, at most 256 px where
the property allows) and returns the same path afterwards; tests share one instance per session. The portrait is
one of ``../shared/data/portraits`` (read in place). Files:

- ``upright()`` a 3-frame portrait clip (192×240, 25 frames/s, lossless H.264 4:2:0) and ``rotated(90|180|270)``
  the same clip stored turned, with the display matrix that turns it back (what phones write); ``mirrored()``
  stored mirrored left-right with a mirroring matrix (front cameras; written with PyAV, because ffmpeg 5.1 can
  only write rotations);
- ``vfr()`` 10 frames at 25 frames/s with a 0.8 s pause after the fifth; ``audio_offset()`` audio starting 0.3 s
  before the video;
- ``solid(kind)`` a flat 200,30,40 frame coded as HD BT.709, SD BT.601 (SMPTE 170M), full-range BT.709 or
  untagged HD; ``hevc10()`` 10-bit HEVC BT.709; ``hdr(transfer)`` 10-bit HEVC tagged PQ or HLG; ``odd()`` 63×47;
- ``truncated(kind)`` cut copies of a 2 s clip with audio: MPEG-TS cut after its first frames or half-way, MKV and
  MP4 (index first) cut half-way, MP4 with its index at the end cut half-way; ``exif_jpeg()`` a JPEG stored
  turned with EXIF orientation 6, next to the upright JPEG.
"""
import json
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import av
import numpy as np
from PIL import Image

SOLID = (200, 30, 40)
UPRIGHT_SIZE = (192, 240)  # (width, height) of the portrait clip
VFR_PAUSE = 0.8  # seconds
AUDIO_LEAD = 0.3  # seconds the audio starts before the video
FFMPEG_TIMEOUT = 120  # seconds; every file here takes well under one

# ffmpeg 5.1's -metadata rotate=R shows the stored frame turned R° counter-clockwise, so the stored frame is the
# upright one turned R° clockwise
STORE_TURNED = {90: "transpose=clock", 180: "hflip,vflip", 270: "transpose=cclock"}
# the display matrix (FFmpeg layout, 16.16 fixed point) that mirrors left-right
MIRROR_MATRIX = [-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30]

# full (R, G, B) weights of the YUV matrices ffprobe names
KR_KB = {"bt709": (0.2126, 0.0722), "smpte170m": (0.299, 0.114), "bt470bg": (0.299, 0.114)}


def ffmpeg(*args: str) -> None:
    """Run the ffmpeg program quietly; fail with its message."""
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


def ffprobe(path: Path, *entries: str, select: str = "") -> dict:
    """ffprobe's JSON for ``-show_entries`` ``entries`` (e.g. 'stream=width,height', 'frame=pts_time'), of the
    streams ``select`` names (e.g. 'v:0'; all by default)."""
    chosen = ["-select_streams", select] if select else []
    command = ["ffprobe", "-v", "error", "-of", "json", *chosen, "-show_entries", ":".join(entries), str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT, check=True)
    return json.loads(done.stdout)


def streams(path: Path) -> Dict[str, dict]:
    """The first stream of each type ('video', 'audio') with what players read: size, start, colour, side data."""
    entries = (
        "stream=codec_type,width,height,start_time,time_base,color_space,color_range,color_primaries,"
        "color_transfer:stream_side_data"
    )
    found: Dict[str, dict] = {}
    for stream in ffprobe(path, entries)["streams"]:
        found.setdefault(stream["codec_type"], stream)
    return found


def frame_times(path: Path) -> List[float]:
    """Presentation times (seconds) of the video frames, as ffprobe decodes them."""
    frames = ffprobe(path, "frame=best_effort_timestamp_time", select="v:0")["frames"]
    return [float(frame["best_effort_timestamp_time"]) for frame in frames]


def decode_grey(path: Path) -> np.ndarray:
    """All frames as 8-bit grey ``[N, H, W]``, decoded by the ffmpeg program (which applies display matrices)."""
    width, height = (int(streams(path)["video"][key]) for key in ("width", "height"))
    rotated = [side for side in streams(path)["video"].get("side_data_list", []) if "rotation" in side]
    if rotated and rotated[0]["rotation"] % 180:
        width, height = height, width
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, timeout=FFMPEG_TIMEOUT, check=True,
    )
    return np.frombuffer(done.stdout, np.uint8).reshape(-1, height, width)


def player_rgb(path: Path) -> np.ndarray:
    """The first frame ``[H, W, 3]`` (float) as a player shows it: the coded YUV read by ffmpeg without any matrix
    or range conversion, then turned into RGB with the matrix and range the file declares (exact arithmetic, as
    GPU players do). Fails when the file declares no matrix or range."""
    video = streams(path)["video"]
    matrix, colour_range = video.get("color_space"), video.get("color_range")
    if matrix not in KR_KB or colour_range not in ("tv", "pc"):
        raise AssertionError(f"{path} declares matrix {matrix!r}, range {colour_range!r}: a player would have to guess")
    width, height = int(video["width"]), int(video["height"])
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-vf", f"scale=out_range={colour_range}",
         "-f", "rawvideo", "-pix_fmt", "yuv444p16le", "-"],
        capture_output=True, timeout=FFMPEG_TIMEOUT, check=True,
    )
    y, u, v = np.frombuffer(done.stdout, "<u2").reshape(3, height, width).astype(np.float64) / 256  # 8-bit scale
    if colour_range == "tv":
        y, u, v = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
    else:
        u, v = u - 128, v - 128
    kr, kb = KR_KB[matrix]
    red, blue = y + 2 * (1 - kr) * v, y + 2 * (1 - kb) * u
    green = (y - kr * red - kb * blue) / (1 - kr - kb)
    return np.stack([red, green, blue], axis=-1)  # [H, W, 3]


class Footage:
    """Builds the test inputs into ``folder`` on first use (see the module docstring)."""

    def __init__(self, folder: Path, portrait: Path) -> None:
        self.folder = folder
        self.portrait = portrait
        self._made: Dict[str, Path] = {}

    def _once(self, name: str, build) -> Path:
        if name not in self._made:
            path = self.folder / name
            build(path)
            self._made[name] = path
        return self._made[name]

    # ------------------------------------------------------------------ orientation
    def upright(self) -> Path:
        """The portrait, 192×240, 3 frames at 25 frames/s with the crop moving (the recurrent states see motion)."""
        width, height = UPRIGHT_SIZE
        crop = f"scale={width + 12}:{height + 6},crop={width}:{height}:'4*n':'2*n'"
        return self._once("upright.mp4", lambda path: ffmpeg(
            "-loop", "1", "-framerate", "25", "-i", str(self.portrait), "-vf", crop, "-frames:v", "3",
            "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(path),
        ))

    def rotated(self, degrees: int) -> Path:
        """The upright clip stored turned ``degrees`` clockwise with the matrix that shows it upright again."""
        def build(path: Path) -> None:
            stored = path.with_name(f"stored{degrees}.mp4")
            ffmpeg("-i", str(self.upright()), "-vf", STORE_TURNED[degrees], "-c:v", "libx264", "-qp", "0", str(stored))
            ffmpeg("-i", str(stored), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(path))
        return self._once(f"rotated{degrees}.mp4", build)

    def mirrored(self) -> Path:
        """The upright clip stored mirrored left-right, with a mirroring display matrix."""
        def build(path: Path) -> None:
            stored = path.with_name("stored_mirror.mp4")
            ffmpeg("-i", str(self.upright()), "-vf", "hflip", "-c:v", "libx264", "-qp", "0", str(stored))
            with av.open(str(stored)) as source, av.open(str(path), "w") as target:
                video_in = source.streams.video[0]
                video_out = target.add_stream_from_template(video_in)
                video_out.set_display_matrix(MIRROR_MATRIX)
                for packet in source.demux(video_in):
                    if packet.dts is not None:
                        packet.stream = video_out
                        target.mux(packet)
        return self._once("mirrored.mp4", build)

    # ------------------------------------------------------------------ timing
    def vfr(self, suffix: str = ".mp4") -> Path:
        """10 frames, 128×96: the first five at 25 frames/s, then a 0.8 s pause, then five more at 25 frames/s."""
        retime = f"setpts='(N/25+gte(N,5)*{VFR_PAUSE})/TB'"
        return self._once(f"vfr{suffix}", lambda path: ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25", "-vf", retime, "-frames:v", "10",
            "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
        ))

    def audio_offset(self, suffix: str = ".mp4") -> Path:
        """0.6 s of 128×96 video starting 0.3 s after a 440 Hz tone (AAC) that starts at 0."""
        return self._once(f"audio_offset{suffix}", lambda path: ffmpeg(
            "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
            "-itsoffset", str(AUDIO_LEAD), "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=0.6",
            "-map", "1:v", "-map", "0:a", "-fps_mode", "passthrough", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-c:a", "aac", str(path),
        ))

    # ------------------------------------------------------------------ colour
    SOLID_KINDS = {
        # kind → (size, matrix, range, tagged)
        "hd709": ("1280x720", "bt709", "tv", True),
        "sd601": ("640x480", "smpte170m", "tv", True),
        "full709": ("320x240", "bt709", "pc", True),
        "untagged_hd": ("1280x720", "bt709", "tv", False),
    }

    def solid(self, kind: str) -> Path:
        """2 frames of flat ``SOLID`` coded with the kind's matrix and range (lossless), tagged unless 'untagged'."""
        size, matrix, colour_range, tagged = self.SOLID_KINDS[kind]
        colour = "0x{:02X}{:02X}{:02X}".format(*SOLID)
        tags = ["-colorspace", matrix, "-color_primaries", matrix, "-color_trc", matrix, "-color_range", colour_range]
        return self._once(f"solid_{kind}.mp4", lambda path: ffmpeg(
            "-f", "lavfi", "-i", f"color=c={colour}:size={size}:rate=25,format=rgb24", "-frames:v", "2",
            "-vf", f"scale=out_color_matrix={matrix}:out_range={colour_range}:flags=accurate_rnd,format=yuv420p",
            *(tags if tagged else []), "-c:v", "libx264", "-qp", "0", str(path),
        ))

    def hevc10(self) -> Path:
        """3 frames of 10-bit HEVC, BT.709 tagged, 128×96."""
        return self._once("hevc10.mp4", lambda path: ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25", "-frames:v", "3", "-c:v", "libx265",
            "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le", "-colorspace", "bt709",
            "-color_primaries", "bt709", "-color_trc", "bt709", "-tag:v", "hvc1", str(path),
        ))

    def hdr(self, transfer: str = "smpte2084") -> Path:
        """3 frames of 10-bit HEVC tagged BT.2020 with the PQ (``smpte2084``) or HLG (``arib-std-b67``) transfer."""
        return self._once(f"hdr_{transfer}.mp4", lambda path: ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25", "-frames:v", "3", "-c:v", "libx265",
            "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le", "-colorspace", "bt2020nc",
            "-color_primaries", "bt2020", "-color_trc", transfer, str(path),
        ))

    def odd(self) -> Path:
        """3 frames of 63×47 video (odd sizes: no 4:2:0 possible)."""
        return self._once("odd.mkv", lambda path: ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-vf", "scale=63:47", "-frames:v", "3",
            "-c:v", "libx264", "-pix_fmt", "yuv444p", str(path),
        ))

    # ------------------------------------------------------------------ damage
    TRUNCATED = {
        # kind → (complete file's name, fraction kept)
        "ts_start": ("complete.ts", 0.1),
        "ts": ("complete.ts", 0.5),
        "mkv": ("complete.mkv", 0.5),
        "mp4": ("complete_faststart.mp4", 0.5),
        "mp4_no_index": ("complete.mp4", 0.5),
    }

    def _complete(self, name: str) -> Path:
        """2 s of 128×96 video (a key frame every 10) with AAC audio, in the container ``name`` says."""
        def build(path: Path) -> None:
            source = self.folder / "complete_source.ts"
            if not source.exists():
                ffmpeg(
                    "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=2", "-f", "lavfi",
                    "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", str(source),
                )
            flags = ["-movflags", "+faststart"] if "faststart" in name else []
            ffmpeg("-i", str(source), "-c", "copy", *flags, str(path))
        return self._once(name, build)

    def truncated(self, kind: str) -> Path:
        """A complete file cut to the kind's fraction of its bytes (one byte less if that lands on a TS packet)."""
        name, kept = self.TRUNCATED[kind]

        def build(path: Path) -> None:
            data = self._complete(name).read_bytes()
            size = int(len(data) * kept)
            size -= 1 if size % 188 == 0 else 0
            path.write_bytes(data[:size])
        return self._once(f"cut_{kind}{Path(name).suffix}", build)

    # ------------------------------------------------------------------ photos
    def exif_jpeg(self) -> Tuple[Path, Path]:
        """(upright.jpg, turned.jpg): the portrait at 120×150, and the same stored turned 90° counter-clockwise
        with EXIF orientation 6 ('turn 90° clockwise to show')."""
        def build(folder: Path) -> None:
            folder.mkdir()
            with Image.open(self.portrait) as image:
                upright = image.convert("RGB").resize((120, 150), Image.BILINEAR)
            upright.save(folder / "upright.jpg", quality=95)
            exif = Image.Exif()
            exif[0x0112] = 6
            upright.transpose(Image.Transpose.ROTATE_90).save(folder / "turned.jpg", quality=95, exif=exif)
        folder = self._once("photos", build)
        return folder / "upright.jpg", folder / "turned.jpg"

