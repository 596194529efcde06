"""Live matting without a camera: lavfi sources, clips served over loopback TCP, a receiver for the output stream,
a Ctrl-C'd process. Frames are tiny (≤ 160×120) and every run is bounded in time and frames; sessions run torch
on one thread (tiny tensors gain nothing from more on a busy CPU).

Codec noise bounds: H.264 at CRF ≤ 12 on the served clip is decoded identically by the session and by the test
(same decoder), so only the output encoder adds noise; ProRes 4444 keeps alpha at 16 bits (exact in 8 bits).
"""
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List

import av
import numpy as np
import pytest
import torch

import inference_live
from live import LiveSession, parse_source
from model.runner import RecurrentRunner
from live.scheduling import NewestOnly
from live.session import plan_backgrounds
from live.sinks import FrameClock, RecordSink, StreamSink
from live.sources import FrameStamp, SourceError, camera_target
from live.window import portable_anymap
from live_servers import ClipServer, Connection, Receiver, decode_ts, encode_ts_chunks, free_port
from model import MattingNetwork
from model.weights.deterministic import load_deterministic_weights
from model.outputs import to_uint8

ROOT = Path(__file__).resolve().parents[1]
CLIP_SIZE = (96, 72)  # (width, height) of the served clip: vtest.avi / 8
RATIO = 0.5


@pytest.fixture(scope="module")
def model() -> MattingNetwork:
    return load_deterministic_weights(MattingNetwork("mobilenetv3")).eval()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "deterministic.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def clip_chunks(data_dir) -> List[bytes]:
    """Every third frame of vtest.avi's first 180 (so that people move between frames) at 96×72 as MPEG-TS, one
    chunk per frame, 60 frames at 10 frames/s."""
    frames = []
    with av.open(str(data_dir / "video" / "vtest.avi")) as container:
        for index, frame in zip(range(180), container.decode(video=0)):
            if index % 3 == 0:
                frames.append(frame.to_ndarray(format="rgb24", width=CLIP_SIZE[0], height=CLIP_SIZE[1]))
    return encode_ts_chunks(frames)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread inside the block (tiny tensors lose time to a second thread on a busy CPU)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def offline_alpha(model: MattingNetwork, frames: List[np.ndarray], stamps: List[FrameStamp]) -> np.ndarray:
    """The plain eager model over the frames the session took (``frames[stamp.sequence]``), in order, states
    carried from zero and reset where the generation changes, as the session does: uint8 alpha ``[N, H, W]``."""
    states = [None] * 4
    alphas = []
    with torch.inference_mode(), one_torch_thread():
        for index, stamp in enumerate(stamps):
            if index and stamp.generation != stamps[index - 1].generation:
                states = [None] * 4
            image = frames[stamp.sequence]
            src = torch.from_numpy(image).permute(2, 0, 1)[None, None].float() / 255  # [1, 1, 3, H, W]
            _, pha, *states = model(src, *states, downsample_ratio=RATIO)
            alphas.append(to_uint8(pha[0])[0, ..., 0].numpy())  # [H, W]
    return np.stack(alphas)


class Collector:
    """A sink that keeps what it is handed (for assertions on order and timing)."""

    carries_alpha = True
    main_thread = False

    def __init__(self, name: str = "collector") -> None:
        self.name = name
        self.images: List[np.ndarray] = []
        self.stamps: List[FrameStamp] = []
        self.closed = False

    def open(self, size, frame_rate) -> None:
        self.size = size

    def write(self, image: np.ndarray, stamp: FrameStamp) -> None:
        self.images.append(image)
        self.stamps.append(stamp)

    @property
    def arrivals(self) -> np.ndarray:
        return np.array([stamp.arrival for stamp in self.stamps])

    def close(self) -> None:
        self.closed = True


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# ---------------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_lavfi_source_into_transparent_recording(model, tmp_path):
    """lavfi at its own rate → recording: every output is in the file at its real time, with the alpha of the
    offline model on the frames taken."""
    graph = "testsrc2=size=160x120:rate=10"
    output = tmp_path / "live.mov"
    collector = Collector()
    summary = LiveSession(
        model, f"lavfi:{graph}", output_record=str(output), sinks=[collector], downsample_ratio=RATIO,
        max_frames=8, progress=False, threads=1,
    ).run().summary  # fmt: skip
    assert summary["frames_out"] == 8 and summary["stop_reason"] == "max frames"
    assert summary["settings"]["outputs"] == {f"record {output}": "transparent", "collector": "transparent"}
    assert summary["sinks"][f"record {output}"] == {**summary["sinks"][f"record {output}"], "written": 8, "dropped": 0}
    # the model's step is part of every output's latency (same 8 outputs, so each percentile is below too)
    assert 0 < summary["step_ms_p50"] <= summary["sinks"][f"record {output}"]["latency_ms_p50"]
    assert summary["step_ms_p50"] <= summary["step_ms_p95"] <= summary["sinks"][f"record {output}"]["latency_ms_p95"]
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.average_rate) == (160, 120, 10)
        decoded = list(container.decode(stream))
    clock = FrameClock(Fraction(10))
    assert [round(frame.time * 10) for frame in decoded] == [clock.index(arrival) for arrival in collector.arrivals]
    recorded = np.stack([frame.to_ndarray(format="rgba") for frame in decoded])  # [8, 120, 160, 4]
    with av.open(graph, format="lavfi") as container:
        source = [frame.to_ndarray(format="rgb24") for _, frame in zip(range(40), container.decode(video=0))]
    difference = np.abs(recorded[..., 3].astype(int) - offline_alpha(model, source, collector.stamps))
    assert difference.max() <= 1  # 8-bit route vs float model: one rounding step; ProRes alpha is exact


@pytest.mark.slow
def test_tcp_stream_in_stream_out_matches_offline_model(model, clip_chunks):
    """MPEG-TS over loopback TCP in, alpha stream over TCP out: every output is received, at the clip's size,
    with the alpha the model gives offline on the same frames (within H.264 noise)."""
    server = ClipServer([Connection(clip_chunks, frame_rate=10)])
    receiver = Receiver()
    collector = Collector()
    session = LiveSession(
        model, server.url, output_stream=receiver.url, sinks=[collector], output_kind="alpha",
        output_video_mbps=4, downsample_ratio=RATIO, reconnect=0, progress=False, threads=1,
    )  # fmt: skip
    summary = session.run().summary
    server.close()
    received = np.stack(decode_ts(receiver.data(), pixel_format="gray"))  # [N, H, W]
    assert summary["stop_reason"] == "source ended: end of input"
    assert summary["frames_skipped_warmup"] + summary["frames_in"] == len(clip_chunks)  # no frame lost on the way
    assert summary["frames_in"] == summary["frames_dropped"] + summary["frames_out"] and summary["frames_out"] >= 20
    assert summary["sinks"][f"stream {receiver.url}"]["dropped"] == 0
    assert received.shape == (summary["frames_out"], CLIP_SIZE[1], CLIP_SIZE[0])
    expected = offline_alpha(model, decode_ts(b"".join(clip_chunks)), collector.stamps)
    error = np.abs(received.astype(int) - expected)
    shifted = np.abs(received[1:].astype(int) - expected[:-1])  # one frame off: what a wrong pairing would give
    print(f"alpha |Δ| mean {error.mean():.3f}, p99 {np.percentile(error, 99)}; one frame off {shifted.mean():.3f}")
    assert error.mean() <= 0.5 and np.percentile(error, 99) <= 4
    assert shifted.mean() > 1.0


@pytest.mark.slow
def test_fast_source_drops_frames_and_keeps_latency_bounded(model):
    """A source far faster than the model: the model keeps taking the newest frame, the rest are dropped and
    counted, and latency stays at about one model step instead of growing with a queue."""
    def slow_model(*args, **kwargs):  # at most 50 steps/s whatever the CPU, a quarter of the source's rate
        time.sleep(0.02)
        return model(*args, **kwargs)

    collector = Collector()
    session = LiveSession(
        slow_model, "lavfi:testsrc2=size=160x120:rate=200", sinks=[collector], output_kind="alpha",
        downsample_ratio=RATIO, duration=2.0, progress=False, threads=1,
    )  # fmt: skip
    summary = session.run().summary
    assert summary["fps_in"] > 100  # the source is not slowed down to the model's pace (a queue would do that)
    assert summary["frames_dropped"] > summary["frames_out"]
    assert summary["frames_in"] - summary["frames_dropped"] - summary["frames_out"] in (0, 1)  # ≤ 1 left waiting
    assert summary["latency_ms_p95"] < 500  # a queue would have reached ~1500 ms after 2 s
    sequences = [stamp.sequence for stamp in collector.stamps]
    assert np.all(np.diff(sequences) > 0) and len(sequences) == summary["frames_out"]  # always a newer frame
    assert collector.closed


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["disconnect", "stall", "pause"])
def test_stream_faults(model, clip_chunks, fault):
    """A server that drops the connection, or stalls longer than the input timeout, is reopened; a pause shorter
    than the timeout but longer than the reset gap is waited out. Either way the states are reset."""
    first = {
        "disconnect": Connection(clip_chunks[:25]),
        "stall": Connection(clip_chunks[:25], stall_s=3),
        "pause": Connection(clip_chunks, pause_at=25, pause_s=1.5),
    }[fault]
    server = ClipServer([first, Connection(clip_chunks)])
    collector = Collector()
    session = LiveSession(
        model, server.url, sinks=[collector], output_kind="alpha", downsample_ratio=RATIO, reconnect=2,
        input_timeout=1.0 if fault == "stall" else 3.0, reset_after=1.0, max_frames=30, progress=False,
        threads=1,
    )  # fmt: skip
    result = session.run()
    server.close()
    summary = result.summary
    assert result.failure is None and summary["stop_reason"] == "max frames"
    assert summary["reconnects"] == (0 if fault == "pause" else 1)
    assert summary["resets"] >= 1
    assert np.diff(collector.arrivals).max() > 1.0  # the outage is in the decode times
    generations = [stamp.generation for stamp in collector.stamps]
    assert generations[-1] > generations[0]


@pytest.mark.slow
def test_ctrl_c_leaves_playable_recording(checkpoint, tmp_path):
    """SIGINT to the process: exit status 0, the JSON line, and a complete recording under its final name."""
    output = tmp_path / "interrupted.mp4"
    command = [
        sys.executable, str(ROOT / "inference_live.py"), "--checkpoint", str(checkpoint), "--device", "cpu",
        "--input-source", "lavfi:testsrc2=size=96x72:rate=10", "--output-record", str(output),
        "--downsample-ratio", str(RATIO), "--threads", "1", "--disable-progress", "--duration", "60",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        for line in process.stderr:
            if "Live: started" in line or time.monotonic() > deadline:
                break
        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stop_reason"] == "interrupted" and summary["frames_out"] >= 5
    assert output.is_file() and not (tmp_path / "interrupted.partial.mp4").exists()
    assert frame_count(output) >= summary["frames_out"]  # dropped frames hold the previous one: ≥, never fewer


# ---------------------------------------------------------------------------------------------------- bad input
def fails_with(argv: List[str], *fragments: str) -> str:
    """Run the command line in-process; it must exit non-zero with a message holding every fragment."""
    with pytest.raises(SystemExit) as raised:
        inference_live.main(argv)
    message = str(raised.value.code)
    assert raised.value.code not in (0, None) and message.startswith("error: ")
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_bad_sources_give_their_message(tmp_path):
    out = ["--output-record", str(tmp_path / "x.mp4")]
    fails_with(["--input-source", "/dev/video97", *out], "Camera /dev/video97", "cannot be opened", "connected")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    fails_with(["--input-source", url, *out], f"{url} cannot be opened", "server")
    fails_with(["--input-source", str(tmp_path / "missing.mp4"), *out], "missing.mp4 is not a file")
    fails_with(["--input-source", "lavfi:nosuchfilter", *out], "lavfi", "filter graph")
    fails_with(["--input-source", "camera:0", "--input-option", "novalue", *out], "KEY=VALUE")
    assert not any(tmp_path.iterdir())  # nothing written for a source that never opened


def test_bad_sinks_give_their_message(tmp_path, monkeypatch):
    source = ["--input-source", "lavfi:testsrc2=size=64x48:rate=10"]
    fails_with(source, "No output asked for")
    fails_with([*source, "--output-stream", "ftp://127.0.0.1/x"], "unsupported address")
    fails_with([*source, "--output-record", str(tmp_path / "x.avi")], "video extension")
    transparent = ["--output-stream", "udp://127.0.0.1:9", "--output-background", "transparent"]
    fails_with([*source, *transparent], "cannot go to stream")
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # import fails as when it is not installed
    fails_with([*source, "--output-virtual-camera"], "pip install pyvirtualcam")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform.startswith("linux"):  # no display (or, where Python lacks Tk, no Tk): either names its fix
        fails_with([*source, "--output-window"], "--output-window needs")


@pytest.mark.slow
def test_sinks_that_fail_to_open_give_their_message(checkpoint, tmp_path, monkeypatch):
    """Failures found only when opening (after the model loaded): nothing is left behind."""
    base = ["--checkpoint", str(checkpoint), "--device", "cpu", "--input-source", "lavfi:testsrc2=size=64x48:rate=10",
            "--threads", "1"]  # fmt: skip
    port = free_port()
    record = tmp_path / "kept.mp4"
    fails_with(
        [*base, "--output-stream", f"tcp://127.0.0.1:{port}", "--output-record", str(record)],
        f"stream tcp://127.0.0.1:{port} cannot be opened", "receiving server",
    )  # fmt: skip
    fails_with([*base, "--input-resize", "63", "47", "--output-stream", "udp://127.0.0.1:9"], "even frame size")
    monkeypatch.setitem(sys.modules, "pyvirtualcam", FakeVirtualCamera(fail=True))
    fails_with([*base, "--output-virtual-camera"], "v4l2loopback")
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------- parts
class FakeVirtualCamera:
    """Stands in for the pyvirtualcam module: its Camera keeps the frames sent, or fails like a missing driver."""

    class PixelFormat:
        RGB = "RGB"

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.sent: List[np.ndarray] = []
        owner = self

        class Camera:
            def __init__(self, width, height, fps, *, fmt, device=None):
                if owner.fail:
                    raise RuntimeError("'v4l2loopback' backend: no device found")
                self.size, self.fps, self.device = (width, height), fps, "/dev/video9"

            def send(self, frame):
                assert frame.shape == (self.size[1], self.size[0], 3) and frame.dtype == np.uint8
                owner.sent.append(frame)

            def close(self):
                owner.closed = True

        self.Camera = Camera


def test_virtual_camera_gets_rgb_frames(model, monkeypatch):
    fake = FakeVirtualCamera()
    monkeypatch.setitem(sys.modules, "pyvirtualcam", fake)
    summary = LiveSession(
        model, "lavfi:testsrc2=size=64x48:rate=20", output_virtual_camera=True, output_kind="alpha",
        downsample_ratio=RATIO, max_frames=3, progress=False, threads=1,
    ).run().summary  # fmt: skip
    assert summary["frames_out"] == 3 and len(fake.sent) == 3 and fake.closed
    assert all(np.array_equal(frame[..., 0], frame[..., 2]) for frame in fake.sent)  # alpha as grey


def test_failing_sink_is_reported_and_the_others_go_on(model):
    class Broken(Collector):
        def write(self, image, stamp):
            raise OSError("disk full")

    good = Collector("good")
    result = LiveSession(
        model, "lavfi:testsrc2=size=64x48:rate=20", sinks=[Broken("broken"), good], downsample_ratio=RATIO,
        max_frames=4, progress=False, threads=1,
    ).run()  # fmt: skip
    assert result.failure is None and len(good.images) == 4
    assert "disk full" in result.summary["sinks"]["broken"]["failure"]
    only_broken = LiveSession(
        model, "lavfi:testsrc2=size=64x48:rate=20", sinks=[Broken("broken")], max_frames=4, progress=False, threads=1
    ).run()
    assert only_broken.failure is not None and "disk full" in only_broken.failure


def test_file_plays_at_its_rate_and_loops(model, tmp_path):
    """A file is a paced source: without --loop it ends the session; with it, it restarts (states reset)."""
    path = tmp_path / "six.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=20)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * index, np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    once = LiveSession(model, str(path), sinks=[Collector()], downsample_ratio=RATIO, progress=False, threads=1)
    summary = once.run().summary
    assert summary["stop_reason"] == "source ended: end of input" and summary["frames_in"] == 6
    collector = Collector()
    looped = LiveSession(
        model, str(path), sinks=[collector], loop=True, max_frames=14, downsample_ratio=RATIO, progress=False,
        threads=1,
    ).run().summary  # fmt: skip
    assert looped["stop_reason"] == "max frames" and looped["resets"] >= 2 and looped["fps_in"] < 30
    assert all(stamp.generation == stamp.sequence // 6 for stamp in collector.stamps)  # one generation a pass


def test_newest_only_slot():
    slot: NewestOnly[int] = NewestOnly(gated=True)
    slot.put(1)  # before the gate opens: skipped
    slot.open_gate()
    for item in (2, 3, 4):
        slot.put(item)
    assert slot.take(timeout=0) == 4 and (slot.skipped, slot.put_count, slot.dropped) == (1, 3, 2)
    assert slot.take(timeout=0.01) is None and not slot.finished
    slot.put(5)
    slot.close()
    slot.put(6)  # ignored once closed
    assert slot.take(timeout=0) == 5 and slot.take(timeout=0) is None and slot.finished


def test_frame_clock_keeps_real_time():
    clock = FrameClock(Fraction(25))
    indices = [clock.index(t) for t in (10.0, 10.04, 10.2, 10.201, 10.24)]
    assert indices == [0, 1, 5, 6, 7]  # a gap of four frame times; two close frames still get their own numbers


def test_parse_source():
    assert camera_target("0", "linux") == ("/dev/video0", "v4l2")
    assert camera_target("1", "darwin") == ("1:none", "avfoundation")
    assert camera_target("Integrated Camera", "win32") == ("video=Integrated Camera", "dshow")
    with pytest.raises(SourceError, match="by name"):
        camera_target("0", "win32")
    rtsp = parse_source("rtsp://cam.local/stream", input_options={"stimeout": "1"})
    assert rtsp.kind == "stream" and rtsp.options["rtsp_transport"] == "tcp" and rtsp.options["stimeout"] == "1"
    assert not rtsp.paced and rtsp.reconnectable
    lavfi = parse_source("lavfi:testsrc2")
    assert (lavfi.target, lavfi.format, lavfi.paced) == ("testsrc2", "lavfi", True)
    dshow = parse_source("video=Cam", input_format="dshow")
    assert (dshow.target, dshow.format, dshow.kind) == ("video=Cam", "dshow", "camera")


def test_backgrounds_follow_what_each_sink_carries(tmp_path):
    mov = RecordSink(str(tmp_path / "a.mov"))
    mp4 = RecordSink(str(tmp_path / "b.mp4"))
    stream = StreamSink("udp://127.0.0.1:9")
    assert plan_backgrounds([mov, mp4, stream], "composition", None) == {
        mov.name: "transparent", mp4.name: "green", stream.name: "green"
    }
    assert set(plan_backgrounds([mov, stream], "composition", "#102030").values()) == {"#102030"}
    with pytest.raises(ValueError, match="cannot go to"):
        plan_backgrounds([mov, mp4], "composition", "transparent")
    assert plan_backgrounds([mov], "composition", "transparent") == {mov.name: "transparent"}


def test_runner_routes_agree_and_reset_forgets(model):
    """The runner's 8-bit route equals its float route within one step; reset gives a fresh start."""
    from inference import prepare_model

    fast = prepare_model(model, device=torch.device("cpu"), dtype=torch.float32, fast=True)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 1, 48, 64, 3), dtype=np.uint8))
    eight_bit, plain = RecurrentRunner(fast, downsample_ratio=RATIO), RecurrentRunner(model, downsample_ratio=RATIO)
    assert (eight_bit.eight_bit, plain.eight_bit) == (True, False)
    for clip in frames:  # [1, H, W, 3] each
        with one_torch_thread():
            a = eight_bit.step(clip).render("composition", None)
            b = plain.step(clip).render("composition", None)
        assert a.shape == (1, 48, 64, 4) and (a.int() - b.int()).abs().max() <= 1
    eight_bit.reset()
    again = eight_bit.step(frames[0]).render("alpha", None)
    fresh = RecurrentRunner(fast, downsample_ratio=RATIO).step(frames[0]).render("alpha", None)
    assert torch.equal(again, fresh)


def test_window_image_format():
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    assert portable_anymap(grey) == b"P5 3 2 255\n" + bytes(range(6))
    rgb = np.zeros((2, 3, 3), np.uint8)
    assert portable_anymap(rgb).startswith(b"P6 3 2 255\n") and len(portable_anymap(rgb)) == 11 + 18


class FakeTk:
    """Stands in for tkinter (no display in the tests): keeps the images shown; the user 'closes' the window after
    ``close_after`` images (the real window was checked by hand under Xvfb, see documentation/live.md)."""

    class TclError(Exception):
        pass

    def __init__(self, close_after: int) -> None:
        self.shown: List[bytes] = []
        self.threads = set()
        self.destroyed = False
        owner = self

        class Tk:
            def title(self, text):
                pass

            def protocol(self, name, callback):
                self.on_close = callback

            def bind(self, key, callback):
                pass

            def update(self):
                if len(owner.shown) >= close_after:
                    self.on_close()

            def destroy(self):
                owner.destroyed = True

        class Label:
            def __init__(self, root):
                pass

            def pack(self):
                pass

            def configure(self, image):
                pass

        class PhotoImage:
            def __init__(self, data):
                self.configure(data)

            def configure(self, data):
                owner.shown.append(data)
                owner.threads.add(threading.current_thread())

        self.Tk, self.Label, self.PhotoImage = Tk, Label, PhotoImage


def test_preview_window_is_driven_from_the_calling_thread_and_closing_it_stops(model, monkeypatch):
    fake = FakeTk(close_after=3)
    monkeypatch.setitem(sys.modules, "tkinter", fake)
    monkeypatch.setenv("DISPLAY", ":7")
    summary = LiveSession(
        model, "lavfi:testsrc2=size=64x48:rate=20", output_window=True, downsample_ratio=RATIO, max_frames=50,
        progress=False, threads=1,
    ).run().summary  # fmt: skip
    assert summary["stop_reason"] == "window closed" and fake.destroyed
    assert fake.threads == {threading.main_thread()}  # Tk is used from one thread (on macOS it must be the main one)
    assert len(fake.shown) >= 3 and all(data.startswith(b"P6 64 48 255\n") for data in fake.shown)
    assert summary["settings"]["outputs"] == {"window": "green"}
