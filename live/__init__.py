"""Live matting: cameras, network streams, lavfi test sources and files in; windows, virtual cameras, streams and
recordings out, in real time. ``python inference_live.py`` is the command line; see documentation/live.md."""
from .session import LiveResult, LiveSession, make_sinks
from .sinks import RecordSink, Sink, SinkError, StreamSink, VirtualCameraSink
from .sources import LiveSource, SourceError, parse_source
from .window import PreviewWindow

__all__ = [
    "LiveSession", "LiveResult", "make_sinks", "LiveSource", "SourceError", "parse_source",
    "Sink", "SinkError", "RecordSink", "StreamSink", "VirtualCameraSink", "PreviewWindow",
]
