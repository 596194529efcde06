"""Real published weights on real portraits: the ONNX-converted model equals onnxruntime running the ONNX file,
and the TF.js-converted model agrees with it up to its uint8 quantisation."""
import pytest

from model.weights import convert_weights
from evaluation.weights_check import check_portraits, portrait_pairs


@pytest.fixture(scope="module")
def portrait_rows(reference_dir, data_dir):
    portraits = data_dir / "portraits"
    assert len(portrait_pairs(portraits)) == 8
    weights = reference_dir / "weights"
    return check_portraits(weights / "rvm_mobilenetv3_fp32.onnx", weights / "tfjs", portraits, progress=False)


@pytest.mark.slow
def test_pytorch_equals_onnxruntime_on_every_frame(portrait_rows):
    """Each portrait fed 3 times, states carried: fgr, pha on every frame and the final states within 1e-3."""
    for row in portrait_rows:
        assert row["max_dpha"] <= 1e-3, row["name"]
        assert row["max_dfgr"] <= 1e-3, row["name"]
        assert row["max_dstate"] <= 1e-3, row["name"]


@pytest.mark.slow
def test_quality_is_the_same_in_both_runtimes(portrait_rows):
    """MAD ×1e3, MSE ×1e3 and IoU against the reference alphas agree to 0.01 between PyTorch and onnxruntime."""
    for row in portrait_rows:
        for key in ("mad", "mse", "iou"):
            assert abs(row["torch"][key] - row["onnxruntime"][key]) <= 0.01, (row["name"], key)
    # The published model is good on most of these portraits (shared/README: MAD between 1.9 and 139).
    mads = sorted(row["torch"]["mad"] for row in portrait_rows)
    assert 1.0 <= mads[0] and mads[-1] <= 150 and mads[3] <= 30


def test_tfjs_weights_are_the_onnx_weights_quantised(reference_dir):
    """Every tensor read from the TF.js file is the ONNX one up to its uint8 step (a mapping error would be off
    by a good part of the tensor's range)."""
    weights = reference_dir / "weights"
    onnx = convert_weights(weights / "rvm_mobilenetv3_fp32.onnx", refiner="fast_guided_filter")
    tfjs = convert_weights(weights / "tfjs")
    assert (tfjs.variant, tfjs.refiner, tfjs.source_format) == ("mobilenetv3", "fast_guided_filter", "tfjs")
    assert tfjs.not_carried == ["project_seg.conv.weight", "project_seg.conv.bias"]
    carried = [k for k in tfjs.state_dict if k not in tfjs.not_carried and k.endswith(("weight", "bias"))]
    for key in carried:
        ours, theirs = tfjs.state_dict[key], onnx.state_dict[key]
        step = (theirs.max() - theirs.min()).item() / 255
        assert (ours - theirs).abs().max().item() <= 1.5 * step + 1e-7, key


@pytest.mark.slow
def test_tfjs_alpha_agrees_with_onnx(portrait_rows):
    """Alpha IoU at 0.5 of the TF.js-converted model (uint8 weights, Fast Guided Filter) against the ONNX one.

    An IoU ≥ 0.99 on every portrait holds on 3 of the 8 only, so it cannot be the bound. The weights themselves are
    right (previous test: every tensor within its uint8 step), but uint8 rounding moves the masks of the harder
    portraits (0.84 on the worst; documentation/weights.md). The weight-level test above is what catches a mis-mapped
    tensor; these bounds pin the measured output agreement.
    """
    ious = sorted(row["tfjs_vs_onnx_iou"] for row in portrait_rows)
    assert ious[0] >= 0.8
    assert ious[len(ious) // 2] >= 0.98
    assert sum(iou >= 0.99 for iou in ious) >= 3



def test_uint8_rounding_control():
    """The control rounds kernels and biases to at most 256 levels within their range and leaves the rest alone."""
    import torch

    from evaluation.weights_check import uint8_rounded

    state = {
        "conv.weight": torch.randn(8, 4, 3, 3),
        "bn.bias": torch.randn(8),
        "bn.weight": torch.randn(8),
        "bn.running_var": torch.rand(8),
        "bn.num_batches_tracked": torch.tensor(3),
    }
    rounded = uint8_rounded(state)
    for key in ("conv.weight", "bn.bias"):
        step = (state[key].max() - state[key].min()) / 255
        assert rounded[key].unique().numel() <= 256
        assert (rounded[key] - state[key]).abs().max() <= step / 2 + 1e-6
    for key in ("bn.weight", "bn.running_var", "bn.num_batches_tracked"):
        assert torch.equal(rounded[key], state[key])
