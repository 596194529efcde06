"""Score predicted mattes against a composed test set: per-clip and overall tables (CSV, JSON, printed).

Both folders hold ``<dataset>/<clip>/pha/<frame>`` (and ``fgr/`` for the foreground metrics), 8-bit images.
Frames are paired by sorted file name position. The low- and high-resolution evaluators
(``evaluation.evaluate_lr`` / ``evaluation.evaluate_hr``) are this module with different defaults.
"""
import argparse
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from tqdm import tqdm

from .frames import list_frames, read_image
from .metrics import ALL_METRICS, FGR_METRICS, Frame, check_metric_names, score_frame
from .tables import ClipScores, EvaluationResult, format_table, write_tables

logger = logging.getLogger(__name__)

LR_METRICS = ALL_METRICS
HR_METRICS = ("pha_mad", "pha_mse", "pha_grad", "pha_dtssd", "fgr_mse")


@dataclass
class ClipFrames:
    """The paired frame files of one clip; ``*_fgr`` are None when no foreground metric is asked for."""

    dataset: str
    clip: str
    true_pha: List[Path]
    pred_pha: List[Path]
    true_fgr: Optional[List[Path]] = None
    pred_fgr: Optional[List[Path]] = None


def _paired_frames(true_folder: Path, pred_folder: Path, name: str) -> Tuple[List[Path], List[Path]]:
    """Frame lists of a truth and a prediction folder, checked to exist and to have the same length."""
    if not true_folder.is_dir():
        raise FileNotFoundError(f"Ground-truth folder {true_folder} is missing; every clip of --true-dir needs {name}/.")
    if not pred_folder.is_dir():
        raise FileNotFoundError(
            f"Prediction folder {pred_folder} is missing; predict this clip (python -m evaluation.score_model) "
            f"or point --pred-dir at the folder holding <dataset>/<clip>/{name}/."
        )
    true, pred = list_frames(true_folder), list_frames(pred_folder)
    if not true:
        raise FileNotFoundError(f"Ground-truth folder {true_folder} holds no images; recompose the test set.")
    if len(true) != len(pred):
        raise ValueError(
            f"Frame count mismatch: {pred_folder} has {len(pred)} frames but {true_folder} has {len(true)}; "
            "predict every frame of the clip (and only those)."
        )
    return true, pred


def find_clips(pred_dir: Path, true_dir: Path, with_fgr: bool) -> List[ClipFrames]:
    """Every ``<dataset>/<clip>`` of ``true_dir`` paired with ``pred_dir``; clear errors for bad folders."""
    if not true_dir.is_dir():
        raise FileNotFoundError(f"--true-dir {true_dir} does not exist; compose a test set with evaluation.compose.")
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"--pred-dir {pred_dir} does not exist; run the model first (evaluation.score_model).")
    clips = []
    for dataset in sorted(d for d in true_dir.iterdir() if d.is_dir()):
        for clip in sorted(c for c in dataset.iterdir() if c.is_dir()):
            pred_clip = pred_dir / dataset.name / clip.name
            if not pred_clip.is_dir():
                raise FileNotFoundError(
                    f"Clip {dataset.name}/{clip.name} is missing from --pred-dir {pred_dir}; "
                    "predict it, or evaluate against a --true-dir holding only the predicted clips."
                )
            pairs = ClipFrames(dataset.name, clip.name, *_paired_frames(clip / "pha", pred_clip / "pha", "pha"))
            if with_fgr:
                pairs.true_fgr, pairs.pred_fgr = _paired_frames(clip / "fgr", pred_clip / "fgr", "fgr")
            clips.append(pairs)
    if not clips:
        raise FileNotFoundError(f"--true-dir {true_dir} holds no <dataset>/<clip>/ folders; point it at a test set root.")
    for dataset in sorted(d for d in pred_dir.iterdir() if d.is_dir()):
        for clip in sorted(c for c in dataset.iterdir() if c.is_dir()):
            if not (true_dir / dataset.name / clip.name).is_dir():
                logger.warning("Predicted clip %s/%s has no ground truth in %s; it is not scored.", dataset.name, clip.name, true_dir)
    return clips


def read_frame(path: Path, color: bool, device: torch.device) -> Tensor:
    """An 8-bit image as float64 in [0, 1] on ``device``: ``[H, W]`` grey, or ``[H, W, 3]`` when ``color``."""
    return torch.from_numpy(read_image(path, grey=not color)).to(device=device, dtype=torch.float64) / 255


def _read_pair(true_path: Path, pred_path: Path, color: bool, device: torch.device) -> Tuple[Tensor, Tensor]:
    true, pred = read_frame(true_path, color, device), read_frame(pred_path, color, device)
    if true.shape != pred.shape:
        raise ValueError(
            f"Size mismatch: {pred_path} is {pred.shape[1]}×{pred.shape[0]} but {true_path} is "
            f"{true.shape[1]}×{true.shape[0]}; predict at the test set's resolution."
        )
    return true, pred


def score_clip(clip: ClipFrames, metrics: Tuple[str, ...], device: torch.device) -> ClipScores:
    """Read a clip frame by frame (keeping the previous frame for dtSSD) and score it."""
    scores = ClipScores(clip.dataset, clip.clip, {name: [] for name in metrics})
    previous: Optional[Frame] = None
    for i, (true_path, pred_path) in enumerate(zip(clip.true_pha, clip.pred_pha)):
        true_pha, pred_pha = _read_pair(true_path, pred_path, False, device)
        frame = Frame(pred_pha, true_pha)
        if clip.true_fgr is not None and clip.pred_fgr is not None:
            frame.true_fgr, frame.pred_fgr = _read_pair(clip.true_fgr[i], clip.pred_fgr[i], True, device)
            if frame.true_fgr.shape[:2] != true_pha.shape:
                raise ValueError(f"{clip.true_fgr[i]} and {true_path} differ in size; recompose the test set.")
        for name, value in score_frame(frame, previous, metrics).items():
            scores.per_frame[name].append(value)
        previous = frame
    return scores


def evaluate(
    pred_dir: str,
    true_dir: str,
    metrics: Sequence[str] = LR_METRICS,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> EvaluationResult:
    """Score every clip of ``true_dir`` against ``pred_dir``.

    With ``num_workers > 0`` that many threads score clips in parallel (on the CPU each with one torch thread).
    """
    metrics = tuple(metrics)
    check_metric_names(metrics)
    if num_workers < 0:
        raise ValueError(f"--num-workers must be 0 or more; got {num_workers}.")
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device} asks for CUDA, which this machine does not have; use --device cpu.")
    clips = find_clips(Path(pred_dir), Path(true_dir), with_fgr=any(m in FGR_METRICS for m in metrics))
    bar = tqdm(total=len(clips), desc="Scoring clips", unit="clip", disable=not progress)
    if num_workers == 0:
        results = []
        for clip in clips:
            results.append(score_clip(clip, metrics, torch_device))
            bar.update()
    else:
        # The workers are the parallelism: torch's own CPU threads would only contend with them (and spin).
        threads = torch.get_num_threads()
        if torch_device.type == "cpu":
            torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(num_workers) as pool:
                futures = [pool.submit(score_clip, clip, metrics, torch_device) for clip in clips]
                results = []
                for future in futures:
                    results.append(future.result())
                    bar.update()
        finally:
            torch.set_num_threads(threads)
    bar.close()
    return EvaluationResult(metrics, results)


def build_parser(mode: str) -> argparse.ArgumentParser:
    """Command-line flags; ``mode`` ('lr' or 'hr') sets the default metrics and device."""
    defaults = LR_METRICS if mode == "lr" else HR_METRICS
    parser = argparse.ArgumentParser(description=f"Score predicted mattes ({mode.upper()} evaluator).")
    parser.add_argument("--pred-dir", required=True, help="predictions: <dataset>/<clip>/{pha,fgr}/<frame>")
    parser.add_argument("--true-dir", required=True, help="ground truth in the same layout (a composed test set)")
    parser.add_argument("--metrics", nargs="+", default=list(defaults), help=f"any of {' '.join(ALL_METRICS)}")
    parser.add_argument("--num-workers", type=int, default=0 if mode == "hr" else 4, help="clips scored in parallel")
    parser.add_argument("--device", default=None, help="torch device (default: cpu for lr, cuda when present for hr)")
    parser.add_argument("--output-prefix", default=None, help="where to write .csv and .json (default <pred-dir>/metrics)")
    parser.add_argument("--disable-progress", action="store_true")
    return parser


def default_device(mode: str) -> str:
    """CPU for the low-resolution evaluator; the GPU when present for the high-resolution one."""
    return "cuda" if mode == "hr" and torch.cuda.is_available() else "cpu"


def main(mode: str, argv: Optional[Sequence[str]] = None) -> EvaluationResult:
    """Run an evaluator from the command line, print the table and write CSV/JSON."""
    args = build_parser(mode).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    result = evaluate(
        args.pred_dir,
        args.true_dir,
        metrics=args.metrics,
        num_workers=args.num_workers,
        device=args.device or default_device(mode),
        progress=not args.disable_progress,
    )
    csv_path, json_path = write_tables(result, args.output_prefix or str(Path(args.pred_dir) / "metrics"))
    print(format_table(result))
    print(f"Wrote {csv_path} and {json_path}")
    return result
