"""Train Robust Video Matting (SPEC §4): one CPU, one GPU, or many GPUs on many machines.

    python train.py --config training_presets/stage1.json --data-root ../matting-data          # one process
    torchrun --nproc_per_node 8 train.py --config training_presets/stage1.json                  # one machine
    torchrun --nnodes 2 --node_rank R --rdzv_endpoint HOST:29500 --nproc_per_node 8 train.py ...  # several

Each step: a low-resolution matting pass; with ``--train-hr`` a high-resolution pass through the refiner;
then a segmentation pass (YouTubeVIS clip on even steps, COCO + Supervisely stills on odd ones).
Checkpoints hold everything needed to resume exactly (``--resume``); ``epoch-N.pth`` holds the weights alone.
All randomness comes from ``--seed``: per-item seeds from the samplers and per-step seeds for the crops, so
a resumed run continues as if it had never stopped. See documentation/training.md.
"""
import argparse
import datetime
import glob
import inspect
import logging
import os
import random
import re
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid
from tqdm import tqdm

from dataset.augmentation import (
    image_segmentation_augmentation,
    matting_train_augmentation,
    matting_valid_augmentation,
    video_segmentation_augmentation,
)
from dataset.coco import CocoPanopticDataset
from dataset.concat import KeyedConcatDataset
from dataset.files import read_json
from dataset.imagematte import ImageMatteDataset
from dataset.sampler import SampleStream, TrainFrameSampler, ValidFrameSampler
from dataset.spd import SuperviselyPersonDataset
from dataset.videomatte import VideoMatteDataset
from dataset.youtubevis import YouTubeVISDataset
from model import MattingNetwork
from model.atomic import atomic_output
from model.time_folding import fold_time, unfold_time
from train_config import DATA_ROOT, resolve_data_paths
from train_loss import matting_loss, segmentation_loss

logger = logging.getLogger("train")

REQUIRED = (
    "model_variant", "dataset", "learning_rate_backbone", "learning_rate_aspp", "learning_rate_decoder",
    "learning_rate_refiner", "seq_length_lr", "log_dir", "checkpoint_dir",
)
STATE_PATTERN = re.compile(r"state-step-(\d+)\.pt$")


def build_parser() -> argparse.ArgumentParser:
    """The published flags plus config, data location, seeding, resuming and step limits."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--config", help="JSON file of flag values (keys as flag names) and optional data_root / data_paths")
    add("--model-variant", choices=["mobilenetv3", "resnet50"])
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
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no GPU is visible; use --device cpu.")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 or "TORCHELASTIC_RUN_ID" in os.environ:  # launched by torchrun
        timeout = datetime.timedelta(minutes=timeout_minutes)
        dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://", timeout=timeout)
    return Process(rank, local_rank, world_size, chosen)


class DataStream:
    """A DataLoader over a resumable ``SampleStream``: knows its epoch and how many batches it has handed out."""

    def __init__(
        self, dataset: Dataset, batch_size: int, process: Process, seed: int, num_workers: int, shuffle: bool = True
    ) -> None:
        self.sampler = SampleStream(len(dataset), process.rank, process.world_size, seed, shuffle)
        self.batch_size = batch_size
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=process.device.type == "cuda",
        )
        self.epoch = 0
        self.consumed = 0  # batches of self.epoch already handed out
        self._iterator: Optional[Iterator] = None

    def batches_per_epoch(self) -> int:
        return -(-self.sampler.per_rank // self.batch_size)

    def epoch_batches(self) -> Iterator:
        """The remaining batches of the current epoch, counting them as they go."""
        self.sampler.set_epoch(self.epoch, self.consumed * self.batch_size)
        for batch in self.loader:
            self.consumed += 1
            yield batch

    def next(self):
        """The next batch, moving on to the following epoch when this one is used up (for the auxiliary streams)."""
        if self._iterator is None:
            self._iterator = self.epoch_batches()
        try:
            return next(self._iterator)
        except StopIteration:
            self.epoch, self.consumed = self.epoch + 1, 0
            self._iterator = self.epoch_batches()
            return next(self._iterator)

    def state_dict(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.epoch, self.consumed = state["epoch"], state["consumed"]
        self._iterator = None


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
    """Adam with the published parameter groups: backbone, aspp, decoder (+ both heads), refiner."""
    return torch.optim.Adam(
        [
            {"params": model.backbone.parameters(), "lr": args.learning_rate_backbone},
            {"params": model.aspp.parameters(), "lr": args.learning_rate_aspp},
            {"params": model.decoder.parameters(), "lr": args.learning_rate_decoder},
            {"params": model.project_mat.parameters(), "lr": args.learning_rate_decoder},
            {"params": model.project_seg.parameters(), "lr": args.learning_rate_decoder},
            {"params": model.refiner.parameters(), "lr": args.learning_rate_refiner},
        ]
    )


def optimize(loss: Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """One (possibly loss-scaled) gradient step."""
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def save_atomically(obj: object, path: str) -> None:
    """``torch.save`` to a temporary name then rename, so a crash never leaves a half-written file."""
    with atomic_output(path) as temporary:
        torch.save(obj, temporary)


def latest_state(checkpoint_dir: str) -> str:
    """The training state with the highest step in ``checkpoint_dir``."""
    states = [p for p in glob.glob(os.path.join(checkpoint_dir, "state-step-*.pt")) if STATE_PATTERN.search(p)]
    if not states:
        raise FileNotFoundError(
            f"--resume found no state-step-*.pt in {checkpoint_dir}; pass the state file itself or start without --resume."
        )
    return max(states, key=lambda p: int(STATE_PATTERN.search(p).group(1)))


def load_start_weights(model: MattingNetwork, path: str) -> None:
    """Weights to start from; heads a file lacks (e.g. ``project_seg`` of converted ONNX weights) stay as initialised."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--checkpoint {path} does not exist; give the path of a .pth state dict.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys or len(result.missing_keys) == len(model.state_dict()):
        raise ValueError(
            f"--checkpoint {path} does not fit a {model.variant} MattingNetwork (unexpected keys "
            f"{result.unexpected_keys[:3]}); check --model-variant."
        )
    if result.missing_keys:
        logger.warning("%s lacks %d keys, left as initialised: %s", path, len(result.missing_keys), result.missing_keys)


class Trainer:
    """Owns the model, optimizer, data streams and logs of one process; ``run()`` trains."""

    def __init__(self, args: argparse.Namespace, process: Process) -> None:
        self.args = args
        self.process = process
        self.device = process.device
        self.amp = uses_mixed_precision(self.device, args.disable_mixed_precision)
        if not args.disable_mixed_precision and self.device.type != "cuda":
            logger.info("Mixed precision is for CUDA; training in float32 on %s.", self.device)
        self.paths = resolve_data_paths(args.data_root, args.data_path, args.config_data_paths)
        self._build_data()
        self._build_model()
        self.epoch = args.epoch_start
        self.step = args.epoch_start * self.streams["lr"].batches_per_epoch()
        self.streams["lr"].epoch = self.epoch
        self.writer = SummaryWriter(args.log_dir) if process.is_main else None
        if args.resume:
            self._load_state(latest_state(args.checkpoint_dir) if args.resume == "latest" else args.resume)

    # ----- set-up -----
    def _build_data(self) -> None:
        args, p = self.args, self.paths
        matting = VideoMatteDataset if args.dataset == "videomatte" else ImageMatteDataset
        key = args.dataset

        def matting_set(split: str, size: int, seq_length: int, sampler: Callable, transform: Callable) -> Dataset:
            return matting(
                p[key][split], p["background_images"][split], p["background_videos"][split], size, seq_length, sampler,
                transform,
            )

        lr, hr = args.resolution_lr, args.resolution_hr
        workers, batch = args.num_workers, args.batch_size_per_gpu
        seed = args.seed * 10
        self.streams: Dict[str, DataStream] = {
            "lr": DataStream(
                matting_set("train", lr, args.seq_length_lr, TrainFrameSampler(), matting_train_augmentation(key, lr)),
                batch, self.process, seed, workers,
            ),
            "seg_image": DataStream(
                KeyedConcatDataset(
                    [
                        CocoPanopticDataset(
                            p["coco_panoptic"]["imgdir"], p["coco_panoptic"]["anndir"], p["coco_panoptic"]["annfile"],
                            image_segmentation_augmentation(lr), shortest_side=lr,
                        ),
                        SuperviselyPersonDataset(
                            p["spd"]["imgdir"], p["spd"]["segdir"], image_segmentation_augmentation(lr), shortest_side=lr
                        ),
                    ]
                ),
                batch * args.seq_length_lr, self.process, seed + 1, workers,
            ),
            "seg_video": DataStream(
                YouTubeVISDataset(
                    p["youtubevis"]["videodir"], p["youtubevis"]["annfile"], lr, args.seq_length_lr,
                    TrainFrameSampler(speeds=(1,)), video_segmentation_augmentation(lr),
                ),
                batch, self.process, seed + 2, workers,
            ),
        }
        if args.train_hr:
            self.streams["hr"] = DataStream(
                matting_set("train", hr, args.seq_length_hr, TrainFrameSampler(), matting_train_augmentation(key, hr)),
                batch, self.process, seed + 3, workers,
            )
        valid_size, valid_length = (hr, args.seq_length_hr) if args.train_hr else (lr, args.seq_length_lr)
        self.valid_set = matting_set(
            "valid", valid_size, valid_length, ValidFrameSampler(), matting_valid_augmentation(valid_size)
        )

    def _build_model(self) -> None:
        args = self.args
        pretrained = not (args.no_pretrained_backbone or args.checkpoint or args.resume)
        torch.manual_seed(args.seed)  # the same initial weights on every rank
        self.model = MattingNetwork(args.model_variant, pretrained_backbone=pretrained)
        torch.manual_seed(args.seed + self.process.rank)  # anything random after this differs per rank
        if args.checkpoint:
            load_start_weights(self.model, args.checkpoint)
        if uses_sync_batchnorm(self.device, self.process.world_size):
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        self.optimizer = build_optimizer(self.model, args)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        if self.process.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=True, **ddp_buffer_options()
            )
        else:
            self.forward = self.model

    # ----- training -----
    def run(self) -> None:
        """Train from the current position to ``--epoch-end`` (or ``--max-steps``)."""
        args, lr_stream = self.args, self.streams["lr"]
        if args.max_steps is not None and self.step >= args.max_steps:
            logger.info("Already at step %d, not below --max-steps %d: nothing to do.", self.step, args.max_steps)
            return
        for epoch in range(self.epoch, args.epoch_end):
            self.epoch = epoch
            if lr_stream.epoch != epoch:
                lr_stream.epoch, lr_stream.consumed = epoch, 0
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
                finished = args.max_steps is not None and self.step >= args.max_steps
                if finished or self.step % args.checkpoint_save_interval == 0:
                    self.save()
                if finished:
                    return
            lr_stream.epoch, lr_stream.consumed = epoch + 1, 0
            self.epoch = epoch + 1
            self.save(weights_epoch=epoch)

    def train_step(self, batch: Sequence[Tensor]) -> float:
        """Matting (low-res, then high-res with ``--train-hr``) and one segmentation pass; returns the low-res loss."""
        loss = self.train_matting(batch, 1.0, "lr")
        if self.args.train_hr:
            self.train_matting(self.streams["hr"].next(), self.args.downsample_ratio, "hr")
        if self.step % 2 == 0:
            images, masks = self.streams["seg_video"].next()  # [B, T, 3, S, S], [B, T, 1, S, S]
            self.train_segmentation(images, masks, "seg_video")
        else:
            images, masks = self.streams["seg_image"].next()  # [B·T, 3, S, S], [B·T, 1, S, S]
            self.train_segmentation(images.unsqueeze(1), masks.unsqueeze(1), "seg_image")  # as T = 1 clips
        self.step += 1
        return loss

    def _step_rng(self, tag: str) -> random.Random:
        """Randomness of one pass, fixed by seed, rank and step (so resuming needs no generator state)."""
        return random.Random(f"{self.args.seed}-{self.process.rank}-{self.step}-{tag}")

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()

    def train_matting(self, batch: Sequence[Tensor], downsample_ratio: float, tag: str) -> float:
        true_fgr, true_pha, true_bgr = (x.to(self.device, non_blocking=True) for x in batch)  # [B, T, C, S, S]
        true_fgr, true_pha, true_bgr = random_crop(self._step_rng(tag), true_fgr, true_pha, true_bgr)
        true_src = true_fgr * true_pha + true_bgr * (1 - true_pha)
        with self._autocast():
            pred_fgr, pred_pha = self.forward(true_src, downsample_ratio=downsample_ratio)[:2]
            loss = matting_loss(pred_fgr, pred_pha, true_fgr, true_pha)
        optimize(loss["total"], self.optimizer, self.scaler)
        if self.writer is not None:
            if self.step % self.args.log_train_loss_interval == 0:
                for name, value in loss.items():
                    self.writer.add_scalar(f"train_{tag}_{name}", value.item(), self.step)
            if self.step % self.args.log_train_images_interval == 0:
                for name, clip in (("pred_fgr", pred_fgr), ("pred_pha", pred_pha), ("true_fgr", true_fgr),
                                   ("true_pha", true_pha), ("true_src", true_src)):
                    self.writer.add_image(f"train_{tag}_{name}", grid(clip), self.step)
        return loss["total"].item()

    def train_segmentation(self, images: Tensor, masks: Tensor, tag: str) -> None:
        images, masks = random_crop(self._step_rng(tag), images.to(self.device), masks.to(self.device))
        with self._autocast():
            pred_seg = self.forward(images, segmentation_pass=True)[0]
            loss = segmentation_loss(pred_seg, masks)
        optimize(loss, self.optimizer, self.scaler)
        if self.writer is not None:
            if self.step % self.args.log_train_loss_interval in (0, 1):  # each kind runs on every other step
                self.writer.add_scalar(f"train_{tag}_loss", loss.item(), self.step)
            if self.step % self.args.log_train_images_interval in (0, 1):
                self.writer.add_image(f"train_{tag}_pred_seg", grid(pred_seg.sigmoid()), self.step)
                self.writer.add_image(f"train_{tag}_true_seg", grid(masks), self.step)
                self.writer.add_image(f"train_{tag}_true_img", grid(images), self.step)

    @torch.no_grad()
    def validate(self) -> Optional[float]:
        """Mean matting loss over the validation set, on the main process (the others wait).

        With ``--train-hr`` the validation clips are high-resolution and go through the refiner at
        ``--downsample-ratio``; otherwise they run at full size.
        """
        average = None
        ratio = self.args.downsample_ratio if self.args.train_hr else 1.0
        if self.process.is_main:
            self.model.eval()
            loader = DataLoader(
                self.valid_set, batch_size=self.args.batch_size_per_gpu, num_workers=self.args.num_workers,
                sampler=SampleStream(len(self.valid_set), shuffle=False),
            )
            total, count = 0.0, 0
            for true_fgr, true_pha, true_bgr in tqdm(loader, desc="validation", disable=self.args.disable_progress_bar):
                true_fgr, true_pha, true_bgr = (x.to(self.device) for x in (true_fgr, true_pha, true_bgr))
                true_src = true_fgr * true_pha + true_bgr * (1 - true_pha)
                with self._autocast():
                    pred_fgr, pred_pha = self.model(true_src, downsample_ratio=ratio)[:2]
                    loss = matting_loss(pred_fgr, pred_pha, true_fgr, true_pha)["total"]
                total += loss.item() * true_src.size(0)
                count += true_src.size(0)
            average = total / count
            logger.info("epoch %d step %d: validation loss %.5f", self.epoch, self.step, average)
            self.writer.add_scalar("valid_loss", average, self.step)
            self.model.train()
        self.process.barrier()
        return average

    # ----- checkpoints -----
    def state_dict(self) -> Dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "args": {k: v for k, v in vars(self.args).items()},
            "streams": {name: stream.state_dict() for name, stream in self.streams.items()},
        }

    def save(self, weights_epoch: Optional[int] = None) -> None:
        """Write the training state (and the weights alone as ``epoch-N.pth``); keeps the two latest states."""
        if self.process.is_main:
            folder = self.args.checkpoint_dir
            os.makedirs(folder, exist_ok=True)
            state = self.state_dict()
            save_atomically(state, os.path.join(folder, f"state-step-{self.step:09d}.pt"))
            save_atomically(state["model"], os.path.join(folder, f"epoch-{self.epoch if weights_epoch is None else weights_epoch}.pth"))
            states = sorted(glob.glob(os.path.join(folder, "state-step-*.pt")))
            for old in states[:-2]:
                os.remove(old)
            logger.info("saved step %d to %s", self.step, folder)
        self.process.barrier()

    def _load_state(self, path: str) -> None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--resume {path} does not exist; pass a state-step-*.pt file or a --checkpoint-dir holding one.")
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        load_scaler_state(self.scaler, state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        for name, stream in self.streams.items():
            if name not in state["streams"]:
                raise ValueError(f"{path} has no position for the {name} data; resume with the flags it was saved with.")
            stream.load_state_dict(state["streams"][name])
        changed = {k: (v, getattr(self.args, k, None)) for k, v in state["args"].items() if getattr(self.args, k, None) != v}
        changed.pop("resume", None)
        if changed:
            logger.warning("Resuming with settings that differ from the saved run: %s", changed)
        logger.info("resumed from %s at epoch %d step %d", path, self.epoch, self.step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def load_scaler_state(scaler: torch.amp.GradScaler, state: Dict) -> None:
    """Restore the loss scaler; a state saved without mixed precision (CPU, ``--disable-mixed-precision``) is empty,
    and a scaler that is enabled now (resuming on CUDA) then starts from its initial scale instead of failing."""
    if not state:
        if scaler.is_enabled():
            logger.info("The saved state has no loss scale (saved without mixed precision); starting from the first.")
        return
    scaler.load_state_dict(state)


def grid(clip: Tensor) -> Tensor:
    """A ``[B, T, C, H, W]`` clip as one image grid ``[3, H', W']`` with a row per sample."""
    return make_grid(fold_time(clip).float().clamp(0, 1), nrow=clip.size(1))


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    process = init_process(args.device, args.process_group_timeout)
    logging.basicConfig(level=logging.INFO if process.is_main else logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    trainer = Trainer(args, process)
    try:
        trainer.run()
    finally:
        trainer.close()
        if process.distributed:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
