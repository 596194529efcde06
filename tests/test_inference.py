"""Video conversion: outputs match the input and the model, audio survives, bad input fails early and clearly,
failed or interrupted runs leave nothing behind and never clobber the user's files (phone and camera footage:
tests/test_footage.py).

Tiny sizes and short clips (a prefix of ../shared/data/video/vtest.avi, or clips made here with PyAV) keep the
whole file fast; torch runs on one thread here because tiny tensors gain nothing from more on a busy CPU.
"""
from fractions import Fraction
from pathlib import Path
from typing import List, Optional

import av
import numpy as np
import pytest
import torch
from PIL import Image

from inference import build_parser, convert_video, convert_videos, main, parse_background, prepare_model
from inference_utils import VideoReader, partial_path
from model import MattingNetwork
from model.weights.deterministic import load_deterministic_weights
from model.weights import load_model

VTEST_SIZE = (384, 288)  # (width, height): half of vtest.avi; the pedestrians are too small below this


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> MattingNetwork:
    return load_deterministic_weights(MattingNetwork("mobilenetv3")).eval()


@pytest.fixture(scope="module")
def runner(model):
    """The model as convert_video runs it by default (fast path), prepared once for the module."""
    return prepare_model(model, device=torch.device("cpu"), dtype=torch.float32, fast=True)


@pytest.fixture(scope="module")
def real_model(published_weights) -> MattingNetwork:
    """The published mobilenetv3 weights, loaded through the project's resolver."""
    return load_model("mobilenetv3", checkpoint=str(published_weights))


@pytest.fixture(scope="module")
def real_runner(real_model):
    return prepare_model(real_model, device=torch.device("cpu"), dtype=torch.float32, fast=True)


def remux_prefix(source: Path, destination: Path, frames: int) -> None:
    """Copy the first ``frames`` video packets of ``source`` (no re-encoding)."""
    with av.open(str(source)) as src, av.open(str(destination), "w") as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        written = 0
        for packet in src.demux(stream_in):
            if packet.dts is None or written == frames:
                continue
            packet.stream = stream_out
            dst.mux(packet)
            written += 1


@pytest.fixture(scope="module")
def vtest_prefix(data_dir, tmp_path_factory) -> Path:
    """The first 6 frames of vtest.avi (768×576, 10 frames/s), stream-copied."""
    path = tmp_path_factory.mktemp("vtest") / "vtest6.avi"
    remux_prefix(data_dir / "video" / "vtest.avi", path, 6)
    return path


def synthetic_frames(count: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A bright square moving over a dark gradient: ``[N, H, W, 3]`` uint8."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    frames[..., 2] = np.linspace(0, 90, width, dtype=np.uint8)
    for i in range(count):
        frames[i, 10:30, 4 + 2 * i : 24 + 2 * i] = (230, 200, 180)
    return frames


def make_clip(path: Path, frames: np.ndarray, rate: Fraction, *, audio: bool = False, video: bool = True) -> None:
    """Write ``frames`` with libx264 at ``rate``; with ``audio`` a 440 Hz AAC tone of the same duration."""
    with av.open(str(path), "w") as container:
        if video:
            stream = container.add_stream("libx264", rate=rate)
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
        if audio:
            sound = container.add_stream("aac", rate=48000)
            sound.layout = "mono"
            samples = int(round(len(frames) / rate * 48000))
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
        if video:
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = i
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))


def decode(path: Path, *, fmt: str = "rgb24", codec: Optional[str] = None) -> List[np.ndarray]:
    """All frames of ``path`` as arrays in ``fmt``; ``codec`` forces a decoder (libvpx-vp9 keeps VP9 alpha)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if codec is None:
            return [frame.to_ndarray(format=fmt) for frame in container.decode(stream)]
        context = av.CodecContext.create(codec, "r")
        frames = []
        for packet in container.demux(stream):
            frames += [frame.to_ndarray(format=fmt) for frame in context.decode(packet if packet.size else None)]
        return frames


def stream_facts(path: Path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, stream.width, stream.height, stream.average_rate


def model_alpha(model, frames: List[np.ndarray], downsample_ratio: float) -> np.ndarray:
    """The eager model's alpha, frame by frame with states carried, as 8-bit ``[N, H, W]``."""
    states = [None] * 4
    alphas = []
    with torch.inference_mode():
        for frame in frames:
            src = torch.from_numpy(frame).permute(2, 0, 1).float().div(255).unsqueeze(0)  # [1, 3, H, W]
            _, pha, *states = model(src, *states, downsample_ratio=downsample_ratio)
            alphas.append(pha[0, 0].mul(255).round().to(torch.uint8).numpy())
    return np.stack(alphas)


# ------------------------------------------------------------------------------------ outputs match the input
def test_vtest_outputs_keep_count_size_and_rate(real_runner, vtest_prefix, tmp_path):
    """All three outputs, in three containers, have the input's frame count, size and exact rate."""
    outputs = dict(
        output_composition=tmp_path / "com.mp4", output_alpha=tmp_path / "pha.mov", output_foreground=tmp_path / "fgr.webm"
    )
    result = convert_video(real_runner, str(vtest_prefix), seq_chunk=3, progress=False, fast=False, **outputs)
    assert result.frames == 6
    for path in outputs.values():
        assert stream_facts(path) == (6, 768, 576, Fraction(10)), path
        assert not partial_path(path).exists()


def test_decoded_alpha_equals_model_alpha(real_model, real_runner, vtest_prefix, tmp_path):
    """ProRes 4444 alpha, VP9 alpha, RGBA PNG and the grey alpha video all decode to the model's 8-bit alpha
    (published weights, compared with the eager model run frame by frame)."""
    ratio = 0.5
    convert_video(
        real_runner, str(vtest_prefix), input_resize=VTEST_SIZE, downsample_ratio=ratio, output_alpha=tmp_path / "pha.mov",
        output_composition=tmp_path / "com.mov", progress=False, fast=False,
    )
    convert_video(
        real_runner, str(vtest_prefix), input_resize=VTEST_SIZE, downsample_ratio=ratio, output_type="png_sequence",
        output_composition=tmp_path / "com_png", output_alpha=tmp_path / "pha_png", progress=False, fast=False,
    )
    convert_video(
        real_runner, str(vtest_prefix), input_resize=VTEST_SIZE, downsample_ratio=ratio, output_composition=tmp_path / "com.webm",
        output_video_mbps=20, progress=False, fast=False,
    )
    expected = model_alpha(real_model, list(VideoReader(str(vtest_prefix), size=VTEST_SIZE)), ratio).astype(int)  # [N, H, W]
    assert (expected > 200).sum() > 50 and (expected < 50).sum() > 50, "people and background must both be there"

    def within_rounding(decoded: np.ndarray, name: str) -> None:
        assert decoded.shape == expected.shape, name
        assert np.abs(decoded.astype(int) - expected).max() <= 1, name

    # ProRes 4444 codes its alpha plane losslessly at 10 bits; read at 16 bits and rounded it gives the 8-bit
    # value back (FFmpeg's own 8-bit conversion can be one step off). The grey alpha video is DCT-coded luma.
    def eight_bit(planes: List[np.ndarray]) -> np.ndarray:
        return np.round(np.stack(planes).astype(np.float64) * 255 / 65535).astype(int)

    within_rounding(eight_bit(decode(tmp_path / "com.mov", fmt="rgba64le"))[..., 3], "prores rgba")
    grey = np.abs(eight_bit(decode(tmp_path / "pha.mov", fmt="gray16le")) - expected)
    assert grey.max() <= 2 and grey.mean() < 0.5, "prores grey"
    within_rounding(np.stack([_png(tmp_path / "pha_png", i) for i in range(6)]), "png alpha")
    within_rounding(np.stack([_png(tmp_path / "com_png", i)[..., 3] for i in range(6)]), "png rgba")
    vp9 = np.stack(decode(tmp_path / "com.webm", fmt="rgba", codec="libvpx-vp9"))[..., 3].astype(int)
    assert vp9.shape == expected.shape
    assert np.abs(vp9 - expected).mean() < 3, "VP9 alpha is lossy but must follow the model"


def _png(folder: Path, index: int) -> np.ndarray:
    """Frame ``index`` of a PNG sequence written by convert_video."""
    with Image.open(folder / f"{index:04d}.png") as image:
        return np.asarray(image)


def test_progress_callable_is_told_every_frame_written(runner, tmp_path, capsys):
    """A callable ``progress`` (conversion jobs feed their whole-job bar with it) hears of each chunk as it is
    written, in place of the per-input tqdm bar."""
    clip = tmp_path / "count.mp4"
    make_clip(clip, synthetic_frames(7), Fraction(25))
    told: list = []
    result = convert_video(runner, str(clip), seq_chunk=3, progress=told.append, fast=False,
                           output_alpha=tmp_path / "a.mp4")
    assert told == [3, 3, 1] and result.frames == 7, "the padded last chunk counts only its real frames"
    assert "frame" not in capsys.readouterr().err, "no tqdm bar beside the caller's own display"


def test_fractional_rate_and_audio_are_kept(runner, tmp_path):
    """30000/1001 stays exact and the AAC track is carried into mp4 (copied), mov and webm (Opus), in sync."""
    rate = Fraction(30000, 1001)
    clip = tmp_path / "talk.mp4"
    make_clip(clip, synthetic_frames(15), rate, audio=True)
    outputs = {"output_composition": tmp_path / "c.mp4", "output_alpha": tmp_path / "a.mov", "output_foreground": tmp_path / "f.webm"}
    convert_video(runner, str(clip), progress=False, fast=False, **outputs)
    video_seconds = 15 / rate
    for path in outputs.values():
        with av.open(str(path)) as container:
            video, sound = container.streams.video[0], container.streams.audio[0]
            assert video.average_rate == rate, path
            assert sum(1 for _ in container.decode(video)) == 15
            container.seek(0)
            last = max(p.pts + p.duration for p in container.demux(sound) if p.pts is not None)
            audio_seconds = last * sound.time_base - (sound.start_time or 0) * sound.time_base
        assert abs(audio_seconds - video_seconds) <= 1 / rate, (path, float(audio_seconds), float(video_seconds))


def test_compositions_over_colour_image_and_video(runner, tmp_path):
    """Colour, still image and looping video backgrounds show where alpha is 0."""
    clip = tmp_path / "clip.mp4"
    make_clip(clip, synthetic_frames(5), Fraction(25))
    still = tmp_path / "bg.png"
    Image.fromarray(np.full((30, 40, 3), (10, 20, 250), np.uint8)).save(still)
    backdrop = tmp_path / "bg.mp4"
    make_clip(backdrop, np.full((2, 24, 32, 3), 200, np.uint8), Fraction(25))  # shorter than the clip: loops

    def zero_alpha(spec, name):
        out = tmp_path / name
        convert_video(runner, str(clip), output_type="png_sequence", output_composition=out, output_alpha=out.with_suffix(".a"),
                      output_background=spec, progress=False, fast=False, downsample_ratio=1.0)
        composition = np.stack([_png(out, i) for i in range(5)]).astype(int)
        alpha = np.stack([_png(out.with_suffix(".a"), i) for i in range(5)])
        assert composition.shape == (5, 48, 64, 3)
        return composition[alpha == 0]  # [K, 3] pixels that are pure background

    for spec, colour in [("#ff0000", (255, 0, 0)), ((0, 0, 255), (0, 0, 255)), (str(still), (10, 20, 250)),
                         (str(backdrop), (200, 200, 200))]:
        pixels = zero_alpha(spec, f"out{abs(hash(str(spec)))}")
        if len(pixels):
            assert np.abs(pixels - np.array(colour)).max() <= 3, spec


def test_eight_bit_route_equals_float_route(model, runner, tmp_path):
    """On the CPU the fast path renders outputs from the low-res coefficients and the uint8 frames (the model's
    thread never makes full-size images); every output equals the float route's within one 8-bit step."""
    from model.fast_path import optimize_for_inference

    float_runner = optimize_for_inference(model, fused_kernel=False)
    assert runner.uint8_route_available(0.5) and not float_runner.uint8_route_available(0.5)
    clip = tmp_path / "clip.mp4"
    make_clip(clip, synthetic_frames(4), Fraction(25))
    still = tmp_path / "bg.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(still)
    for background in ("green", str(still), "transparent"):
        images = []
        for name, chosen in (("u8", runner), ("float", float_runner)):
            out = tmp_path / f"{name}-{Path(background).stem}"
            convert_video(chosen, str(clip), output_type="png_sequence", output_composition=out / "com",
                          output_alpha=out / "pha", output_foreground=out / "fgr", output_background=background,
                          downsample_ratio=0.5, progress=False, fast=False)
            images.append({kind: np.stack([_png(out / kind, i) for i in range(4)]).astype(int) for kind in ("com", "pha", "fgr")})
        for kind in ("com", "pha", "fgr"):
            assert images[0][kind].shape == images[1][kind].shape, (background, kind)
            assert np.abs(images[0][kind] - images[1][kind]).max() <= 1, (background, kind)
    assert images[0]["com"].shape[-1] == 4 and 0 < (images[0]["pha"] > 0).mean() < 1  # RGBA, partly transparent


def test_image_folder_and_several_inputs(runner, tmp_path):
    """An image folder (non-image files skipped) and a video go through one call into an output folder."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(synthetic_frames(4)):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    (folder / "notes.txt").write_text("not a frame")
    clip = tmp_path / "clip.mp4"
    make_clip(clip, synthetic_frames(3), Fraction(24000, 1001))
    results = convert_videos(runner, [str(folder), str(clip)], str(tmp_path / "out"), output_alpha="alpha.mp4",
                             output_foreground="fgr.mkv", progress=False, fast=False)
    assert [r.frames for r in results] == [4, 3]
    assert stream_facts(tmp_path / "out" / "frames" / "alpha.mp4") == (4, 64, 48, Fraction(30))
    assert stream_facts(tmp_path / "out" / "clip" / "fgr.mkv") == (3, 64, 48, Fraction(24000, 1001))


def test_seq_chunk_and_bfloat16_plumbing(model, tmp_path):
    """seq_chunk batches frames without changing the result; bfloat16 runs end to end (CPU stand-in for CUDA)."""
    clip = tmp_path / "clip.mp4"
    make_clip(clip, synthetic_frames(5), Fraction(25))
    one, three, low = tmp_path / "one", tmp_path / "three", tmp_path / "bf16"
    for out, chunk in [(one, 1), (three, 3)]:
        convert_video(model, str(clip), output_type="png_sequence", output_alpha=out, seq_chunk=chunk, progress=False,
                      fast=False, downsample_ratio=1.0)
    a = np.stack([_png(one, i) for i in range(5)]).astype(int)
    b = np.stack([_png(three, i) for i in range(5)]).astype(int)
    assert np.abs(a - b).max() <= 1
    copy = load_deterministic_weights(MattingNetwork("mobilenetv3")).eval()
    convert_video(copy, str(clip), output_type="png_sequence", output_alpha=low, dtype="bfloat16", progress=False,
                  fast=False, downsample_ratio=1.0)
    c = np.stack([_png(low, i) for i in range(5)]).astype(int)
    assert np.abs(a - c).mean() < 8


# ------------------------------------------------------------------------------------ bad input fails early
def _convert(runner, source, tmp_path, **kwargs):
    options = dict(output_alpha=tmp_path / "alpha.mp4", progress=False, fast=False)
    options.update(kwargs)
    return convert_video(runner, str(source), **options)


def test_missing_input(runner, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.mp4 does not exist"):
        _convert(runner, tmp_path / "nothere.mp4", tmp_path)
    assert not (tmp_path / "alpha.mp4").exists()


def test_not_a_video(runner, tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("hello, I am text")
    with pytest.raises(ValueError, match="fake.mp4 cannot be read as video"):
        _convert(runner, fake, tmp_path)


def test_no_video_stream(runner, tmp_path):
    sound_only = tmp_path / "sound.m4a"
    make_clip(sound_only, synthetic_frames(5), Fraction(25), audio=True, video=False)
    with pytest.raises(ValueError, match="sound.m4a has no video stream"):
        _convert(runner, sound_only, tmp_path)


def test_zero_frames(runner, tmp_path):
    empty = tmp_path / "empty.avi"
    with av.open(str(empty), "w") as container:  # a header with a video stream, then nothing
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    with pytest.raises(ValueError, match="empty.avi has a video stream with no frames"):
        _convert(runner, empty, tmp_path)
    assert list(tmp_path.iterdir()) == [empty], "nothing may be written for an input that fails its checks"


def test_corrupt_in_the_middle_leaves_nothing_unless_partial_is_allowed(runner, tmp_path):
    """Damage in the middle: nothing is written (no partial file either); with allow_partial the good frames are
    written under the final name and the result says where the damage is."""
    clip = tmp_path / "clip.mp4"
    rng = np.random.default_rng(0)
    make_clip(clip, rng.integers(0, 255, (20, 48, 64, 3), dtype=np.uint8), Fraction(10))
    data = bytearray(clip.read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = bytes(third)
    clip.write_bytes(bytes(data))
    out = tmp_path / "alpha.mov"
    with pytest.raises(ValueError, match=r"clip.mp4 is damaged: .*; the last good frame is frame \d+ at"):
        _convert(runner, clip, tmp_path, output_alpha=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    result = _convert(runner, clip, tmp_path, output_alpha=out, allow_partial=True)
    assert 0 < result.frames < 20 and result.damage is not None and result.damage.good_frames == result.frames
    assert len(decode(out)) == result.frames


def test_image_folder_faults(runner, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no frames here")
    with pytest.raises(ValueError, match="empty has no images"):
        _convert(runner, empty, tmp_path)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mixed / "0.png")
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(mixed / "1.png")
    with pytest.raises(ValueError, match=r"1.png is 10×8 but .*0.png is 8×8"):
        _convert(runner, mixed, tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken / "0.png")
    (broken / "1.jpg").write_text("not really a jpeg")
    with pytest.raises(ValueError, match="1.jpg cannot be read"):
        _convert(runner, broken, tmp_path)


def test_output_path_faults(runner, tmp_path):
    clip = tmp_path / "clip.mp4"
    make_clip(clip, synthetic_frames(2), Fraction(25))
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ValueError, match="cannot be written"):
        _convert(runner, clip, tmp_path, output_alpha=blocker / "alpha.mp4")
    with pytest.raises(ValueError, match="is the input itself"):
        _convert(runner, clip, tmp_path, output_alpha=clip)
    with pytest.raises(ValueError, match="needs a video extension"):
        _convert(runner, clip, tmp_path, output_alpha=tmp_path / "alpha.gif")
    with pytest.raises(ValueError, match="No output asked for"):
        _convert(runner, clip, tmp_path, output_alpha=None)
    with pytest.raises(ValueError, match="cannot be transparent"):
        _convert(runner, clip, tmp_path, output_composition=tmp_path / "c.mp4", output_background="transparent")
    with pytest.raises(FileNotFoundError, match="neither a colour"):
        parse_background("no-such-background.png")
    with pytest.raises(ValueError, match="not an x264 preset"):
        _convert(runner, clip, tmp_path, output_video_preset="quick")
    with pytest.raises(ValueError, match="threads 0 must be a positive integer"):
        _convert(runner, clip, tmp_path, threads=0)
    with pytest.raises(ValueError, match="downsample_ratio 1.5 must be in"):
        _convert(runner, clip, tmp_path, downsample_ratio=1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "file.txt"]


def test_existing_output_is_replaced_only_when_complete(runner, tmp_path):
    clip = tmp_path / "clip.mp4"
    make_clip(clip, synthetic_frames(6), Fraction(25))
    out = tmp_path / "alpha.mp4"
    out.write_bytes(b"the user's precious file")
    with pytest.raises(ValueError, match="already exists"):
        _convert(runner, clip, tmp_path, output_alpha=out)

    calls = 0

    def failing(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 4:
            raise KeyboardInterrupt  # Ctrl-C in the middle
        return runner(*args, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        _convert(failing, clip, tmp_path, output_alpha=out, output_foreground=tmp_path / "fgr.mov", overwrite=True)
    assert out.read_bytes() == b"the user's precious file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha.mp4", "clip.mp4"], "no partial file is left"
    _convert(runner, clip, tmp_path, output_alpha=out, overwrite=True)
    assert len(decode(out)) == 6


def test_command_line_end_to_end(published_weights, tmp_path, capsys):
    """The CLI loads weights through model.weights, converts two inputs into an output folder and reports them."""
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    make_clip(first, synthetic_frames(3), Fraction(25))
    make_clip(second, synthetic_frames(2), Fraction(30000, 1001))
    threads = torch.get_num_threads()
    main(["--checkpoint", str(published_weights), "--device", "cpu", "--input-source", str(first), str(second),
          "--output-dir", str(tmp_path / "out"), "--output-alpha", "alpha.mov", "--output-composition", "com.mp4",
          "--output-background", "white", "--threads", "1", "--disable-progress"])
    assert torch.get_num_threads() == threads, "--threads applies during the run only"
    printed = capsys.readouterr().out
    assert "2 inputs: 2 converted, 0 already complete, 0 failed; 5 frames" in printed  # a job (conversion_jobs)
    assert stream_facts(tmp_path / "out" / "second" / "com.mp4") == (2, 64, 48, Fraction(30000, 1001))
    with pytest.raises(SystemExit, match="Several inputs need --output-dir"):
        main(["--checkpoint", str(published_weights), "--input-source", str(first), str(second), "--output-alpha", "a.mp4"])
    with pytest.raises(SystemExit, match="already exists"):
        main(["--checkpoint", str(published_weights), "--input-source", str(first),
              "--output-alpha", str(tmp_path / "out" / "first" / "alpha.mov"), "--disable-progress"])


def test_command_line_flags_parse():
    args = build_parser().parse_args(
        "--variant resnet50 --checkpoint w.pth --device cpu --input-source a.mp4 b --input-resize 640 360 "
        "--downsample-ratio 0.25 --output-type png_sequence --output-composition c --output-alpha a "
        "--output-foreground f --output-video-mbps 4 --seq-chunk 2 --num-workers 1 --disable-progress".split()
    )
    assert args.input_source == ["a.mp4", "b"] and args.input_resize == [640, 360] and args.seq_chunk == 2
    assert args.disable_progress and args.output_type == "png_sequence" and args.downsample_ratio == 0.25
    assert args.compile_network is None  # optimize_for_inference's default: compiled on CUDA only
    assert build_parser().parse_args(["--input-source", "a.mp4", "--compile"]).compile_network is True
    assert build_parser().parse_args(["--input-source", "a.mp4", "--no-compile"]).compile_network is False


def test_compile_network_reaches_the_fast_path(model):
    from model.fast_path import FastMattingNetwork

    for choice in (None, False):
        runner = prepare_model(model, device=torch.device("cpu"), dtype=torch.float32, fast=True, compile_network=choice)
        assert isinstance(runner, FastMattingNetwork)
        assert not hasattr(runner.stages.encode, "_torchdynamo_orig_callable")  # CPU default: not compiled
    compiled = prepare_model(model, device=torch.device("cpu"), dtype=torch.float32, fast=True, compile_network=True)
    assert hasattr(compiled.stages.encode, "_torchdynamo_orig_callable")  # wrapped by torch.compile (compiles lazily)
