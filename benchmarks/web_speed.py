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
) -> Dict[str, object]:
    """Run the page's webcam path and return the figures (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="rvm-web-speed-") as folder:
        clip = browser.fake_camera_clip(video, Path(folder) / "clip.y4m", width=width, height=height, frames=60)
        server = serve.make_server(model=model, port=0)
        serve.serve_in_thread(server)
        query = f"?backend={backend}" + (f"&threads={threads}" if threads else "")
        try:
            with browser.chromium_page(fake_camera=clip) as page:
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
        finally:
            server.shutdown()
    model_times: List[float] = stats["modelTimes"][-done:]
    return {
        "model": str(model),
        "backend": info["backend"],
        "threads": info["threads"],
        "precision": info["precision"],
        "size": f"{stats['width']}x{stats['height']}",
        "ratio": stats["ratio"],
        "frames": done,
        "frames_per_second": round(done / wall, 2),
        "model_ms": _percentiles(model_times),
        "chromium_cpu_ms_per_frame": round(1000 * cpu / done, 1),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
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
    )
    logger.info(
        "%s, %s, %d thread(s), %s at ratio %s: %.2f frames/s; model time per frame p10/median/p90 %s ms; "
        "Chromium CPU %.0f ms per frame; load %s on %d CPUs",
        result["backend"], result["precision"], result["threads"], result["size"], result["ratio"],
        result["frames_per_second"], "/".join(str(v) for v in result["model_ms"].values()),
        result["chromium_cpu_ms_per_frame"], result["load_average_1min"], result["cpus"],
    )  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
