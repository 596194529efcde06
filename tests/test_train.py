"""train.py end to end on the synthetic data: torchrun (2 CPU processes, gloo) and a single process, stage 1 and
stage 3 (high-resolution pass), exact resume, weights that inference loads, config handling, and overfitting."""
import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from dataset.augmentation import matting_valid_augmentation
from dataset.sampler import ValidFrameSampler
from dataset.synthetic import SyntheticWriter
from dataset.videomatte import VideoMatteDataset
from model import MattingNetwork
from model.weights import load_model
from train_config import resolve_data_paths
from train_loss import matting_loss

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "training_presets"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("synthetic")
    SyntheticWriter(str(root), width=160, height=120, frames=4, seed=0).write_all()
    return str(root)


def tiny_flags(data_root: str, stage: int, out: Path, *extra: str) -> list:
    """A preset shrunk to CPU size: 128 px (the Laplacian loss needs ≥ 64 px after the random crop), T = 2, on the CPU
    also where a GPU is present (two torchrun processes on one GPU would ask for a second one)."""
    flags = [
        "--config", str(PRESETS / f"stage{stage}.json"), "--data-root", data_root, "--device", "cpu",
        "--resolution-lr", "128",
        "--seq-length-lr", "2", "--num-workers", "0", "--no-pretrained-backbone", "--disable-progress-bar",
        "--epoch-start", "0", "--epoch-end", "1", "--checkpoint-dir", str(out / "checkpoints"), "--log-dir", str(out / "logs"),
    ]
    if stage >= 3:
        flags += ["--resolution-hr", "128", "--seq-length-hr", "2", "--downsample-ratio", "0.5"]
    return flags + list(extra)


def run_torchrun(flags: list) -> subprocess.CompletedProcess:
    """Run train.py under torchrun with two CPU processes."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py"] + flags
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def torchrun(flags: list) -> None:
    """Run train.py under torchrun with two CPU processes; fail with its output on error."""
    result = run_torchrun(flags)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] and a["streams"] == b["streams"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for index, slots in a["optimizer"]["state"].items():
        for name, value in slots.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name]), (index, name)


@pytest.fixture(scope="module")
def distributed_stage1(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stage1")
    torchrun(tiny_flags(data_root, 1, out, "--max-steps", "2", "--checkpoint-save-interval", "1"))
    return out


@pytest.mark.slow
def test_torchrun_stage1_resumes_with_identical_state(distributed_stage1, data_root, tmp_path):
    saved = distributed_stage1 / "checkpoints"
    assert sorted(p.name for p in saved.iterdir()) == ["epoch-0.pth", "state-step-000000001.pt", "state-step-000000002.pt"]
    state = load_state(saved / "state-step-000000001.pt")
    assert state["step"] == 1 and state["streams"]["lr"] == {"epoch": 0, "consumed": 1}
    torchrun(tiny_flags(data_root, 1, tmp_path, "--max-steps", "2", "--resume", str(saved / "state-step-000000001.pt")))
    assert_same_training_state(load_state(saved / "state-step-000000002.pt"), load_state(tmp_path / "checkpoints" / "state-step-000000002.pt"))


@pytest.mark.slow
def test_torchrun_stage3_trains_the_refiner_from_given_weights(distributed_stage1, data_root, tmp_path):
    start = distributed_stage1 / "checkpoints" / "epoch-0.pth"
    torchrun(tiny_flags(data_root, 3, tmp_path, "--max-steps", "1", "--checkpoint", str(start)))
    state = load_state(tmp_path / "checkpoints" / "state-step-000000001.pt")
    assert state["streams"]["hr"]["consumed"] == 1
    before = torch.load(start, weights_only=True)
    changed = [k for k, v in state["model"].items() if k.startswith("refiner.") and not torch.equal(v, before[k])]
    assert changed  # only the high-resolution pass reaches the refiner


def test_single_process_run_resumes_latest_and_saves_loadable_weights(data_root, tmp_path):
    train.main(tiny_flags(data_root, 1, tmp_path, "--max-steps", "1"))
    train.main(tiny_flags(data_root, 1, tmp_path, "--max-steps", "2", "--resume"))
    checkpoints = tmp_path / "checkpoints"
    assert load_state(checkpoints / "state-step-000000002.pt")["streams"]["lr"]["consumed"] == 2
    model = load_model("mobilenetv3", checkpoint=str(checkpoints / "epoch-0.pth"))  # what inference.py uses (strict)
    assert not model.training
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "logs"))


def test_overfitting_one_clip_lowers_the_matting_loss():
    """A dozen steps of train.py's optimizer on one clip must at least halve the matting loss."""
    torch.manual_seed(0)
    model = MattingNetwork().train()
    lr = argparse.Namespace(
        learning_rate_backbone=1e-3, learning_rate_aspp=1e-3, learning_rate_decoder=1e-3, learning_rate_refiner=0.0
    )
    optimizer = train.build_optimizer(model, lr)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    clip = torch.rand(1, 2, 3, 64, 64)
    true_pha = torch.zeros(1, 2, 1, 64, 64)
    true_pha[..., 16:56, 20:44] = 1.0
    true_bgr = torch.rand(1, 2, 3, 64, 64)
    true_src = clip * true_pha + true_bgr * (1 - true_pha)
    losses = []
    for _ in range(12):
        pred_fgr, pred_pha = model(true_src)[:2]
        loss = matting_loss(pred_fgr, pred_pha, clip, true_pha)["total"]
        train.optimize(loss, optimizer, scaler)
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 <= 0.5 * losses[0], losses


def test_random_crop_is_shared_and_within_bounds():
    import random

    clip = torch.arange(2 * 3 * 128 * 96, dtype=torch.float32).reshape(1, 2, 3, 128, 96)
    a, b = train.random_crop(random.Random(0), clip, clip.clone())
    assert torch.equal(a, b)
    assert 64 <= a.shape[-2] < 128 and 48 <= a.shape[-1] < 96 and a.shape[:3] == (1, 2, 3)


def test_config_file_flags_and_errors(tmp_path):
    config = tmp_path / "c.json"
    config.write_text('{"seq_length_lr": 3, "data_paths": {"spd": {"imgdir": "/abs/img"}}}')
    args = train.parse_args(["--config", str(PRESETS / "stage1.json")])
    assert args.seq_length_lr == 15 and args.learning_rate_refiner == 0 and not args.train_hr
    args = train.parse_args(["--config", str(PRESETS / "stage3.json"), "--seq-length-lr", "4"])
    assert args.train_hr and args.seq_length_lr == 4  # the command line wins over the file
    with pytest.raises(SystemExit):  # the published required flags must come from somewhere
        train.parse_args(["--config", str(config)])
    config.write_text('{"seq_lenght_lr": 3}')
    with pytest.raises(ValueError, match="seq_lenght_lr"):
        train.parse_args(["--config", str(config)])
    paths = resolve_data_paths("/data", ["videomatte.train=vm"], {"spd": {"imgdir": "/abs/img"}})
    assert paths["videomatte"]["train"] == "/data/vm" and paths["spd"]["imgdir"] == "/abs/img"
    with pytest.raises(ValueError, match="unknown dataset path"):
        resolve_data_paths("/data", ["videomate.train=x"])


def test_synthetic_clip_is_learnable_input(data_root):
    """The synthetic VideoMatte clip composes to a valid training input with alpha in [0, 1] and soft edges."""
    paths = resolve_data_paths(data_root)
    dataset = VideoMatteDataset(
        paths["videomatte"]["train"], paths["background_images"]["train"], paths["background_videos"]["train"], 64, 2,
        ValidFrameSampler(), matting_valid_augmentation(64),
    )
    fgr, pha, bgr = dataset[0]
    soft = ((pha > 0.05) & (pha < 0.95)).float().mean()
    assert 0 < soft < 0.2  # soft edges exist but are edges, not the whole frame


def test_stage4_starts_from_published_weights(published_weights, data_root, tmp_path):
    """--checkpoint with the published (converted) weights: the model starts from them and stage 4 trains on."""
    flags = tiny_flags(data_root, 4, tmp_path, "--checkpoint", str(published_weights), "--max-steps", "1")
    args = train.parse_args(flags)
    trainer = train.Trainer(args, train.Process(rank=0, local_rank=0, world_size=1, device=torch.device("cpu")))
    published = torch.load(published_weights, weights_only=True)
    assert all(torch.equal(v, published[k]) for k, v in trainer.model.state_dict().items())
    trainer.run()
    trainer.close()
    state = load_state(tmp_path / "checkpoints" / "state-step-000000001.pt")
    assert state["args"]["dataset"] == "imagematte" and state["streams"]["hr"]["consumed"] == 1
    parameters = [name for name, _ in trainer.model.named_parameters()]  # buffers (BN statistics) move faster
    moved = max((state["model"][k] - published[k]).abs().max().item() for k in parameters)
    assert 0 < moved < 0.01  # small learning rates: fine-tuning, not a restart


def test_gpu_only_features_are_chosen_by_device():
    """Mixed precision and SyncBatchNorm are CUDA features; CPU runs (single or gloo) use neither."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert train.uses_mixed_precision(cuda) and not train.uses_mixed_precision(cuda, disabled=True)
    assert not train.uses_mixed_precision(cpu)
    assert train.uses_sync_batchnorm(cuda, world_size=2)
    assert not train.uses_sync_batchnorm(cuda, world_size=1) and not train.uses_sync_batchnorm(cpu, world_size=2)


@pytest.mark.parametrize("variant", ["mobilenetv3", "resnet50"])
def test_optimizer_groups_cover_every_parameter_once(variant):
    model = MattingNetwork(variant)
    lrs = argparse.Namespace(
        learning_rate_backbone=1.0, learning_rate_aspp=2.0, learning_rate_decoder=3.0, learning_rate_refiner=4.0
    )
    groups = train.build_optimizer(model, lrs).param_groups
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    assert [g["lr"] for g in groups] == [1.0, 2.0, 3.0, 3.0, 3.0, 4.0]  # heads learn at the decoder's rate


@pytest.mark.parametrize("variant", ["mobilenetv3", "resnet50"])
def test_model_owns_the_published_parameter_groups(variant):
    """Each trainable parameter in exactly one group; the heads learn at the decoder's rate, as published."""
    model = MattingNetwork(variant)
    groups = model.optimizer_groups(backbone=1.0, aspp=2.0, decoder=3.0, refiner=4.0)
    rates = {group["name"]: group["lr"] for group in groups}
    heads = {"project_mat": 3.0, "project_seg": 3.0}
    assert rates == {"backbone": 1.0, "aspp": 2.0, "decoder": 3.0, **heads, "refiner": 4.0}
    grouped = [id(p) for group in groups for p in group["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters() if p.requires_grad}
    for group in groups:  # each group holds exactly its part's parameters
        part = getattr(model, group["name"])
        assert [id(p) for p in group["params"]] == [id(p) for p in part.parameters()], group["name"]


def test_start_weights_go_through_the_checkpoint_reader(tmp_path, caplog):
    """Entries a file lacks stay as initialised (with a warning); other architectures and non-weights are errors."""
    source = MattingNetwork()
    partial = {k: v for k, v in source.state_dict().items() if not k.startswith("project_seg.")}
    torch.save(partial, tmp_path / "partial.pth")
    model = MattingNetwork()
    initial_seg = model.project_seg.conv.weight.clone()
    train.load_start_weights(model, str(tmp_path / "partial.pth"))
    assert torch.equal(model.backbone.features[0][0].weight, source.backbone.features[0][0].weight)
    assert torch.equal(model.project_seg.conv.weight, initial_seg)
    assert "project_seg.conv.weight" in caplog.text
    torch.save(MattingNetwork("resnet50").state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="pass --model-variant resnet50"):
        train.load_start_weights(MattingNetwork(), str(tmp_path / "resnet.pth"))
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not hold Robust Video Matting weights"):
        train.load_start_weights(MattingNetwork(), str(tmp_path / "other.pth"))
    (tmp_path / "page.pth").write_text("<html>not found</html>")
    with pytest.raises(ValueError, match="not a PyTorch weights file"):
        train.load_start_weights(MattingNetwork(), str(tmp_path / "page.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        train.load_start_weights(MattingNetwork(), str(tmp_path / "missing.pth"))


def test_missing_data_is_one_message_without_traceback(tmp_path, caplog):
    """A single process: train.main reports the missing folder through logging and returns 1, raising nothing."""
    flags = tiny_flags(str(tmp_path / "nowhere"), 1, tmp_path)
    assert train.main(flags) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "nowhere" in errors[0] and "does not exist" in errors[0]
    assert "--data-root" in errors[0]  # the message says how to fix it


@pytest.mark.slow
def test_missing_data_under_torchrun_is_reported_once_by_rank_0(tmp_path):
    """Both ranks fail to find the data: rank 0 prints the message once, no process prints a traceback of ours.

    torchrun itself then reports that a worker exited with status 1: its ChildFailedError summary comes with
    a traceback of the launcher's own frames, which train.py cannot suppress without exiting 0.
    """
    result = run_torchrun(tiny_flags(str(tmp_path / "nowhere"), 1, tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count("does not exist. Prepare the data") == 1, output[-3000:]
    our_frames = re.findall(rf'File "{re.escape(str(ROOT))}/(?!\.venv)[^"]+", line', output)
    assert not our_frames, output[-3000:]
    assert output.count("Traceback (most recent call last)") == output.count("ChildFailedError:") == 1, output[-3000:]


def test_readme_training_lines_point_at_the_synthetic_data():
    """The README's two training lines: the preset named by the torchrun line reads the folder the first line
    writes, and parses as a complete training configuration."""
    readme = (ROOT / "README.md").read_text()
    written = re.search(r"^python -m dataset\.synthetic (\S+)$", readme, re.MULTILINE).group(1)
    command = re.search(r"^torchrun --nproc_per_node 2 train\.py (.+?)(?:\s+#.*)?$", readme, re.MULTILINE).group(1)
    args = train.parse_args(command.split())
    assert args.data_root == written
    paths = resolve_data_paths(args.data_root, args.data_path, args.config_data_paths)
    assert paths["videomatte"]["train"].startswith(written + "/")
    assert args.resolution_lr >= 128 and args.num_workers == 0 and args.no_pretrained_backbone  # CPU-sized, offline
