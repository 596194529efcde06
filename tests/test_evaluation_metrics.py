"""evaluation.metrics: per-frame equality with the published values, and hand-checkable cases."""
import math

import pytest
import torch

from evaluation import metrics as M

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(scope="module")
def golden_metrics(reference_dir):
    return torch.load(reference_dir / "golden" / "golden_losses_metrics.pt", weights_only=True)["metrics"]


@pytest.mark.parametrize("device", DEVICES)
def test_every_metric_equals_golden_per_frame(golden_metrics, device):
    def frames(key):
        return golden_metrics[key].to(device=device, dtype=torch.float64) / 255

    pred_pha, true_pha = frames("pred_pha_u8"), frames("true_pha_u8")  # [4, H, W]
    pred_fgr, true_fgr = frames("pred_fgr_u8"), frames("true_fgr_u8")  # [4, H, W, 3]
    previous = None
    ours = {name: [] for name in M.ALL_METRICS}
    for i in range(pred_pha.size(0)):
        frame = M.Frame(pred_pha[i], true_pha[i], pred_fgr[i], true_fgr[i])
        for name, value in M.score_frame(frame, previous, M.ALL_METRICS).items():
            ours[name].append(value)
        previous = frame
    for name in M.ALL_METRICS:
        expected = golden_metrics["per_frame"][name]
        assert len(ours[name]) == len(expected)
        for got, want in zip(ours[name], expected):
            assert abs(got - want) <= 1e-4 * max(abs(want), 1e-8), (name, ours[name], expected)


def test_perfect_prediction_scores_zero():
    g = torch.Generator().manual_seed(1)
    pha = torch.randint(0, 256, (20, 30), generator=g).double() / 255
    fgr = torch.rand(20, 30, 3, generator=g, dtype=torch.float64)
    frame = M.Frame(pha, pha, fgr, fgr)
    assert all(v == 0 for v in M.score_frame(frame, frame, M.ALL_METRICS).values())


def test_mad_mse_scales():
    true = torch.zeros(4, 5, dtype=torch.float64)
    pred = torch.full((4, 5), 0.1, dtype=torch.float64)
    assert M.pha_mad(pred, true) == pytest.approx(100.0)
    assert M.pha_mse(pred, true) == pytest.approx(10.0)


def test_grad_normalises_each_frame_and_handles_constant_frames():
    true = torch.linspace(0, 1, 24, dtype=torch.float64).repeat(16, 1)  # [16, 24] horizontal ramp
    assert M.pha_grad(0.5 * true + 0.2, true) == pytest.approx(0.0, abs=1e-12)  # same after min-max
    flat = torch.full((16, 24), 0.7, dtype=torch.float64)
    assert M.pha_grad(flat, torch.zeros_like(flat)) == 0.0  # constant frames normalise to zeros
    assert M.pha_grad(true.flip(1) ** 2, true) > 0


def test_gradient_kernel_shape_and_norm():
    smooth, derivative = M.gradient_kernels(1.4)
    assert smooth.numel() == derivative.numel() == 9
    assert torch.outer(smooth, derivative).square().sum().item() == pytest.approx(1.0)
    assert derivative.sum().item() == pytest.approx(0.0, abs=1e-12)


def test_conn_single_missing_pixel():
    true = torch.ones(6, 6, dtype=torch.float64)
    pred = true.clone()
    pred[0, 0] = 0.0
    # The pixel leaves the connected region at 0.1, so its level is 0: φ_true = 1 − 1 = 0, φ_pred = 1.
    assert M.pha_conn(pred, true) == pytest.approx(1e-3)


def test_conn_counts_threshold_ties_as_reached():
    true = torch.full((4, 4), 153 / 255, dtype=torch.float64)  # exactly 0.6, a threshold
    pred = torch.full((4, 4), 0.7, dtype=torch.float64)
    # Tie reached: every level is 0.6, excesses 0 and 0.1 (< 0.15), φ = 1 for both → 0.
    # Tie lost: levels 0.5, the prediction's excess 0.2 gives φ = 0.8 → 16 · 0.2 / 1000.
    assert M.pha_conn(pred, true) == pytest.approx(0.0, abs=1e-12)


def test_dtssd_first_frame_and_constant_drift():
    true = torch.zeros(8, 8, dtype=torch.float64)
    assert M.pha_dtssd(true + 0.1, true, None, None) == 0.0
    assert M.pha_dtssd(true + 0.3, true, true + 0.1, true) == pytest.approx(20.0)


def test_fgr_metrics_only_count_pixels_with_alpha():
    true_pha = torch.zeros(4, 4, dtype=torch.float64)
    true_pha[:2] = 0.5
    true_fgr = torch.zeros(4, 4, 3, dtype=torch.float64)
    pred_fgr = true_fgr.clone()
    pred_fgr[2:] = 1.0  # wrong only where alpha is 0
    assert M.fgr_mad(pred_fgr, true_fgr, true_pha) == 0.0
    pred_fgr[0, 0, 0] = 0.5  # one of 8·3 foreground values off by 0.5
    assert M.fgr_mad(pred_fgr, true_fgr, true_pha) == pytest.approx(0.5 / 24 * 1e3)
    assert M.fgr_mse(pred_fgr, true_fgr, true_pha) == pytest.approx(0.25 / 24 * 1e3)
    assert math.isnan(M.fgr_mse(pred_fgr, true_fgr, torch.zeros_like(true_pha)))


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError, match="pha_sad"):
        M.check_metric_names(("pha_mad", "pha_sad"))
