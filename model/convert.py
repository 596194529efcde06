"""Convert any published weights format to a PyTorch state dict: ``python -m model.convert SOURCE OUTPUT.pth``.

Formats, detected from the path: the ONNX release (``*.onnx``, BatchNorm folded), and PyTorch state dicts or
non-frozen TorchScript files (anything else). The written ``.pth`` loads with
``torch.load(weights_only=True)`` and ``MattingNetwork(variant, refiner).load_state_dict(..., strict=True)``.
Entries the source does not carry (the ONNX release has no segmentation head) keep a fixed-seed
initialisation and are reported.
"""
import argparse
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .checkpoint import fit_state_dict, infer_refiner, infer_variant, read_state_dict
from .model import REFINERS, VARIANTS, MattingNetwork
from .onnx_weights import onnx_state_dict, read_onnx_convolutions

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "pytorch")


@dataclass
class Conversion:
    """The outcome of reading a weights source: a strict-loadable state dict and what it could not fill."""

    state_dict: Dict[str, Tensor]
    variant: str
    refiner: str
    source_format: str
    not_carried: List[str] = field(default_factory=list)  # keys left at their fixed-seed initial values


def detect_format(source: Union[str, Path]) -> str:
    """The weights format of ``source`` from its name: 'onnx' for ``*.onnx``, else 'pytorch'."""
    return "onnx" if Path(source).suffix.lower() == ".onnx" else "pytorch"


def _fresh_model(variant: str, refiner: str) -> MattingNetwork:
    """A new network whose initial values do not depend on the global random state (reproducible files)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return MattingNetwork(variant, refiner)


def _candidates(variant: Optional[str], refiner: Optional[str]) -> List[Tuple[str, str]]:
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    if refiner is not None and refiner not in REFINERS:
        raise ValueError(f"Unknown refiner {refiner!r}; choose one of {', '.join(REFINERS)}.")
    return [(v, r) for v in ([variant] if variant else VARIANTS) for r in ([refiner] if refiner else REFINERS)]


def _convert_onnx(source: Path, variant: Optional[str], refiner: Optional[str]) -> Conversion:
    """Try each allowed (variant, refiner) in turn; the first whose convolutions line up wins."""
    convs = read_onnx_convolutions(source)
    errors = []
    for v, r in _candidates(variant, refiner):
        try:
            state, missing = onnx_state_dict(convs, _fresh_model(v, r), source)
        except ValueError as error:
            errors.append(str(error))
            continue
        return Conversion(state, v, r, "onnx", missing)
    raise ValueError(errors[0] if len(errors) == 1 else f"{source} fits no RVM architecture: " + " | ".join(errors))


def _convert_pytorch(source: Path, variant: Optional[str], refiner: Optional[str]) -> Conversion:
    state = read_state_dict(source)
    _candidates(variant, refiner)  # validates the names
    variant = variant or infer_variant(state) or "mobilenetv3"
    refiner = refiner or infer_refiner(state)
    state = fit_state_dict(state, MattingNetwork(variant, refiner), source)
    return Conversion(state, variant, refiner, "pytorch")


def convert(
    source: Union[str, Path], variant: Optional[str] = None, refiner: Optional[str] = None
) -> Conversion:
    """Read the weights at ``source`` (any supported format) for ``MattingNetwork(variant, refiner)``.

    ``variant`` / ``refiner`` default to what the source says (key names, or for ONNX the first architecture its
    convolutions fit). Raises ``FileNotFoundError`` / ``ValueError`` naming the file and the problem.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"Weights source {source} does not exist; check the path.")
    if detect_format(source) == "onnx":
        return _convert_onnx(source, variant, refiner)
    return _convert_pytorch(source, variant, refiner)


def save_state_dict(state: Dict[str, Tensor], output: Union[str, Path]) -> Path:
    """Write ``state`` to ``output`` atomically (a temporary file in the same folder, then a rename)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:  # a handle, not a name: the archive's inner folder stays "archive"
            torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, handle)
        os.replace(temporary, output)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return output


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m model.convert",
        description="Convert published RVM weights (ONNX, PyTorch .pth, TorchScript) to a PyTorch state dict.",
    )
    parser.add_argument("source", help="weights to read: *.onnx, or a .pth/.pt state dict or TorchScript file")
    parser.add_argument("output", help="the .pth file to write")
    parser.add_argument("--variant", choices=VARIANTS, default=None, help="default: what the source says")
    parser.add_argument("--refiner", choices=REFINERS, default=None, help="default: what the source says")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; returns the exit status (0 written, 2 bad input)."""
    args = _parse_args(argv)
    try:
        result = convert(args.source, variant=args.variant, refiner=args.refiner)
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
