"""Live matting in real time: a camera-like source served over loopback, matted by ``inference_live.py``, streamed
out to a loopback receiver; the session's own JSON figures for each size and setting.

For each size a source clip is made in a temporary folder (../shared/data/video/vtest.avi scaled to the size,
looped, shown at 25 frames/s, H.264 in MPEG-TS, a keyframe a second; never kept). For each setting:

- an ``ffmpeg -re -stream_loop -1`` process serves the clip over TCP on 127.0.0.1 in real time, as an IP camera
  or an encoder would;
- ``inference_live.py`` reads it (``--input-source tcp://…``) and streams the composition
  (``--output-stream tcp://…``, low-latency H.264) to an ``ffmpeg`` receiver that keeps what it gets;
- after ``--seconds`` the session stops and prints its JSON line (frames in/out/dropped, frames/s, latency from
  decode to hand-over, CPU seconds per output frame); the receiver's file is counted as a check.

Settings: ``default`` (the command line's CPU defaults) and ``compile`` (``--compile``; its build time is in
``warmup_s`` and happens before the first frame is taken, so it does not count in the figures).

To read the figures across machines, it also measures the machine's float32 matrix-multiply rate (GFLOP/s on
torch's threads) and counts the network's GFLOP per frame at each size: their ratio is a compute ceiling no run can
pass (the network at the best rate this CPU does any work, with nothing left for decoding and encoding). The
session's ``step_ms_p50`` says how near the model thread came to it.

Prints the machine, every command, the commit and one JSON line per run, then a table. Example:
    python benchmarks/live.py --seconds 60
"""
import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import av
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference_speed_test import git_commit  # noqa: E402
from model import MattingNetwork  # noqa: E402

SHARED = ROOT.parent / "shared"
PUBLISHED_ONNX = SHARED / "reference" / "weights" / "rvm_mobilenetv3_fp32.onnx"
GOAL = {"size": (640, 480), "fps_out": 24.0, "dropped_share": 0.04, "latency_ms_p95": 100.0}
SETTINGS = {"default": [], "compile": ["--compile"]}


def machine() -> str:
    """CPU model, cores, memory, load, and the library versions."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} {platform.release()}, load average "
        f"{load}; Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"PyAV {av.__version__} (FFmpeg libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))})"
    )


def matmul_gflops(seconds: float = 2.0, n: int = 1024) -> float:
    """The float32 matrix-multiply rate on torch's threads (GFLOP/s, best of repeated n×n products)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best, deadline = 0.0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        for _ in range(10):
            torch.mm(a, b)
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def network_gflop(size: Tuple[int, int], ratio: float) -> float:
    """GFLOP (2 per multiply-add, as torch's FlopCounterMode counts) of one mobilenetv3 step on a ``size`` frame."""
    network = MattingNetwork("mobilenetv3").eval()
    frame = torch.zeros(1, 3, size[1], size[0])
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(frame, downsample_ratio=ratio)  # a first frame (zero states) runs the same layers as any later one
    return counter.get_total_flops() / 1e9


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def make_clip(destination: Path, size: Tuple[int, int], seconds: int, frame_rate: int) -> None:
    """vtest.avi scaled to ``size`` and looped to ``seconds``, each frame shown 1/frame_rate s (exact timestamps),
    as H.264 (x264 veryfast, zerolatency, a keyframe a second) in MPEG-TS, like an IP camera's stream."""
    source = SHARED / "data" / "video" / "vtest.avi"
    total = seconds * frame_rate
    with av.open(str(destination), "w", format="mpegts") as output:
        stream = output.add_stream("libx264", rate=frame_rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.options = {"preset": "veryfast", "tune": "zerolatency"}
        stream.codec_context.gop_size = frame_rate
        index = 0
        while index < total:
            with av.open(str(source)) as container:
                for frame in container.decode(video=0):
                    if index == total:
                        break
                    picture = frame.reformat(width=size[0], height=size[1], format="yuv420p")
                    picture.pts, picture.time_base = index, Fraction(1, frame_rate)  # not the source's 10 frames/s
                    output.mux(stream.encode(picture))
                    index += 1
        output.mux(stream.encode(None))


def count_frames(path: Path) -> int:
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except av.error.FFmpegError:
        return 0


def run_once(
    clip: Path, folder: Path, checkpoint: Path, *, seconds: float, ratio: float, extra: Sequence[str]
) -> Tuple[List[str], Optional[Dict], int, str]:
    """Serve ``clip``, run the live command on it, receive its stream: (command, JSON figures, frames received,
    the command's stderr tail)."""
    source_port, output_port = free_port(), free_port()
    received = folder / f"received-{output_port}.ts"
    server = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy", "-f", "mpegts",
         f"tcp://127.0.0.1:{source_port}?listen=1"],
        stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # it complains when the session hangs up at the end
    )  # fmt: skip
    receiver = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-y", "-i", f"tcp://127.0.0.1:{output_port}?listen=1", "-c", "copy", str(received)],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)  # both listening
    command = [
        sys.executable, str(ROOT / "inference_live.py"), "--checkpoint", str(checkpoint),
        "--input-source", f"tcp://127.0.0.1:{source_port}", "--output-stream", f"tcp://127.0.0.1:{output_port}",
        "--downsample-ratio", str(ratio), "--duration", str(seconds), "--disable-progress", *extra,
    ]  # fmt: skip
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 900)
    finally:
        server.terminate()
        server.wait(timeout=30)
        try:
            receiver.wait(timeout=30)
        except subprocess.TimeoutExpired:
            receiver.terminate()
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1]) if result.returncode == 0 and lines else None
    return command, figures, count_frames(received), "\n".join(result.stderr.strip().splitlines()[-5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run (after warm-up)")
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"], help="WIDTHxHEIGHT of the source")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--downsample-ratio", type=float, default=0.5)
    parser.add_argument("--frame-rate", type=int, default=25)
    parser.add_argument(
        "--checkpoint", default=str(PUBLISHED_ONNX),
        help="mobilenetv3 weights (.pth, or the ONNX release, read directly); default: ../shared's ONNX release",
    )
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("error: the benchmark serves and receives with the ffmpeg program; install FFmpeg.")
    print(f"machine: {machine()}")
    commit = git_commit()
    print(f"commit: {commit}")
    rate = matmul_gflops()
    print(f"float32 matrix multiply on {torch.get_num_threads()} threads: {rate:.0f} GFLOP/s")
    ceilings = {}
    for text in args.sizes:
        work = network_gflop(tuple(int(v) for v in text.lower().split("x")), args.downsample_ratio)
        ceilings[text] = rate / work
        print(f"{text}, ratio {args.downsample_ratio}: the network does {work:.2f} GFLOP a frame → compute ceiling "
              f"{ceilings[text]:.1f} frames/s at that rate, with nothing left for decoding and encoding")
    rows = []
    with tempfile.TemporaryDirectory(prefix="rvm-live-bench-") as tmp:
        folder = Path(tmp)
        checkpoint = Path(args.checkpoint)
        for text in args.sizes:
            size = tuple(int(v) for v in text.lower().split("x"))
            clip = folder / f"source-{text}.ts"
            make_clip(clip, size, 30, args.frame_rate)
            for name in args.settings:
                command, figures, received, stderr = run_once(
                    clip, folder, checkpoint, seconds=args.seconds, ratio=args.downsample_ratio, extra=SETTINGS[name]
                )
                shown = " ".join(command).replace(str(SHARED), "../shared").replace(str(ROOT) + "/", "")
                print(f"\n{text}, {name}: {shown}")
                if figures is None:
                    print(f"  FAILED:\n{stderr}")
                    continue
                print(json.dumps({"benchmark": "live", "size": text, "setting": name, "commit": commit,
                                  "frames_received": received, **figures}))
                rows.append((text, name, figures, received))
    print(
        "\nsize      setting  frames/s out  dropped  p50 ms  p95 ms  step p50 ms  CPU s/frame  ceiling/s  warm-up s"
        "  received/out"
    )
    for text, name, figures, received in rows:
        print(f"{text:9s} {name:8s} {figures['fps_out']:12.2f} {100 * figures['dropped_share']:7.1f}% "
              f"{figures['latency_ms_p50']:7.1f} {figures['latency_ms_p95']:7.1f} {figures['step_ms_p50']:12.1f} "
              f"{figures['cpu_s_per_frame']:12.3f} {ceilings[text]:10.1f} {figures['settings']['warmup_s']:10.1f}  "
              f"{received}/{figures['frames_out']}")
    goal_size = f"{GOAL['size'][0]}x{GOAL['size'][1]}"
    for text, name, figures, _ in rows:
        if text == goal_size:
            met = (figures["fps_out"] >= GOAL["fps_out"] and figures["dropped_share"] <= GOAL["dropped_share"]
                   and figures["latency_ms_p95"] <= GOAL["latency_ms_p95"])  # fmt: skip
            print(f"goal at {goal_size}, ratio {args.downsample_ratio}, {name}: ≥ {GOAL['fps_out']} frames/s out, "
                  f"≤ {100 * GOAL['dropped_share']:.0f} % dropped, p95 ≤ {GOAL['latency_ms_p95']:.0f} ms: "
                  f"{'met' if met else 'not met'}")


if __name__ == "__main__":
    main()
