"""Read the published TensorFlow.js graph model (``model.json`` + weight shards) into a state dict.

The TF.js release is the MobileNetV3 network with the Fast Guided Filter. Every weight is stored quantised (uint8
with a per-tensor ``min`` and ``scale``: value = min + scale · q), convolution kernels are HWIO (depthwise HWI1),
and BatchNorm is folded into a bias (``*_bn_offset``), except after the three dilated depthwise convolutions where
it stays as a multiply (``.../Scaled``) and an add (``.../Offset``). The convolution nodes appear in the graph in
forward order; we pair them with our convolutions (:mod:`model.folded_convolutions`), checking every shape.
"""
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .folded_convolutions import convolutions_in_forward_order, write_folded
from ..model import MattingNetwork

logger = logging.getLogger(__name__)

_CONV_OPS = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"}
_STORED_TYPES = {  # manifest dtype (or quantisation dtype) → numpy type of the stored values
    "uint8": np.uint8,
    "uint16": np.uint16,
    "float16": np.float16,
    "float32": np.float32,
    "int32": np.int32,
    "bool": np.bool_,
}

TfjsConv = Tuple[str, Tensor, Optional[Tensor]]  # (kernel name, kernel [out, in / groups, kh, kw], bias or None)


def tfjs_model_file(source: Union[str, Path]) -> Path:
    """The ``model.json`` for ``source`` (that file, or a folder holding it)."""
    source = Path(source)
    path = source / "model.json" if source.is_dir() else source
    if not path.is_file():
        raise FileNotFoundError(f"TF.js model {path} does not exist; pass model.json or the folder holding it.")
    return path


def _read_weights(path: Path, manifest: List[dict]) -> Dict[str, Tensor]:
    """Every tensor of the weight manifest, dequantised to float32 (int32 and bool stay as they are)."""
    weights: Dict[str, Tensor] = {}
    for group in manifest:
        blob = b""
        for shard in group["paths"]:
            shard_path = path.parent / shard
            if not shard_path.is_file():
                raise FileNotFoundError(f"{path} needs the weight shard {shard_path}, which is missing; put it there.")
            blob += shard_path.read_bytes()
        offset = 0
        for entry in group["weights"]:
            quantization = entry.get("quantization")
            stored = quantization["dtype"] if quantization else entry["dtype"]
            if stored not in _STORED_TYPES:
                raise ValueError(f"{path}: weight {entry['name']!r} is stored as {stored}, which is not supported.")
            dtype = np.dtype(_STORED_TYPES[stored])
            count = int(np.prod(entry["shape"], dtype=np.int64))
            if offset + count * dtype.itemsize > len(blob):
                raise ValueError(f"{path}: the weight shards end before {entry['name']!r}; they are truncated.")
            values = np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(entry["shape"])
            offset += count * dtype.itemsize
            if quantization and stored in ("uint8", "uint16"):
                values = quantization["min"] + quantization["scale"] * values.astype(np.float64)
            target = np.float32 if entry["dtype"] == "float32" else dtype
            weights[entry["name"]] = torch.from_numpy(np.array(values, dtype=target))  # a writable copy
        if offset != len(blob):
            raise ValueError(f"{path}: the weight shards hold {len(blob) - offset} bytes more than the manifest says.")
    return weights


def _batchnorm_after(
    node: str, consumers: Dict[str, List[dict]], weights: Dict[str, Tensor]
) -> Optional[Tuple[Tensor, Tensor]]:
    """The (scale, offset) of an unfolded BatchNorm that follows ``node`` (through a BatchToSpaceND), if any."""
    chain = consumers.get(node, [])
    while len(chain) == 1 and chain[0]["op"] == "BatchToSpaceND":
        chain = consumers.get(chain[0]["name"], [])
    if len(chain) != 1 or chain[0]["op"] != "Mul":
        return None
    scale = next((weights[i] for i in chain[0]["input"] if i in weights), None)
    adds = consumers.get(chain[0]["name"], [])
    if scale is None or len(adds) != 1 or adds[0]["op"] not in ("Add", "AddV2"):
        return None
    offset = next((weights[i] for i in adds[0]["input"] if i in weights), None)
    return None if offset is None else (scale, offset)


def read_tfjs_convolutions(source: Union[str, Path]) -> List[TfjsConv]:
    """The convolutions with stored kernels, in graph order, as PyTorch-layout kernels with folded biases."""
    path = tfjs_model_file(source)
    try:
        model_json = json.loads(path.read_text())
        nodes = model_json["modelTopology"]["node"]
        manifest = model_json["weightsManifest"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a TF.js graph model ({type(error).__name__}: {error}).") from error
    weights = _read_weights(path, manifest)
    consumers: Dict[str, List[dict]] = {}
    for node in nodes:
        for name in node.get("input", []):
            consumers.setdefault(name.split(":")[0], []).append(node)
    convs: List[TfjsConv] = []
    for node in nodes:
        if node["op"] not in _CONV_OPS or node["input"][1] not in weights:
            continue  # the Fast Guided Filter's box filters get their kernels at run time
        kernel = weights[node["input"][1]]  # [kh, kw, in, out] or depthwise [kh, kw, channels, 1]
        depthwise = "Depthwise" in node["op"]
        kernel = kernel.permute(2, 3, 0, 1) if depthwise else kernel.permute(3, 2, 0, 1)  # [out, in / groups, kh, kw]
        bias = weights.get(node["input"][2]) if len(node["input"]) > 2 else None
        batchnorm = None if bias is not None else _batchnorm_after(node["name"], consumers, weights)
        if batchnorm is not None:
            scale, bias = batchnorm
            kernel = kernel * scale.view(-1, 1, 1, 1)
        convs.append((node["input"][1], kernel.contiguous(), bias))
    return convs


def tfjs_state_dict(
    convs: List[TfjsConv], model: MattingNetwork, path: Union[str, Path]
) -> Tuple[Dict[str, Tensor], List[str]]:
    """A full state dict for ``model`` from the TF.js convolutions read from ``path``, and the keys not carried."""
    slots = convolutions_in_forward_order(model)
    if len(convs) != len(slots):
        raise ValueError(
            f"{path} has {len(convs)} convolutions with weights but MattingNetwork({model.variant!r}, "
            f"{model.refiner_name!r}) runs {len(slots)}; pass the --variant / --refiner the model was made with "
            "(the published TF.js model is mobilenetv3 + fast_guided_filter)."
        )
    state = dict(model.state_dict())
    written = set()
    for (name, kernel, bias), slot in zip(convs, slots):
        try:
            written.update(write_folded(state, slot, kernel, bias))
        except ValueError as error:
            raise ValueError(f"{path}, kernel {name!r}: {error}") from error
    missing = [key for key in state if key not in written and not key.endswith("num_batches_tracked")]
    logger.info("Read %d convolutions from %s; not carried: %s", len(convs), path, missing or "nothing")
    return state, missing
