"""Check converted weights on real images: PyTorch against onnxruntime running the published ONNX file.

``python -m evaluation.weights_check --onnx rvm_mobilenetv3_fp32.onnx --tfjs tfjs/ --portraits data/portraits``
prints, per portrait (each fed 3 times as a clip through ``model.runner.RecurrentRunner``, states carried,
automatic downsample ratio made runtime-neutral, see :func:`runtime_neutral_ratio`), the largest
PyTorch-vs-onnxruntime differences and the alpha quality against the reference alphas (MAD ×1e3, MSE ×1e3, IoU
at 0.5) for PyTorch, onnxruntime and the TF.js weights, then one JSON line with every figure.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from model import MattingNetwork, auto_downsample_ratio
from model.export_module import sizes_agree
from model.runner import FloatMatte, RecurrentRunner, model_input
from model.weights import convert_weights

CLIP_LENGTH = 3  # each still image is fed this many times, states carried


def runtime_neutral_ratio(height: int, width: int, ratio: float) -> float:
    """``ratio`` as a float32, nudged up by float32 steps until both runtimes pick the same downsampled size.

    PyTorch sizes the small image in float64, onnxruntime in float32 (``model.export_module.sizes_agree``); where
    they differ by a pixel the two outputs differ visibly. Feeding both a ratio on which they agree makes the
    comparison about the weights.
    """
    value = np.float32(ratio)
    for _ in range(8):
        if sizes_agree(height, value) and sizes_agree(width, value):
            return float(value)
        value = np.nextafter(value, np.float32(1))
    raise ValueError(f"No float32 ratio near {ratio} sizes {height}×{width} the same way in float32 and float64.")


def load_rgb(path: Path) -> Tensor:
    """An image file as uint8 RGB ``[H, W, 3]``."""
    return torch.from_numpy(np.array(Image.open(path).convert("RGB")))


def load_alpha(path: Path) -> Tensor:
    """A greyscale alpha file in [0, 1], ``[1, 1, H, W]``."""
    array = np.array(Image.open(path).convert("L"))  # [H, W] uint8
    return torch.from_numpy(array)[None, None].float().div(255)


def alpha_metrics(pred: Tensor, true: Tensor) -> Dict[str, float]:
    """MAD ×1e3, MSE ×1e3 and IoU of the masks at 0.5 between two alphas of the same shape."""
    diff = pred.double() - true.double()
    union = ((pred > 0.5) | (true > 0.5)).sum().item()
    iou = ((pred > 0.5) & (true > 0.5)).sum().item() / union if union else 1.0
    return {"mad": diff.abs().mean().item() * 1e3, "mse": diff.pow(2).mean().item() * 1e3, "iou": iou}


def mask_iou(a: Tensor, b: Tensor) -> float:
    """IoU of two alphas thresholded at 0.5."""
    return alpha_metrics(a, b)["iou"]


def run_torch(model: MattingNetwork, image: Tensor, ratio: float) -> Tuple[FloatMatte, List[Tensor]]:
    """``image`` (uint8 ``[H, W, 3]``) fed ``CLIP_LENGTH`` times as one clip: the matte (fgr ``[T, 3, H, W]``,
    pha ``[T, 1, H, W]``) and the states after the last frame."""
    runner = RecurrentRunner(model, downsample_ratio=ratio, eight_bit=False)
    matte = runner.step(image.expand(CLIP_LENGTH, -1, -1, -1))  # [T, H, W, 3]
    return matte, runner.states


def run_onnxruntime(session, image: Tensor, ratio: float) -> List[List[np.ndarray]]:
    """``image`` fed ``CLIP_LENGTH`` times, one frame a call, states carried: per frame [fgr, pha, r1o..r4o]."""
    states = [np.zeros((1, 1, 1, 1), np.float32)] * 4  # the published model's "no state yet"
    src = model_input(image[None], torch.device("cpu"), torch.float32).numpy()  # [1, 3, H, W], as the runner feeds
    frames = []
    for _ in range(CLIP_LENGTH):
        feeds = {"src": src, "downsample_ratio": np.array([ratio], np.float32)}
        feeds.update({f"r{i + 1}i": state for i, state in enumerate(states)})
        outputs = session.run(["fgr", "pha", "r1o", "r2o", "r3o", "r4o"], feeds)
        states = outputs[2:]
        frames.append(outputs)
    return frames


def onnxruntime_session(onnx_path: Path):
    """A CPU onnxruntime session for the published ONNX file."""
    import onnxruntime

    return onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


def uint8_rounded(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """A control for the TF.js comparison: every convolution weight and bias rounded to 256 levels between its own
    min and max (as TF.js stores them); BatchNorm scales and statistics, and integers, stay as they are."""
    rounded = {}
    for key, value in state.items():
        is_kernel_or_bias = value.is_floating_point() and (value.dim() > 1 or key.endswith(".bias"))
        step = (value.max() - value.min()) / 255 if is_kernel_or_bias else value.new_zeros(())
        if step > 0:
            value = value.min() + step * torch.round((value - value.min()) / step)
        rounded[key] = value
    return rounded


def load_converted(source: Path, refiner: Optional[str] = None, round_to_uint8: bool = False) -> MattingNetwork:
    """The network for the architecture ``source`` holds (or ``refiner``) with its converted weights, in eval mode."""
    result = convert_weights(source, refiner=refiner)
    model = MattingNetwork(result.variant, result.refiner)
    model.load_state_dict(uint8_rounded(result.state_dict) if round_to_uint8 else result.state_dict, strict=True)
    return model.eval()


def portrait_pairs(portraits: Path) -> List[Path]:
    """The portrait images that have a reference alpha (``image/<name>.jpg`` + ``alpha/<name>.png``)."""
    images = sorted((portraits / "image").glob("*.jpg"))
    return [p for p in images if (portraits / "alpha" / f"{p.stem}.png").is_file()]


def check_portraits(
    onnx_path: Path, tfjs_path: Optional[Path], portraits: Path, uint8_control: bool = False, progress: bool = True
) -> List[dict]:
    """Per portrait: PyTorch-vs-onnxruntime differences and quality of each runtime against the reference alpha.

    With ``uint8_control`` each row also gets the IoU between the ONNX weights with the Fast Guided Filter, as
    they are and rounded to uint8 (:func:`uint8_rounded`): how much 8-bit rounding alone moves the mask.
    """
    model = load_converted(onnx_path)
    tfjs_model = load_converted(tfjs_path) if tfjs_path is not None else None
    controls = None
    if uint8_control:
        controls = [load_converted(onnx_path, "fast_guided_filter", rounded) for rounded in (False, True)]
    session = onnxruntime_session(onnx_path)
    rows = []
    for image_path in tqdm(portrait_pairs(portraits), disable=not progress, desc="portraits"):
        image = load_rgb(image_path)
        true = load_alpha(portraits / "alpha" / f"{image_path.stem}.png")
        height, width = image.shape[:2]
        ratio = runtime_neutral_ratio(height, width, auto_downsample_ratio(height, width))
        matte, states = run_torch(model, image, ratio)
        pha = matte.pha[-1:]  # [1, 1, H, W]: the last frame
        ort_frames = run_onnxruntime(session, image, ratio)
        row = {
            "name": image_path.stem,
            "size": [width, height],
            "ratio": ratio,
            "max_dfgr": max(np.abs(matte.fgr[t].numpy() - o[0][0]).max() for t, o in enumerate(ort_frames)).item(),
            "max_dpha": max(np.abs(matte.pha[t].numpy() - o[1][0]).max() for t, o in enumerate(ort_frames)).item(),
            "max_dstate": max(np.abs(s.numpy() - o).max() for s, o in zip(states, ort_frames[-1][2:])).item(),
            "torch": alpha_metrics(pha, true),
            "onnxruntime": alpha_metrics(torch.from_numpy(ort_frames[-1][1]), true),
        }
        if tfjs_model is not None:
            tfjs_pha = run_torch(tfjs_model, image, ratio)[0].pha[-1:]
            row["tfjs"] = alpha_metrics(tfjs_pha, true)
            row["tfjs_vs_onnx_iou"] = mask_iou(tfjs_pha, pha)
        if controls is not None:
            plain, rounded = (run_torch(control, image, ratio)[0].pha[-1:] for control in controls)
            row["uint8_control_iou"] = mask_iou(rounded, plain)
        rows.append(row)
    return rows


def format_table(rows: List[dict]) -> str:
    """A Markdown table of the rows made by :func:`check_portraits`."""
    has_tfjs = all("tfjs" in r for r in rows)
    header = "| portrait | size | ratio | max Δpha | max Δfgr | PyTorch MAD / MSE / IoU "
    header += "| onnxruntime MAD / MSE / IoU |"
    rule = "|---|---|---|---|---|---|---|"
    has_control = all("uint8_control_iou" in r for r in rows)
    if has_tfjs:
        header += " TF.js MAD / MSE / IoU | TF.js vs ONNX IoU |"
        rule += "---|---|"
    if has_control:
        header += " ONNX uint8-rounded vs ONNX IoU (FGF) |"
        rule += "---|"
    lines = [header, rule]
    for r in rows:
        cells = [
            r["name"],
            "{}×{}".format(*r["size"]),
            f"{r['ratio']:.3f}",
            f"{r['max_dpha']:.1e}",
            f"{r['max_dfgr']:.1e}",
        ]
        for key in ("torch", "onnxruntime") + (("tfjs",) if has_tfjs else ()):
            m = r[key]
            cells.append(f"{m['mad']:.2f} / {m['mse']:.2f} / {m['iou']:.4f}")
        if has_tfjs:
            cells.append(f"{r['tfjs_vs_onnx_iou']:.4f}")
        if has_control:
            cells.append(f"{r['uint8_control_iou']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.weights_check", description=__doc__.split("\n")[0])
    parser.add_argument("--onnx", type=Path, required=True, help="the published rvm_mobilenetv3_fp32.onnx")
    parser.add_argument("--tfjs", type=Path, default=None, help="the published TF.js model.json (or its folder)")
    parser.add_argument("--portraits", type=Path, required=True, help="a folder with image/*.jpg and alpha/*.png")
    parser.add_argument("--uint8-control", action="store_true", help="add the uint8-rounding control column")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--disable-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not portrait_pairs(args.portraits):
        print(f"error: no image/*.jpg with a matching alpha/*.png under {args.portraits}", file=sys.stderr)
        return 2
    rows = check_portraits(
        args.onnx, args.tfjs, args.portraits, uint8_control=args.uint8_control, progress=not args.disable_progress
    )
    print(format_table(rows))
    print(json.dumps({"weights_check": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
