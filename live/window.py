"""``--output-window``: a preview window drawn with Tk (Python's standard GUI toolkit).

OpenCV's pip wheel in this project is the headless build (no GUI), so the window uses tkinter, which ships with
Python. Tk must be driven from one thread, on macOS the main one, so the session feeds this sink from the thread
that called ``LiveSession.run``. Closing the window, or pressing q or Esc in it, stops the session.
"""
import logging
import os
import sys
from fractions import Fraction
from typing import Any, Tuple

import numpy as np

from .sinks import SinkError
from .sources import FrameStamp

logger = logging.getLogger(__name__)

Size = Tuple[int, int]  # (width, height)


class WindowClosed(Exception):
    """The user closed the preview window: the session stops (this is not a failure)."""


def portable_anymap(image: np.ndarray) -> bytes:
    """uint8 ``[H, W, 1|3]`` → binary PGM/PPM bytes, the format Tk's PhotoImage reads without Pillow."""
    height, width, channels = image.shape
    magic = b"P5" if channels == 1 else b"P6"
    return b"%s %d %d 255\n" % (magic, width, height) + np.ascontiguousarray(image).tobytes()


def _no_display() -> bool:
    if sys.platform.startswith("linux"):
        return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return False


class PreviewWindow:
    """A Tk window showing each output (a transparent composition is shown over the default green)."""

    carries_alpha = False
    main_thread = True

    def __init__(self, *, title: str = "Robust Video Matting (live)") -> None:
        self.name = "window"
        self.title = title
        try:
            import tkinter
        except ImportError as error:
            raise SinkError(
                "--output-window needs Tk, which this Python lacks: install it (Debian/Ubuntu: sudo apt install "
                "python3-tk; macOS/Windows: the python.org installer includes it), or watch the output with "
                "--output-stream udp://127.0.0.1:5000 and ffplay udp://127.0.0.1:5000."
            ) from error
        if _no_display():
            raise SinkError(
                "--output-window needs a display, and none is set (DISPLAY/WAYLAND_DISPLAY are empty): run it in a "
                "desktop session (or ssh -X), or watch the output with --output-stream udp://127.0.0.1:5000 and "
                "ffplay udp://127.0.0.1:5000."
            )
        self._tkinter = tkinter
        self._root: Any = None
        self._label: Any = None
        self._photo: Any = None
        self.closed = False

    def open(self, size: Size, frame_rate: Fraction) -> None:
        try:
            self._root = self._tkinter.Tk()
        except self._tkinter.TclError as error:
            raise SinkError(f"--output-window: Tk cannot open a window ({error}); check the display.") from error
        self._root.title(self.title)
        self._root.protocol("WM_DELETE_WINDOW", self._on_close)
        for key in ("q", "<Escape>"):
            self._root.bind(key, lambda event: self._on_close())
        self._label = self._tkinter.Label(self._root)
        self._label.pack()

    def _on_close(self) -> None:
        self.closed = True

    def poll(self) -> None:
        """Let Tk handle window events; raises :class:`WindowClosed` once the user closed the window."""
        if self._root is not None and not self.closed:
            self._root.update()
        if self.closed:
            raise WindowClosed()

    def write(self, image: np.ndarray, stamp: FrameStamp) -> None:
        data = portable_anymap(image)
        if self._photo is None:
            self._photo = self._tkinter.PhotoImage(data=data)
            self._label.configure(image=self._photo)
        else:
            self._photo.configure(data=data)
        self.poll()

    def close(self) -> None:
        if self._root is not None:
            self._root.destroy()
            self._root = None

