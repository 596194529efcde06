"""Loopback servers for the live tests: an MPEG-TS clip served over TCP in real time (with a drop, a stall or a
pause on request) and a TCP receiver that keeps what a stream sink sends. Everything listens on 127.0.0.1 only,
on a port the system picks, and every wait is bounded."""
import io
import socket
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

import av
import numpy as np


def encode_ts_chunks(frames: Sequence[np.ndarray], *, frame_rate: int = 10) -> List[bytes]:
    """H.264 in MPEG-TS, one byte chunk per frame (chunk i completes frame i; chunk 0 carries the tables), so a
    server can release frames at their times. No B-frames or look-ahead (x264 zerolatency): packet i is frame i."""
    buffer = io.BytesIO()
    chunks: List[bytes] = []
    with av.open(buffer, "w", format="mpegts", container_options={"flush_packets": "1"}) as container:
        stream = container.add_stream("libx264", rate=frame_rate)
        height, width = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "12"}
        stream.codec_context.gop_size = frame_rate
        position = 0
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
            chunks.append(buffer.getvalue()[position:])
            position = len(buffer.getvalue())
        container.mux(stream.encode(None))
    chunks[-1] += buffer.getvalue()[position:]
    return chunks


def decode_ts(data: bytes, *, pixel_format: str = "rgb24") -> List[np.ndarray]:
    """Every video frame of an MPEG-TS byte string, as ``[H, W, C]`` arrays."""
    with av.open(io.BytesIO(data), format="mpegts") as container:
        return [frame.to_ndarray(format=pixel_format) for frame in container.decode(video=0)]


@dataclass
class Connection:
    """What the server does with one client: send ``frames`` chunks at ``frame_rate``, pausing ``pause_s`` seconds
    before chunk ``pause_at``; then close, or first keep the socket open silently for ``stall_s`` seconds."""

    frames: Sequence[bytes]
    frame_rate: float = 10.0
    pause_at: Optional[int] = None
    pause_s: float = 0.0
    stall_s: float = 0.0


class ClipServer:
    """Serves one :class:`Connection` plan per accepted client, in order; stops listening after the last plan."""

    def __init__(self, plans: Sequence[Connection], *, accept_timeout: float = 30.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # short waits, so that close() is never stuck in accept()
        self._accept_timeout = accept_timeout
        self.port = self._listener.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.sent: List[int] = []  # frames sent on each connection
        self._plans = list(plans)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _accept(self) -> Optional[socket.socket]:
        """The next client, or None once closed or after ``accept_timeout`` seconds."""
        deadline = time.monotonic() + self._accept_timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            client.settimeout(None)
            return client
        return None

    def _run(self) -> None:
        try:
            for plan in self._plans:
                client = self._accept()
                if client is None:
                    return
                with client:
                    self._serve(client, plan)
        finally:
            self._listener.close()

    def _serve(self, client: socket.socket, plan: Connection) -> None:
        start = time.monotonic()
        count = 0
        try:
            for index, chunk in enumerate(plan.frames):
                if index == plan.pause_at:
                    start += plan.pause_s
                delay = start + index / plan.frame_rate - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                client.sendall(chunk)
                count += 1
            if plan.stall_s:
                self._stop.wait(plan.stall_s)
        except OSError:  # the client went away
            pass
        self.sent.append(count)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class Receiver:
    """Accepts one TCP client and keeps every byte it sends until it closes."""

    def __init__(self, *, timeout: float = 60.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(timeout)
        self.url = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self._data = bytearray()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        finally:
            self._listener.close()
        with client:
            client.settimeout(60)
            while chunk := client.recv(65536):
                self._data += chunk

    def data(self, timeout: float = 30.0) -> bytes:
        self._thread.join(timeout)
        return bytes(self._data)


def free_port() -> int:
    """A loopback port nobody listens on (for 'unreachable' checks)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]
