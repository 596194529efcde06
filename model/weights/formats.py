"""Weights conversion: any published weights format to a PyTorch state dict (the command line is
``python -m model.convert SOURCE OUTPUT.pth``, in model/convert.py).

Formats, detected from the path: the ONNX release (``*.onnx``, BatchNorm folded), the TF.js release
(``model.json`` + shard, uint8-quantised, Fast Guided Filter), and PyTorch state dicts or non-frozen TorchScript
files (anything else). The written ``.pth`` loads with
``torch.load(weights_only=True)`` and ``MattingNetwork(variant, refiner).load_state_dict(..., strict=True)``.
Entries the source does not carry (the ONNX release has no segmentation head) keep a fixed-seed
initialisation and are reported.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor

from ..atomic import atomic_output
from ..model import REFINERS, VARIANTS, MattingNetwork
from .checkpoint import fit_state_dict, infer_refiner, infer_variant, read_state_dict
from .onnx_weights import onnx_state_dict, read_onnx_convolutions
from .tfjs_weights import read_tfjs_convolutions, tfjs_state_dict

# How each folded-weights format is read: (read the file once, fill one candidate model's state dict).
_FOLDED_READERS = {
    "onnx": (read_onnx_convolutions, onnx_state_dict),
    "tfjs": (read_tfjs_convolutions, tfjs_state_dict),
}


@dataclass
class WeightsConversion:
    """The outcome of reading a weights source: a strict-loadable state dict and what it could not fill."""

    state_dict: Dict[str, Tensor]
    variant: str
    refiner: str
    source_format: str
    not_carried: List[str] = field(default_factory=list)  # keys left at their fixed-seed initial values


def detect_format(source: Union[str, Path]) -> str:
    """The weights format of ``source`` from its name: 'onnx' (``*.onnx``), 'tfjs' (``model.json`` or a folder
    holding one) or 'pytorch' (anything else: a state dict or TorchScript file)."""
    source = Path(source)
    if source.suffix.lower() == ".onnx":
        return "onnx"
    if source.name == "model.json" or (source.is_dir() and (source / "model.json").is_file()):
        return "tfjs"
    return "pytorch"


def _fresh_model(variant: str, refiner: str) -> MattingNetwork:
    """A new network whose initial values do not depend on the global random state (reproducible files)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return MattingNetwork(variant, refiner)


def _candidates(variant: Optional[str], refiner: Optional[str]) -> List[Tuple[str, str]]:
    """The architectures to try: the given variant (else all), every refiner with the given one first."""
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    if refiner is not None and refiner not in REFINERS:
        raise ValueError(f"Unknown refiner {refiner!r}; choose one of {', '.join(REFINERS)}.")
    refiners = sorted(REFINERS, key=lambda r: r != refiner)
    return [(v, r) for v in ([variant] if variant else VARIANTS) for r in refiners]


def _with_refiner(result: WeightsConversion, refiner: Optional[str], source: Path) -> WeightsConversion:
    """``result`` for the asked refiner: Deep Guided Filter weights serve a Fast Guided Filter model (the refiner's
    entries are dropped); the reverse is an error saying which refiner the source has."""
    if refiner is None or refiner == result.refiner:
        return result
    state = fit_state_dict(result.state_dict, MattingNetwork(result.variant, refiner), source)
    not_carried = [k for k in result.not_carried if k in state]
    return WeightsConversion(state, result.variant, refiner, result.source_format, not_carried)


def _convert_folded(source: Path, source_format: str, variant: Optional[str], refiner: Optional[str]) -> WeightsConversion:
    """ONNX / TF.js: try each allowed architecture in turn; the first whose convolutions line up wins."""
    read, fill = _FOLDED_READERS[source_format]
    convs = read(source)
    errors = []
    for v, r in _candidates(variant, refiner):
        try:
            state, missing = fill(convs, _fresh_model(v, r), source)
        except ValueError as error:
            errors.append(str(error))
            continue
        return _with_refiner(WeightsConversion(state, v, r, source_format, missing), refiner, source)
    raise ValueError(errors[0] if len(errors) == 1 else f"{source} fits no RVM architecture: " + " | ".join(errors))


def _convert_pytorch(source: Path, variant: Optional[str], refiner: Optional[str]) -> WeightsConversion:
    state = read_state_dict(source)
    _candidates(variant, refiner)  # validates the names
    variant = variant or infer_variant(state) or "mobilenetv3"
    refiner = refiner or infer_refiner(state)
    state = fit_state_dict(state, MattingNetwork(variant, refiner), source)
    return WeightsConversion(state, variant, refiner, "pytorch")


def convert_weights(
    source: Union[str, Path], variant: Optional[str] = None, refiner: Optional[str] = None
) -> WeightsConversion:
    """Read the weights at ``source`` (any supported format) for ``MattingNetwork(variant, refiner)``.

    ``variant`` / ``refiner`` default to what the source says (key names; for ONNX and TF.js the first architecture
    their convolutions fit). Raises ``FileNotFoundError`` / ``ValueError`` naming the file and the problem.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"Weights source {source} does not exist; check the path.")
    source_format = detect_format(source)
    if source_format in _FOLDED_READERS:
        return _convert_folded(source, source_format, variant, refiner)
    return _convert_pytorch(source, variant, refiner)


def save_state_dict(state: Dict[str, Tensor], output: Union[str, Path]) -> Path:
    """Write ``state`` to ``output`` atomically (a temporary file in the same folder, then a rename)."""
    output = Path(output)
    with atomic_output(output) as temporary, open(temporary, "wb") as handle:
        # a handle, not a name: the archive's inner folder stays "archive"
        torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, handle)
    return output
