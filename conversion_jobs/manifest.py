"""The job's manifest: JSON lines, one record per input, in ``OUTPUT_DIR/manifest.jsonl``.

A record says which input, its outputs (relative to the output folder), frames, seconds, the worker, the status
(``started``, ``done`` or ``failed``), the error, when it was handed out and finished, the input's identity (bytes,
modification time) and the settings that shape the outputs.

Processes never write one file together (appends from several machines to one file on NFS can interleave or be
lost): each appends to its own shard ``OUTPUT_DIR/manifest.parts/<host>-<pid>.jsonl``, one line per write, flushed
and fsynced before the work goes on. Rank 0 consolidates — ``manifest.jsonl`` then the shards, the latest record
of each input kept, sorted by input, written under a temporary name and renamed — when a run starts (before any
process writes) and when it ends. Within one run each input is handled by one process, so the order between
shards never matters.

An input is *complete* when its latest record is ``done`` with the same settings and the same input identity, and
every output it lists exists under its final name (outputs take that name only once fully written).
"""
import dataclasses
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from model.atomic import atomic_output

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
SHARDS_NAME = "manifest.parts"
STARTED, DONE, FAILED = "started", "done", "failed"


@dataclass(frozen=True)
class Record:
    """One line of the manifest."""

    input: str  # absolute path
    outputs: Dict[str, str]  # kind → path relative to the output folder
    status: str  # STARTED | DONE | FAILED
    frames: Optional[int] = None
    seconds: Optional[float] = None
    worker: Dict[str, Any] = field(default_factory=dict)  # rank, host, pid, device
    error: Optional[str] = None
    queue_index: Optional[int] = None  # position in the hand-out order (0 = handed out first)
    started_at: Optional[float] = None  # Unix time
    finished_at: Optional[float] = None
    input_identity: Optional[List[int]] = None  # [bytes, mtime ns]
    settings: Dict[str, Any] = field(default_factory=dict)

    def to_line(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False) + "\n"

    @classmethod
    def from_line(cls, line: str) -> "Record":
        return cls(**json.loads(line))

    def finished(self, status: str, **changes: Any) -> "Record":
        """This ``started`` record turned into its final one."""
        return dataclasses.replace(self, status=status, **changes)


def read_records(path: Path) -> Iterator[Record]:
    """The records of one manifest file in order; a damaged line (a machine that lost power mid-write) is skipped
    with a warning: its input then counts as not done and is converted again."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield Record.from_line(line)
            except (ValueError, TypeError) as error:
                logger.warning("%s line %d is damaged (%s); skipped.", path, number, error)


class Manifest:
    """The manifest of one output folder: this process's shard for appending, and rank 0's consolidation."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir
        self.path = output_dir / MANIFEST_NAME
        self.shards = output_dir / SHARDS_NAME
        self.shard = self.shards / f"{socket.gethostname()}-{os.getpid()}.jsonl"

    def append(self, record: Record) -> None:
        """Add ``record`` to this process's shard, on disk before returning (so a crash loses nothing recorded)."""
        self.shards.mkdir(parents=True, exist_ok=True)
        with open(self.shard, "a", encoding="utf-8") as shard:
            shard.write(record.to_line())
            shard.flush()
            os.fsync(shard.fileno())

    def _shard_paths(self) -> List[Path]:
        return sorted(self.shards.glob("*.jsonl")) if self.shards.is_dir() else []

    def consolidate(self) -> Tuple[Dict[str, Record], Dict[str, Record]]:
        """Merge the shards into ``manifest.jsonl`` (latest record per input) and remove them; returns (every
        input's latest record, the latest records that came from the shards). Only rank 0, while no process of the
        job writes."""
        latest: Dict[str, Record] = {}
        if self.path.exists():
            latest.update((record.input, record) for record in read_records(self.path))
        shard_paths = self._shard_paths()
        from_shards: Dict[str, Record] = {}
        for shard in shard_paths:
            from_shards.update((record.input, record) for record in read_records(shard))
        latest.update(from_shards)
        if shard_paths or not self.path.exists():
            with atomic_output(self.path) as temporary:
                lines = [latest[source].to_line() for source in sorted(latest)]
                temporary.write_text("".join(lines), encoding="utf-8")
            for shard in shard_paths:
                shard.unlink()
            if self.shards.is_dir() and not any(self.shards.iterdir()):
                self.shards.rmdir()
        return latest, from_shards

    def is_complete(self, record: Optional[Record], *, settings: Dict[str, Any], identity: Optional[List[int]]) -> bool:
        """``record`` says done, with these settings, for the input as it is now, and its outputs all exist."""
        return (
            record is not None
            and record.status == DONE
            and record.settings == settings
            and identity is not None
            and record.input_identity == identity
            and all((self.output_dir / output).exists() for output in record.outputs.values())
        )
