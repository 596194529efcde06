"""Serve the browser demo: the page, ONNX Runtime Web's files and one model exported by ``export.py``.

Command line::

    python web/serve.py                        # the fp16 model at web/models/rvm_mobilenetv3_fp16.onnx
    python web/serve.py --model rvm_fp32.onnx  # any ONNX file written by export.py (fp32 or fp16, any ratio mode)
    python web/serve.py --port 8080 --host 0.0.0.0

Every response carries ``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy:
require-corp``: the page is then *cross-origin isolated*, which WebAssembly threads need (SharedArrayBuffer).
``/config.json`` tells the page which model it gets (precision, fixed or run-time ratio), or why there is none
and the command that makes one; the page shows that message instead of a blank page.
"""
import argparse
import http.server
import json
import logging
import mimetypes
import shlex
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
REPO_DIR = WEB_DIR.parent
ORT_DIST = WEB_DIR / "node_modules" / "onnxruntime-web" / "dist"
DEFAULT_MODEL = WEB_DIR / "models" / "rvm_mobilenetv3_fp16.onnx"
PAGE_FILES = ("index.html", "style.css")
PAGE_FOLDERS = ("js",)
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CONTENT_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}


@dataclass(frozen=True)
class ModelInfo:
    """What the page needs to know about the served model before it downloads it."""

    name: str
    bytes: int
    precision: str  # 'float32' or 'float16', from the type of the ``src`` input
    fixed_ratio: Optional[float]  # the baked-in ratio of a fixed-ratio graph; None when the ratio is an input
    variant: str


def export_command(model: Path) -> str:
    """The ``export.py`` command that writes the model the server looks for at ``model``."""
    precision = "float16" if "fp16" in model.name else "float32"
    try:
        shown = model.resolve().relative_to(Path.cwd())
    except ValueError:
        shown = model
    return f"python export.py onnx --precision {precision} --output {shlex.quote(str(shown))}"


def read_model_info(model: Path) -> ModelInfo:
    """Read precision, ratio mode and variant from an exported ONNX file (graph only, no weights decoded)."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    inputs = {value.name: value for value in proto.graph.input}
    if "src" not in inputs or "r1i" not in inputs:
        raise ValueError(
            f"{model} is not a Robust Video Matting graph (no 'src'/'r1i' inputs); make one with "
            f"{export_command(DEFAULT_MODEL)}."
        )
    precision = "float16" if inputs["src"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 else "float32"
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    fixed_ratio = None
    if "downsample_ratio" not in inputs:
        fixed_ratio = float(metadata.get("downsample_ratio", "nan"))
        if not 0 < fixed_ratio <= 1:
            raise ValueError(
                f"{model} has no downsample_ratio input and no 'downsample_ratio' metadata; re-export it with "
                "export.py (--downsample-ratio R for a fixed ratio)."
            )
    return ModelInfo(model.name, model.stat().st_size, precision, fixed_ratio, metadata.get("variant", "unknown"))


def page_config(model: Path) -> Dict[str, object]:
    """The JSON the page reads first: the model's description, or an error with the command that fixes it."""
    if not (ORT_DIST / "ort.wasm.min.mjs").is_file():
        return {
            "model": None,
            "error": "ONNX Runtime Web is not installed next to the page.",
            "command": "cd web && npm ci",
        }
    if not model.is_file():
        return {
            "model": None,
            "error": f"No model has been exported yet: {model} does not exist.",
            "command": export_command(model),
        }
    try:
        return {"model": asdict(read_model_info(model)), "error": None, "command": None}
    except ValueError as problem:
        return {"model": None, "error": str(problem), "command": export_command(DEFAULT_MODEL)}


class DemoHandler(http.server.SimpleHTTPRequestHandler):
    """Static files from a fixed set of roots, every response with the cross-origin isolation headers."""

    model: Path = DEFAULT_MODEL
    mounts: Mapping[str, Path] = {}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, directory=str(WEB_DIR), **kwargs)

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store" if self.path.startswith("/config.json") else "no-cache")
        super().end_headers()

    def guess_type(self, path) -> str:
        suffix = Path(str(path)).suffix
        return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(str(path))[0] or "application/octet-stream"

    def translate_path(self, path: str) -> str:
        """Map a URL path to a file: the page, ``/ort/`` (ORT's dist), ``/model.onnx`` and any extra mounts."""
        route = unquote(urlsplit(path).path)
        if route in ("/", ""):
            return str(WEB_DIR / "index.html")
        if route == "/model.onnx":
            return str(self.model)
        roots = {f"/{name}": WEB_DIR / name for name in PAGE_FILES}
        roots.update({f"/{name}/": WEB_DIR / name for name in PAGE_FOLDERS})
        roots["/ort/"] = ORT_DIST
        roots.update(self.mounts)
        for prefix, root in roots.items():
            if route == prefix and not prefix.endswith("/"):
                return str(root)
            if prefix.endswith("/") and route.startswith(prefix):
                target = (root / route[len(prefix):]).resolve()
                if root.resolve() in target.parents:  # no escaping the root with ../
                    return str(target)
        return str(WEB_DIR / "not-found")  # answered with 404

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/config.json":
            body = json.dumps(page_config(self.model)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def list_directory(self, path):
        self.send_error(404, "No directory listings")
        return None

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class DemoServer(http.server.ThreadingHTTPServer):
    """A threading server that stays quiet when a browser drops a connection mid-response (page closed)."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("%s closed the connection early", client_address)
            return
        super().handle_error(request, client_address)


def make_server(
    *,
    model: Path = DEFAULT_MODEL,
    host: str = "127.0.0.1",
    port: int = 8000,
    mounts: Optional[Mapping[str, Path]] = None,
) -> DemoServer:
    """A server for the demo (not started). ``port=0`` picks a free port (``server.server_address[1]``).

    ``mounts`` maps extra URL prefixes ending in ``/`` to folders, e.g. test images: ``{"/data/": Path(...)}``.
    """
    extra = dict(mounts or {})
    for prefix in extra:
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ValueError(f"Mount prefixes start and end with '/'; got {prefix!r}.")
    handler = type("BoundDemoHandler", (DemoHandler,), {"model": Path(model), "mounts": extra})
    return DemoServer((host, port), handler)


def serve_in_thread(server: DemoServer) -> threading.Thread:
    """Run ``server`` in a daemon thread (tests and scripts); stop it with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="rvm-web-server", daemon=True)
    thread.start()
    return thread


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the Robust Video Matting browser demo.")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for other machines)")
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help=f"ONNX file written by export.py (default {DEFAULT_MODEL.relative_to(REPO_DIR)}, float16)",
    )
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python web/serve.py``: serve until Ctrl-C."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = page_config(args.model)
    if config["error"]:
        logger.warning(
            "%s\nMake it with:\n    %s\nThe page shows this message until then.", config["error"], config["command"]
        )
    else:
        model = config["model"]
        ratio = "run-time ratio" if model["fixed_ratio"] is None else f"fixed ratio {model['fixed_ratio']}"
        logger.info("Model %s (%s, %s, %.1f MB)", args.model, model["precision"], ratio, model["bytes"] / 1e6)
    server = make_server(model=args.model, host=args.host, port=args.port)
    host, port = server.server_address[:2]
    print(f"Serving the demo on http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("Stopped.")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
