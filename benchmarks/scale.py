"""Conversion jobs at scale: inputs/s and frames/s of one ``inference.py`` job on 1, 2, … workers, side by side.

Makes ``--clips`` H.264 clips of different lengths (``--min-frames`` to ``--max-frames``, spread evenly, at
``--size``; frames from ../shared/data/video/vtest.avi) and a weights file (the golden-recipe weights: the published
network's cost per frame; or ``--checkpoint``) in a temporary folder, then runs the same job once per worker count:

    python -m torch.distributed.run --standalone --nproc_per_node W inference.py --input-list clips.txt \\
        --output-dir OUT --output-alpha alpha.mp4 --output-composition com.mp4 --device DEVICE --disable-progress

Each worker count gets a fresh output folder. Reported per run: the command's wall time (start-up of W Python
processes included) and the job's own span (first input handed out → last finished, from the manifest), inputs/s
and frames/s over each, the CPU seconds of all processes (start-up included) in all and per frame, how busy each
worker was during the span (its conversion seconds / span), and the load average before and after (other jobs).
On a CPU-only machine each of the W workers gets cores / W torch threads (the job's default). Prints a table and
one JSON line. Example:

    python benchmarks/scale.py --workers 1 2 --clips 8
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import av
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conversion_jobs.manifest import DONE, MANIFEST_NAME, read_records  # noqa: E402
from model import MattingNetwork  # noqa: E402
from model.weights.deterministic import deterministic_state_dict  # noqa: E402

VTEST = ROOT.parent / "shared" / "data" / "video" / "vtest.avi"


def make_clips(folder: Path, *, clips: int, min_frames: int, max_frames: int, size: List[int]) -> Path:
    """``clips`` clips from vtest.avi, lengths spread evenly from ``max_frames`` down to ``min_frames``, listed in a
    shuffled order; returns the list file."""
    with av.open(str(VTEST)) as container:
        decoded = zip(range(max_frames + clips), container.decode(video=0))
        images = [frame.to_image().resize(tuple(size), Image.BILINEAR) for _, frame in decoded]
    paths = []
    for index in range(clips):
        frames = max_frames - round(index * (max_frames - min_frames) / max(clips - 1, 1))
        path = folder / f"clip{index:02d}.mp4"
        with av.open(str(path), "w") as output:
            stream = output.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            for number, image in enumerate(images[index : index + frames]):
                frame = av.VideoFrame.from_image(image)
                frame.pts = number
                output.mux(stream.encode(frame))
            output.mux(stream.encode(None))
        paths.append(path)
    listing = folder / "clips.txt"
    listing.write_text("".join(f"{paths[i]}\n" for i in sorted(range(clips), key=lambda i: (i * 5) % clips)))
    return listing


def run_job(workers: int, listing: Path, output_dir: Path, checkpoint: Path, device: str) -> Dict[str, Any]:
    """One job on ``workers`` processes; its figures."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(workers),
        str(ROOT / "inference.py"), "--checkpoint", str(checkpoint), "--device", device, "--disable-progress",
        "--input-list", str(listing), "--output-dir", str(output_dir),
        "--output-alpha", "alpha.mp4", "--output-composition", "com.mp4",
    ]
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_after = os.getloadavg()[0]
    if completed.returncode != 0:
        raise SystemExit(f"the job on {workers} workers failed:\n{completed.stderr[-3000:]}")
    records = list(read_records(output_dir / MANIFEST_NAME))
    if not records or any(record.status != DONE for record in records):
        raise SystemExit(f"the job on {workers} workers left inputs not done; see {output_dir / MANIFEST_NAME}")
    frames = sum(record.frames for record in records)
    span = max(r.finished_at for r in records) - min(r.started_at for r in records)
    busy = {}
    for record in records:
        busy[record.worker["rank"]] = busy.get(record.worker["rank"], 0.0) + record.seconds
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "workers": workers,
        "inputs": len(records),
        "frames": frames,
        "wall_s": round(wall, 2),
        "span_s": round(span, 2),
        "inputs_per_s_wall": round(len(records) / wall, 3),
        "frames_per_s_wall": round(frames / wall, 2),
        "inputs_per_s_span": round(len(records) / span, 3),
        "frames_per_s_span": round(frames / span, 2),
        "cpu_s": round(cpu, 1),
        "cpu_ms_per_frame": round(1000 * cpu / frames, 1),
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
        "busy_share_per_worker": {rank: round(seconds / span, 2) for rank, seconds in sorted(busy.items())},
        "command": " ".join(["python"] + command[1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--min-frames", type=int, default=10)
    parser.add_argument("--max-frames", type=int, default=40)
    parser.add_argument("--size", type=int, nargs=2, default=[320, 240], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (each worker takes cuda:LOCAL_RANK)")
    parser.add_argument("--checkpoint", help="weights file (default: the golden-recipe weights, same cost per frame)")
    args = parser.parse_args()
    if not VTEST.is_file():
        raise SystemExit(f"{VTEST} is missing; this benchmark cuts its clips from it.")
    folder = Path(tempfile.mkdtemp(prefix="rvm-scale-"))
    checkpoint = Path(args.checkpoint) if args.checkpoint else folder / "weights.pth"
    if args.checkpoint is None:
        torch.save(deterministic_state_dict(MattingNetwork("mobilenetv3")), checkpoint)
    listing = make_clips(
        folder, clips=args.clips, min_frames=args.min_frames, max_frames=args.max_frames, size=args.size
    )
    results = [
        run_job(workers, listing, folder / f"out-{workers}", checkpoint, args.device) for workers in args.workers
    ]

    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads by default, "
          f"torch {torch.__version__}; {args.clips} clips {args.size[0]}×{args.size[1]}, "
          f"{args.min_frames}–{args.max_frames} frames; outputs alpha.mp4 + com.mp4; device {args.device}")
    print(f"{'workers':>7} {'wall s':>7} {'inputs/s':>9} {'frames/s':>9} {'span s':>7} {'inputs/s':>9} {'frames/s':>9} "
          f"{'CPU s':>6} {'ms/frame':>8} {'load':>11}  busy share per worker")
    for r in results:
        print(f"{r['workers']:>7} {r['wall_s']:>7.2f} {r['inputs_per_s_wall']:>9.3f} {r['frames_per_s_wall']:>9.2f} "
              f"{r['span_s']:>7.2f} {r['inputs_per_s_span']:>9.3f} {r['frames_per_s_span']:>9.2f} "
              f"{r['cpu_s']:>6.1f} {r['cpu_ms_per_frame']:>8.1f} "
              f"{r['load_average_before_after'][0]:>5.2f}→{r['load_average_before_after'][1]:<5.2f}"
              f"  {r['busy_share_per_worker']}")
    print(json.dumps({"benchmark": "scale", "results": results}))


if __name__ == "__main__":
    main()
