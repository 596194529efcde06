"""Drive the demo in the system's headless Chromium with Playwright (tests, the speed benchmark, screenshots).

Playwright's own browser downloads are never used: Chromium is Debian's ``/usr/bin/chromium`` (or
``$RVM_CHROMIUM``), started with the flags a machine without network access needs, a fresh profile each time,
and optionally a fake camera fed from a ``.y4m`` clip.
"""
import base64
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np

CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


# SwiftShader's WebGPU adapter (software, slow) instead of --disable-gpu's none: it exercises the WebGPU path.
SOFTWARE_WEBGPU_FLAGS = (
    "--enable-unsafe-webgpu",
    "--enable-unsafe-swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--enable-features=Vulkan",
    "--use-angle=swiftshader",
)


def chromium_path() -> str:
    """The Chromium binary: ``$RVM_CHROMIUM`` or ``chromium`` on the PATH (Debian's package)."""
    path = os.environ.get("RVM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise FileNotFoundError("No Chromium found; install Debian's chromium package or set RVM_CHROMIUM.")
    return path


@contextmanager
def chromium_page(
    *, fake_camera: Optional[Path] = None, viewport: Tuple[int, int] = (1280, 800), software_webgpu: bool = False
) -> Iterator:
    """A Playwright page in a fresh headless Chromium; with ``fake_camera`` the webcam plays that ``.y4m`` clip,
    with ``software_webgpu`` the page gets SwiftShader's WebGPU adapter (otherwise no GPU at all).

    The page is yielded with ``page.profile`` set to its profile folder (which also identifies its processes).
    """
    from playwright.sync_api import sync_playwright

    flags = list(CHROMIUM_FLAGS)
    if software_webgpu:
        flags = [flag for flag in flags if flag != "--disable-gpu"] + list(SOFTWARE_WEBGPU_FLAGS)
    if fake_camera is not None:
        flags += [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={fake_camera}",
        ]
    with tempfile.TemporaryDirectory(prefix="rvm-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=chromium_path(),
            headless=True,
            args=flags,
            viewport={"width": viewport[0], "height": viewport[1]},
            accept_downloads=True,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.profile = profile
            yield page
        finally:
            context.close()


def fake_camera_clip(
    video: Path, output: Path, *, width: int = 640, height: int = 480, frames: int = 30, fps: int = 30
) -> Path:
    """Write the first ``frames`` frames of ``video``, scaled to ``width`` × ``height``, as a ``.y4m`` clip (FFmpeg)
    that plays them at ``fps`` (every frame distinct): Chromium's fake camera delivers the clip's rate, which must
    not be what limits the page's frames/s (vtest.avi itself is 10 frames/s)."""
    if not video.is_file():
        raise FileNotFoundError(f"{video} does not exist; pass a video file to feed the fake camera.")
    command = [
        "ffmpeg", "-v", "error", "-y", "-i", str(video), "-frames:v", str(frames),
        "-vf", f"setpts=N/({fps}*TB),scale={width}:{height}", "-r", str(fps), "-pix_fmt", "yuv420p", str(output),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return output


def chromium_cpu_seconds(profile: str) -> float:
    """User + system CPU seconds so far of the Chromium started with ``profile`` and all its child processes
    (Linux ``/proc``; renderers and the zygote do not repeat the profile on their command line)."""
    parents, times, roots = {}, {}, set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if profile.encode() in (entry / "cmdline").read_bytes():
                roots.add(int(entry.name))
        except OSError:  # the process ended meanwhile
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    chosen = set(roots)
    while True:
        more = {pid for pid, parent in parents.items() if parent in chosen} - chosen
        if not more:
            break
        chosen |= more
    return sum(times[pid] for pid in chosen) / os.sysconf("SC_CLK_TCK")


# Typed arrays are handed to Python as base64 (Playwright's JSON would spell out every byte).
_AS_BASE64 = """(bytes) => {
  let text = '';
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(text);
}"""
_ALPHA_JS = f"""async ([url, options]) => {{
  const result = await window.rvm.matteImage(url, options);
  return {{width: result.width, height: result.height, data: ({_AS_BASE64})(result.alpha)}};
}}"""
_RGB_JS = f"""async (url) => {{
  const result = await window.rvm.decodeImage(url);
  return {{width: result.width, height: result.height, data: ({_AS_BASE64})(result.rgb)}};
}}"""


def matte_image(page, url: str, *, ratio: Optional[float] = None, frames: int = 1) -> np.ndarray:
    """``window.rvm.matteImage(url, {ratio, frames})`` → the alpha as a uint8 array ``[H, W]``."""
    result = page.evaluate(_ALPHA_JS, [url, {"ratio": ratio, "frames": frames}])
    return np.frombuffer(base64.b64decode(result["data"]), np.uint8).reshape(result["height"], result["width"])


def decode_image(page, url: str) -> np.ndarray:
    """``window.rvm.decodeImage(url)`` → the RGB bytes the model receives, uint8 ``[H, W, 3]``."""
    result = page.evaluate(_RGB_JS, url)
    return np.frombuffer(base64.b64decode(result["data"]), np.uint8).reshape(result["height"], result["width"], 3)
