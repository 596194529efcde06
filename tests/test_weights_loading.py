"""The weights resolver and ``load_model``: cache, download, offline errors, and clear errors for bad files."""
import argparse
import urllib.error

import pytest
import torch

from model import MattingNetwork
from model.weights import cached_weights_path, load_model, published_url, resolve_weights


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch.hub cache in ``tmp_path`` and no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path


def test_published_url_and_cache_location(offline):
    assert published_url("resnet50") == (
        "https://github.com/PeterL1n/RobustVideoMatting/releases/download/v1.0.0/rvm_resnet50.pth"
    )
    assert cached_weights_path("mobilenetv3") == offline / "torch" / "hub" / "checkpoints" / "rvm_mobilenetv3.pth"
    with pytest.raises(ValueError, match="Unknown variant 'mobilenet'; choose one of mobilenetv3, resnet50"):
        published_url("mobilenet")


def test_offline_without_cache_says_where_to_put_the_file(offline):
    expected = str(offline / "torch" / "hub" / "checkpoints" / "rvm_resnet50.pth")
    with pytest.raises(FileNotFoundError, match="put it at .*rvm_resnet50.pth.*--checkpoint") as info:
        resolve_weights("resnet50")
    assert expected in str(info.value) and "releases/download/v1.0.0/rvm_resnet50.pth" in str(info.value)


def test_cached_file_is_used_without_download(offline, published_weights):
    cached = cached_weights_path("mobilenetv3")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(published_weights.read_bytes())
    assert resolve_weights("mobilenetv3") == str(cached)
    model = load_model("mobilenetv3")
    assert not model.training
    expected = torch.load(published_weights, weights_only=True)
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


def test_first_use_downloads_into_the_cache(monkeypatch, tmp_path, published_weights):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = []

    def fake_download(url, dst, progress=True):
        calls.append(url)
        with open(dst, "wb") as handle:
            handle.write(published_weights.read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    path = resolve_weights("mobilenetv3", progress=False)
    assert path == str(tmp_path / "hub" / "checkpoints" / "rvm_mobilenetv3.pth")
    resolve_weights("mobilenetv3")
    assert calls == [published_url("mobilenetv3")]  # the second call finds the cached file


def test_explicit_checkpoint(offline, published_weights):
    assert resolve_weights("mobilenetv3", str(published_weights)) == str(published_weights)
    with pytest.raises(FileNotFoundError, match=r"Checkpoint .*nope.pth does not exist.*leave --checkpoint out"):
        resolve_weights("mobilenetv3", str(offline / "nope.pth"))


def test_load_model_reads_onnx_directly(reference_dir, published_weights):
    model = load_model(checkpoint=reference_dir / "weights" / "rvm_mobilenetv3_fp32.onnx")
    expected = torch.load(published_weights, weights_only=True)
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


def test_fast_guided_filter_accepts_deep_guided_filter_weights(published_weights):
    model = load_model(refiner="fast_guided_filter", checkpoint=published_weights)
    assert not any(k.startswith("refiner.") for k in model.state_dict())


def _save(tmp_path, name, obj):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_wrong_variant_names_the_fix(tmp_path):
    resnet_keys = {k: v for k, v in list(MattingNetwork("resnet50").state_dict().items())[:8]}
    path = _save(tmp_path, "rvm_resnet50.pth", resnet_keys)
    with pytest.raises(ValueError, match=r"rvm_resnet50.pth holds resnet50 weights .*pass --variant resnet50"):
        load_model("mobilenetv3", checkpoint=path)
    path = _save(tmp_path, "mnv3.pth", MattingNetwork("mobilenetv3").state_dict())
    with pytest.raises(ValueError, match=r"mnv3.pth holds mobilenetv3 weights .*pass --variant mobilenetv3"):
        load_model("resnet50", checkpoint=path)


def test_fast_guided_filter_weights_into_deep_guided_filter(tmp_path):
    path = _save(tmp_path, "fgf.pth", MattingNetwork(refiner="fast_guided_filter").state_dict())
    with pytest.raises(ValueError, match=r"fgf.pth has no Deep Guided Filter weights.*--refiner fast_guided_filter"):
        load_model(checkpoint=path)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: p.write_bytes(b"\x00garbage" * 100), r"bad.pth is not a PyTorch weights file"),
        (lambda p: p.write_bytes(b""), r"bad.pth is empty \(0 bytes\).*download it again"),
        (
            lambda p: torch.save(argparse.Namespace(a=1), p),
            r"bad.pth is not a plain .*Unsupported global: GLOBAL argparse.Namespace.*Re-save",
        ),
        (lambda p: torch.save(torch.zeros(3), p), r"bad.pth does not hold a state dict .* but a Tensor"),
        (lambda p: torch.save({"fc.weight": torch.zeros(2)}, p), r"bad.pth does not hold Robust Video Matting weights"),
    ],
)
def test_bad_files_fail_clearly(tmp_path, make, match):
    path = tmp_path / "bad.pth"
    make(path)
    with pytest.raises(ValueError, match=match):
        load_model(checkpoint=path)


def test_truncated_file_fails_clearly(tmp_path, published_weights):
    data = published_weights.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated.pth is corrupt or truncated.*download it again"):
        load_model(checkpoint=path)


def test_missing_and_extra_keys_are_summarised(tmp_path, published_weights):
    state = torch.load(published_weights, weights_only=True)
    del state["decoder.decode0.conv.0.weight"]
    state["decoder.decode0.conv.0.weight"] = torch.zeros(1)
    state["extra.weight"] = torch.zeros(1)
    path = _save(tmp_path, "odd.pth", state)
    with pytest.raises(ValueError, match=r"odd.pth does not fit .*1 unexpected \(e.g. extra.weight\); 1 wrong shape"):
        load_model(checkpoint=path)


def test_torchscript_files(tmp_path, published_weights):
    model = load_model(checkpoint=published_weights)
    scripted = torch.jit.script(model)
    scripted.save(str(tmp_path / "plain.torchscript"))
    loaded = load_model(checkpoint=tmp_path / "plain.torchscript")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    torch.jit.freeze(scripted).save(str(tmp_path / "frozen.torchscript"))
    with pytest.raises(ValueError, match=r"frozen.torchscript is a frozen TorchScript model.*Use the .pth release"):
        load_model(checkpoint=tmp_path / "frozen.torchscript")
