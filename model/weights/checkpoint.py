"""Read PyTorch weight files safely and check that they fit the network asked for.

Everything that goes wrong with a weights file (missing, corrupt, truncated, not a state dict, weights of the
other variant or refiner) becomes one ``ValueError`` / ``FileNotFoundError`` naming the file, what is wrong and
what to do, instead of a pickle traceback or a wall of ``load_state_dict`` key names.
"""
import logging
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from torch import Tensor

from ..model import MattingNetwork

logger = logging.getLogger(__name__)

_VARIANT_MARKERS = {"mobilenetv3": "backbone.features.0.0.weight", "resnet50": "backbone.conv1.weight"}
_DEEP_GUIDED_FILTER_MARKER = "refiner.conv.0.weight"


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder next to the pickled constants."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _first_line(error: BaseException) -> str:
    """A one-line description of ``error`` for messages (torch's load errors can span many lines)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def read_state_dict(path: Union[str, Path]) -> Dict[str, Tensor]:
    """The tensors stored in a ``.pth``/``.pt`` state dict (``weights_only=True``) or a non-frozen TorchScript file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file {path} does not exist; check the path.")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes), probably an interrupted download; download it again.")
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", FutureWarning)
                state = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except RuntimeError as error:
            message = f"{path} is a damaged TorchScript archive ({_first_line(error)}); download it again."
            raise ValueError(message) from error
        if not state:
            raise ValueError(
                f"{path} is a frozen TorchScript model: freezing removed the named weights. Use the .pth release."
            )
        return state
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic != b"PK" and magic[:1] != b"\x80":  # neither torch's zip format nor a legacy pickle
        raise ValueError(
            f"{path} is not a PyTorch weights file (neither a zip archive nor a pickle; an HTML error page saved "
            "as .pth looks like this); download it again."
        )
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = next((line.strip() for line in str(error).splitlines() if "WeightsUnpickler error" in line), None)
        raise ValueError(
            f"{path} is not a plain PyTorch state dict that can be loaded safely with weights_only=True "
            f"({reason or _first_line(error)}). Re-save it with torch.save(model.state_dict(), path)."
        ) from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is corrupt or truncated ({_first_line(error)}); download it again.") from error
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"{path} does not hold a state dict (a dict of tensors) but a {type(state).__name__}; "
            "save weights with torch.save(model.state_dict(), path)."
        )
    return state


def infer_variant(state: Dict[str, Tensor]) -> Optional[str]:
    """'mobilenetv3' or 'resnet50' from the backbone's key names, or None when neither is there."""
    return next((variant for variant, key in _VARIANT_MARKERS.items() if key in state), None)


def infer_refiner(state: Dict[str, Tensor]) -> str:
    """'deep_guided_filter' when the learned refiner's weights are present, else 'fast_guided_filter'."""
    return "deep_guided_filter" if _DEEP_GUIDED_FILTER_MARKER in state else "fast_guided_filter"


def fit_state_dict(state: Dict[str, Tensor], model: MattingNetwork, source: Union[str, Path]) -> Dict[str, Tensor]:
    """``state`` made ready for ``model.load_state_dict(..., strict=True)``, or a clear ``ValueError``.

    Deep Guided Filter weights loaded into a Fast Guided Filter model lose their (unused) refiner entries; every
    other mismatch is an error naming ``source`` and the fix.
    """
    variant = infer_variant(state)
    if variant is None:
        raise ValueError(
            f"{source} does not hold Robust Video Matting weights: it has no backbone entries "
            f"(its first keys are {list(state)[:3]})."
        )
    if variant != model.variant:
        raise ValueError(
            f"{source} holds {variant} weights but a {model.variant} model was asked for; pass --variant {variant} "
            f"(variant={variant!r})."
        )
    refiner = infer_refiner(state)
    if model.refiner_name == "fast_guided_filter" and refiner == "deep_guided_filter":
        logger.info("%s: dropping the Deep Guided Filter weights, the Fast Guided Filter has none.", source)
        state = {k: v for k, v in state.items() if not k.startswith("refiner.")}
    elif model.refiner_name == "deep_guided_filter" and refiner == "fast_guided_filter":
        raise ValueError(
            f"{source} has no Deep Guided Filter weights (it comes from a fast_guided_filter model); "
            "pass --refiner fast_guided_filter (refiner='fast_guided_filter')."
        )
    expected = model.state_dict()
    not_saved = {name for name, _ in model.named_buffers()} - set(expected)  # TorchScript files keep these
    state = {k: v for k, v in state.items() if k not in not_saved}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {list(state[k].shape)} != {list(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        problems = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if items:
                problems.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
        raise ValueError(
            f"{source} does not fit MattingNetwork({model.variant!r}, {model.refiner_name!r}): {'; '.join(problems)}. "
            "It was saved from a different architecture; use the published weights or convert the file with "
            "python -m model.convert."
        )
    return state
