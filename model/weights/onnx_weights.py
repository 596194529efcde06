"""Read the published ONNX release (``rvm_mobilenetv3_fp32.onnx``) into a ``MattingNetwork`` state dict.

The export folded every BatchNorm into its convolution and renamed most kernels to numbers, but the Conv nodes
appear in the graph in forward order. We walk them against our convolutions in forward order
(:mod:`model.folded_convolutions`), check every shape, group count and every name the file kept, and write the
folded weights back exactly. The segmentation head is not in the file.
"""
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor

from .folded_convolutions import convolutions_in_forward_order, write_folded
from ..model import MattingNetwork

logger = logging.getLogger(__name__)


OnnxConv = Tuple[str, Tensor, Optional[Tensor], int]  # (kernel name, kernel, bias or None, groups)


def read_onnx_convolutions(path: Union[str, Path]) -> List[OnnxConv]:
    """The distinct convolutions of the ONNX graph at ``path``, in graph order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {path} does not exist; pass the path of rvm_mobilenetv3_fp32.onnx.")
    import onnx  # imported here: only ONNX sources need it, and it is slow to import
    from google.protobuf.message import DecodeError
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except (DecodeError, ValueError, OSError) as error:
        raise ValueError(f"{path} is not a readable ONNX model ({type(error).__name__}: {error}).") from error
    initializers = {init.name: init for init in graph.initializer}
    seen = set()
    convs = []
    for node in graph.node:
        if node.op_type != "Conv" or node.input[1] in seen:
            continue  # the refiner's box filter is applied four times with one kernel
        seen.add(node.input[1])
        if node.input[1] not in initializers:
            raise ValueError(f"{path}: Conv node {node.name!r} has a computed kernel; this is not an RVM export.")
        kernel = torch.from_numpy(numpy_helper.to_array(initializers[node.input[1]]).copy())
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = torch.from_numpy(numpy_helper.to_array(initializers[node.input[2]]).copy())
        groups = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        convs.append((node.input[1], kernel, bias, int(groups)))
    return convs


def onnx_state_dict(
    convs: List[OnnxConv], model: MattingNetwork, path: Union[str, Path]
) -> Tuple[Dict[str, Tensor], List[str]]:
    """A full state dict for ``model`` from the convolutions read from ``path``, and the keys they do not carry.

    Keys not carried keep ``model``'s current values (for the published file: ``project_seg``). Raises
    ``ValueError`` naming the file when its convolutions do not line up with ``model``'s.
    """
    slots = convolutions_in_forward_order(model)
    if len(convs) != len(slots):
        raise ValueError(
            f"{path} has {len(convs)} distinct convolutions but MattingNetwork({model.variant!r}, "
            f"{model.refiner_name!r}) runs {len(slots)}; pass the --variant / --refiner the file was exported with."
        )
    state = dict(model.state_dict())
    written = set()
    for (name, kernel, bias, groups), slot in zip(convs, slots):
        if "." in name and name != f"{slot.conv}.weight":
            raise ValueError(f"{path}: the kernel named {name!r} arrives where {slot.conv}.weight is expected.")
        if groups != slot.groups:
            raise ValueError(f"{path}: kernel {name!r} has {groups} groups but {slot.conv} has {slot.groups}.")
        written.update(write_folded(state, slot, kernel, bias))
    missing = [key for key in state if key not in written and not key.endswith("num_batches_tracked")]
    logger.info("Read %d convolutions from %s; not carried: %s", len(convs), path, missing or "nothing")
    return state, missing
