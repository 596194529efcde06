"""Where and in what precision things run: the one place that turns user choices into a torch device and dtype.

``DTYPES`` is the registry of precisions the project accepts (command-line choices come from it);
:func:`resolve_device` and :func:`resolve_dtype` turn a name, a torch object or None (= "what the model uses") into
a checked ``torch.device`` / ``torch.dtype``, raising ``ValueError`` with the fix for anything else.
"""
from typing import Optional, Union

import torch
from torch import nn

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

DeviceSpec = Union[None, str, torch.device]
DtypeSpec = Union[None, str, torch.dtype]


def _first_parameter(model: object) -> Optional[torch.Tensor]:
    """A parameter (else a buffer) of ``model`` when it is a module that has one."""
    if not isinstance(model, nn.Module):
        return None
    parameter = next(model.parameters(), None)
    return parameter if parameter is not None else next(model.buffers(), None)


def resolve_device(device: DeviceSpec, model: object = None) -> torch.device:
    """``'auto'`` → CUDA when present, else the CPU; None → ``model``'s device (the CPU when it has no tensors);
    anything else must name a device that exists here."""
    if device is None:
        tensor = _first_parameter(model)
        return tensor.device if tensor is not None else torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"Unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device {device!r} was asked for but CUDA is not available; pass --device cpu or auto.")
    return resolved


def resolve_dtype(dtype: DtypeSpec, model: object = None) -> torch.dtype:
    """A name from ``DTYPES`` or one of its torch dtypes; None → ``model``'s floating dtype (float32 when it has
    no tensors)."""
    if dtype is None:
        tensor = _first_parameter(model)
        return tensor.dtype if tensor is not None and tensor.is_floating_point() else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"Unknown dtype {dtype!r}: dtype must be one of {', '.join(DTYPES)} (a name or the torch dtype).")
