"""TorchScript export (reloaded file equals eager on real portraits, fp16 plumbing, atomic writes) and the eager
behaviour of the export wrapper (ratio tensor, broadcast zero states) against MattingNetwork."""

import pytest
import torch

import export
from export_helpers import documented_function, portrait_clip, portraits
from model import MattingNetwork
from model.weights.deterministic import load_deterministic_weights
from model.export_module import ExportableMattingNetwork, state_channels
from model.weights import load_model

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")


def small_model(refiner: str = "deep_guided_filter") -> MattingNetwork:
    return load_deterministic_weights(MattingNetwork("mobilenetv3", refiner)).eval()


@torch.no_grad()
@pytest.mark.slow
def test_reloaded_torchscript_equals_eager_on_portraits(published_weights, data_dir, tmp_path):
    model = load_model("mobilenetv3", "deep_guided_filter", published_weights)
    loaded = torch.jit.load(str(export.export_torchscript(model, tmp_path / "rvm.torchscript")))
    worst = 0.0
    for image in portraits(data_dir)[:2]:
        clip = portrait_clip(image, 256).transpose(0, 1)  # [1, T, 3, H, W]
        for ratio in (0.25, 1.0):  # with and without the refiner, the whole clip at once
            expected = model(clip, downsample_ratio=ratio)
            got = loaded(clip, downsample_ratio=ratio)
            assert [g.shape for g in got] == [e.shape for e in expected]
            worst = max(worst, *[float((g - e).abs().max()) for g, e in zip(got, expected)])
        states = [None] * 4  # frame by frame through the reloaded model, its own states carried
        for t in range(clip.size(1)):
            fgr, pha, *states = loaded(clip[:, t], *states, downsample_ratio=1.0)
            for out, want in ((fgr, expected[0][:, t]), (pha, expected[1][:, t])):
                worst = max(worst, float((out - want).abs().max()))
    print(f"reloaded TorchScript vs eager: max |Δ| {worst:.1e}")
    # Freezing folds BatchNorm into the convolutions, which changes float32 rounding only (measured: 1.7e-5).
    assert worst <= 1e-4


@torch.no_grad()
def test_documented_torchscript_loop(tmp_path):
    """The TorchScript example of documentation/inference.md gives the eager model's alpha, frame by frame."""
    model = small_model()
    path = export.export_torchscript(model, tmp_path / "rvm.torchscript", verify=False)
    frames = torch.rand(3, 3, 48, 64)  # [T, 3, H, W]
    alphas = documented_function("matte_clip_torchscript")(str(path), frames, downsample_ratio=0.5)
    expected = model(frames[None], downsample_ratio=0.5)[1][0]  # [T, 1, H, W]
    assert alphas.shape == expected.shape and (alphas - expected).abs().max() <= 1e-5


@pytest.mark.slow
def test_float16_plumbing_on_cpu(tmp_path):
    path = export.export_torchscript(small_model(), tmp_path / "fp16.torchscript", precision="float16")
    loaded = torch.jit.load(str(path))
    fgr, pha, *states = loaded(torch.rand(1, 3, 48, 64, dtype=torch.float16), downsample_ratio=0.5)
    assert fgr.dtype == pha.dtype == torch.float16 and pha.shape == (1, 1, 48, 64)
    assert all(s.dtype == torch.float16 for s in states)


def test_command_line_and_failed_verification_leaves_no_file(tmp_path, monkeypatch, capsys):
    checkpoint = tmp_path / "weights.pth"
    torch.save(small_model("fast_guided_filter").state_dict(), checkpoint)
    output = tmp_path / "rvm.torchscript"
    args = ["torchscript", "--refiner", "fast_guided_filter", "--checkpoint", str(checkpoint), "--output", str(output)]
    monkeypatch.setattr(export, "_torchscript_error", lambda *a: 1.0)
    with pytest.raises(RuntimeError, match="differs from eager PyTorch by 1.00e\\+00"):
        export.main(args)
    assert list(tmp_path.iterdir()) == [checkpoint]  # neither the output nor a temporary file
    monkeypatch.undo()
    assert export.main(args) == 0
    assert f"Wrote {output}" in capsys.readouterr().out
    assert output.is_file()


def test_cuda_requested_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available; pass --device cpu"):
        export.export_torchscript(small_model(), tmp_path / "x.torchscript", device="cuda")


# ------------------------------------------------------------------------------------- the export wrapper, eager


@pytest.mark.parametrize("refiner", ["deep_guided_filter", "fast_guided_filter"])
@torch.no_grad()
def test_wrapper_equals_matting_network(refiner):
    model = small_model(refiner)
    dynamic, fixed = ExportableMattingNetwork(model), ExportableMattingNetwork(model, 0.5)
    frames = torch.rand(3, 2, 3, 61, 83)  # [T, B, 3, H, W]: odd sizes exercise the rounding
    states = [None] * 4
    wrapped = fixed_states = export.zero_states()  # [1, 1, 1, 1] zeros broadcast to the real state shapes
    for frame in frames:
        expected = model(frame, *states, downsample_ratio=0.5)
        got = dynamic(frame, *wrapped, torch.tensor([0.5]))
        got_fixed = fixed(frame, *fixed_states)
        for e, g, f in zip(expected, got, got_fixed):
            assert torch.equal(e, g) and torch.equal(e, f)
        states, wrapped, fixed_states = expected[2:], list(got[2:]), list(got_fixed[2:])


@torch.no_grad()
def test_fixed_ratio_one_skips_the_refiner_like_the_network():
    model = small_model()
    src = torch.rand(1, 3, 48, 64)
    expected = model(src)
    got = ExportableMattingNetwork(model, 1.0)(src, *export.zero_states())
    assert all(torch.equal(e, g) for e, g in zip(expected, got))


def test_state_channels():
    assert state_channels(MattingNetwork("mobilenetv3")) == (16, 20, 40, 64)
    assert state_channels(MattingNetwork("resnet50")) == (16, 32, 64, 128)


def test_dynamic_wrapper_needs_a_ratio():
    with pytest.raises(ValueError, match=r"pass downsample_ratio=torch.tensor\(\[r\]\)"):
        ExportableMattingNetwork(small_model())(torch.rand(1, 3, 32, 32), *export.zero_states())
