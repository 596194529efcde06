"""The converter: ONNX and TF.js releases → state dict (ONNX exact against onnxruntime), the CLI, the written file."""
import numpy as np
import pytest
import torch

from model import MattingNetwork
from model.convert import main
from model.weights import convert_weights, save_state_dict
from model.weights.deterministic import load_deterministic_weights
from model.weights.folded_convolutions import convolutions_in_forward_order


def test_forward_order_pairs_every_batchnorm():
    """Every BatchNorm follows exactly one convolution; project_seg is not run by a matting pass."""
    for variant in ("mobilenetv3", "resnet50"):
        model = MattingNetwork(variant)
        slots = convolutions_in_forward_order(model)
        batchnorms = {n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
        assert sorted(s.batchnorm for s in slots if s.batchnorm) == sorted(batchnorms)
        convs = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
        assert {s.conv for s in slots} == convs - {"project_seg.conv"}
        assert slots[0].conv in ("backbone.features.0.0", "backbone.conv1")


@torch.no_grad()
def test_folding_is_exact_on_a_model_with_known_weights():
    """Fold a deterministic model's BatchNorms by hand, write them back, and get the same function."""
    from model.weights.folded_convolutions import write_folded

    model = load_deterministic_weights(MattingNetwork()).eval()
    state = model.state_dict()
    folded = dict(state)
    for slot in convolutions_in_forward_order(model):
        weight = state[f"{slot.conv}.weight"]
        bias = state.get(f"{slot.conv}.bias")
        if slot.batchnorm:
            bn = slot.batchnorm
            scale = state[f"{bn}.weight"] / torch.sqrt(state[f"{bn}.running_var"] + slot.batchnorm_eps)
            weight = weight * scale.view(-1, 1, 1, 1)
            bias = state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale
        write_folded(folded, slot, weight, bias)
    copy = MattingNetwork().eval()
    copy.load_state_dict(folded, strict=True)
    src = torch.rand(1, 2, 3, 64, 96)  # [B, T, C, H, W]
    for a, b in zip(model(src, downsample_ratio=0.5), copy(src, downsample_ratio=0.5)):
        assert (a - b).abs().max() <= 1e-5


@torch.no_grad()
def test_onnx_conversion_matches_onnxruntime_on_noise(reference_dir, published_weights):
    import onnxruntime as ort

    onnx_path = reference_dir / "weights" / "rvm_mobilenetv3_fp32.onnx"
    model = MattingNetwork().eval()
    model.load_state_dict(torch.load(published_weights, weights_only=True), strict=True)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    src = torch.rand(1, 3, 96, 160)
    zeros = np.zeros((1, 1, 1, 1), np.float32)
    feeds = {"src": src.numpy(), "downsample_ratio": np.array([0.5], np.float32)}
    feeds.update({f"r{i}i": zeros for i in range(1, 5)})
    expected = session.run(None, feeds)
    got = model(src, downsample_ratio=0.5)
    for name, a, b in zip(["fgr", "pha", "r1", "r2", "r3", "r4"], expected, got):
        assert a.shape == tuple(b.shape), name
        assert np.abs(a - b.numpy()).max() <= 1e-4, name


def test_onnx_conversion_reports_the_segmentation_head(reference_dir):
    result = convert_weights(reference_dir / "weights" / "rvm_mobilenetv3_fp32.onnx")
    assert (result.variant, result.refiner, result.source_format) == ("mobilenetv3", "deep_guided_filter", "onnx")
    assert result.not_carried == ["project_seg.conv.weight", "project_seg.conv.bias"]


def test_onnx_into_the_wrong_architecture_fails_clearly(reference_dir):
    with pytest.raises(ValueError, match=r"rvm_mobilenetv3_fp32.onnx .*resnet50.*--variant"):
        convert_weights(reference_dir / "weights" / "rvm_mobilenetv3_fp32.onnx", variant="resnet50")


def test_written_file_round_trips_strictly(published_weights, tmp_path, capsys):
    """The CLI re-reads a converted .pth; the output loads with weights_only=True into a strict model."""
    output = tmp_path / "sub" / "copy.pth"
    assert main([str(published_weights), str(output)]) == 0
    assert "mobilenetv3 + deep_guided_filter" in capsys.readouterr().out
    state = torch.load(output, weights_only=True)
    MattingNetwork().load_state_dict(state, strict=True)
    original = torch.load(published_weights, weights_only=True)
    assert all(torch.equal(state[k], original[k]) for k in original)
    assert [p.name for p in output.parent.iterdir()] == ["copy.pth"]  # no temporary left behind


def test_cli_reports_not_carried_parts_and_errors(reference_dir, tmp_path, capsys):
    assert main([str(reference_dir / "weights" / "rvm_mobilenetv3_fp32.onnx"), str(tmp_path / "w.pth")]) == 0
    assert "project_seg.conv.weight" in capsys.readouterr().out
    assert main([str(tmp_path / "nothing.onnx"), str(tmp_path / "x.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "w.pth"
    target.write_bytes(b"old")

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_state_dict({"a": torch.zeros(1)}, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.pth"]


def test_tfjs_damaged_or_incomplete_fails_clearly(reference_dir, tmp_path):
    tfjs = reference_dir / "weights" / "tfjs"
    (tmp_path / "model.json").write_bytes((tfjs / "model.json").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"needs the weight shard .*group1-shard1of1.bin, which is missing"):
        convert_weights(tmp_path)
    shard = (tfjs / "group1-shard1of1.bin").read_bytes()
    (tmp_path / "group1-shard1of1.bin").write_bytes(shard[: len(shard) // 2])
    with pytest.raises(ValueError, match=r"model.json: the weight shards end before .*truncated"):
        convert_weights(tmp_path / "model.json")
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"model.json is not a TF.js graph model"):
        convert_weights(tmp_path)


def test_tfjs_into_the_wrong_architecture_fails_clearly(reference_dir):
    tfjs = reference_dir / "weights" / "tfjs"
    with pytest.raises(ValueError, match=r"tfjs has no Deep Guided Filter weights.*pass --refiner fast_guided_filter"):
        convert_weights(tfjs, refiner="deep_guided_filter")


def test_onnx_into_a_fast_guided_filter_model(reference_dir):
    result = convert_weights(reference_dir / "weights" / "rvm_mobilenetv3_fp32.onnx", refiner="fast_guided_filter")
    assert result.refiner == "fast_guided_filter" and not any(k.startswith("refiner.") for k in result.state_dict)
    MattingNetwork(refiner="fast_guided_filter").load_state_dict(result.state_dict, strict=True)


def test_runtime_neutral_ratio():
    """1618 · 512/1618 floors to 511 in float64 but 512 in float32; the neutral ratio gives 512 in both."""
    import math

    from evaluation.weights_check import runtime_neutral_ratio

    ratio = runtime_neutral_ratio(1080, 1618, 512 / 1618)
    assert math.floor(1618 * ratio) == math.floor(np.float32(1618) * np.float32(ratio)) == 512
    assert abs(ratio - 512 / 1618) < 1e-6
    assert runtime_neutral_ratio(1080, 1920, 512 / 1920) == float(np.float32(512 / 1920))
