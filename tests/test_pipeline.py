"""The one pipeline (model/pipeline.py): its public stages compose to the network's forward, and the fast copy and
the export wrapper run the shared stages instead of copies of them."""
from collections import Counter

import pytest
import torch

from model import MattingNetwork
from model.export_module import ExportableMattingNetwork
from model.fast_path import FastMattingNetwork, optimize_for_inference
from model.pipeline import MattingPipeline, downsample
from model.weights.deterministic import load_deterministic_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_model(refiner: str = "deep_guided_filter") -> MattingNetwork:
    return load_deterministic_weights(MattingNetwork("mobilenetv3", refiner)).eval()


@pytest.mark.parametrize("refiner", ["deep_guided_filter", "fast_guided_filter"])
@pytest.mark.parametrize("ratio", [0.5, 1.0])
@torch.no_grad()
def test_stages_compose_to_the_forward_pass(refiner, ratio):
    """encode → coefficients → compose, called by hand on folded frames, is the network's forward to the bit."""
    model = make_model(refiner)
    clip = torch.rand(1, 2, 3, 40, 56)  # [B, T, 3, H, W]
    fgr, pha, *states = model(clip, downsample_ratio=ratio)
    frames = clip[0]  # [B·T, 3, H, W] with B = 1
    frames_sm = downsample(frames, ratio)
    hid, by_hand = model.encode(frames_sm, [None] * 4, 1)
    A, b = model.coefficients(frames_sm, hid, ratio != 1)
    assert (A is None) == (ratio == 1)
    fgr_by_hand, pha_by_hand = model.compose(A, b, frames)
    assert torch.equal(fgr[0], fgr_by_hand) and torch.equal(pha[0], pha_by_hand)
    assert all(torch.equal(x, y) for x, y in zip(states, by_hand))


def test_the_fast_copy_is_composed_not_inherited():
    model = make_model()
    fast = optimize_for_inference(model)
    assert not issubclass(FastMattingNetwork, MattingNetwork) and issubclass(FastMattingNetwork, MattingPipeline)
    assert isinstance(fast.network, MattingNetwork) and fast.network is not model  # the folded copy


@torch.no_grad()
def test_fast_copy_and_export_wrapper_run_the_shared_stages(monkeypatch):
    """Counting calls of the shared pipeline and of the network's stages: the faithful network, its fast copy and
    its export wrapper all go through them (the fast copy with its fused compose, the wrapper with the network's)."""
    calls: Counter = Counter()

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    for owner, name in ((MattingPipeline, "forward"), (MattingNetwork, "features"), (MattingNetwork, "coefficients"),
                        (MattingNetwork, "compose")):  # fmt: skip
        monkeypatch.setattr(owner, name, counted(name, getattr(owner, name)))
    model = make_model()
    src = torch.rand(1, 3, 40, 56)
    runs = {
        "faithful": lambda: model(src, downsample_ratio=0.5),
        "fast": lambda: optimize_for_inference(model)(src, downsample_ratio=0.5),
        "export": lambda: ExportableMattingNetwork(model)(src, *[torch.zeros(1, 1, 1, 1)] * 4, torch.tensor([0.5])),
    }
    expected = {
        "faithful": {"forward": 1, "features": 1, "coefficients": 1, "compose": 1},
        "fast": {"forward": 1, "features": 1, "coefficients": 1},  # compose: the fused one
        "export": {"features": 1, "coefficients": 1, "compose": 1},  # its own resize and state broadcast
    }
    outputs = {}
    for name, run in runs.items():
        calls.clear()
        outputs[name] = run()
        assert dict(calls) == expected[name], name
    for got in (outputs["fast"], outputs["export"]):
        assert all((a - b).abs().max().item() <= 1e-4 for a, b in zip(outputs["faithful"], got))
