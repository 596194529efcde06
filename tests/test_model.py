"""MattingNetwork: published layout, golden equivalence, time handling, sizes, TorchScript, gradients, errors."""
import urllib.error

import pytest
import torch

from model import MattingNetwork
from model.weights.deterministic import load_deterministic_weights

CONFIGS = [
    ("mobilenetv3", "deep_guided_filter"),
    ("mobilenetv3", "fast_guided_filter"),
    ("resnet50", "deep_guided_filter"),
    ("resnet50", "fast_guided_filter"),
]


def make_model(variant: str = "mobilenetv3", refiner: str = "deep_guided_filter") -> MattingNetwork:
    return load_deterministic_weights(MattingNetwork(variant, refiner)).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("variant", ["mobilenetv3", "resnet50"])
def test_state_dict_matches_published_layout(variant, reference_dir):
    lines = (reference_dir / "golden" / f"state_dict_keys_{variant}.txt").read_text().strip().split("\n")
    expected = [line.split("\t") for line in lines]
    ours = [[k, str(list(v.shape)), str(v.dtype).replace("torch.", "")] for k, v in MattingNetwork(variant).state_dict().items()]
    assert ours == expected


@pytest.mark.parametrize("variant,count", [("mobilenetv3", 3_748_633), ("resnet50", 26_890_461)])
def test_parameter_count(variant, count):
    assert sum(p.numel() for p in MattingNetwork(variant).parameters()) == count


def _assert_case(outputs, case, names, tolerance):
    for name, out in zip(names, outputs):
        assert out.shape == case[name].shape, name
        assert max_diff(out, case[name]) <= tolerance, name
    for i, (out, ref) in enumerate(zip(outputs[len(names):], case["rec"])):
        assert out.shape == ref.shape, f"r{i + 1}"
        assert max_diff(out, ref) <= 1e-5, f"r{i + 1}"


@torch.no_grad()
def test_golden_mobilenetv3(golden):
    src = golden["src"]  # [1, 3, 3, 144, 256]
    model = make_model("mobilenetv3")
    out = model(src, downsample_ratio=0.5)
    _assert_case(out, golden["mobilenetv3/time_series_ds0.5"], ["fgr", "pha"], 1e-5)
    out = model(src, *out[2:], downsample_ratio=0.5)
    _assert_case(out, golden["mobilenetv3/continued_ds0.5"], ["fgr", "pha"], 1e-5)
    _assert_case(model(src[:, 0]), golden["mobilenetv3/single_frame_ds1"], ["fgr", "pha"], 1e-5)
    _assert_case(model(src, segmentation_pass=True), golden["mobilenetv3/segmentation"], ["seg"], 1e-5)


@torch.no_grad()
def test_golden_resnet50(golden):
    out = make_model("resnet50")(golden["src"][:, :2], downsample_ratio=0.5)
    _assert_case(out, golden["resnet50/time_series_ds0.5"], ["fgr", "pha"], 1e-5)


@torch.no_grad()
def test_golden_fast_guided_filter(golden):
    # The fast guided filter divides by (var + 1e-5), which amplifies float32 rounding: the golden file itself
    # is 2.4e-5 away from a float64 evaluation of the same network, and our float32 result moves by 1.6e-5
    # when only the CPU thread count changes. The recurrent states (no division) still match to 1e-5.
    out = make_model("mobilenetv3", "fast_guided_filter")(golden["src"], downsample_ratio=0.5)
    _assert_case(out, golden["mobilenetv3_fgf/time_series_ds0.5"], ["fgr", "pha"], 3e-5)


@pytest.mark.parametrize("variant,refiner", CONFIGS)
@torch.no_grad()
def test_clip_equals_frame_by_frame(variant, refiner):
    model = make_model(variant, refiner)
    clip = torch.rand(2, 3, 3, 64, 96)  # [B, T, 3, H, W]
    fgr, pha, *rec = model(clip, downsample_ratio=0.5)
    states = [None] * 4
    for t in range(clip.size(1)):
        fgr_t, pha_t, *states = model(clip[:, t], *states, downsample_ratio=0.5)
        assert max_diff(fgr[:, t], fgr_t) <= 1e-5
        assert max_diff(pha[:, t], pha_t) <= 1e-5
    for a, b in zip(rec, states):
        assert max_diff(a, b) <= 1e-5


@pytest.mark.parametrize("variant,refiner", CONFIGS)
@pytest.mark.parametrize("size,ratio", [((137, 251), 0.37), ((137, 251), 1.0), ((33, 47), 1.0), ((257, 129), 0.25)])
@torch.no_grad()
def test_any_size_and_ratio(variant, refiner, size, ratio):
    src = torch.rand(1, 2, 3, *size)
    fgr, pha, *rec = make_model(variant, refiner)(src, downsample_ratio=ratio)
    assert fgr.shape == (1, 2, 3, *size)
    assert pha.shape == (1, 2, 1, *size)
    assert all(r.dim() == 4 and r.size(0) == 1 for r in rec)
    assert 0 <= pha.min() and pha.max() <= 1 and 0 <= fgr.min() and fgr.max() <= 1


# Freezing folds BatchNorm into the convolutions, which changes float32 rounding; the fast guided filter's
# division by (var + 1e-5) amplifies that, hence its looser bound.
@pytest.mark.parametrize("refiner,tolerance", [("deep_guided_filter", 1e-5), ("fast_guided_filter", 1e-4)])
@torch.no_grad()
def test_torchscript_freeze_matches_eager(refiner, tolerance):
    model = make_model("mobilenetv3", refiner)
    frozen = torch.jit.freeze(torch.jit.script(model))
    src = torch.rand(1, 2, 3, 72, 120)
    expected = model(src, downsample_ratio=0.5)
    got = frozen(src, downsample_ratio=0.5)
    for a, b in zip(expected, got):
        assert max_diff(a, b) <= tolerance
    got = frozen(src[:, 1], *got[2:], downsample_ratio=0.5)  # single frame, states carried
    expected = model(src[:, 1], *expected[2:], downsample_ratio=0.5)
    for a, b in zip(expected, got):
        assert max_diff(a, b) <= tolerance
    got = frozen(src[:, 0])  # ratio 1: no refiner
    expected = model(src[:, 0])
    for a, b in zip(expected, got):
        assert max_diff(a, b) <= tolerance


@pytest.mark.parametrize("variant", ["mobilenetv3", "resnet50"])
def test_backward_reaches_every_trained_parameter(variant):
    model = load_deterministic_weights(MattingNetwork(variant)).train()
    src = torch.rand(2, 2, 3, 64, 64)
    fgr, pha, *_ = model(src, downsample_ratio=0.5)
    (fgr.mean() + pha.mean()).backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    assert no_grad == {"project_seg.conv.weight", "project_seg.conv.bias"}

    model.zero_grad(set_to_none=True)
    seg, *_ = model(src, segmentation_pass=True)
    seg.mean().backward()
    reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    expected = {n for n, _ in model.named_parameters() if not n.startswith(("refiner.", "project_mat."))}
    assert reached == expected


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(variant="mobilenetv2"), "Unknown variant 'mobilenetv2'; choose one of mobilenetv3, resnet50"),
        (dict(refiner="bilinear"), "Unknown refiner 'bilinear'; choose one of deep_guided_filter, fast_guided_filter"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MattingNetwork(**kwargs)


@pytest.fixture(scope="module")
def plain_model():
    return MattingNetwork().eval()


@pytest.mark.parametrize(
    "src_shape,kwargs,match",
    [
        ((1, 3, 32, 32), dict(downsample_ratio=0.0), r"downsample_ratio must be in \(0, 1\]; got 0.0"),
        ((1, 3, 32, 32), dict(downsample_ratio=-0.5), r"downsample_ratio must be in \(0, 1\]"),
        ((1, 3, 32, 32), dict(downsample_ratio=1.5), r"downsample_ratio must be in \(0, 1\]; got 1.5"),
        ((1, 4, 32, 32), {}, "3 \\(RGB\\) channels"),
        ((1, 2, 1, 32, 32), {}, "3 \\(RGB\\) channels"),
        ((3, 32, 32), {}, "got a 3-D tensor"),
        ((1, 3, 32, 32), dict(r1=torch.zeros(2, 16, 16, 16)), "r1 has batch size 2 but src has 1"),
        ((2, 3, 32, 32), dict(r4=torch.zeros(1, 64, 2, 2)), "r4 has batch size 1 but src has 2"),
        ((1, 3, 32, 32), dict(r2=torch.zeros(20, 8, 8)), "r2 must be a 4-D state"),
    ],
)
def test_bad_forward_arguments(plain_model, src_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plain_model(torch.rand(src_shape), **kwargs)


def test_pretrained_backbone_offline_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match=r"Could not get the ImageNet backbone weights.*put it at .*checkpoints"):
        MattingNetwork("mobilenetv3", pretrained_backbone=True)


def test_pretrained_backbone_loads_cached_file(monkeypatch, tmp_path):
    """A torchvision checkpoint already in the hub cache is used, without any download."""
    from torchvision.models import MobileNet_V3_Large_Weights, mobilenet_v3_large

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = mobilenet_v3_large()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / MobileNet_V3_Large_Weights.IMAGENET1K_V1.url.split("/")[-1])
    model = MattingNetwork("mobilenetv3", pretrained_backbone=True)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key
