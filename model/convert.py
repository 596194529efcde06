"""The weights-conversion command: ``python -m model.convert SOURCE OUTPUT.pth [--variant V] [--refiner R]``.

Reads any published weights format (ONNX, TF.js, PyTorch ``.pth``, TorchScript) with
:func:`model.weights.convert_weights` and writes a state dict that loads with ``strict=True``
(documentation/weights.md). Video conversion is ``inference.py`` / ``inference.convert_video``.
"""
import argparse
import logging
import sys
from typing import Optional, Sequence

from .model import REFINERS, VARIANTS
from .weights import convert_weights, save_state_dict


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m model.convert",
        description="Convert published RVM weights (ONNX, TF.js, PyTorch .pth, TorchScript) to a PyTorch state dict.",
    )
    parser.add_argument(
        "source", help="weights to read: *.onnx, a TF.js model.json (or its folder), or a .pth/.pt/TorchScript file"
    )
    parser.add_argument("output", help="the .pth file to write")
    parser.add_argument("--variant", choices=VARIANTS, default=None, help="default: what the source says")
    parser.add_argument("--refiner", choices=REFINERS, default=None, help="default: what the source says")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; returns the exit status (0 written, 2 bad input)."""
    args = _parse_args(argv)
    try:
        result = convert_weights(args.source, variant=args.variant, refiner=args.refiner)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output = save_state_dict(result.state_dict, args.output)
    print(f"Wrote {output}: {result.variant} + {result.refiner}, read from {result.source_format}.")
    if result.not_carried:
        print(
            f"Not carried by the source (left at a fixed-seed initialisation): {', '.join(result.not_carried)}. "
            "Outputs that use them (segmentation_pass=True for project_seg) are meaningless with this file."
        )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
