"""hubconf.py through ``torch.hub.load(..., source='local')``: untrained, cached published weights, offline errors."""
import sys
import types
import urllib.error
from pathlib import Path

import pytest
import torch

from model import MattingNetwork

REPO = str(Path(__file__).resolve().parents[1])


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "hub" / "checkpoints"


@pytest.mark.parametrize("entry,variant", [("mobilenetv3", "mobilenetv3"), ("resnet50", "resnet50")])
def test_untrained_models(entry, variant):
    model = torch.hub.load(REPO, entry, source="local", pretrained=False)
    assert isinstance(model, MattingNetwork) and model.variant == variant and model.training


def test_published_weights_from_the_hub_cache(offline_hub, published_weights):
    offline_hub.mkdir(parents=True)
    (offline_hub / "rvm_mobilenetv3.pth").write_bytes(published_weights.read_bytes())
    model = torch.hub.load(REPO, "mobilenetv3", source="local")
    expected = torch.load(published_weights, weights_only=True)
    assert not model.training
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


def test_local_checkpoint_and_refiner(offline_hub, published_weights):
    model = torch.hub.load(
        REPO, "mobilenetv3", source="local", checkpoint=str(published_weights), refiner="fast_guided_filter"
    )
    assert model.refiner_name == "fast_guided_filter"
    with pytest.raises(ValueError, match="checkpoint= was given with pretrained=False"):
        torch.hub.load(REPO, "mobilenetv3", source="local", pretrained=False, checkpoint=str(published_weights))


def test_offline_without_cache_says_where_to_put_the_file(offline_hub):
    with pytest.raises(FileNotFoundError, match=r"put it at .*hub/checkpoints/rvm_resnet50.pth"):
        torch.hub.load(REPO, "resnet50", source="local")


def test_converter_returns_convert_video(monkeypatch):
    """``converter`` hands back ``inference.convert_video`` (a stand-in module here: only hubconf's wiring is tested)."""
    def convert_video(*args, **kwargs):
        return None

    monkeypatch.setitem(sys.modules, "inference", types.SimpleNamespace(convert_video=convert_video))
    assert torch.hub.load(REPO, "converter", source="local") is convert_video
