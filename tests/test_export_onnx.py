"""ONNX export: onnxruntime against PyTorch on the real portraits (dynamic and fixed-ratio graphs, two resolutions,
states carried), against the published ONNX file, graph structure, fp16 through the command line, bad arguments.

Each export takes tens of seconds on a 2-core CPU, so the graphs are exported once per module (real weights); the
dynamic graph through the README's command, whose own verification is checked too.
"""
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Tuple

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import export
from export_helpers import documented_function, portrait_clip, portraits
from model import MattingNetwork
from model.synthetic import person_like_frames
from model.weights import load_model
from model.weights.deterministic import load_deterministic_weights



@pytest.fixture(scope="module")
def real_model(published_weights: Path) -> MattingNetwork:
    return load_model("mobilenetv3", "deep_guided_filter", published_weights)


@pytest.fixture(scope="module")
def dynamic_onnx(published_onnx: Path) -> Path:
    return published_onnx  # the README's export command, run once per session (conftest), shared with the web tests


@pytest.fixture(scope="module")
def fixed_onnx(real_model: MattingNetwork, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "fixed.onnx"
    return export.export_onnx(real_model, path, downsample_ratio=0.25, verify=False)


def session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@torch.no_grad()
def max_differences(
    sess: onnxruntime.InferenceSession, model: MattingNetwork, clip: torch.Tensor, ratio: float
) -> Tuple[float, float]:
    """Run a clip frame by frame through onnxruntime (zero states [1,1,1,1] first) and eager PyTorch (None
    states first), carrying each side's own states; return the max |Δ| over (fgr, pha) and over the states."""
    onnx_states = [s.numpy() for s in export.zero_states()]
    torch_states = [None] * 4
    images, states = 0.0, 0.0
    for frame in clip:  # [B, 3, H, W]
        got = export.run_onnx(sess, frame.numpy(), onnx_states, ratio)
        expected = model(frame, *torch_states, downsample_ratio=ratio)
        assert [g.shape for g in got] == [tuple(e.shape) for e in expected]
        differences = [float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected)]
        images, states = max(images, *differences[:2]), max(states, *differences[2:])
        onnx_states, torch_states = got[2:], expected[2:]
    return images, states


@pytest.mark.slow
def test_readme_export_command_verifies_and_writes(readme_export):
    """``python export.py onnx --checkpoint rvm_mobilenetv3.pth --output ...`` writes the file after its own check,
    and says what it measured against which bound (a correct export must never be refused)."""
    output, finished = readme_export
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"Wrote {output}" in finished.stdout and output.is_file()
    measured = re.search(r"matches eager PyTorch: max \|Δ\| (\S+) \(bound (\S+)\)", finished.stderr)
    assert measured, finished.stderr[-2000:]
    error, bound = float(measured.group(1)), float(measured.group(2))
    print(f"README export command: max |Δ| {error:.1e} against eager PyTorch, bound {bound:.1e}")  # pytest -s
    assert 0 < error <= bound <= 1e-2


@pytest.mark.slow
def test_verification_accepts_the_export_and_rejects_another_network(dynamic_onnx, real_model):
    """The verification's measure and bound tell a correct graph (published weights on both sides) from a wrong
    one (the same graph judged against other weights)."""
    frames = person_like_frames(2, 180, 320)
    bound = export.rounding_bound(real_model, frames, export.VERIFY_RATIO, True)
    assert 1e-4 < bound < 1e-2
    assert export._onnx_error(dynamic_onnx, real_model, frames, torch.float32, None) <= bound
    other = load_deterministic_weights(MattingNetwork()).eval()
    assert export._onnx_error(dynamic_onnx, other, frames, torch.float32, None) > 10 * bound


# Two resolutions (and two ratios) from the same dynamic graph; ratios exact in float32, as the graph input is.
@pytest.mark.parametrize("long_side,ratio", [(320, 0.5), (203, 0.375)])
@pytest.mark.slow
def test_dynamic_graph_matches_pytorch_on_portraits(dynamic_onnx, real_model, data_dir, long_side, ratio):
    sess = session(dynamic_onnx)
    assert len(portraits(data_dir)) == 8
    results = [max_differences(sess, real_model, portrait_clip(path, long_side), ratio) for path in portraits(data_dir)]
    print(f"dynamic graph, long side {long_side}, ratio {ratio}: max |Δ| outputs {max(results)[0]:.1e}, "
          f"states {max(r[1] for r in results):.1e}")  # shown with pytest -s (documentation/inference.md)
    assert all(images <= 1e-4 and states <= 1e-4 for images, states in results)


@pytest.mark.slow
def test_fixed_graph_matches_pytorch_on_portraits(fixed_onnx, real_model, data_dir):
    sess = session(fixed_onnx)
    assert [i.name for i in sess.get_inputs()] == ["src", "r1i", "r2i", "r3i", "r4i"]
    results = [max_differences(sess, real_model, portrait_clip(path, 480), 0.25) for path in portraits(data_dir)]
    print(f"fixed 0.25 graph, long side 480: max |Δ| outputs {max(results)[0]:.1e}, "
          f"states {max(r[1] for r in results):.1e}")
    assert all(images <= 1e-4 and states <= 1e-4 for images, states in results)


@torch.no_grad()
@pytest.mark.slow
def test_dynamic_graph_takes_a_batch(dynamic_onnx, real_model, data_dir):
    clips = [portrait_clip(path, 160)[:, :, :, :88, :112] for path in portraits(data_dir)[:2]]  # 160×160, 90×160
    batch = torch.cat(clips, dim=1)  # [T, 2, 3, 88, 112]
    images, states = max_differences(session(dynamic_onnx), real_model, batch, 0.5)
    assert images <= 1e-4 and states <= 1e-4


@pytest.mark.slow
def test_matches_the_published_onnx_file(dynamic_onnx, reference_dir, data_dir):
    ours, published = session(dynamic_onnx), session(reference_dir / "weights" / "rvm_mobilenetv3_fp32.onnx")
    worst = 0.0
    for path in portraits(data_dir):
        clip = portrait_clip(path, 320)
        our_states = published_states = [s.numpy() for s in export.zero_states()]
        for frame in clip:
            mine = export.run_onnx(ours, frame.numpy(), our_states, 0.5)
            theirs = export.run_onnx(published, frame.numpy(), published_states, 0.5)
            worst = max(worst, float(np.abs(mine[1] - theirs[1]).max()))
            our_states, published_states = mine[2:], theirs[2:]
    print(f"ours vs the published ONNX file: max |Δpha| {worst:.1e}")
    assert worst <= 1e-3


@torch.no_grad()
@pytest.mark.slow
def test_documented_onnx_video_loop(fixed_onnx, real_model, data_dir, tmp_path):
    """The onnxruntime example of documentation/inference.md runs on a real video and gives PyTorch's alpha."""
    import av
    from PIL import Image

    matte_video_onnx = documented_function("matte_video_onnx")
    video = data_dir / "video" / "vtest.avi"
    assert matte_video_onnx(str(fixed_onnx), str(video), str(tmp_path / "alpha"), max_frames=2) == 2
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(2), container.decode(video=0))]
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None].float() / 255  # [1, 2, 3, H, W]
    expected = (real_model(clip, downsample_ratio=0.25)[1][0, :, 0] * 255).round()  # [2, H, W]
    for t in range(2):
        written = torch.from_numpy(np.asarray(Image.open(tmp_path / "alpha" / f"{t:06d}.png"), dtype=np.float32))
        assert written.shape == expected[t].shape
        assert (written - expected[t]).abs().max() <= 1


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.slow
def test_graph_interface(dynamic_onnx, fixed_onnx):
    dynamic, fixed = onnx.load(str(dynamic_onnx)), onnx.load(str(fixed_onnx))
    for graph in (dynamic, fixed):
        onnx.checker.check_model(graph, full_check=True)
        assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) == 18
        assert [o.name for o in graph.graph.output] == ["fgr", "pha", "r1o", "r2o", "r3o", "r4o"]
        assert _dims(graph.graph.input[0]) == ["batch", 3, "height", "width"]
        assert _dims(graph.graph.output[1]) == ["batch", 1, "height", "width"]
        assert all(isinstance(d, str) for i in graph.graph.input[1:5] for d in _dims(i))  # states: any shape
    assert [i.name for i in dynamic.graph.input] == ["src", "r1i", "r2i", "r3i", "r4i", "downsample_ratio"]
    assert _dims(dynamic.graph.input[5]) == [1]
    assert {p.key: p.value for p in fixed.metadata_props}["downsample_ratio"] == "0.25"

    # Fixed graph: every Resize has constant scales or sizes computed from shapes, never from a graph input.
    constants = {i.name for i in fixed.graph.initializer} | {
        out for n in fixed.graph.node if n.op_type == "Constant" for out in n.output
    }
    first_resize = next(n for n in fixed.graph.node if n.op_type == "Resize")
    assert first_resize.input[2] in constants, "the downsampling Resize must have static scales"


@pytest.mark.slow
def test_float16_through_the_command_line(real_model, tmp_path, capsys):
    """fp16 export via ``python export.py onnx``: checked, verified against PyTorch fp16, fp16 tensors in and out."""
    checkpoint = tmp_path / "weights.pth"
    torch.save(real_model.state_dict(), checkpoint)
    output = tmp_path / "out" / "rvm_fp16.onnx"
    args = ["onnx", "--checkpoint", str(checkpoint), "--precision", "float16", "--output", str(output)]
    assert export.main(args) == 0
    assert f"Wrote {output}" in capsys.readouterr().out
    graph = onnx.load(str(output))
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.graph.input) + list(graph.graph.output)}
    assert types["src"] == types["r1i"] == types["pha"] == types["r4o"] == onnx.TensorProto.FLOAT16
    assert types["downsample_ratio"] == onnx.TensorProto.FLOAT
    assert sorted(p.name for p in output.parent.iterdir()) == ["rvm_fp16.onnx"]  # no temporary left behind


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(precision="int8"), ValueError, "Unknown precision 'int8'; choose one of float32, float16"),
        (dict(opset=17), ValueError, "opset must be at least 18; got 17. Pass --opset 18"),
        (dict(downsample_ratio=0.0), ValueError, r"must be in \(0, 1\]; got 0.0"),
        (dict(downsample_ratio=2.0), ValueError, r"must be in \(0, 1\]; got 2.0"),
    ],
)
def test_bad_arguments_fail_before_exporting(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        export.export_onnx(MattingNetwork().eval(), tmp_path / "x.onnx", **kwargs)
    assert not (tmp_path / "x.onnx").exists()


def test_not_a_matting_network(tmp_path):
    with pytest.raises(ValueError, match="Expected a MattingNetwork; got Linear"):
        export.export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")


def test_missing_checkpoint_on_the_command_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        export.main(["onnx", "--checkpoint", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "x.onnx")])


def test_a_file_in_another_opset_than_asked_is_refused(tmp_path, monkeypatch):
    """Should torch's exporter write another opset than the one asked for (its version converter can give up
    and keep its own), export_onnx stops with an error naming both and writes nothing, even unverified: runtimes
    pick operator semantics by the file's opset, so a silently different one is a different model contract."""

    def exporter(*args, opset_version: int, **kwargs) -> SimpleNamespace:  # stands in for torch.onnx.export
        graph = onnx.helper.make_graph([], "empty", [], [])
        opsets = [onnx.helper.make_opsetid("", opset_version + 2)]
        return SimpleNamespace(model_proto=onnx.helper.make_model(graph, opset_imports=opsets))

    monkeypatch.setattr(torch.onnx, "export", exporter)
    with pytest.raises(RuntimeError, match="wrote opset 20 instead of 18; pass --opset 20"):
        export.export_onnx(MattingNetwork().eval(), tmp_path / "x.onnx", verify=False)
    assert list(tmp_path.iterdir()) == []
