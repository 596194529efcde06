"""Where this process sits in a conversion job and how the job's processes share state.

torchrun describes the job in the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT``); without it the process is a job of one. Each process gets its own device
(``cuda:LOCAL_RANK``, or the CPU with its share of the cores) and reaches the job's key-value store: torchrun's
rendezvous store (a ``torch.distributed.TCPStore``) or, alone, an in-memory ``HashStore`` with the same interface.
No process group is created: the job needs no collective operations, only the store's atomic counters and keys.
"""
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.distributed as dist

from model.devices import resolve_device

STORE_PREFIX = "rvm-conversion"
FIRST_POLL_SECONDS, LAST_POLL_SECONDS = 0.01, 1.0  # waits between looks at the store, doubling from first to last


@dataclass(frozen=True)
class Worker:
    """One process of the job: its ranks, its device and the torch CPU threads it converts with."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    host: str
    device: torch.device
    threads: Optional[int]  # None: torch's default

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> Dict[str, Any]:
        """The worker as the manifest records it (``attempt``: torchrun's restart count)."""
        return {
            "rank": self.rank, "host": self.host, "pid": os.getpid(), "device": str(self.device),
            "attempt": _environment_int("TORCHELASTIC_RESTART_COUNT", 0),
        }


def _environment_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as error:
        message = f"Environment variable {name}={value!r} must be an integer; launch with torchrun or unset it."
        raise ValueError(message) from error


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's or a scheduler's share)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_device(requested: str, *, local_rank: int, local_world_size: int) -> torch.device:
    """``auto`` → ``cuda:LOCAL_RANK`` when CUDA is present, else the CPU; ``cuda`` → ``cuda:LOCAL_RANK``; a pinned
    ``cuda:N`` only for a single process per machine."""
    device = resolve_device(requested)
    if device.type != "cuda":
        return device
    if device.index is not None:
        if local_world_size > 1:
            raise ValueError(
                f"--device {requested} would put every process of this machine on one GPU; pass --device cuda or auto "
                "and each process takes cuda:LOCAL_RANK."
            )
        return device
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ValueError(
            f"LOCAL_RANK {local_rank} has no GPU of its own ({count} visible); use --nproc_per_node {count}."
        )
    return torch.device("cuda", local_rank)


def worker_threads(requested: Optional[int], *, local_world_size: int) -> Optional[int]:
    """``--threads`` when given; else, with several processes on one machine, an equal share of its cores (torchrun's
    own default, ``OMP_NUM_THREADS=1``, would leave most cores of a CPU-only machine idle); alone, torch's default."""
    if requested is not None:
        return requested
    if local_world_size == 1:
        return None
    return max(1, available_cores() // local_world_size)


def worker_from_environment(device: str = "auto", threads: Optional[int] = None) -> Worker:
    """This process as torchrun's environment describes it (or a job of one without torchrun)."""
    world_size = _environment_int("WORLD_SIZE", 1)
    rank = _environment_int("RANK", 0)
    local_rank = _environment_int("LOCAL_RANK", 0)
    local_world_size = _environment_int("LOCAL_WORLD_SIZE", world_size)  # a launcher without it: all on one machine
    if not (0 <= rank < world_size and 0 <= local_rank < local_world_size <= world_size):
        raise ValueError(
            f"RANK={rank}, LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world_size}, WORLD_SIZE={world_size} "
            "do not describe a job; launch with torchrun."
        )
    return Worker(
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        local_world_size=local_world_size,
        host=socket.gethostname(),
        device=worker_device(device, local_rank=local_rank, local_world_size=local_world_size),
        threads=worker_threads(threads, local_world_size=local_world_size),
    )


def use_device(worker: Worker) -> None:
    """Make the worker's GPU the current one, so that whatever allocates on "the" CUDA device (streams, graphs,
    compiled kernels) uses it and not cuda:0."""
    if worker.device.type == "cuda":
        torch.cuda.set_device(worker.device)


def open_store(worker: Worker) -> dist.Store:
    """The job's store: torchrun's rendezvous store under a prefix of this run and restart (so an elastic restart
    starts with fresh counters), or an in-memory store for a job of one."""
    if worker.world_size == 1:
        return dist.HashStore()
    store, _, _ = next(dist.rendezvous("env://"))
    attempt = f"{os.environ.get('TORCHELASTIC_RUN_ID', 'none')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    return dist.PrefixStore(f"{STORE_PREFIX}/{attempt}", store)


def publish(store: dist.Store, key: str, value: Any) -> None:
    """Make ``value`` (JSON) readable by every process under ``key``."""
    store.set(key, json.dumps(value))


def wait_until(condition: Callable[[], bool], *, timeout: Optional[float] = None) -> bool:
    """Poll ``condition`` (waits doubling up to a second: a peer may be converting for hours, and thousands of
    waiting processes must not flood the store) until it holds; False if ``timeout`` seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = FIRST_POLL_SECONDS
    while not condition():
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, LAST_POLL_SECONDS)
    return True


def fetch(store: dist.Store, key: str) -> Any:
    """The JSON value under ``key``, once some process has published it (without the store's own timeout)."""
    wait_until(lambda: store.check([key]))
    return json.loads(store.get(key))


def gather(store: dist.Store, key: str, value: Any, worker: Worker) -> List[Any]:
    """Every process's ``value``, in rank order, on every process."""
    publish(store, f"{key}/{worker.rank}", value)
    return [fetch(store, f"{key}/{rank}") for rank in range(worker.world_size)]


def counter(store: dist.Store, key: str) -> int:
    """The current value of the atomic counter ``key`` (0 before anyone added to it)."""
    return store.add(key, 0)
