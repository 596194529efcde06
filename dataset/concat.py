"""Concatenate datasets addressed by ``(index, seed)`` keys (torch's ConcatDataset only takes int indices)."""
import bisect
from typing import List, Sequence, Union

from torch.utils.data import Dataset

from .sampler import SampleKey


class KeyedConcatDataset(Dataset):
    """Items of ``datasets`` one after another; the seed of a key passes through unchanged."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        self.datasets = list(datasets)
        self.ends: List[int] = []
        total = 0
        for dataset in self.datasets:
            total += len(dataset)
            self.ends.append(total)

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def __getitem__(self, key: Union[int, SampleKey]):
        index = key[0] if isinstance(key, tuple) else key
        seed = key[1] if isinstance(key, tuple) else key
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} is outside 0..{len(self) - 1}.")
        which = bisect.bisect_right(self.ends, index)
        start = self.ends[which - 1] if which else 0
        return self.datasets[which][(index - start, seed)]
