"""Live matting from the command line: a camera, stream, lavfi test source or file in; a preview window, a virtual
camera, a network stream and/or a recording out, in real time (see documentation/live.md).

    python inference_live.py --checkpoint rvm_mobilenetv3.pth --input-source camera:0 \\
        --output-virtual-camera --output-background '#3a6ea5'

A status line shows frames/s in and out, drops and latency while it runs; at the end one JSON line with the
figures and the settings goes to stdout. Ctrl-C, --duration or --max-frames stop it cleanly (recordings are
closed and playable; a second Ctrl-C ends at once with exit status 130). A missing camera, an unreachable
address or an output that cannot be opened ends it with a message and exit status 1, as does a source that drops
and cannot be reopened.
"""
import argparse
import json
import logging
from typing import Optional, Sequence

from inference import OUTPUT_TYPES, SETUP_ERRORS, X264_PRESETS, add_model_arguments
from live import LiveResult, LiveSession, LiveSource, make_sinks
from live.session import check_outputs, plan_backgrounds
from live.sources import parse_options
from model.devices import resolve_device
from model.outputs import OUTPUT_KINDS
from model.weights import load_model

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Robust Video Matting, live: cameras and streams in, real time out.")
    add_model_arguments(parser)
    source = parser.add_argument_group("source")
    source.add_argument(
        "--input-source", required=True,
        help="camera:N, a device (/dev/video0), a URL (rtsp://, rtmp://, srt://, udp://, tcp://, http(s)://…), "
        "lavfi:GRAPH (e.g. lavfi:testsrc2=size=640x480:rate=25) or a video file (played at its frame rate)",
    )  # fmt: skip
    source.add_argument("--input-format", help="FFmpeg input format to use as is (v4l2, avfoundation, dshow, mpegts…)")
    source.add_argument(
        "--input-option", action="append", default=[], metavar="KEY=VALUE",
        help="FFmpeg input option, repeatable (video_size=1280x720, framerate=30, input_format=mjpeg, …)",
    )  # fmt: skip
    source.add_argument("--input-resize", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"))
    source.add_argument("--loop", action="store_true", help="a file starts again at its end")
    source.add_argument("--reconnect", type=int, default=5, help="reopen attempts after a stall or drop (default 5)")
    source.add_argument("--input-timeout", type=float, default=5.0, help="seconds without a frame: stalled (default 5)")
    outputs = parser.add_argument_group("outputs (at least one)")
    outputs.add_argument("--output-window", action="store_true", help="a preview window (Tk)")
    outputs.add_argument("--output-virtual-camera", action="store_true", help="a virtual webcam (needs pyvirtualcam)")
    outputs.add_argument("--output-stream", metavar="URL", help="H.264 in MPEG-TS (udp/tcp/srt), FLV (rtmp) or RTSP")
    outputs.add_argument("--output-record", metavar="FILE", help="a .mp4/.mkv/.mov/.webm file, or a PNG folder")
    outputs.add_argument("--output-type", default="video", choices=list(OUTPUT_TYPES), help="recording: video or PNGs")
    outputs.add_argument("--output-kind", default="composition", choices=list(OUTPUT_KINDS))
    outputs.add_argument(
        "--output-background",
        help="colour (green, #RRGGBB, R,G,B), image, video, or transparent; default: transparent where the output "
        "keeps alpha (.mov/.webm/PNG recordings), else green",
    )  # fmt: skip
    outputs.add_argument("--output-video-mbps", type=float, help="bit rate of the stream and the recording")
    outputs.add_argument(
        "--output-video-preset", default="veryfast", choices=list(X264_PRESETS),
        help="x264 preset of an H.264 recording (default veryfast; streams always use ultrafast + zerolatency)",
    )  # fmt: skip
    outputs.add_argument("--overwrite", action="store_true", help="replace an existing recording")
    running = parser.add_argument_group("running")
    running.add_argument("--reset-after", type=float, default=1.0, help="reset the states after a pause this long (s)")
    running.add_argument("--duration", type=float, help="stop after this many seconds")
    running.add_argument("--max-frames", type=int, help="stop after this many output frames")
    running.add_argument("--disable-progress", action="store_true", help="no status line")
    return parser


def run(args: argparse.Namespace) -> LiveResult:
    """Check the outputs, open the source, load the model, run the session (in that order, so a bad output or
    source is reported before the model is loaded)."""
    sinks = make_sinks(
        output_record=args.output_record, output_stream=args.output_stream, output_window=args.output_window,
        output_virtual_camera=args.output_virtual_camera, output_type=args.output_type,
        output_video_mbps=args.output_video_mbps, output_video_preset=args.output_video_preset,
        overwrite=args.overwrite, input_label=args.input_source,
    )  # fmt: skip
    check_outputs(sinks)
    plan_backgrounds(sinks, args.output_kind, args.output_background)
    device = resolve_device(args.device)
    source = LiveSource.parse(
        args.input_source, input_format=args.input_format, input_options=parse_options(args.input_option),
        resize=args.input_resize, loop=args.loop, reconnect=args.reconnect, reset_after=args.reset_after,
        read_timeout=args.input_timeout,
    )  # fmt: skip
    source.open()
    try:
        model = load_model(
            args.variant, args.refiner, args.checkpoint, device=str(device), progress=not args.disable_progress
        )
        session = LiveSession(
            model, source, sinks=sinks, output_kind=args.output_kind, output_background=args.output_background,
            downsample_ratio=args.downsample_ratio, reset_after=args.reset_after, duration=args.duration,
            max_frames=args.max_frames, reconnect=args.reconnect, input_timeout=args.input_timeout,
            device=device, dtype=args.dtype, fast=not args.plain_model, compile_network=args.compile_network,
            threads=args.threads, progress=not args.disable_progress,
        )  # fmt: skip
    except BaseException:
        source.stop()
        raise
    return session.run()


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        result = run(args)
    except SETUP_ERRORS as error:  # as inference.py: input, output, weights or machine problems (SourceError and
        raise SystemExit(f"error: {error}") from error  # SinkError are ValueErrors); anything else is a bug
    except KeyboardInterrupt:  # a second Ctrl-C (the first stops cleanly); the outputs were closed on the way out
        raise SystemExit(130) from None
    print(json.dumps(result.summary), flush=True)
    if result.failure is not None:
        raise SystemExit(f"error: {result.failure}")


if __name__ == "__main__":
    main()
