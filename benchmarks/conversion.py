"""Video conversion throughput: the plain serial loop against ``convert_video``, side by side in one run.

Makes a 1080p H.264 clip in a temporary folder (the first frames of ../shared/data/video/vtest.avi upscaled; never
kept), then measures on it, with all three outputs (composition over green, alpha, foreground; H.264 .mp4, 1 Mbit/s):

- ``serial``: the published style: decode a frame → eager fp32 model → encode each output, one after another;
- ``pipelined``: ``convert_video`` (fast path, decode/model/encode overlapped in threads), with x264's default
  preset (as the serial loop) and with ``output_video_preset='veryfast'``; with ``--compile`` also the compiled
  fast path (its compile time reported apart, and included in a second figure);
- model-only frames/s for the eager model and the fast path (frames already decoded, no I/O).

Every run also reports the CPU time it used per frame (all threads), which bounds what overlapping can gain on
this machine: a pipeline cannot beat (CPU seconds per frame) / (cores). Torch keeps its default thread count
(the published loop's) unless ``--threads`` is given.

On CUDA (``--device cuda``) both sides run the model on the GPU (the serial loop's eager fp32 model too), the fast
path is compiled with CUDA graphs (convert_video's default there), and the peak GPU memory of convert_video's run is
reported.

Prints a table and one JSON line. Example:
    python benchmarks/conversion.py --frames 150
"""
import argparse
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference import COLOURS, convert_video, prepare_model  # noqa: E402
from inference_speed_test import git_commit  # noqa: E402
from model.fast_path import optimize_for_inference  # noqa: E402
from model import MattingNetwork, auto_downsample_ratio  # noqa: E402
from model.runner import RecurrentRunner  # noqa: E402
from model.weights.deterministic import load_deterministic_weights  # noqa: E402
from model.weights import load_model  # noqa: E402

SHARED = ROOT.parent / "shared"
logger = logging.getLogger("benchmarks.conversion")


def make_clip(source: Path, destination: Path, frames: int, width: int, height: int) -> None:
    """The first ``frames`` frames of ``source``, resized to ``width × height``, as H.264 at the source's rate."""
    with av.open(str(source)) as src, av.open(str(destination), "w") as dst:
        stream_in = src.streams.video[0]
        stream = dst.add_stream("libx264", rate=stream_in.average_rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"crf": "18"}
        for index, frame in enumerate(src.decode(stream_in)):
            if index == frames:
                break
            out = frame.reformat(width=width, height=height, format="yuv420p")
            out.pts = index
            dst.mux(stream.encode(out))
        dst.mux(stream.encode(None))


def build_model(checkpoint: Optional[str]) -> MattingNetwork:
    """Published weights (``--checkpoint``, else converted from ../shared's ONNX file), else the golden recipe."""
    if checkpoint is not None:
        return load_model("mobilenetv3", checkpoint=checkpoint)
    onnx_file = SHARED / "reference" / "weights" / "rvm_mobilenetv3_fp32.onnx"
    if onnx_file.is_file():
        from model.weights import convert_weights, save_state_dict

        folder = Path(tempfile.mkdtemp(prefix="rvm-bench-weights-"))
        result = convert_weights(onnx_file, variant="mobilenetv3", refiner="deep_guided_filter")
        return load_model("mobilenetv3", checkpoint=str(save_state_dict(result.state_dict, folder / "rvm.pth")))
    logger.warning("No published weights found; using the golden-recipe weights (same cost per frame).")
    return load_deterministic_weights(MattingNetwork("mobilenetv3")).eval()


def serial_loop(model: MattingNetwork, source: Path, folder: Path, downsample_ratio: float) -> int:
    """The published conversion loop: one frame at a time, decode → model → encode three outputs, no overlap."""
    device = next(model.parameters()).device
    green = torch.tensor(COLOURS["green"], dtype=torch.float32, device=device).div(255).view(1, 3, 1, 1)
    with av.open(str(source)) as src:
        stream_in = src.streams.video[0]
        outputs = {}
        for name in ("composition", "alpha", "foreground"):
            container = av.open(str(folder / f"serial_{name}.mp4"), "w")
            stream = container.add_stream("h264", rate=stream_in.average_rate)
            stream.width, stream.height, stream.pix_fmt = stream_in.width, stream_in.height, "yuv420p"
            stream.bit_rate = 1_000_000
            outputs[name] = (container, stream)
        states: List[Optional[torch.Tensor]] = [None] * 4
        count = 0
        with torch.no_grad():
            for frame in src.decode(stream_in):
                rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).to(device).permute(2, 0, 1).float().div(255)
                fgr, pha, *states = model(rgb.unsqueeze(0), *states, downsample_ratio=downsample_ratio)  # [1, C, H, W]
                images = {"composition": fgr * pha + green * (1 - pha), "alpha": pha.repeat(1, 3, 1, 1), "foreground": fgr}
                for name, image in images.items():
                    container, stream = outputs[name]
                    array = image[0].mul(255).byte().permute(1, 2, 0).cpu().numpy()  # [H, W, 3]
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
                count += 1
        for container, stream in outputs.values():
            container.mux(stream.encode(None))
            container.close()
    return count


def model_only(network: Callable, frames: List[np.ndarray], downsample_ratio: float, device: torch.device) -> float:
    """Frames/s of ``network`` on decoded frames, one a step through the float route (upload, uint8 → float and the
    full-size fgr and pha included; no decoding, rendering or encoding)."""
    runner = RecurrentRunner(network, downsample_ratio=downsample_ratio, device=device, eight_bit=False)
    start = time.perf_counter()
    for frame in frames:
        runner.step(frame[None])  # [1, H, W, 3]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return len(frames) / (time.perf_counter() - start)


def cpu_seconds() -> float:
    """CPU time used so far by this process, all threads, user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(work: Callable[[], int]) -> Tuple[float, float]:
    """(frames/s, CPU seconds per frame) of ``work``, which returns the number of frames it did."""
    start, cpu = time.perf_counter(), cpu_seconds()
    count = work()
    return count / (time.perf_counter() - start), (cpu_seconds() - cpu) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=150, help="frames of the 1080p clip")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--checkpoint", help="mobilenetv3 .pth; default: converted from ../shared's ONNX file")
    parser.add_argument("--seq-chunk", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch CPU threads for every measurement (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="also measure the compiled fast path (slow to build)")
    parser.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, cuda:N")
    parser.add_argument("--source", default=str(SHARED / "data" / "video" / "vtest.avi"), help="video to make it from")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    model = build_model(args.checkpoint).to(device)
    fast = prepare_model(model, device=device, dtype=torch.float32, fast=True)  # on CUDA compiled, with CUDA graphs
    ratio = auto_downsample_ratio(args.height, args.width)
    figures: Dict[str, float] = {}

    def pipelined(runner: Callable, folder: Path, preset: Optional[str] = None) -> int:
        return convert_video(
            runner, str(clip), output_composition=folder / "com.mp4", output_alpha=folder / "pha.mp4",
            output_foreground=folder / "fgr.mp4", output_video_mbps=1, output_video_preset=preset,
            seq_chunk=args.seq_chunk, progress=False, fast=False, downsample_ratio=ratio, overwrite=True,
        ).frames  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="rvm-bench-") as tmp:
        folder = Path(tmp)
        clip = folder / "clip1080p.mp4"
        make_clip(Path(args.source), clip, args.frames, args.width, args.height)
        with av.open(str(clip)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][:30]
        model_only(fast, decoded[:4], ratio, device)  # warm-up (loads the fused kernel; on CUDA compiles, captures)
        figures["model_only_eager_fps"] = model_only(model, decoded, ratio, device)
        figures["model_only_fast_fps"] = model_only(fast, decoded, ratio, device)
        figures["serial_fps"], figures["serial_cpu_s"] = timed(lambda: serial_loop(model, clip, folder, ratio))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        figures["pipelined_fps"], figures["pipelined_cpu_s"] = timed(lambda: pipelined(fast, folder))
        if device.type == "cuda":
            figures["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        figures["pipelined_veryfast_fps"], figures["pipelined_veryfast_cpu_s"] = timed(
            lambda: pipelined(fast, folder, "veryfast")
        )
        if args.compile:
            start = time.perf_counter()
            compiled = optimize_for_inference(model, compile_network=True)
            model_only(compiled, decoded[:3], ratio, device)  # builds the graphs for this size (first and later frames)
            warm = RecurrentRunner(compiled, downsample_ratio=ratio)  # and the 8-bit conversion route's entry
            for frame in decoded[:3] if warm.eight_bit else []:
                warm.step(frame[None])
            figures["compile_s"] = time.perf_counter() - start
            figures["model_only_compiled_fps"] = model_only(compiled, decoded, ratio, device)
            figures["pipelined_compiled_fps"], figures["pipelined_compiled_cpu_s"] = timed(lambda: pipelined(compiled, folder))
            figures["pipelined_compiled_with_compile_fps"] = args.frames / (
                args.frames / figures["pipelined_compiled_fps"] + figures["compile_s"]
            )
        del decoded
    cores = os.cpu_count() or 1
    serial = figures["serial_fps"]
    for key in [k for k in figures if k.startswith("pipelined") and k.endswith("fps")]:
        figures["speedup_" + key[: -len("_fps")]] = figures[key] / serial
    figures["speedup_bound"] = cores / figures["pipelined_cpu_s"] / serial  # all cores busy with this much work
    figures["speedup_model_only"] = figures["model_only_fast_fps"] / figures["model_only_eager_fps"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    commit = git_commit()
    print(f"{args.width}×{args.height}, {args.frames} frames, downsample_ratio {ratio:.4f}, model on {where}, torch "
          f"threads {torch.get_num_threads()}, {cores} cores, {platform.processor() or platform.machine()}, commit {commit}")
    print(f"  model only, eager fp32         {figures['model_only_eager_fps']:7.2f} frames/s")
    print(f"  model only, fast path          {figures['model_only_fast_fps']:7.2f} frames/s")
    rows = [("serial loop (published style)", "serial", "")]
    rows.append(("convert_video", "pipelined", "same x264 preset, medium"))
    rows.append(("convert_video, veryfast", "pipelined_veryfast", "--output-video-preset veryfast"))
    if args.compile:
        print(f"  model only, compiled fast path {figures['model_only_compiled_fps']:7.2f} frames/s "
              f"(compile {figures['compile_s']:.0f} s)")
        rows.append(("convert_video, compiled", "pipelined_compiled", "compile time excluded"))
    for label, key, note in rows:
        speedup = "" if key == "serial" else f"{figures['speedup_' + key]:.2f}× serial; "
        print(f"  end to end, {label:30s} {figures[key + '_fps']:6.2f} frames/s  {figures[key + '_cpu_s']:5.3f} CPU s/frame"
              + (f"  ({speedup}{note})" if speedup or note else ""))
    if args.compile:
        print(f"  end to end, compiled, compile time included {figures['pipelined_compiled_with_compile_fps']:6.2f} "
              f"frames/s ({figures['speedup_pipelined_compiled_with_compile']:.2f}× serial)")
    print(f"  bound on {cores} cores for convert_video's work: {figures['speedup_bound']:.2f}× serial "
          f"({figures['pipelined_cpu_s']:.3f} CPU s/frame ÷ {cores} cores)")
    if "peak_gpu_memory_mib" in figures:
        print(f"  peak GPU memory during convert_video: {figures['peak_gpu_memory_mib']:.0f} MiB")
    print(json.dumps({"benchmark": "conversion", "width": args.width, "height": args.height, "frames": args.frames,
                      "device": where, "cores": cores, "commit": commit,
                      **{k: round(v, 3) for k, v in figures.items()}}))


if __name__ == "__main__":
    main()
