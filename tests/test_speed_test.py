"""inference_speed_test.py: flags, the JSON record, --compare fidelity and the disabled refiner."""
import json

import pytest
import torch
import torch.nn.functional as F

import inference_speed_test as speed
from model.fast_path import optimize_for_inference

# --device cpu: these tests mean the CPU, also on a machine with a GPU (the flag's default is CUDA when present)
TINY = ["--device", "cpu", "--resolution", "96", "64", "--frames", "2", "--warmup", "1", "--disable-progress",
        "--threads", "1", "--compile", "off"]  # fmt: skip


def last_json_line(capsys) -> dict:
    lines = capsys.readouterr().out.strip().split("\n")
    return json.loads(lines[-1])


def test_compare_reports_both_paths_and_their_agreement(capsys):
    record = speed.main(TINY + ["--downsample-ratio", "0.5", "--compare", "--rounds", "2"])
    assert last_json_line(capsys) == record
    assert record["path"] == "compare" and record["dtype"] == "float32" and record["resolution"] == [96, 64]
    for name in ("faithful", "fast"):
        assert record[name]["frames"] == 4  # 2 rounds × 2 frames
        assert record[name]["fps"] > 0
        latency = record[name]["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert len(record["speedup_per_round"]) == 2
    assert set(record["max_abs_diff"]) == {"fgr", "pha", "r1", "r2", "r3", "r4"}
    assert max(record["max_abs_diff"].values()) <= 1e-4
    assert record["commit"]


@pytest.mark.parametrize("flag,path", [([], "fast"), (["--faithful"], "faithful")])
def test_single_path_record(capsys, flag, path):
    record = speed.main(TINY + ["--downsample-ratio", "1"] + flag)
    assert last_json_line(capsys)["path"] == path == record["path"]
    assert record["frames"] == 2 and record["fps"] > 0 and record["device"].startswith("cpu")


@torch.no_grad()
def test_disable_refiner_means_bilinear_upsampling():
    args = speed.parse_args(TINY + ["--downsample-ratio", "0.5", "--disable-refiner"])
    model = speed.build_model(args)
    assert isinstance(model.refiner, speed.BilinearRefiner)
    src = torch.rand(1, 3, 64, 96)
    fgr, pha, *_ = model(src, downsample_ratio=0.5)
    # by hand: the low-resolution prediction, upsampled bilinearly, then the residual and the clamps
    src_sm = F.interpolate(src, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=False)
    hid, _ = model.encode(src_sm, [None] * 4, 1)
    low = F.interpolate(model.project_mat(hid), (64, 96), mode="bilinear", align_corners=False)  # [1, 4, 64, 96]
    assert (fgr - (low[:, :3] + src).clamp(0, 1)).abs().max().item() <= 1e-6
    assert (pha - low[:, 3:].clamp(0, 1)).abs().max().item() <= 1e-6
    # the refiner really is off: the guided filter gives something else
    with_refiner = speed.build_model(speed.parse_args(TINY))(src, downsample_ratio=0.5)
    assert (with_refiner[1] - pha).abs().max().item() > 1e-3
    # and the fast path computes the same disabled-refiner function
    fast = optimize_for_inference(model)(src, downsample_ratio=0.5)
    assert (fast[0] - fgr).abs().max().item() <= 1e-4 and (fast[1] - pha).abs().max().item() <= 1e-4


@pytest.mark.parametrize(
    "argv",
    [
        ["--resolution", "0", "64"],
        ["--downsample-ratio", "1.5"],
        ["--frames", "0"],
        ["--faithful", "--compare"],
        ["--precision", "float64"],
    ],
)
def test_bad_flags_exit_with_a_message(argv, capsys):
    with pytest.raises(SystemExit):
        speed.parse_args(argv)
    assert "error" in capsys.readouterr().err


def test_published_flags_are_accepted():
    args = speed.parse_args(
        ["--model-variant", "resnet50", "--resolution", "1920", "1080", "--downsample-ratio", "0.25",
         "--precision", "float16", "--disable-refiner", "--device", "cpu", "--checkpoint", "x.pth"]
    )  # fmt: skip
    assert args.model_variant == "resnet50" and args.resolution == [1920, 1080] and args.precision == "float16"
    assert args.disable_refiner and args.checkpoint == "x.pth"
