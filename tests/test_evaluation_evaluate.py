"""evaluation.evaluate (+ the LR/HR entry points): tables, parallel scoring, and errors for bad folders."""
import csv
import json
import math

import numpy as np
import pytest
import torch

from evaluation import evaluate as E
from evaluation.frames import write_image
from evaluation.tables import write_tables

FGR_PHA_ONLY = ("pha_mad", "pha_mse", "pha_dtssd")


def write_clip(root, dataset, clip, phas, fgrs=None):
    """Write 8-bit alphas ``[H, W]`` (and foregrounds ``[H, W, 3]``) as <root>/<dataset>/<clip>/{pha,fgr}/NNNN.png."""
    for name, frames in (("pha", phas), ("fgr", fgrs)):
        if frames is None:
            continue
        folder = root / dataset / clip / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            write_image(folder / f"{i:04d}.png", frame)


def ramp_frames(count=3, height=12, width=16, offset=0):
    """Alphas with a soft edge that moves one pixel per frame, and matching foregrounds."""
    x = np.arange(width)[None, :].repeat(height, 0)
    phas = [np.clip((x - 4 - t) * 40 + offset, 0, 255).astype(np.uint8) for t in range(count)]
    fgrs = [np.full((height, width, 3), 100 + 10 * t, np.uint8) for t in range(count)]
    return phas, fgrs


@pytest.fixture
def test_set(tmp_path):
    """Truth with two datasets (three clips) and predictions: perfect for one clip, off by 10/255 for others."""
    true, pred = tmp_path / "true", tmp_path / "pred"
    phas, fgrs = ramp_frames()
    shifted = [np.clip(p.astype(int) + 10, 0, 255).astype(np.uint8) for p in phas]
    for dataset, clip, pred_phas in (("a", "c0", phas), ("a", "c1", shifted), ("b", "c0", shifted)):
        write_clip(true, dataset, clip, phas, fgrs)
        write_clip(pred, dataset, clip, pred_phas, fgrs)
    return true, pred, phas


def test_table_rows_and_files(test_set, tmp_path):
    true, pred, phas = test_set
    result = E.evaluate(str(pred), str(true), metrics=E.LR_METRICS, progress=False)
    rows = {(r["dataset"], r["clip"]): r for r in result.rows()}
    assert list(rows) == [("a", "c0"), ("a", "c1"), ("b", "c0"), ("a", "(mean)"), ("b", "(mean)"), ("(all)", "(mean)")]
    assert all(rows["a", "c0"][m] == 0 for m in E.LR_METRICS)
    # +10 except where the alpha was already 255 (clipped): MAD over the clip in ×1e3 units.
    expected = np.mean([np.abs(np.clip(p.astype(int) + 10, 0, 255) - p).mean() for p in phas]) / 255 * 1e3
    assert rows["a", "c1"]["pha_mad"] == pytest.approx(expected)
    assert rows["a", "(mean)"]["pha_mad"] == pytest.approx(expected / 2)  # mean of clip means
    assert rows["(all)", "(mean)"]["pha_mad"] == pytest.approx(expected * 2 / 3)
    assert rows["(all)", "(mean)"]["frames"] == 9

    csv_path, json_path = write_tables(result, str(tmp_path / "out" / "metrics"))
    table = list(csv.DictReader(csv_path.open()))
    assert [r["clip"] for r in table] == ["c0", "c1", "c0", "(mean)", "(mean)", "(mean)"]
    assert float(table[1]["pha_mad"]) == pytest.approx(expected, abs=1e-4)
    payload = json.loads(json_path.read_text())
    assert payload["metrics"] == list(E.LR_METRICS)
    assert payload["per_frame"][1]["pha_dtssd"][0] == 0.0 and len(payload["per_frame"][1]["pha_mad"]) == 3


def test_parallel_scoring_matches_serial(test_set):
    true, pred, _ = test_set
    serial = E.evaluate(str(pred), str(true), metrics=FGR_PHA_ONLY, progress=False).rows()
    parallel = E.evaluate(str(pred), str(true), metrics=FGR_PHA_ONLY, num_workers=2, progress=False).rows()
    assert serial == parallel


def test_fgr_metric_is_nan_free_mean_when_some_frames_have_no_foreground(tmp_path):
    phas = [np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8)]
    true_fgrs = [np.zeros((8, 8, 3), np.uint8)] * 2
    pred_fgrs = [np.full((8, 8, 3), 51, np.uint8)] * 2
    write_clip(tmp_path / "true", "d", "c", phas, true_fgrs)
    write_clip(tmp_path / "pred", "d", "c", phas, pred_fgrs)
    result = E.evaluate(str(tmp_path / "pred"), str(tmp_path / "true"), metrics=("fgr_mad",), progress=False)
    assert math.isnan(result.clips[0].per_frame["fgr_mad"][0])
    assert result.rows()[0]["fgr_mad"] == pytest.approx(200.0)  # 51/255 on the frame that has a foreground


def test_missing_clip_is_a_clear_error(test_set):
    true, pred, _ = test_set
    for path in sorted((pred / "b" / "c0").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (pred / "b" / "c0").rmdir()
    with pytest.raises(FileNotFoundError, match="Clip b/c0 is missing from --pred-dir"):
        E.evaluate(str(pred), str(true), progress=False)


def test_frame_count_mismatch_is_a_clear_error(test_set):
    true, pred, _ = test_set
    (pred / "a" / "c1" / "pha" / "0002.png").unlink()
    with pytest.raises(ValueError, match="Frame count mismatch: .*c1.*has 2 frames but .* has 3"):
        E.evaluate(str(pred), str(true), metrics=FGR_PHA_ONLY, progress=False)


def test_size_mismatch_is_a_clear_error(test_set):
    true, pred, _ = test_set
    write_image(pred / "a" / "c1" / "pha" / "0001.png", np.zeros((6, 16), np.uint8))
    with pytest.raises(ValueError, match="Size mismatch: .*0001.png is 16×6 but .* is 16×12"):
        E.evaluate(str(pred), str(true), metrics=FGR_PHA_ONLY, progress=False)


def test_missing_folders_and_bad_arguments(test_set, tmp_path):
    true, pred, _ = test_set
    with pytest.raises(FileNotFoundError, match="--true-dir .* does not exist"):
        E.evaluate(str(pred), str(tmp_path / "nowhere"), progress=False)
    with pytest.raises(FileNotFoundError, match="--pred-dir .* does not exist"):
        E.evaluate(str(tmp_path / "nowhere"), str(true), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no <dataset>/<clip>/ folders"):
        E.evaluate(str(pred), str(tmp_path / "empty"), progress=False)
    with pytest.raises(ValueError, match="--num-workers"):
        E.evaluate(str(pred), str(true), num_workers=-1, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda asks for CUDA"):
            E.evaluate(str(pred), str(true), device="cuda", progress=False)
    with pytest.raises(ValueError, match="Unsupported metrics"):
        E.evaluate(str(pred), str(true), metrics=("pha_sad",), progress=False)


def test_fgr_folder_needed_only_for_fgr_metrics(tmp_path):
    phas, fgrs = ramp_frames()
    write_clip(tmp_path / "true", "d", "c", phas, fgrs)
    write_clip(tmp_path / "pred", "d", "c", phas)  # no fgr/
    assert E.evaluate(str(tmp_path / "pred"), str(tmp_path / "true"), metrics=FGR_PHA_ONLY, progress=False).clips
    with pytest.raises(FileNotFoundError, match="Prediction folder .*fgr is missing"):
        E.evaluate(str(tmp_path / "pred"), str(tmp_path / "true"), metrics=("fgr_mse",), progress=False)


@pytest.mark.parametrize("mode", ["lr", "hr"])
def test_command_line(test_set, tmp_path, capsys, mode):
    true, pred, _ = test_set
    prefix = tmp_path / f"table_{mode}"
    argv = ["--pred-dir", str(pred), "--true-dir", str(true), "--output-prefix", str(prefix), "--disable-progress",
            "--device", "cpu"]  # the hr evaluator's default is CUDA when present
    result = E.main(mode, argv)
    assert result.metrics == (E.LR_METRICS if mode == "lr" else E.HR_METRICS)
    assert ("pha_conn" in result.metrics) == (mode == "lr")
    printed = capsys.readouterr().out
    assert "(all)" in printed and "pha_grad" in printed
    assert prefix.with_suffix(".csv").is_file() and prefix.with_suffix(".json").is_file()


@pytest.mark.cuda
def test_gpu_scores_equal_cpu_scores(test_set):
    true, pred, _ = test_set
    cpu = E.evaluate(str(pred), str(true), metrics=E.HR_METRICS, progress=False).rows()
    gpu = E.evaluate(str(pred), str(true), metrics=E.HR_METRICS, device="cuda", progress=False).rows()
    for a, b in zip(cpu, gpu):
        for m in E.HR_METRICS:
            assert a[m] == pytest.approx(b[m], rel=1e-9, abs=1e-12)
