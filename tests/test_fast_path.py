"""The fast inference path computes the faithful MattingNetwork's function: fused kernel, BN folding, wrapper."""
import logging
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from model import MattingNetwork
from model.weights.deterministic import load_deterministic_weights
from model.fast_path import FastMattingNetwork, fold_batchnorm, optimize_for_inference
from model.fast.compose import downsample_uint8, render_uint8, upsample_compose, upsample_compose_torch
from model.fast.kernel import load_cpu_kernel
from model.outputs import OUTPUT_KINDS, output_image, to_uint8
from model.guided_filter import apply_coefficients

# float32: folding BatchNorm and reordering sums change only rounding (float32 steps are 6e-8 near 1), which
# grows over ~60 layers but stays far below 1e-4, itself 40 times below one 8-bit output step (1/255).
TOLERANCE = 1e-4


def make_model(variant: str = "mobilenetv3", refiner: str = "deep_guided_filter") -> MattingNetwork:
    return load_deterministic_weights(MattingNetwork(variant, refiner)).eval()


def portrait(data_dir: Path, index: int, size=None) -> torch.Tensor:
    """A real portrait as ``[1, 3, H, W]`` in [0, 1], optionally resized to ``size`` = (W, H)."""
    path = sorted((data_dir / "portraits" / "image").glob("*.jpg"))[index]
    image = Image.open(path).convert("RGB")
    if size is not None:
        image = image.resize(size, Image.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).unsqueeze(0).float() / 255  # [1, 3, H, W]


def assert_outputs_close(expected: List[torch.Tensor], got: List[torch.Tensor], tolerance: float = TOLERANCE) -> None:
    names = ["fgr", "pha", "r1", "r2", "r3", "r4"]
    assert len(expected) == len(got)
    for name, a, b in zip(names, expected, got):
        assert a.shape == b.shape, name
        assert (a - b).abs().max().item() <= tolerance, f"{name}: max |Δ| {(a - b).abs().max().item():.3g}"


def faithful_output_step(A: torch.Tensor, b: torch.Tensor, src: torch.Tensor):
    """What MattingNetwork does after the refiner's coefficients, written the plain way."""
    fgr_residual, pha = apply_coefficients(A, b, src)
    return (fgr_residual + src).clamp(0, 1), pha.clamp(0, 1)


# --- the fused full-resolution step ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "low,high", [((37, 61), (137, 251)), ((8, 8), (8, 8)), ((5, 7), (33, 47)), ((30, 40), (61, 79))]
)
@pytest.mark.parametrize("use_kernel", [True, False])
def test_upsample_compose_equals_faithful_step(low, high, use_kernel):
    A = torch.randn(2, 4, *low)
    b = torch.randn(2, 4, *low)
    src = torch.rand(2, 3, *high)
    expected = faithful_output_step(A, b, src)
    got = upsample_compose(A, b, src, use_kernel=use_kernel)
    for a, g in zip(expected, got):
        assert a.shape == g.shape and a.dtype == g.dtype
        assert (a - g).abs().max().item() <= 1e-6
    # A = None means A = 0: plain bilinear upsampling of b, plus the source on the fgr channels.
    up = F.interpolate(b, high, mode="bilinear", align_corners=False)
    fgr, pha = upsample_compose(None, b, src, use_kernel=use_kernel)
    assert (fgr - (up[:, :3] + src).clamp(0, 1)).abs().max().item() <= 1e-6
    assert (pha - up[:, 3:].clamp(0, 1)).abs().max().item() <= 1e-6


def test_cpu_kernel_builds_here():
    # gcc is part of this project's environment: the fast CPU path must really use the kernel, not the fallback.
    assert load_cpu_kernel() is not None


def test_kernel_handles_non_contiguous_source_and_keeps_nan():
    A = torch.randn(1, 4, 9, 11)
    b = torch.randn(1, 4, 9, 11)
    src = torch.rand(1, 40, 50, 3).permute(0, 3, 1, 2)  # channels-last view [1, 3, 40, 50]
    src[0, 0, 5, 5] = float("nan")
    fgr, pha = upsample_compose(A, b, src)
    expected_fgr, expected_pha = faithful_output_step(A, b, src)
    assert torch.isnan(fgr[0, 0, 5, 5]) and torch.isnan(expected_fgr[0, 0, 5, 5])
    fgr[0, 0, 5, 5] = expected_fgr[0, 0, 5, 5] = 0
    assert (fgr - expected_fgr).abs().max().item() <= 1e-6
    assert torch.isnan(pha[0, 0, 5, 5]) == torch.isnan(expected_pha[0, 0, 5, 5])


def test_kernel_cache_is_keyed_by_source_bytes_and_flags(monkeypatch, tmp_path):
    """An edited kernel.c or other compile flags never reuse a stale build: both change the cached library's name."""
    from model.fast import kernel

    monkeypatch.setenv("RVM_KERNEL_CACHE", str(tmp_path))
    original = kernel.library_path("cc")
    assert original.parent == tmp_path and original == kernel.library_path("cc")
    edited = tmp_path / "kernel.c"
    edited.write_bytes(kernel.SOURCE.read_bytes() + b"\n/* edited */\n")
    monkeypatch.setattr(kernel, "SOURCE", edited)
    assert kernel.library_path("cc") != original
    monkeypatch.undo()
    monkeypatch.setenv("RVM_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(kernel, "C_FLAGS", kernel.C_FLAGS + ("-DEXTRA",))
    assert kernel.library_path("cc") != original


def test_kernel_build_failure_warns_and_falls_back(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setenv("RVM_KERNEL_CACHE", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="model.fast.kernel"):
        assert load_cpu_kernel.__wrapped__() is None
    assert "falling back to PyTorch" in caplog.text


# --- the 8-bit input and output kernels ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(137, 251), (33, 47), (270, 481)])
@pytest.mark.parametrize("ratio", [0.25, 0.37, 512 / 1618, 0.5])
def test_downsample_uint8_equals_interpolate(size, ratio):
    # 0.37 and 512/1618 are not binary fractions: PyTorch computes the source index in double from a float scale,
    # which the kernel must follow (a float index is up to 1e-5 off at a few hundred pixels).
    frames = torch.randint(0, 256, (2, *size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    expected = F.interpolate(
        frames.permute(0, 3, 1, 2).float().div(255), scale_factor=ratio, mode="bilinear", align_corners=False,
        recompute_scale_factor=False,
    )  # fmt: skip
    got = downsample_uint8(frames, ratio)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert (got - expected).abs().max().item() <= 2.5e-7


def backgrounds(n: int, height: int, width: int):
    generator = torch.Generator().manual_seed(2)
    yield "transparent", None
    yield "colour", torch.tensor([120, 255, 155], dtype=torch.uint8).view(1, 1, 1, 3)
    yield "image", torch.randint(0, 256, (1, height, width, 3), dtype=torch.uint8, generator=generator)
    yield "video", torch.randint(0, 256, (n, height, width, 3), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
@pytest.mark.parametrize("with_a", [True, False])
@pytest.mark.parametrize("low,high", [((37, 61), (137, 251)), ((5, 7), (33, 47))])
def test_render_uint8_equals_float_outputs(kind, with_a, low, high):
    """Each 8-bit output equals the PyTorch definition (upsample_compose_torch, then output_image) within one
    step, and exactly on all but a few pixels (float rounding at the .5 boundary)."""
    generator = torch.Generator().manual_seed(3)
    A = torch.randn(2, 4, *low, generator=generator) * 0.5 if with_a else None
    b = torch.randn(2, 4, *low, generator=generator) * 0.5
    frames = torch.randint(0, 256, (2, *high, 3), dtype=torch.uint8, generator=generator)
    fgr, pha = upsample_compose_torch(A, b, frames.permute(0, 3, 1, 2).float().div(255))
    assert 0.1 < (pha > 0).float().mean() < 0.9  # partly transparent, so every branch is used
    for name, background in backgrounds(2, *high):
        expected = output_image(kind, fgr, pha, background)
        got = render_uint8(kind, A, b, frames, background)
        assert got.shape == expected.shape and got.dtype == torch.uint8, (kind, name)
        difference = (got.int() - expected.int()).abs()
        assert difference.max().item() <= 1, (kind, name)
        assert difference.count_nonzero().item() <= 1e-3 * difference.numel(), (kind, name)
        assert torch.equal(render_uint8(kind, A, b, frames, background, threads=3), got), (kind, name)  # row split


def test_output_image_shapes_and_transparency():
    fgr = torch.full((1, 3, 2, 2), 0.5)
    pha = torch.tensor([0.0, 0.25, 1.0, 0.5]).view(1, 1, 2, 2)
    assert output_image("alpha", fgr, pha, None)[0, :, :, 0].tolist() == [[0, 64], [255, 128]]
    rgba = output_image("composition", fgr, pha, None)  # [1, 2, 2, 4]
    assert rgba[0, 0, 0].tolist() == [0, 0, 0, 0] and rgba[0, 1, 0].tolist() == [128, 128, 128, 255]
    green = torch.tensor([0, 255, 0], dtype=torch.uint8).view(1, 1, 1, 3)
    assert output_image("composition", fgr, pha, green)[0, 0, 0].tolist() == [0, 255, 0]
    assert to_uint8(torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3)).flatten().tolist() == [0, 128, 255]


def test_uint8_kernels_reject_bad_input():
    b = torch.zeros(1, 4, 4, 4)
    frames = torch.zeros(1, 8, 8, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8 RGB frames"):
        render_uint8("alpha", None, b, frames.float(), None)
    with pytest.raises(ValueError, match="Unknown output kind"):
        render_uint8("matte", None, b, frames, None)
    with pytest.raises(ValueError, match="must be uint8"):
        render_uint8("composition", None, b, frames, torch.zeros(1, 7, 8, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        downsample_uint8(frames, 1.0)


@torch.no_grad()
def test_coefficients_uint8_route_equals_the_network(data_dir):
    """The conversion route (8-bit frames → low-res coefficients → rendered 8-bit outputs) gives the network's own
    outputs: states as the float path, alpha and foreground within one 8-bit step; two frames, states carried."""
    fast = optimize_for_inference(make_model())
    assert fast.uint8_route_available(0.25)
    assert not fast.uint8_route_available(1.0)
    assert not optimize_for_inference(make_model(), fused_kernel=False).uint8_route_available(0.25)
    assert not optimize_for_inference(make_model(), dtype=torch.bfloat16).uint8_route_available(0.25)
    frames = torch.stack(
        [portrait(data_dir, i, (251, 189))[0].mul(255).round().to(torch.uint8).permute(1, 2, 0) for i in (1, 4)]
    )  # [T=2, H, W, 3] uint8
    states: List = [None] * 4
    route: List = [None] * 4
    for frame in frames.split(1):  # [1, H, W, 3]
        fgr, pha, *states = fast(frame.permute(0, 3, 1, 2).float().div(255), *states, downsample_ratio=0.25)
        A, b, *route = fast.coefficients_uint8(frame, *route, downsample_ratio=0.25)
        for expected, got in zip(states, route):
            assert (expected - got).abs().max().item() <= 1e-6
        for kind, image in (("alpha", pha), ("foreground", fgr)):
            difference = (render_uint8(kind, A, b, frame, None).int() - to_uint8(image).int()).abs()
            assert difference.max().item() <= 1, kind


# --- BatchNorm folding ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant,count", [("mobilenetv3", 54), ("resnet50", 61)])
@torch.no_grad()
def test_fold_batchnorm_removes_every_batchnorm(variant, count):
    model = make_model(variant)
    module = MattingNetwork(variant).eval()
    module.load_state_dict(model.state_dict())
    assert fold_batchnorm(module) == count
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    src = torch.rand(1, 3, 64, 96)
    assert_outputs_close(model(src, downsample_ratio=0.5), module(src, downsample_ratio=0.5), 1e-5)


def test_caller_model_is_untouched():
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model)
    assert isinstance(fast, FastMattingNetwork) and fast is not model
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 54
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in fast.parameters())


# --- the whole fast path against the faithful path ------------------------------------------------------------


@pytest.mark.parametrize(
    "variant,refiner,size,ratio,channels_last",
    [
        ("mobilenetv3", "deep_guided_filter", (251, 189), 0.25, False),
        ("mobilenetv3", "deep_guided_filter", (251, 189), 0.25, True),
        ("mobilenetv3", "deep_guided_filter", (161, 97), 1.0, False),
        ("mobilenetv3", "fast_guided_filter", (251, 189), 0.4, False),
        ("resnet50", "deep_guided_filter", (131, 99), 0.5, False),
    ],
)
@torch.no_grad()
def test_fast_equals_faithful_on_portraits(data_dir, variant, refiner, size, ratio, channels_last):
    model = make_model(variant, refiner)
    fast = optimize_for_inference(model, channels_last=channels_last)
    clip = torch.stack([portrait(data_dir, i, size)[0] for i in (1, 4)]).unsqueeze(0)  # [1, T=2, 3, H, W]
    expected = model(clip, downsample_ratio=ratio)
    got = fast(clip, downsample_ratio=ratio)
    assert_outputs_close(expected, got)
    # one more frame, 4-D, with the states carried
    assert_outputs_close(
        model(clip[:, 0], *expected[2:], downsample_ratio=ratio), fast(clip[:, 0], *got[2:], downsample_ratio=ratio)
    )


@torch.no_grad()
def test_fast_equals_faithful_on_full_size_portrait(data_dir):
    src = portrait(data_dir, 1)  # [1, 3, 1080, 1920]: the C kernel at full size
    model = make_model()
    assert_outputs_close(model(src, downsample_ratio=0.125), optimize_for_inference(model)(src, downsample_ratio=0.125))


@torch.no_grad()
def test_fast_equals_faithful_with_published_weights(data_dir, published_weights):
    # the real trained weights (ONNX release, converted): the portrait at half size, ratio 0.25, two frames
    from model.weights import load_model

    model = load_model("mobilenetv3", checkpoint=str(published_weights))
    fast = optimize_for_inference(model)
    src = portrait(data_dir, 1, (960, 540))  # [1, 3, 540, 960]
    expected = model(src, downsample_ratio=0.25)
    got = fast(src, downsample_ratio=0.25)
    assert_outputs_close(expected, got)
    assert 0.05 < expected[1].mean().item() < 0.95  # a real matte, not a constant
    assert_outputs_close(
        model(src, *expected[2:], downsample_ratio=0.25), fast(src, *got[2:], downsample_ratio=0.25)
    )


@torch.no_grad()
def test_segmentation_pass_and_batch(data_dir):
    model = make_model()
    fast = optimize_for_inference(model)
    src = torch.cat([portrait(data_dir, 0, (96, 64)), portrait(data_dir, 2, (96, 64))])  # [B=2, 3, 64, 96]
    assert_outputs_close(model(src, segmentation_pass=True), fast(src, segmentation_pass=True))
    assert_outputs_close(model(src, downsample_ratio=0.5), fast(src, downsample_ratio=0.5))


@torch.no_grad()
@pytest.mark.slow
def test_compiled_capture_equals_faithful():
    # The 'eager' backend checks what torch.compile captures (guards, the time loop, None states) without the
    # minutes of code generation inductor needs on this CPU; inductor itself is measured by the speed test.
    model = make_model()
    fast = optimize_for_inference(model, compile_network=True, compile_backend="eager")
    src = torch.rand(1, 2, 3, 72, 120)
    expected = model(src, downsample_ratio=0.5)
    got = fast(src, downsample_ratio=0.5)
    assert_outputs_close(expected, got)
    assert_outputs_close(model(src, *expected[2:], downsample_ratio=0.5), fast(src, *got[2:], downsample_ratio=0.5))


# Measured on a 480×270 portrait (documentation/benchmarks.md): mean |Δpha| 2.0e-3 in bf16, 2.5e-4 in fp16.
@pytest.mark.parametrize("dtype,bound", [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
@torch.no_grad()
def test_half_precisions_stay_close(data_dir, dtype, bound):
    model = make_model()
    fast = optimize_for_inference(model, dtype=dtype)
    src = portrait(data_dir, 3, (128, 96))
    fgr, pha, *rec = fast(src, downsample_ratio=0.5)
    assert fgr.dtype == dtype and all(r.dtype == dtype for r in rec)
    expected = model(src, downsample_ratio=0.5)
    assert (pha.float() - expected[1]).abs().mean().item() < bound
    assert (fgr.float() - expected[0]).abs().mean().item() < bound
    assert (pha.float() - expected[1]).abs().max().item() < 20 * bound


def test_bad_arguments():
    with pytest.raises(ValueError, match="expects a MattingNetwork"):
        optimize_for_inference(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="dtype must be"):
        optimize_for_inference(make_model(), dtype=torch.int8)
    with pytest.raises(ValueError, match="cuda_graphs=True needs device='cuda'"):
        optimize_for_inference(make_model(), cuda_graphs=True)
    with pytest.raises(ValueError, match="downsample_ratio must be in"):
        optimize_for_inference(make_model())(torch.rand(1, 3, 32, 32), downsample_ratio=2.0)
