"""Phone and camera footage: outputs display upright, keep every frame's time and the audio offset, show the right
colours in a player, and damaged inputs are reported with nothing left behind.

Inputs come from tests/footage.py (made with the ffmpeg program, once per session); outputs are judged with
ffprobe/ffmpeg as a player would. The published weights are used only where the assertion needs a real matte
(orientation); elsewhere a stub model (alpha 0, foreground = input) makes compositions show the background and
foregrounds show the input exactly.
"""
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from footage import AUDIO_LEAD, SOLID, UPRIGHT_SIZE, VFR_PAUSE, decode_grey, frame_times, player_rgb, streams
from inference import convert_video, main, prepare_model
from inference_footage import DamagedInputError, Orientation, frame_timing
from inference_utils import ImageSequenceReader, VideoReader
from model.weights import load_model

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = (".mp4", ".mkv", ".mov", ".webm")


def stub_model(src, *states, downsample_ratio=1.0):
    """Alpha 0 everywhere and the input as foreground: ``[B, T, 3, H, W]`` → fgr, pha ``[B, T, 1, H, W]``, states."""
    return src, torch.zeros_like(src[:, :, :1]), *states


def convert(source: Path, **kwargs):
    options = dict(progress=False, fast=False)
    options.update(kwargs)
    model = options.pop("model", stub_model)
    return convert_video(model, str(source), **{k: str(v) if isinstance(v, Path) else v for k, v in options.items()})


@pytest.fixture(scope="module")
def real_runner(published_weights):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield prepare_model(load_model("mobilenetv3", checkpoint=str(published_weights)), device=torch.device("cpu"),
                        dtype=torch.float32, fast=True)
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ orientation
def ffmpeg_display_matrix(angle: int, hflip: bool) -> list:
    """FFmpeg's matrix for a counter-clockwise ``angle`` (av_display_rotation_set), then mirrored
    (av_display_matrix_flip): 16.16 fixed point, row-major."""
    radians = -math.radians(angle)
    cos, sin = round(math.cos(radians)), round(math.sin(radians))
    matrix = [cos * 65536, -sin * 65536, 0, sin * 65536, cos * 65536, 0, 0, 0, 1 << 30]
    if hflip:
        matrix[0], matrix[3] = -matrix[0], -matrix[3]
    return matrix


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
@pytest.mark.parametrize("hflip", [False, True])
def test_display_matrix_moves_pixels_as_ffmpeg_defines(angle, hflip):
    """Stored pixel (p, q) shows at (a·p + c·q, b·p + d·q), moved to start at 0 (libavutil/display.h)."""
    matrix = ffmpeg_display_matrix(angle, hflip)
    a, b, c, d = (matrix[i] // 65536 for i in (0, 1, 3, 4))
    stored = np.arange(5 * 3 * 2).reshape(3, 5, 2)  # [H=3, W=5, C]
    positions = {(p, q): (a * p + c * q, b * p + d * q) for q in range(3) for p in range(5)}
    min_x = min(x for x, _ in positions.values())
    min_y = min(y for _, y in positions.values())
    width, height = Orientation.from_display_matrix(matrix).upright_size(5, 3)
    expected = np.zeros((height, width, 2), int)
    for (p, q), (x, y) in positions.items():
        expected[y - min_y, x - min_x] = stored[q, p]
    assert np.array_equal(Orientation.from_display_matrix(matrix).apply(stored), expected)


@pytest.mark.parametrize("tag", range(1, 9))
def test_exif_orientation_matches_pillow(tag):
    stored = Image.fromarray(np.random.default_rng(tag).integers(0, 256, (3, 5, 3), dtype=np.uint8))
    stored.getexif()[0x0112] = tag  # the orientation tag
    expected = np.asarray(ImageOps.exif_transpose(stored))
    assert np.array_equal(Orientation.from_exif(tag).apply(np.asarray(stored)), expected)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_fixtures_display_upright_in_ffmpeg(footage, degrees):
    """The fixtures are what a phone writes: ffmpeg (which applies the matrix) shows them as the upright clip."""
    assert np.array_equal(decode_grey(footage.rotated(degrees)), decode_grey(footage.upright()))


@pytest.mark.parametrize("kind", ["rotated90", "rotated180", "rotated270", "mirrored"])
def test_reader_turns_frames_upright(footage, kind):
    source = footage.mirrored() if kind == "mirrored" else footage.rotated(int(kind[7:]))
    reader = VideoReader(str(source))
    assert (reader.width, reader.height) == UPRIGHT_SIZE and not reader.orientation.upright
    upright = np.stack(list(VideoReader(str(footage.upright())))).astype(int)
    assert np.abs(np.stack(list(reader)).astype(int) - upright).max() <= 2


@pytest.mark.parametrize("kind", ["rotated90", "rotated180", "rotated270", "mirrored"])
def test_phone_video_is_matted_upright_and_displays_upright(footage, real_runner, tmp_path, kind):
    """The real model mattes the turned clip as it mattes the same clip stored upright, and the output has upright
    pixels, the upright size and no display matrix."""
    source = footage.mirrored() if kind == "mirrored" else footage.rotated(int(kind[7:]))
    convert(footage.upright(), model=real_runner, output_alpha=tmp_path / "upright.mov")
    convert(source, model=real_runner, output_alpha=tmp_path / "turned.mov")
    upright = decode_grey(tmp_path / "upright.mov").astype(int)  # [N, H, W]
    assert (upright > 200).mean() > 0.2 and (upright < 50).mean() > 0.2, "person and background both there"
    assert np.abs(upright - upright[:, ::-1]).mean() > 10 and np.abs(upright - upright[:, :, ::-1]).mean() > 10
    video = streams(tmp_path / "turned.mov")["video"]
    assert (int(video["width"]), int(video["height"])) == UPRIGHT_SIZE
    assert "side_data_list" not in video, "no display matrix: every player shows the pixels as they are"
    turned = decode_grey(tmp_path / "turned.mov").astype(int)
    assert turned.shape == upright.shape
    assert np.abs(turned - upright).mean() < 0.5 and np.abs(turned - upright).max() <= 8


def test_input_resize_is_the_upright_size(footage, tmp_path):
    convert(footage.rotated(90), input_resize=(96, 120), output_foreground=tmp_path / "f.mp4")
    video = streams(tmp_path / "f.mp4")["video"]
    assert (int(video["width"]), int(video["height"])) == (96, 120)


def test_exif_rotated_photo_is_read_upright(footage, tmp_path):
    upright_jpg, turned_jpg = footage.exif_jpeg()
    reader = ImageSequenceReader(str(turned_jpg))
    assert (reader.width, reader.height) == (120, 150)
    turned = next(iter(reader)).astype(int)
    upright = np.asarray(Image.open(upright_jpg)).astype(int)
    assert turned.shape == upright.shape and np.abs(turned - upright).mean() < 3  # two JPEG encodings
    convert(turned_jpg, output_type="png_sequence", output_foreground=tmp_path / "fgr")
    with Image.open(tmp_path / "fgr" / "0000.png") as image:
        assert image.size == (120, 150)


# ------------------------------------------------------------------------------------------------ timing
@pytest.mark.parametrize("source_suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_times_are_kept(footage, tmp_path, source_suffix):
    source = footage.vfr(source_suffix)
    expected = frame_times(source)
    assert expected[5] - expected[4] > VFR_PAUSE, "the fixture has its pause"
    outputs = {f"output_{kind}": tmp_path / f"{kind}{suffix}"
               for kind, suffix in zip(("foreground", "alpha", "composition"), (".mp4", ".mov", ".webm"))}
    result = convert(source, **outputs)
    for path in outputs.values():
        times = frame_times(path)
        assert len(times) == len(expected), path
        assert max(abs(a - b) for a, b in zip(times, expected)) <= 0.001, (path, times, expected)
    if source_suffix == ".mp4":  # MP4 and MOV keep the input's time base (Matroska/WebM count milliseconds)
        for kind in ("foreground", "alpha"):
            assert streams(outputs[f"output_{kind}"])["video"]["time_base"] == streams(source)["video"]["time_base"]
    assert result.timing is not None and not result.timing.constant
    assert result.timing.duration == pytest.approx(10 / 25 + VFR_PAUSE, abs=0.002)
    convert(source, output_foreground=tmp_path / "f.mkv")
    assert max(abs(a - b) for a, b in zip(frame_times(tmp_path / "f.mkv"), expected)) <= 0.001


def test_constant_rate_is_reported_constant(footage, tmp_path):
    result = convert(footage.upright(), output_alpha=tmp_path / "a.mp4")
    assert result.timing.constant and result.timing.frame_rate == 25 and result.timing.frames == 3
    assert result.timing.duration == pytest.approx(0.12)


def test_frame_timing_tolerates_time_base_rounding():
    """29.97 frames/s in milliseconds (33, 34, 33 ms…) is constant; a gap makes it variable."""
    tick = Fraction(1, 1000)
    times = [Fraction(round(i * 1001 / 30)) / 1000 for i in range(30)]
    assert frame_timing(times, tick=tick, nominal_rate=Fraction(30000, 1001)).constant
    assert not frame_timing(times[:10] + [t + Fraction(1, 2) for t in times[10:]], tick=tick,
                            nominal_rate=Fraction(30000, 1001)).constant


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_audio_offset_is_kept(footage, tmp_path, suffix):
    """Audio starting 0.3 s before the video stays 0.3 s before it: copied (MP4, MKV, MOV) or re-encoded (WebM)."""
    source = footage.audio_offset()
    before = streams(source)
    lead = float(before["video"]["start_time"]) - float(before["audio"]["start_time"])
    assert lead == pytest.approx(AUDIO_LEAD, abs=0.03), "the fixture's offset"
    out = tmp_path / f"out{suffix}"
    convert(source, output_foreground=out)
    after = streams(out)
    assert "audio" in after
    assert float(after["video"]["start_time"]) - float(after["audio"]["start_time"]) == pytest.approx(lead, abs=0.005)
    assert frame_times(out)[0] == pytest.approx(frame_times(source)[0], abs=0.001)


# ------------------------------------------------------------------------------------------------ colour
EXPECTED_TAGS = {  # kind → (matrix, range) declared by H.264 outputs
    "hd709": ("bt709", "tv"),
    "sd601": ("smpte170m", "tv"),
    "full709": ("bt709", "pc"),
    "untagged_hd": ("bt709", "tv"),  # what players assume for untagged HD, declared
}


@pytest.mark.parametrize("kind", [pytest.param(kind, marks=[pytest.mark.slow] if "hd" in kind else [])
                                  for kind in EXPECTED_TAGS])  # 1280×720: about 10 s each here
def test_colours_show_right_in_a_player(footage, tmp_path, kind):
    """A composition over 200,30,40 and the foreground of a 200,30,40 input show as 200,30,40 ± 2 (the frame's
    median; single pixels ± 4 for codec noise, e.g. VP9's realtime mode) when decoded with the tags each output
    declares, in H.264, ProRes and VP9; the tags are the input's (ProRes: always limited range)."""
    outputs = {}
    for suffix in (".mp4", ".mov", ".webm"):
        outputs[f"com{suffix}"] = tmp_path / f"com{suffix}"
        outputs[f"fgr{suffix}"] = tmp_path / f"fgr{suffix}"
        convert(footage.solid(kind), output_composition=outputs[f"com{suffix}"],
                output_foreground=outputs[f"fgr{suffix}"], output_background=",".join(map(str, SOLID)))
    matrix, colour_range = EXPECTED_TAGS[kind]
    for name, path in outputs.items():
        video = streams(path)["video"]
        assert video["color_space"] == matrix and video["color_primaries"] == matrix, name
        expected_range = "tv" if name.endswith(".mov") else colour_range
        assert video["color_transfer"] == matrix and video["color_range"] == expected_range, name
        shown = player_rgb(path).reshape(-1, 3)  # [H·W, 3]
        assert np.abs(np.median(shown, axis=0) - SOLID).max() <= 2, (name, np.median(shown, axis=0))
        assert np.abs(shown - SOLID).max() <= 4, (name, "codec noise only")


def test_png_outputs_are_marked_srgb(footage, tmp_path):
    convert(footage.upright(), output_type="png_sequence", output_foreground=tmp_path / "fgr")
    with Image.open(tmp_path / "fgr" / "0000.png") as image:
        assert "srgb" in image.info


@pytest.mark.parametrize("transfer", ["smpte2084", "arib-std-b67"])
def test_hdr_input_is_refused_with_the_way_forward(footage, tmp_path, transfer):
    source = footage.hdr(transfer)
    with pytest.raises(ValueError, match=r"(?s)is HDR video .*convert it to SDR first.*ffmpeg -i .*tonemap"):
        convert(source, output_alpha=tmp_path / "a.mp4")
    assert list(tmp_path.iterdir()) == []


def test_ten_bit_hevc_and_odd_sizes_still_work(footage, tmp_path):
    result = convert(footage.hevc10(), output_foreground=tmp_path / "f.mp4")
    assert result.frames == 3 and streams(tmp_path / "f.mp4")["video"]["color_space"] == "bt709"
    shown, source = (np.clip(player_rgb(path), 0, 255) for path in (tmp_path / "f.mp4", footage.hevc10()))
    # testsrc2's sharp colour edges differ with each chroma interpolation: compare the frame's average colour
    assert np.abs(shown.mean(axis=(0, 1)) - source.mean(axis=(0, 1))).max() < 2, "the 10-bit colours survive"
    convert(footage.odd(), output_alpha=tmp_path / "a.mp4", output_foreground=tmp_path / "f.webm")
    for name in ("a.mp4", "f.webm"):
        video = streams(tmp_path / name)["video"]
        assert (int(video["width"]), int(video["height"])) == (63, 47), name


# ------------------------------------------------------------------------------------------------ damage
DAMAGE = {  # kind → (message, good frames kept with allow_partial; empty: unreadable)
    # the sixth frame of the TS cut after its first frames lacks data; with frame-threaded decoding FFmpeg does not
    # always flag it, and then the cut inside a transport packet is what is reported
    "ts_start": (r"(could not be decoded completely|ends inside a transport-stream packet .*); the last good frame",
                 (5, 6)),
    "ts": (r"ends inside a transport-stream packet .*; the last good frame is frame \d+", (26,)),
    "mkv": (r"the video stops at 1.000 s but the file declares 2.0\d+ s", (23,)),
    "mp4": (r"the video stops at 1.000 s but the file declares 2.000 s", (22,)),
    "mp4_no_index": (r"cannot be read as video .*cut short", ()),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_input_is_reported_and_leaves_nothing(footage, tmp_path, kind):
    source = footage.truncated(kind)
    message, good = DAMAGE[kind]
    out = tmp_path / "alpha.mp4"
    out.write_bytes(b"the user's file")
    with pytest.raises(ValueError, match=message) as raised:
        convert(source, output_alpha=out, output_foreground=tmp_path / "fgr.mov", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha.mp4"], "no partial file, no other output"
    assert out.read_bytes() == b"the user's file"
    if not good:
        return
    assert isinstance(raised.value, DamagedInputError) and raised.value.damage.good_frames in good
    assert "Nothing was written; pass --allow-partial" in str(raised.value)
    result = convert(source, output_alpha=out, overwrite=True, allow_partial=True)
    assert result.frames in good and result.damage is not None and result.damage.good_frames == result.frames
    assert len(frame_times(out)) == result.frames


def test_damaged_input_leaves_no_png_folder(footage, tmp_path):
    with pytest.raises(DamagedInputError):
        convert(footage.truncated("mkv"), output_type="png_sequence", output_alpha=tmp_path / "alpha")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_damage_exit_codes_on_the_command_line(footage, published_weights, tmp_path, capsys):
    """Without --allow-partial: exit code 1 with the message and nothing written; with it: 0 and the good frames."""
    arguments = ["--checkpoint", str(published_weights), "--input-source", str(footage.truncated("mp4")),
                 "--output-alpha", str(tmp_path / "a.mp4"), "--disable-progress", "--threads", "1"]
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    assert isinstance(stopped.value.code, str) and stopped.value.code.startswith("error: Input ")  # exit status 1
    assert "is damaged" in stopped.value.code and list(tmp_path.iterdir()) == []
    main(arguments + ["--allow-partial"])
    assert "22 frames" in capsys.readouterr().out and len(frame_times(tmp_path / "a.mp4")) == 22


@pytest.mark.slow
def test_command_line_setup_problems_have_no_traceback(footage, tmp_path):
    """Missing weights offline, and a damaged input: one line, exit code 1, no traceback, nothing written."""
    offline = dict(os.environ, TORCH_HOME=str(tmp_path / "torch"), https_proxy="http://127.0.0.1:9",
                   HTTPS_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, str(ROOT / "inference.py"), "--input-source", str(footage.upright()),
         "--output-alpha", str(tmp_path / "a.mp4"), "--disable-progress"],
        capture_output=True, text=True, env=offline, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "error: No mobilenetv3 weights" in done.stderr
    assert not (tmp_path / "a.mp4").exists() and not list(tmp_path.glob("*.partial*"))
