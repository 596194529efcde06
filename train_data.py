"""The data of one training process: the four resumable sample streams and the validation set, built from flags.

Streams (documentation/training.md, "The four stages"): ``lr`` low-resolution matting clips, ``hr``
high-resolution ones (only with ``--train-hr``), ``seg_image`` COCO + Supervisely stills and ``seg_video``
YouTubeVIS clips. Each stream knows its epoch and how many batches it has handed out, which is all a
training state needs to continue the data exactly where it stopped.
"""
import argparse
from typing import Callable, Dict, Iterator, Mapping, Optional

from torch.utils.data import DataLoader, Dataset

from dataset.augmentation import (
    image_segmentation_augmentation,
    matting_train_augmentation,
    matting_valid_augmentation,
    video_segmentation_augmentation,
)
from dataset.coco import CocoPanopticDataset
from dataset.concat import KeyedConcatDataset
from dataset.imagematte import ImageMatteDataset
from dataset.sampler import SampleStream, TrainFrameSampler, ValidFrameSampler
from dataset.spd import SuperviselyPersonDataset
from dataset.videomatte import VideoMatteDataset
from dataset.youtubevis import YouTubeVISDataset
from train_config import resolve_data_paths

StreamPositions = Dict[str, Dict[str, int]]


class DataStream:
    """A DataLoader over a resumable ``SampleStream``: knows its epoch and how many batches it has handed out."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        shuffle: bool = True,
    ) -> None:
        self.sampler = SampleStream(len(dataset), rank, world_size, seed, shuffle)
        self.batch_size = batch_size
        self.loader = DataLoader(
            dataset, batch_size=batch_size, sampler=self.sampler, num_workers=num_workers, pin_memory=pin_memory
        )
        self.epoch = 0
        self.consumed = 0  # batches of self.epoch already handed out
        self._iterator: Optional[Iterator] = None

    def batches_per_epoch(self) -> int:
        return -(-self.sampler.per_rank // self.batch_size)

    def start_epoch(self, epoch: int) -> None:
        """Go to the beginning of ``epoch`` (nothing of it consumed yet)."""
        self.epoch, self.consumed = epoch, 0
        self._iterator = None

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
            self.start_epoch(self.epoch + 1)
            self._iterator = self.epoch_batches()
            return next(self._iterator)

    def state_dict(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.epoch, self.consumed = state["epoch"], state["consumed"]
        self._iterator = None


class TrainingData:
    """The streams and the validation set of one process, built from train.py's flags.

    ``streams`` holds ``lr``, ``seg_image``, ``seg_video`` and, with ``--train-hr``, ``hr``. Every stream draws
    from ``--seed`` (offset per stream) and this process's rank, so ranks see disjoint items of one shuffled
    epoch. A missing or empty data folder raises a ``FileNotFoundError`` / ``ValueError`` naming it.
    """

    def __init__(self, streams: Dict[str, DataStream], valid_set: Dataset) -> None:
        self.streams = streams
        self.valid_set = valid_set

    @property
    def lr(self) -> DataStream:
        """The low-resolution matting stream: its epochs are the training epochs."""
        return self.streams["lr"]

    @classmethod
    def build(
        cls, args: argparse.Namespace, *, rank: int = 0, world_size: int = 1, pin_memory: bool = False
    ) -> "TrainingData":
        """The datasets named by ``--dataset``, ``--data-root``, ``--data-path`` and the config's ``data_paths``."""
        paths = resolve_data_paths(args.data_root, args.data_path, args.config_data_paths)
        key = args.dataset
        matting = VideoMatteDataset if key == "videomatte" else ImageMatteDataset

        def matting_set(split: str, size: int, seq_length: int, sampler: Callable, transform: Callable) -> Dataset:
            return matting(
                paths[key][split], paths["background_images"][split], paths["background_videos"][split], size,
                seq_length, sampler, transform,
            )

        def stream(dataset: Dataset, batch_size: int, offset: int) -> DataStream:
            return DataStream(
                dataset, batch_size, rank=rank, world_size=world_size, seed=args.seed * 10 + offset,
                num_workers=args.num_workers, pin_memory=pin_memory,
            )

        lr, hr = args.resolution_lr, args.resolution_hr
        batch = args.batch_size_per_gpu
        coco, spd, ytvis = paths["coco_panoptic"], paths["spd"], paths["youtubevis"]
        streams = {
            "lr": stream(
                matting_set("train", lr, args.seq_length_lr, TrainFrameSampler(), matting_train_augmentation(key, lr)),
                batch, 0,
            ),
            "seg_image": stream(
                KeyedConcatDataset(
                    [
                        CocoPanopticDataset(
                            coco["imgdir"], coco["anndir"], coco["annfile"], image_segmentation_augmentation(lr),
                            shortest_side=lr,
                        ),
                        SuperviselyPersonDataset(
                            spd["imgdir"], spd["segdir"], image_segmentation_augmentation(lr), shortest_side=lr
                        ),
                    ]
                ),
                batch * args.seq_length_lr, 1,
            ),
            "seg_video": stream(
                YouTubeVISDataset(
                    ytvis["videodir"], ytvis["annfile"], lr, args.seq_length_lr, TrainFrameSampler(speeds=(1,)),
                    video_segmentation_augmentation(lr),
                ),
                batch, 2,
            ),
        }
        if args.train_hr:
            streams["hr"] = stream(
                matting_set("train", hr, args.seq_length_hr, TrainFrameSampler(), matting_train_augmentation(key, hr)),
                batch, 3,
            )
        valid_size, valid_length = (hr, args.seq_length_hr) if args.train_hr else (lr, args.seq_length_lr)
        valid_augmentation = matting_valid_augmentation(valid_size)
        valid_set = matting_set("valid", valid_size, valid_length, ValidFrameSampler(), valid_augmentation)
        return cls(streams, valid_set)

    def state_dict(self) -> StreamPositions:
        """Where each stream stands: ``{name: {"epoch": e, "consumed": batches}}``."""
        return {name: stream.state_dict() for name, stream in self.streams.items()}

    def load_state_dict(self, positions: Mapping[str, Mapping[str, int]], source: str = "the training state") -> None:
        """Continue every stream from ``positions``; a stream the state lacks is an error (flags changed)."""
        for name, stream in self.streams.items():
            if name not in positions:
                raise ValueError(
                    f"{source} has no position for the {name} data; resume with the flags it was saved with."
                )
            stream.load_state_dict(positions[name])

    def validation_loader(self, batch_size: int = 1, num_workers: int = 0) -> DataLoader:
        """The validation clips in order, each with its own fixed seed (no augmentation is random there anyway)."""
        return DataLoader(
            self.valid_set, batch_size=batch_size, num_workers=num_workers,
            sampler=SampleStream(len(self.valid_set), shuffle=False),
        )

