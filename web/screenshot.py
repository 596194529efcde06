"""Take the documentation's screenshot of the demo mid-run (headless Chromium, fake camera, small palette PNG).

    python web/screenshot.py --model web/models/rvm_mobilenetv3_fp32_r0.5.onnx --output documentation/web_demo.png

The fake camera plays a 640×480 clip panning across one of the portraits in ``../shared/data/portraits`` (made in a
temporary folder, never kept); the background is a frame of ``vtest.avi``; the recurrent states are shown.
"""
import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from web import browser, serve  # noqa: E402

logger = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PAN_CLIP = (
    "scale=-2:600,crop=640:480:x='min(iw-640\\,t*15)':y=60,fps=15"  # a slow pan, so the states see motion
)


def make_clips(portrait: Path, street: Path, folder: Path) -> tuple:
    """A 640×480 ``.y4m`` pan across ``portrait`` (6 s) and a 640×480 PNG frame of ``street``."""
    camera, background = folder / "camera.y4m", folder / "street.png"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-loop", "1", "-i", str(portrait), "-t", "6", "-vf", PAN_CLIP,
         "-pix_fmt", "yuv420p", str(camera)], check=True,
    )  # fmt: skip
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-ss", "10", "-i", str(street), "-frames:v", "1", "-vf", "scale=640:480",
         str(background)], check=True,
    )  # fmt: skip
    return camera, background


def take(model: Path, output: Path, *, portrait: Path, street: Path, frames: int, colours: int) -> Path:
    """Run the page on the panning clip for ``frames`` frames and save a ``colours``-colour PNG of it."""
    with tempfile.TemporaryDirectory(prefix="rvm-screenshot-") as folder:
        camera, background = make_clips(portrait, street, Path(folder))
        server = serve.make_server(model=model, port=0)
        serve.serve_in_thread(server)
        try:
            with browser.chromium_page(fake_camera=camera, viewport=(1180, 760)) as page:
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
                page.evaluate("window.rvm.ready")
                page.select_option("#background", "image")
                page.set_input_files("#background-image", str(background))
                page.click("#webcam")
                page.wait_for_function(f"window.rvm.stats.frames >= {frames}", timeout=600_000)
                raw = Path(folder) / "page.png"
                page.screenshot(path=str(raw))
        finally:
            server.shutdown()
        image = Image.open(raw).convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT)
        output.parent.mkdir(parents=True, exist_ok=True)
        image.save(output, optimize=True)
    return output


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Screenshot of the browser demo mid-run.")
    parser.add_argument("--model", type=Path, default=serve.DEFAULT_MODEL)
    parser.add_argument("--output", type=Path, default=Path("documentation/web_demo.png"))
    parser.add_argument("--portrait", type=Path, default=DATA / "portraits" / "image" / "p_09ba26b4.jpg")
    parser.add_argument("--street", type=Path, default=DATA / "video" / "vtest.avi")
    parser.add_argument("--frames", type=int, default=12, help="frames matted before the screenshot")
    parser.add_argument("--colours", type=int, default=160, help="palette size of the PNG (keeps it small)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = take(args.model, args.output, portrait=args.portrait, street=args.street, frames=args.frames,
                colours=args.colours)  # fmt: skip
    print(f"Wrote {path} ({path.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
