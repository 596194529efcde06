"""Train Robust Video Matting (documentation/training.md): one CPU, one GPU, or many GPUs on many machines.

    python train.py --config training_presets/stage1.json --data-root ../matting-data          # one process
    torchrun --nproc_per_node 8 train.py --config training_presets/stage1.json                  # one machine
    torchrun --nnodes 2 --node_rank R --rdzv_endpoint HOST:29500 --nproc_per_node 8 train.py ...  # several

Each step: a low-resolution matting pass; with ``--train-hr`` a high-resolution pass through the refiner;
then a segmentation pass (YouTubeVIS clip on even steps, COCO + Supervisely stills on odd ones).
Checkpoints hold everything needed to resume exactly (``--resume``); ``epoch-N.pth`` holds the weights alone.
All randomness comes from ``--seed``: per-item seeds from the samplers and per-step seeds for the crops, so
a resumed run continues as if it had never stopped. The data streams live in train_data.py, the resumable
state in train_state.py. A set-up problem (missing data, bad flags or weights) is reported once, by rank 0,
without a traceback, and every process exits with status 1.
"""
import argparse
import datetime
import inspect
import io
import logging
import os
import random
import sys
from contextlib import nullcontext, redirect_stderr
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid
from tqdm import tqdm

from dataset.files import read_json
from model import VARIANTS, MattingNetwork
from model.devices import resolve_device
from model.weights.checkpoint import fit_state_dict, infer_variant, read_state_dict
from model.time_folding import fold_time, unfold_time
from train_config import DATA_ROOT
from train_data import DataStream, TrainingData
from train_loss import matting_loss, segmentation_loss
from train_state import TrainingState, latest_state

logger = logging.getLogger("train")

REQUIRED = (
    "model_variant", "dataset", "learning_rate_backbone", "learning_rate_aspp", "learning_rate_decoder",
    "learning_rate_refiner", "seq_length_lr", "log_dir", "checkpoint_dir",
)


def build_parser() -> argparse.ArgumentParser:
    """The published flags plus config, data location, seeding, resuming and step limits."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--config", help="JSON file of flag values (keys as flag names) and optional data_root / data_paths")
    add("--model-variant", choices=VARIANTS)
    add("--dataset", choices=["videomatte", "imagematte"])
    add("--learning-rate-backbone", type=float)
    add("--learning-rate-aspp", type=float)
    add("--learning-rate-decoder", type=float, help="also the two projection heads")
    add("--learning-rate-refiner", type=float)
    add("--train-hr", action="store_true", help="add the high-resolution pass through the refiner")
    add("--resolution-lr", type=int, default=512)
    add("--resolution-hr", type=int, default=2048)
    add("--seq-length-lr", type=int)
    add("--seq-length-hr", type=int, default=6)
    add("--downsample-ratio", type=float, default=0.25, help="of the high-resolution pass")
    add("--batch-size-per-gpu", type=int, default=1)
    add("--num-workers", type=int, default=8, help="DataLoader workers per stream and process")
    add("--epoch-start", type=int, default=0)
    add("--epoch-end", type=int, default=16)
    add("--log-dir", help="TensorBoard folder")
    add("--log-train-loss-interval", type=int, default=20)
    add("--log-train-images-interval", type=int, default=500)
    add("--checkpoint", help="weights (.pth) to start from, e.g. the previous stage's epoch-N.pth or published ones")
    add("--checkpoint-dir", help="where training states and epoch-N.pth weights go")
    add("--checkpoint-save-interval", type=int, default=500)
    add("--disable-progress-bar", action="store_true")
    add("--disable-validation", action="store_true")
    add("--disable-mixed-precision", action="store_true")
    add("--data-root", default=DATA_ROOT, help="folder holding the datasets in the published layout")
    add("--data-path", action="append", default=[], metavar="KEY.FIELD=PATH", help="override one dataset path")
    add("--seed", type=int, default=0)
    add("--resume", nargs="?", const="latest", help="continue from a training state (default: the latest in --checkpoint-dir)")
    add("--max-steps", type=int, help="stop (and save) once this many steps are done")
    add("--no-pretrained-backbone", action="store_true", help="start the encoder from random instead of ImageNet weights")
    add("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto takes the GPU when there is one")
    add("--process-group-timeout", type=float, default=120, metavar="MINUTES",
        help="how long a process waits for the others (e.g. while the main one validates alone)")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Flags from the command line over those of ``--config``; the published required flags must be set somewhere."""
    parser = build_parser()
    config_path = parser.parse_known_args(argv)[0].config
    config_data_paths: Dict = {}
    if config_path:
        config = read_json(config_path, "training config")
        config_data_paths = config.pop("data_paths", {})
        known = set(vars(parser.parse_args([])))  # every flag's name
        defaults = {}
        for key, value in config.items():
            dest = key.lstrip("-").replace("-", "_")
            if dest not in known or dest == "config":
                raise ValueError(f"{config_path}: unknown setting {key!r}; use train.py's flag names, e.g. seq_length_lr.")
            defaults[dest] = value
        parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    missing = [name for name in REQUIRED if getattr(args, name) is None]
    if missing:
        parser.error("missing settings: " + ", ".join("--" + m.replace("_", "-") for m in missing))
    args.config_data_paths = config_data_paths
    return args


class SetupError(Exception):
    """A problem found while setting up (data, weights, flags) that the user must fix; reported without a traceback."""


# Errors that name a problem and its fix: reported as one message, without a traceback.
SETUP_ERRORS = (FileNotFoundError, ValueError, SetupError)


@dataclass
class Process:
    """Where this process sits in the job (from torchrun's environment, or alone)."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether this process is in a process group (torchrun launched it, even as a single process)."""
        return dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def agree(self, error: Optional[BaseException] = None) -> None:
        """Fail on every process when set-up failed on any of them, so that none waits for the others forever.

        Every process passes its own set-up error (or None). A process re-raises its own error; the others
        raise ``SetupError`` naming the first rank that failed and its message.
        """
        if self.world_size == 1:
            if error is not None:
                raise error
            return
        mine = None if error is None else str(error) if isinstance(error, SETUP_ERRORS) else repr(error)
        messages: List[Optional[str]] = [None] * self.world_size
        dist.all_gather_object(messages, mine)
        if error is not None:
            raise error
        failed = [(rank, message) for rank, message in enumerate(messages) if message is not None]
        if failed:
            rank, message = failed[0]
            raise SetupError(f"rank {rank} could not set up: {message}")


def uses_mixed_precision(device: torch.device, disabled: bool = False) -> bool:
    """float16 autocast with a gradient scaler: on CUDA unless disabled (CPU trains in float32)."""
    return device.type == "cuda" and not disabled


def uses_sync_batchnorm(device: torch.device, world_size: int = 1) -> bool:
    """BatchNorm statistics are pooled across processes only on CUDA (NCCL) with more than one process."""
    return device.type == "cuda" and world_size > 1


def ddp_buffer_options() -> Dict[str, bool]:
    """DDP's keyword for "do not broadcast buffers before each forward" in this torch: ``forward_sync_buffers``
    (torch ≥ 2.13, where ``broadcast_buffers`` is deprecated) or ``broadcast_buffers`` (older torch, e.g. 2.11).
    Every rank starts from the same seed, so the buffers agree at the start either way."""
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def init_process(device: str = "auto", timeout_minutes: float = 120) -> Process:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPU), or run alone without a launcher.

    Under torchrun the group is joined even by a single process, so one GPU runs the same distributed code as many.
    ``timeout_minutes`` bounds every collective wait, among them the barrier where the other processes wait while the
    main one validates alone (NCCL's default, 10 minutes, is shorter than a full validation)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device).type == "cuda"  # 'auto': the GPU when there is one; checked like inference's
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 or "TORCHELASTIC_RUN_ID" in os.environ:  # launched by torchrun
        timeout = datetime.timedelta(minutes=timeout_minutes)
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://", timeout=timeout)
    return Process(rank, local_rank, world_size, chosen)


def end_process(process: Optional[Process]) -> None:
    """Leave the process group (if this process joined one)."""
    if process is not None and process.distributed:
        dist.destroy_process_group()


def random_crop(rng: random.Random, *clips: Tensor) -> List[Tensor]:
    """One random crop for all ``[B, T, C, H, W]`` clips: a side of half to full size, scaled to cover then centred."""
    height, width = clips[0].shape[-2:]
    crop_h = rng.randrange(height // 2, height)
    crop_w = rng.randrange(width // 2, width)
    side = max(crop_h, crop_w)
    top, left = (side - crop_h) // 2, (side - crop_w) // 2
    out = []
    for clip in clips:
        frames = F.interpolate(fold_time(clip), (side, side), mode="bilinear", align_corners=False)  # [B·T, C, s, s]
        out.append(unfold_time(frames[..., top : top + crop_h, left : left + crop_w], clip.size(0)))  # [B, T, C, h, w]
    return out


def build_optimizer(model: MattingNetwork, args: argparse.Namespace) -> torch.optim.Adam:
    """Adam over the model's published parameter groups, at the rates of ``--learning-rate-*``."""
    return torch.optim.Adam(
        model.optimizer_groups(
            backbone=args.learning_rate_backbone,
            aspp=args.learning_rate_aspp,
            decoder=args.learning_rate_decoder,
            refiner=args.learning_rate_refiner,
        )
    )


def optimize(loss: Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """One (possibly loss-scaled) gradient step."""
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def load_start_weights(model: MattingNetwork, path: str) -> None:
    """Weights to start from, read by the project's checkpoint reader (``.pth`` or TorchScript, checked).

    Entries a file of the right variant lacks (e.g. ``project_seg`` of weights converted from ONNX) stay as
    initialised and are listed in a warning; a file of another architecture is an error naming the fix.
    """
    state = read_state_dict(path)
    variant = infer_variant(state)
    if variant is not None and variant != model.variant:
        raise ValueError(
            f"--checkpoint {path} holds {variant} weights but --model-variant is {model.variant}; "
            f"pass --model-variant {variant} or other weights."
        )
    if variant is not None:  # without backbone entries fit_state_dict explains what the file is not
        initial = model.state_dict()
        missing = [key for key in initial if key not in state]
        if missing:
            logger.warning("%s lacks %d entries, left as initialised: %s", path, len(missing), missing)
            state = {**{key: initial[key] for key in missing}, **state}
    model.load_state_dict(fit_state_dict(state, model, f"--checkpoint {path}"), strict=True)


def build_model(args: argparse.Namespace, process: Process) -> MattingNetwork:
    """The network on this process's device: the same initial weights on every rank, then the start weights."""
    pretrained = not (args.no_pretrained_backbone or args.checkpoint or args.resume)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    try:
        model = MattingNetwork(args.model_variant, pretrained_backbone=pretrained)
    except RuntimeError as error:  # the ImageNet weights cannot be had (offline without a cached copy)
        if not pretrained:
            raise
        raise SetupError(f"{error} For train.py: --no-pretrained-backbone.") from error
    torch.manual_seed(args.seed + process.rank)  # anything random after this differs per rank
    if args.checkpoint:
        load_start_weights(model, args.checkpoint)
    if uses_sync_batchnorm(process.device, process.world_size):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(process.device)


def distributed(model: nn.Module, process: Process) -> nn.Module:
    """``model`` under DDP in a process group (itself otherwise): what the training passes call."""
    if not process.distributed:
        return model
    ids = [process.device.index] if process.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True, **ddp_buffer_options())


class Trainer:
    """Trains one process's share: the epoch loop, the matting and segmentation steps, validation and logs.

    The data comes from ``TrainingData``; everything a resumed run needs lives in ``TrainingState``.
    """

    def __init__(self, args: argparse.Namespace, process: Process) -> None:
        self.args = args
        self.process = process
        self.device = process.device
        self.amp = uses_mixed_precision(self.device, args.disable_mixed_precision)
        if not args.disable_mixed_precision and self.device.type != "cuda":
            logger.info("Mixed precision is for CUDA; training in float32 on %s.", self.device)
        error = None
        try:  # work of this process alone: a failure must reach process.agree, not stop here
            self.state = self._initial_state()
            if args.resume:
                path = latest_state(args.checkpoint_dir) if args.resume == "latest" else args.resume
                self.state.load(path, self.device)
        except Exception as caught:  # any failure, so that no other process is left waiting for this one
            error = caught
        process.agree(error)
        self.forward = distributed(self.state.model, process)
        self.writer = SummaryWriter(args.log_dir) if process.is_main else None

    def _initial_state(self) -> TrainingState:
        args, process = self.args, self.process
        data = TrainingData.build(
            args, rank=process.rank, world_size=process.world_size, pin_memory=self.device.type == "cuda"
        )
        model = build_model(args, process)
        optimizer = build_optimizer(model, args)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        data.lr.start_epoch(args.epoch_start)
        step = args.epoch_start * data.lr.batches_per_epoch()
        return TrainingState(model, optimizer, scaler, data, args, epoch=args.epoch_start, step=step)

    @property
    def model(self) -> nn.Module:
        return self.state.model

    @property
    def streams(self) -> Dict[str, DataStream]:
        return self.state.data.streams

    # ----- training -----
    def run(self) -> None:
        """Train from the current position to ``--epoch-end`` (or ``--max-steps``)."""
        args, state, lr_stream = self.args, self.state, self.state.data.lr
        if args.max_steps is not None and state.step >= args.max_steps:
            logger.info("Already at step %d, not below --max-steps %d: nothing to do.", state.step, args.max_steps)
            return
        for epoch in range(state.epoch, args.epoch_end):
            state.epoch = epoch
            if lr_stream.epoch != epoch:
                lr_stream.start_epoch(epoch)
            if lr_stream.consumed == 0 and not args.disable_validation:
                self.validate()
            progress = tqdm(
                lr_stream.epoch_batches(),
                total=lr_stream.batches_per_epoch(),
                initial=lr_stream.consumed,
                desc=f"epoch {epoch}",
                disable=args.disable_progress_bar or not self.process.is_main,
                dynamic_ncols=True,
            )
            for batch in progress:
                loss = self.train_step(batch)
                progress.set_postfix(loss=f"{loss:.4f}")
                finished = args.max_steps is not None and state.step >= args.max_steps
                if finished or state.step % args.checkpoint_save_interval == 0:
                    self.save()
                if finished:
                    return
            lr_stream.start_epoch(epoch + 1)
            state.epoch = epoch + 1
            self.save(weights_epoch=epoch)

    def train_step(self, batch: Sequence[Tensor]) -> float:
        """Matting (low-res, then high-res with ``--train-hr``) and one segmentation pass; returns the low-res loss."""
        loss = self.train_matting(batch, 1.0, "lr")
        if self.args.train_hr:
            self.train_matting(self.streams["hr"].next(), self.args.downsample_ratio, "hr")
        if self.state.step % 2 == 0:
            images, masks = self.streams["seg_video"].next()  # [B, T, 3, S, S], [B, T, 1, S, S]
            self.train_segmentation(images, masks, "seg_video")
        else:
            images, masks = self.streams["seg_image"].next()  # [B·T, 3, S, S], [B·T, 1, S, S]
            self.train_segmentation(images.unsqueeze(1), masks.unsqueeze(1), "seg_image")  # as T = 1 clips
        self.state.step += 1
        return loss

    def _step_rng(self, tag: str) -> random.Random:
        """Randomness of one pass, fixed by seed, rank and step (so resuming needs no generator state)."""
        return random.Random(f"{self.args.seed}-{self.process.rank}-{self.state.step}-{tag}")

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()

    def train_matting(self, batch: Sequence[Tensor], downsample_ratio: float, tag: str) -> float:
        true_fgr, true_pha, true_bgr = (x.to(self.device, non_blocking=True) for x in batch)  # [B, T, C, S, S]
        true_fgr, true_pha, true_bgr = random_crop(self._step_rng(tag), true_fgr, true_pha, true_bgr)
        true_src = true_fgr * true_pha + true_bgr * (1 - true_pha)
        with self._autocast():
            pred_fgr, pred_pha = self.forward(true_src, downsample_ratio=downsample_ratio)[:2]
            loss = matting_loss(pred_fgr, pred_pha, true_fgr, true_pha)
        optimize(loss["total"], self.state.optimizer, self.state.scaler)
        step = self.state.step
        if self.writer is not None:
            if step % self.args.log_train_loss_interval == 0:
                for name, value in loss.items():
                    self.writer.add_scalar(f"train_{tag}_{name}", value.item(), step)
            if step % self.args.log_train_images_interval == 0:
                for name, clip in (("pred_fgr", pred_fgr), ("pred_pha", pred_pha), ("true_fgr", true_fgr),
                                   ("true_pha", true_pha), ("true_src", true_src)):
                    self.writer.add_image(f"train_{tag}_{name}", grid(clip), step)
        return loss["total"].item()

    def train_segmentation(self, images: Tensor, masks: Tensor, tag: str) -> None:
        images, masks = random_crop(self._step_rng(tag), images.to(self.device), masks.to(self.device))
        with self._autocast():
            pred_seg = self.forward(images, segmentation_pass=True)[0]
            loss = segmentation_loss(pred_seg, masks)
        optimize(loss, self.state.optimizer, self.state.scaler)
        step = self.state.step
        if self.writer is not None:
            if step % self.args.log_train_loss_interval in (0, 1):  # each kind runs on every other step
                self.writer.add_scalar(f"train_{tag}_loss", loss.item(), step)
            if step % self.args.log_train_images_interval in (0, 1):
                self.writer.add_image(f"train_{tag}_pred_seg", grid(pred_seg.sigmoid()), step)
                self.writer.add_image(f"train_{tag}_true_seg", grid(masks), step)
                self.writer.add_image(f"train_{tag}_true_img", grid(images), step)

    @torch.no_grad()
    def validate(self) -> Optional[float]:
        """Mean matting loss over the validation set, on the main process (the others wait).

        With ``--train-hr`` the validation clips are high-resolution and go through the refiner at
        ``--downsample-ratio``; otherwise they run at full size.
        """
        average = None
        ratio = self.args.downsample_ratio if self.args.train_hr else 1.0
        if self.process.is_main:
            model = self.state.model.eval()
            loader = self.state.data.validation_loader(self.args.batch_size_per_gpu, self.args.num_workers)
            total, count = 0.0, 0
            for true_fgr, true_pha, true_bgr in tqdm(loader, desc="validation", disable=self.args.disable_progress_bar):
                true_fgr, true_pha, true_bgr = (x.to(self.device) for x in (true_fgr, true_pha, true_bgr))
                true_src = true_fgr * true_pha + true_bgr * (1 - true_pha)
                with self._autocast():
                    pred_fgr, pred_pha = model(true_src, downsample_ratio=ratio)[:2]
                    loss = matting_loss(pred_fgr, pred_pha, true_fgr, true_pha)["total"]
                total += loss.item() * true_src.size(0)
                count += true_src.size(0)
            average = total / count
            logger.info("epoch %d step %d: validation loss %.5f", self.state.epoch, self.state.step, average)
            self.writer.add_scalar("valid_loss", average, self.state.step)
            model.train()
        self.process.barrier()
        return average

    def save(self, weights_epoch: Optional[int] = None) -> None:
        """The training state (and ``epoch-N.pth``) written by the main process; the others wait for it."""
        if self.process.is_main:
            self.state.save(weights_epoch)
        self.process.barrier()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def grid(clip: Tensor) -> Tensor:
    """A ``[B, T, C, H, W]`` clip as one image grid ``[3, H', W']`` with a row per sample."""
    return make_grid(fold_time(clip).float().clamp(0, 1), nrow=clip.size(1))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Train; returns 0, or 1 after a set-up problem (reported once, by rank 0, without a traceback)."""
    rank = int(os.environ.get("RANK", "0"))  # known before the process group exists
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s")
    process = None
    try:
        with redirect_stderr(io.StringIO()) if rank else nullcontext():  # argparse's usage errors: rank 0 prints
            args = parse_args(argv)
        process = init_process(args.device, args.process_group_timeout)
        trainer = Trainer(args, process)
    except SETUP_ERRORS as error:
        if rank == 0:
            logger.error("%s", error)
        if process is not None:
            process.barrier()  # no process exits (and makes torchrun stop the others) before rank 0 has reported
        end_process(process)
        return 1
    try:
        trainer.run()
    finally:
        trainer.close()
        end_process(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
