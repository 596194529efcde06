"""Speed of the browser demo: the page's webcam path in headless Chromium, fed by a fake camera.

Runs the real page (``web/``) on a model exported by ``export.py``, with Chromium's fake camera playing a clip of
``vtest.avi`` at the chosen size, and prints frames/s, the distribution of per-frame model time (``session.run``
in the worker) and of the whole frame in the worker, the CPU time of all Chromium processes per frame, and the
machine's load, then one JSON line::

    python benchmarks/web_speed.py --model web/models/rvm_mobilenetv3_fp32_r0.5.onnx --threads 2
    python benchmarks/web_speed.py --model web/models/rvm_mobilenetv3_fp32.onnx --ratio 0.5 --threads 2

``--profile`` also prints ONNX Runtime's per-operator time (its profiler, run in the page on one frame size).
"""
import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from web import browser, serve  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "vtest.avi"


def _percentiles(values: Sequence[float]) -> Dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {name: round(float(np.percentile(array, q)), 1) for name, q in (("p10", 10), ("median", 50), ("p90", 90))}


def _wait_for_frames(page, count: int) -> None:
    """Wait until the page has matted ``count`` frames; raise with the page's message if it stopped instead."""
    page.wait_for_function(
        f"window.rvm.stats.frames >= {count} || !document.getElementById('message').hidden", timeout=600_000
    )
    if page.is_visible("#message"):
        raise RuntimeError(f"The page stopped: {page.inner_text('#message')}")


def measure(
    model: Path,
    *,
    video: Path,
    width: int,
    height: int,
    ratio: Optional[float],
    threads: int,
    backend: str,
    warmup: int,
    frames: int,
    spin: bool = True,
    profile: bool = False,
) -> Dict[str, object]:
    """Run the page's webcam path and return the figures (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="rvm-web-speed-") as folder:
        clip = browser.fake_camera_clip(video, Path(folder) / "clip.y4m", width=width, height=height, frames=60)
        server = serve.make_server(model=model, port=0)
        serve.serve_in_thread(server)
        query = f"?backend={backend}" + (f"&threads={threads}" if threads else "") + ("" if spin else "&spin=0")
        query += "&profile" if profile else ""
        trace: List[str] = []
        try:
            with browser.chromium_page(fake_camera=clip) as page:
                page.on("console", lambda message: trace.append(message.text))
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/{query}")
                info = page.evaluate("window.rvm.ready")
                page.select_option("#resolution", str(max(width, height)))
                if ratio is not None:
                    page.select_option("#ratio", str(ratio))
                page.uncheck("#show-states")  # the states view costs time in the worker; measure the matting
                page.click("#webcam")
                _wait_for_frames(page, warmup)
                start_frames = page.evaluate("window.rvm.stats.frames")
                start_wall, start_cpu = time.perf_counter(), browser.chromium_cpu_seconds(page.profile)
                load_before = os.getloadavg()[0]
                _wait_for_frames(page, start_frames + frames)
                wall, cpu = time.perf_counter() - start_wall, browser.chromium_cpu_seconds(page.profile) - start_cpu
                done = page.evaluate("window.rvm.stats.frames") - start_frames
                stats = page.evaluate("window.rvm.stats")
                if profile:
                    page.click("#stop")
                    page.evaluate("window.rvm.endProfiling()")
                    page.wait_for_timeout(1000)
        finally:
            server.shutdown()
    model_times: List[float] = stats["modelTimes"][-done:]
    result = {
        "model": str(model),
        "backend": info["backend"],
        "threads": info["threads"],
        "precision": info["precision"],
        "size": f"{stats['width']}x{stats['height']}",
        "ratio": stats["ratio"],
        "frames": done,
        "frames_per_second": round(done / wall, 2),
        "model_ms": _percentiles(model_times),
        "worker_frame_ms": _percentiles(stats["frameTimes"][-done:]),
        "chromium_cpu_ms_per_frame": round(1000 * cpu / done, 1),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
        "spin": spin,
    }
    if profile:
        result["operators"] = operator_profile(trace, skip_runs=warmup)
    return result


def operator_profile(console: Sequence[str], *, skip_runs: int) -> Dict[str, object]:
    """Summarise ONNX Runtime's profiler trace (JSON events printed to the console): time per operator type and
    the slowest nodes per frame, and the multiply-accumulates of every convolution (from its shapes)."""
    events = []
    for text in console:
        for line in text.splitlines():
            line = line.strip().rstrip(",")
            if line.startswith("{") and '"cat"' in line:
                events.append(json.loads(line))
    runs = sorted(e["ts"] for e in events if e["name"] == "model_run")[skip_runs:]
    if not runs:
        return {}
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= runs[0]]
    by_type: Dict[str, float] = {}
    macs = 0
    for event in nodes:
        args = event["args"]
        by_type[args["op_name"]] = by_type.get(args["op_name"], 0.0) + event["dur"] / 1000 / len(runs)
        if args["op_name"] in ("Conv", "FusedConv"):
            weight = next(iter(args["input_type_shape"][1].values()))  # [out, in / groups, kh, kw]
            output = next(iter(args["output_type_shape"][0].values()))  # [1, out, h, w]
            macs += output[1] * weight[1] * weight[2] * weight[3] * output[2] * output[3]
    total = sum(by_type.values())
    ranked = sorted(by_type.items(), key=lambda item: -item[1])
    return {
        "frames": len(runs),
        "kernel_ms_per_frame": round(total, 1),
        "ms_per_frame_by_type": {name: round(ms, 1) for name, ms in ranked[:10]},
        "conv_gmac_per_frame": round(macs / len(runs) / 1e9, 3),
    }


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Frames/s of the browser demo in headless Chromium.")
    parser.add_argument("--model", type=Path, default=serve.DEFAULT_MODEL, help="ONNX file written by export.py")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="clip for the fake camera")
    parser.add_argument("--size", default="640x480", help="camera size WxH (the page works at this size)")
    parser.add_argument("--ratio", type=float, default=None, help="downsample ratio (models with a run-time ratio)")
    parser.add_argument("--threads", type=int, default=2, help="WASM threads (0: the browser's core count)")
    parser.add_argument("--backend", default="wasm", choices=["wasm", "webgpu", "auto"])
    parser.add_argument("--warmup", type=int, default=5, help="frames before measuring")
    parser.add_argument("--frames", type=int, default=40, help="frames measured")
    parser.add_argument("--no-spin", action="store_true", help="ONNX Runtime's threads sleep instead of spinning")
    parser.add_argument("--profile", action="store_true", help="also summarise ONNX Runtime's per-operator profile")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    width, height = (int(v) for v in args.size.lower().split("x"))
    result = measure(
        args.model,
        video=args.video,
        width=width,
        height=height,
        ratio=args.ratio,
        threads=args.threads,
        backend=args.backend,
        warmup=args.warmup,
        frames=args.frames,
        spin=not args.no_spin,
        profile=args.profile,
    )
    logger.info(
        "%s, %s, %d thread(s), %s at ratio %s: %.2f frames/s; model time per frame p10/median/p90 %s ms "
        "(worker, whole frame: %s ms); Chromium CPU %.0f ms per frame; load %s on %d CPUs",
        result["backend"], result["precision"], result["threads"], result["size"], result["ratio"],
        result["frames_per_second"], "/".join(str(v) for v in result["model_ms"].values()),
        "/".join(str(v) for v in result["worker_frame_ms"].values()),
        result["chromium_cpu_ms_per_frame"], result["load_average_1min"], result["cpus"],
    )  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
