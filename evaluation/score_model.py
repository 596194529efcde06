"""Run a matting model over a composed test set and score it, in one command.

Every ``<true-dir>/<dataset>/<clip>/com/`` is matted frame by frame with the recurrent states carried through
the clip (``model.runner.RecurrentRunner``); predictions go to ``<pred-dir>/<dataset>/<clip>/{pha,fgr}/<frame>.png``
and are scored with the low- or high-resolution evaluator::

    python -m evaluation.score_model --variant mobilenetv3 --checkpoint rvm_mobilenetv3.pth \\
        --true-dir testsets --pred-dir predictions/rvm_mobilenetv3 --mode lr
"""
import argparse
import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

from tqdm import tqdm

from model import REFINERS, VARIANTS, auto_downsample_ratio
from model.devices import DeviceSpec, resolve_device
from model.runner import RecurrentRunner
from model.weights import load_model

from .evaluate import HR_METRICS, LR_METRICS, default_device, evaluate
from .tables import format_table, write_tables
from .frames import list_frames, read_image, write_image

logger = logging.getLogger(__name__)


def predict_clip(
    model: Callable, com_dir: Path, out_dir: Path, downsample_ratio: Optional[float] = None, device: DeviceSpec = None
) -> int:
    """Matte the frames of ``com_dir`` in order (states carried); write ``out_dir/{pha,fgr}``; return the count.

    ``model`` is anything ``model.runner.RecurrentRunner`` runs (fed on ``device``; None: the model's own).
    """
    frames = list_frames(com_dir)
    if not frames:
        raise FileNotFoundError(f"{com_dir} holds no images; recompose the test set (python -m evaluation.compose).")
    for name in ("pha", "fgr"):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    runner: Optional[RecurrentRunner] = None
    first_size = None
    for path in frames:
        rgb = read_image(path)[None, :, :, ::-1]  # BGR [H, W, 3] → RGB [1, H, W, 3]
        if first_size is None:
            first_size = rgb.shape[1:3]
            ratio = downsample_ratio if downsample_ratio is not None else auto_downsample_ratio(*first_size)
            runner = RecurrentRunner(model, downsample_ratio=ratio, device=device)
        elif rgb.shape[1:3] != first_size:
            raise ValueError(f"{path} differs in size from the clip's first frame; a clip must keep one size.")
        matte = runner.step(rgb)
        write_image(out_dir / "pha" / f"{path.stem}.png", matte.render("alpha")[0, :, :, 0].numpy())
        write_image(out_dir / "fgr" / f"{path.stem}.png", matte.render("foreground")[0].numpy()[:, :, ::-1])  # BGR
    return len(frames)


def predict_test_set(
    model: Callable,
    true_dir: str,
    pred_dir: str,
    downsample_ratio: Optional[float] = None,
    device: DeviceSpec = None,
    progress: bool = True,
) -> int:
    """Matte every ``<dataset>/<clip>/com`` of ``true_dir`` into ``pred_dir``; return the number of clips."""
    if downsample_ratio is not None and not 0 < downsample_ratio <= 1:
        raise ValueError(f"--downsample-ratio must be in (0, 1], or left out for the automatic one; got {downsample_ratio}.")
    root = Path(true_dir)
    clips = sorted(c for c in root.glob("*/*") if c.is_dir()) if root.is_dir() else []
    if not clips:
        raise FileNotFoundError(f"--true-dir {true_dir} holds no <dataset>/<clip>/com/ folders; compose a test set first.")
    for clip in tqdm(clips, desc="Matting clips", unit="clip", disable=not progress):
        predict_clip(model, clip / "com", Path(pred_dir) / clip.parent.name / clip.name, downsample_ratio, device)
    logger.info("Matted %d clips of %s into %s", len(clips), true_dir, pred_dir)
    return len(clips)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line: load weights, predict the test set, score it, print and write the table."""
    parser = argparse.ArgumentParser(description="Run a model over a composed test set and score it.")
    parser.add_argument("--variant", choices=VARIANTS, default="mobilenetv3")
    parser.add_argument("--refiner", choices=REFINERS, default="deep_guided_filter")
    parser.add_argument("--checkpoint", default=None, help="a .pth state dict (default: what model.weights.resolve_weights finds)")
    parser.add_argument("--true-dir", required=True, help="the composed test set root: <dataset>/<clip>/com,pha,fgr")
    parser.add_argument("--pred-dir", required=True, help="where predictions (and metrics.csv/.json) are written")
    parser.add_argument("--downsample-ratio", type=float, default=None, help="default: min(512 / max(H, W), 1)")
    parser.add_argument("--mode", choices=["lr", "hr"], default="lr", help="which evaluator scores the predictions")
    parser.add_argument("--metrics", nargs="+", default=None, help="default: the evaluator's metrics")
    parser.add_argument("--num-workers", type=int, default=0, help="clips scored in parallel")
    parser.add_argument("--device", default="auto", help="torch device (default auto: cuda when present, else cpu)")
    parser.add_argument("--disable-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    device = resolve_device(args.device)
    progress = not args.disable_progress
    model = load_model(args.variant, args.refiner, args.checkpoint, device=str(device), progress=progress)
    predict_test_set(model, args.true_dir, args.pred_dir, args.downsample_ratio, device, progress)
    result = evaluate(
        args.pred_dir,
        args.true_dir,
        metrics=args.metrics or (LR_METRICS if args.mode == "lr" else HR_METRICS),
        num_workers=args.num_workers,
        device=args.device if args.device != "auto" else default_device(args.mode),
        progress=progress,
    )
    csv_path, json_path = write_tables(result, str(Path(args.pred_dir) / "metrics"))
    print(format_table(result))
    print(f"Wrote {csv_path} and {json_path}")


if __name__ == "__main__":
    main()
