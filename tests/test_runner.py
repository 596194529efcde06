"""The recurrent frame-stream runner (model/runner.py): stepping, running and frame-by-frame matting agree, both
routes give the same 8-bit images, states reset, timestamps ride along, payloads render from any thread."""
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import numpy as np
import pytest
import torch

from model.synthetic import person_like_frames
from model import MattingNetwork
from model.fast_path import optimize_for_inference
from model.outputs import OUTPUT_KINDS
from model.runner import CoefficientMatte, FloatMatte, FrameChunk, RecurrentRunner, chunk_frames
from model.weights.deterministic import load_deterministic_weights


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> MattingNetwork:
    return load_deterministic_weights(MattingNetwork("mobilenetv3")).eval()


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return person_like_frames(4, 48, 80)  # uint8 [T, H, W, 3]


def float_clip(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` → float ``[1, T, 3, H, W]`` in [0, 1], written out independently of the runner."""
    return frames.permute(0, 3, 1, 2).float().div(255).unsqueeze(0)


def assert_same_states(a, b, bound: float = 0.0) -> None:
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert x.shape == y.shape and (x - y).abs().max().item() <= bound


@torch.no_grad()
def test_step_equals_the_network_on_the_clip(model, frames):
    runner = RecurrentRunner(model, downsample_ratio=0.5)
    assert not runner.eight_bit  # the faithful network serves the float route only
    matte = runner.step(frames)
    assert isinstance(matte, FloatMatte) and len(matte) == 4
    fgr, pha, *states = model(float_clip(frames), downsample_ratio=0.5)
    assert torch.equal(matte.fgr, fgr[0]) and torch.equal(matte.pha, pha[0])
    assert_same_states(runner.states, states)


@torch.no_grad()
def test_run_over_chunks_equals_frame_by_frame(model, frames):
    """Chunks of 3 and 1 through ``run`` give what the network gives fed one frame at a time, states carried."""
    runner = RecurrentRunner(model, downsample_ratio=0.5)
    mattes = list(runner.run(chunk_frames(frames.numpy(), 3)))
    assert [len(m) for m in mattes] == [3, 1]
    states = [None] * 4
    for t in range(4):
        fgr, pha, *states = model(float_clip(frames[t : t + 1])[:, 0], *states, downsample_ratio=0.5)
        matte, index = mattes[t // 3], t % 3
        assert (matte.fgr[index] - fgr[0]).abs().max().item() <= 1e-5
        assert (matte.pha[index] - pha[0]).abs().max().item() <= 1e-5
    assert_same_states(runner.states, states, 1e-5)


@torch.no_grad()
def test_reset_starts_from_zero_states(model, frames):
    runner = RecurrentRunner(model, downsample_ratio=0.5)
    first = runner.step(frames[:2])
    carried = runner.step(frames[:2])
    assert (carried.pha - first.pha).abs().max().item() > 1e-4  # the states matter on this input
    runner.reset()
    assert runner.states == [None] * 4
    again = runner.step(frames[:2])
    assert torch.equal(again.pha, first.pha) and torch.equal(again.fgr, first.fgr)


@torch.no_grad()
def test_a_new_frame_size_starts_fresh_states(model, frames):
    runner = RecurrentRunner(model, downsample_ratio=0.5)
    runner.step(frames[:2])
    smaller = frames[:1, :32, :64].contiguous()
    fresh = RecurrentRunner(model, downsample_ratio=0.5).step(smaller)
    assert torch.equal(runner.step(smaller).pha, fresh.pha)


def test_timestamps_ride_along_untouched(model, frames):
    times = [Fraction(0), Fraction(1, 30), Fraction(1, 10), Fraction(1, 5)]  # variable frame rate, as readers give
    chunks = list(chunk_frames(zip(frames.numpy(), times), 3))  # (frame, time) pairs, as reader.timed() yields
    assert [c.timestamps for c in chunks] == [times[:3], times[3:]]
    runner = RecurrentRunner(model, downsample_ratio=0.5)
    assert [m.timestamps for m in runner.run(chunks)] == [times[:3], times[3:]]
    assert runner.step(frames[:1]).timestamps is None
    with pytest.raises(ValueError, match="2 timestamps for 1 frames"):
        runner.step(frames[:1], [0.0, 1.0])


@torch.no_grad()
def test_a_padded_last_chunk_yields_its_real_frames_only(model, frames):
    """A short last chunk padded to the chunk length (so that a compiled network keeps its shapes) gives the same
    mattes for its real frames as the unpadded chunk, and nothing for the padding."""
    padded = list(chunk_frames(frames.numpy(), 3, pad=True))
    assert [(len(c.frames), len(c)) for c in padded] == [(3, 3), (3, 1)]
    assert torch.equal(padded[1].frames[1], padded[1].frames[0])  # padding repeats the last real frame
    for route in (False, True):
        network = optimize_for_inference(model) if route else model
        expected = list(RecurrentRunner(network, downsample_ratio=0.5).run(chunk_frames(frames.numpy(), 3)))
        got = list(RecurrentRunner(network, downsample_ratio=0.5).run(padded))
        assert [len(m) for m in got] == [3, 1]
        for a, b in zip(expected, got):  # the batch size may change float rounding: within one 8-bit step
            assert torch.equal(a.frames, b.frames)
            assert (a.render("alpha").int() - b.render("alpha").int()).abs().max().item() <= 1, route


@torch.no_grad()
def test_both_routes_give_the_same_eight_bit_images(model, frames):
    """The fast copy's 8-bit route (coefficients, rendered by the C kernel) and its float route agree within one
    8-bit step on every output kind and background; the 8-bit route is what the runner picks by itself."""
    fast = optimize_for_inference(model)
    eight_bit = RecurrentRunner(fast, downsample_ratio=0.5)
    floating = RecurrentRunner(fast, downsample_ratio=0.5, eight_bit=False)
    assert eight_bit.eight_bit and not floating.eight_bit
    assert not RecurrentRunner(fast, downsample_ratio=1.0).eight_bit  # no refiner at ratio 1: float route
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 48, 80, 3), dtype=np.uint8))
    colour = torch.tensor([120, 255, 155], dtype=torch.uint8).view(1, 1, 1, 3)
    for chunk in (frames[:3], frames[3:]):
        coefficients, full = eight_bit.step(chunk), floating.step(chunk)
        assert isinstance(coefficients, CoefficientMatte) and isinstance(full, FloatMatte)
        for kind in OUTPUT_KINDS:
            for background in (None, colour, image):
                a, b = coefficients.render(kind, background), full.render(kind, background)
                assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8, (kind, background is None)
                assert (a.int() - b.int()).abs().max().item() <= 1, kind
        assert_same_states(eight_bit.states, floating.states, 1e-5)


def test_render_from_several_threads_at_once(model, frames):
    fast = optimize_for_inference(model)
    for runner in (RecurrentRunner(fast, downsample_ratio=0.5), RecurrentRunner(model, downsample_ratio=0.5)):
        matte = runner.step(frames)
        serial = [matte.render(kind) for kind in OUTPUT_KINDS * 3]
        with ThreadPoolExecutor(4) as pool:
            threaded = list(pool.map(matte.render, OUTPUT_KINDS * 3))
        assert all(torch.equal(a, b) for a, b in zip(serial, threaded))


def test_any_callable_with_the_networks_signature(model, frames):
    """A plain function (a wrapper, a TorchScript module) runs on the float route, fed on the CPU in float32."""
    calls = []

    def network(src, *states, downsample_ratio):
        calls.append((tuple(src.shape), src.dtype, downsample_ratio))
        return model(src, *states, downsample_ratio=downsample_ratio)

    runner = RecurrentRunner(network, downsample_ratio=0.25)
    runner.step(FrameChunk(frames[:2]).frames)
    assert calls == [((1, 2, 3, 48, 80), torch.float32, 0.25)]


def test_bad_arguments(model, frames):
    with pytest.raises(ValueError, match=r"downsample_ratio 0 must be in \(0, 1\]"):
        RecurrentRunner(model, downsample_ratio=0)
    with pytest.raises(ValueError, match="The 8-bit route needs a fast CPU float32 copy"):
        RecurrentRunner(model, downsample_ratio=0.5, eight_bit=True)
    runner = RecurrentRunner(model, downsample_ratio=0.5)
    with pytest.raises(ValueError, match=r"Frames must be uint8 RGB \[T, H, W, 3\]"):
        runner.step(frames.float())
    with pytest.raises(ValueError, match=r"Frames must be uint8 RGB \[T, H, W, 3\]"):
        runner.step(frames[0])
    with pytest.raises(ValueError, match="Chunk size 0 must be a positive integer"):
        list(chunk_frames(frames.numpy(), 0))
