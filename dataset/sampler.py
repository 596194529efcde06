"""Frame samplers (which frames of a clip form a training sequence) and the resumable, distributed sample stream.

Every dataset item is addressed by a key ``(index, seed)``: the seed drives all randomness of that item
(frame choice, background, augmentation) through its own ``random.Random``. The stream below hands out keys,
so a run is reproducible from its seed and resumes exactly from ``(epoch, position)`` with any number of
DataLoader workers.
"""
import random
from typing import Iterator, List, Sequence, Tuple, Union

import torch

SampleKey = Tuple[int, int]


def unpack_key(key: Union[int, SampleKey]) -> Tuple[int, random.Random]:
    """``(index, seed)`` → index and a generator seeded for this item; a bare int index seeds with the index."""
    if isinstance(key, tuple):
        index, seed = key
    else:
        index, seed = key, key
    return int(index), random.Random(int(seed))


class TrainFrameSampler:
    """Random speed, offset and direction: frame offsets for one training sequence (published recipe).

    Speeds 0.5–5× mimic slow and fast motion; half of the sequences play backwards. Offsets are relative to the
    clip position and wrap around the clip in the dataset.
    """

    def __init__(self, speeds: Sequence[float] = (0.5, 1, 2, 3, 4, 5)) -> None:
        self.speeds = tuple(speeds)

    def __call__(self, seq_length: int, rng: random.Random) -> List[int]:
        speed = rng.choice(self.speeds)
        shift = rng.randrange(seq_length)
        frames = [int(i * speed) + shift for i in range(seq_length)]
        if rng.random() < 0.5:
            frames.reverse()
        return frames


class ValidFrameSampler:
    """Consecutive frames in order: validation sees the clip as it is."""

    def __call__(self, seq_length: int, rng: random.Random) -> List[int]:
        return list(range(seq_length))


class SampleStream(torch.utils.data.Sampler):
    """This rank's share of one epoch of sample keys, shuffled by ``(seed, epoch)``; resumable at any position.

    All ranks draw the same permutation and per-item seeds and take every ``world_size``-th item (the list is
    padded by wrapping, as ``DistributedSampler`` does). ``set_epoch`` picks the epoch; ``start`` skips the
    items this rank has already consumed in it (to resume).
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True) -> None:
        if length <= 0:
            raise ValueError("SampleStream needs a non-empty dataset; check the dataset folders.")
        self.length = length
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use epoch ``epoch`` and skip its first ``start`` items of this rank."""
        self.epoch = epoch
        self.start = start

    @property
    def per_rank(self) -> int:
        """Items each rank gets in a full epoch."""
        return -(-self.length // self.world_size)

    def __len__(self) -> int:
        return self.per_rank - self.start

    def __iter__(self) -> Iterator[SampleKey]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.shuffle:
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        seeds = torch.randint(0, 2**62, (self.length,), generator=generator).tolist()
        per_rank = self.per_rank
        padded = [order[i % self.length] for i in range(per_rank * self.world_size)]
        mine = padded[self.rank :: self.world_size]
        for position in range(self.start, per_rank):
            index = mine[position]
            yield index, seeds[index] if self.shuffle else index
