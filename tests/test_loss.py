"""train_loss: golden equality with the published losses, and the properties each term relies on."""
import pytest
import torch

from train_loss import laplacian_loss, matting_loss, segmentation_loss


@pytest.fixture(scope="module")
def golden_losses(reference_dir):
    return torch.load(reference_dir / "golden" / "golden_losses_metrics.pt", weights_only=True)


def test_matting_loss_matches_published_values(golden_losses):
    inputs = golden_losses["inputs"]
    loss = matting_loss(inputs["pred_fgr"], inputs["pred_pha"], inputs["true_fgr"], inputs["true_pha"])
    assert set(loss) == set(golden_losses["matting_loss"])
    for key, expected in golden_losses["matting_loss"].items():
        assert loss[key].item() == pytest.approx(expected, rel=1e-6), key


def test_segmentation_loss_matches_published_value(golden_losses):
    inputs = golden_losses["inputs"]
    value = segmentation_loss(inputs["pred_seg"], inputs["true_seg"]).item()
    assert value == pytest.approx(golden_losses["segmentation_loss"], rel=1e-6)


def test_perfect_prediction_has_zero_loss_and_odd_sizes_work():
    pha = torch.rand(1, 3, 1, 67, 65)
    fgr = torch.rand(1, 3, 3, 67, 65)
    loss = matting_loss(fgr, pha, fgr, pha)
    assert all(v.item() == 0.0 for v in loss.values())
    assert laplacian_loss(pha[:, 0] + 0.1, pha[:, 0]).item() < 1e-6  # a constant offset has no band-pass content


def test_foreground_is_ignored_where_alpha_is_zero():
    true_pha = torch.zeros(1, 2, 1, 64, 64)
    true_pha[..., :32] = 1.0
    true_fgr = torch.rand(1, 2, 3, 64, 64)
    pred_fgr = true_fgr.clone()
    pred_fgr[..., 32:] = torch.rand(1, 2, 3, 64, 32)  # wrong only where the foreground is invisible
    loss = matting_loss(pred_fgr, true_pha, true_fgr, true_pha)
    assert loss["fgr_l1"].item() == 0.0 and loss["fgr_coherence"].item() == 0.0
    pred_fgr[..., 0, 0] += 0.5  # wrong where it is visible
    assert matting_loss(pred_fgr, true_pha, true_fgr, true_pha)["fgr_l1"].item() > 0.0


def test_too_small_frames_get_a_clear_error():
    pha = torch.rand(1, 2, 1, 60, 80)
    with pytest.raises(ValueError, match="at least 64"):
        matting_loss(pha.expand(-1, -1, 3, -1, -1), pha, pha.expand(-1, -1, 3, -1, -1), pha)
