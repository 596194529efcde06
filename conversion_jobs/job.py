"""A conversion job of many inputs, run by one process alone or by every process torchrun starts, on any number of
machines sharing one filesystem:

    torchrun --nnodes N --nproc_per_node G inference.py --input-list FILE --output-dir DIR [output flags]

Rank 0 plans: it gathers the inputs, consolidates the manifest and keeps the inputs that are not complete. Every
process probes a share of those, and all sort them the same way, largest first. Then each process takes the next
input from an atomic counter in the store until none is left: a process that finishes early takes more, so long
and short videos balance, and each input goes to exactly one process. An input is recorded ``started`` when taken
and ``done`` or ``failed`` when finished; a failure is recorded with its message and the process goes on. When
every process has finished, rank 0 consolidates the manifest, prints the summary and publishes the verdict, which
every process returns as its exit code (0: every input is complete; 1: some failed; 130: Ctrl-C).
"""
import argparse
import dataclasses
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch.distributed as dist

from conversion_jobs.inputs import (
    OUTPUT_KINDS,
    InputSize,
    gather_inputs,
    input_identity,
    largest_first,
    output_names,
    probe_size,
    relative_outputs,
)
from conversion_jobs.manifest import DONE, FAILED, Manifest, Record, STARTED
from conversion_jobs.placement import (
    Worker,
    counter,
    fetch,
    gather,
    open_store,
    publish,
    use_device,
    wait_until,
    worker_from_environment,
)
from conversion_jobs.progress import FrameCounter, JobProgress, JobSummary, count_finished
from inference import SETUP_ERRORS, Converter, conversion_options

logger = logging.getLogger(__name__)

# convert_video options that shape the outputs; the others (device, threads, seq_chunk, decoder threads) do not
OUTPUT_OPTIONS = (
    "input_resize", "downsample_ratio", "output_type", "output_composition", "output_alpha", "output_foreground",
    "output_background", "output_video_mbps", "output_video_preset", "keep_audio",
)
# keys of the job's store
PLAN, SIZES, NEXT_INPUT, FINISHED = "plan", "sizes", "next_input", "finished"
VERDICT, VERDICT_READ = "verdict", "verdict_read"
INTERRUPTED = 130  # exit code after Ctrl-C, as shells report SIGINT
VERDICT_READ_TIMEOUT = 60.0  # seconds rank 0 waits for the others to read the verdict before it exits


def job_settings(args: argparse.Namespace) -> Dict[str, Any]:
    """What a complete input's record must match: the model, its weights and the output options, as a manifest line
    reads back (tuples become lists)."""
    options = conversion_options(args)
    checkpoint = None
    if args.checkpoint is not None:
        path = os.path.abspath(args.checkpoint)
        checkpoint = [path, input_identity(path)]
    settings = {
        "variant": args.variant, "refiner": args.refiner, "checkpoint": checkpoint, "dtype": args.dtype,
        "fast": not args.plain_model, "compile": args.compile_network,
    }
    settings.update((key, options[key]) for key in OUTPUT_OPTIONS)
    return json.loads(json.dumps(settings))


def plan_job(args: argparse.Namespace, manifest: Manifest) -> Dict[str, Any]:
    """Rank 0's plan: ``{'inputs': N, 'output_dir': absolute path, 'settings': {...}, 'pending': [{'input',
    'identity', 'replace'}, ...]}``, the inputs not complete. ``replace``: the input has a record with these
    settings, so its existing outputs are this job's own (an interrupted or failed attempt, or an older version of
    the input) and are replaced without ``--overwrite``."""
    settings = job_settings(args)
    sources = gather_inputs(args.input_source, args.input_list)
    try:
        manifest.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        message = f"Output folder {manifest.output_dir} cannot be made ({error}); choose a writable folder."
        raise ValueError(message) from error
    latest, _ = manifest.consolidate()
    pending = []
    for source in sources:
        identity = input_identity(source)
        identity = list(identity) if identity is not None else None
        record = latest.get(source)
        if not manifest.is_complete(record, settings=settings, identity=identity):
            replace = record is not None and record.settings == settings
            pending.append({"input": source, "identity": identity, "replace": replace})
    return {"inputs": len(sources), "output_dir": str(manifest.output_dir), "settings": settings, "pending": pending}


def _share_plan(args: argparse.Namespace, worker: Worker, store: dist.Store, manifest: Manifest) -> Dict[str, Any]:
    """Rank 0 plans and publishes; the others read it (so all use rank 0's paths and settings, whatever folder they
    were started in). A planning error reaches every process."""
    if worker.is_main:
        try:
            plan = plan_job(args, manifest)
        except Exception as error:  # every process must learn why the job cannot start, then all stop
            publish(store, PLAN, {"error": str(error)})
            raise
        publish(store, PLAN, plan)
        return plan
    plan = fetch(store, PLAN)
    if "error" in plan:
        raise ValueError(plan["error"])
    return plan


def _probe_all(
    pending: List[Dict[str, Any]], worker: Worker, store: dist.Store, resize: Optional[List[int]]
) -> List[InputSize]:
    """The size of every pending input, on every process; each process probes every WORLD_SIZE-th."""
    mine = [dataclasses.asdict(probe_size(item["input"], resize)) for item in pending[worker.rank :: worker.world_size]]
    sizes: List[InputSize] = [InputSize(None, None, 0)] * len(pending)
    for rank, probed in enumerate(gather(store, SIZES, mine, worker)):
        for position, size in enumerate(probed):
            sizes[rank + position * worker.world_size] = InputSize(**size)
    return sizes


class _Work:
    """This process's part of the job: take the next input, convert it, record it, until none is left."""

    def __init__(
        self,
        args: argparse.Namespace,
        worker: Worker,
        store: dist.Store,
        manifest: Manifest,
        settings: Dict[str, Any],
        names: Dict[str, str],
    ) -> None:
        self.worker, self.store, self.manifest, self.settings, self.names = worker, store, manifest, settings, names
        self.overwrite = args.overwrite
        self.frames = FrameCounter(store)  # frames reach rank 0's bar as they are written
        self.options = dict(conversion_options(args), progress=self.frames, threads=worker.threads)
        self.converter = Converter(
            args.variant, args.checkpoint, worker.device, refiner=args.refiner, dtype=args.dtype,
            fast=not args.plain_model, compile_network=args.compile_network,
            progress=worker.is_main and not args.disable_progress,
        )

    def _claim(self) -> Tuple[int, float]:
        """The next position in the hand-out order (atomic: each goes to exactly one process) and when it was taken."""
        return self.store.add(NEXT_INPUT, 1) - 1, time.time()

    def run(self, queue: List[Dict[str, Any]]) -> None:
        index, claimed_at = self._claim()
        while index < len(queue):
            item = queue[index]
            started = Record(
                input=item["input"], outputs=relative_outputs(item["input"], self.names), status=STARTED,
                worker=self.worker.describe(), queue_index=index, started_at=claimed_at,
                input_identity=item["identity"], settings=self.settings,
            )
            self.manifest.append(started)
            finished = self.convert(started, replace=item["replace"])
            index, claimed_at = self._claim()  # first, so that no input waits on this one's bookkeeping
            self.manifest.append(finished)
            self.frames.flush()
            count_finished(self.store, failed=finished.status == FAILED)

    def convert(self, started: Record, *, replace: bool) -> Record:
        """Convert one input; returns its final record (``done``, or ``failed`` with the message)."""
        paths = {f"output_{kind}": str(self.manifest.output_dir / output) for kind, output in started.outputs.items()}
        options = dict(self.options, overwrite=self.overwrite or replace, **paths)
        try:
            result = self.converter.convert(started.input, **options)
        except Exception as error:  # one bad input is recorded and the others go on; Ctrl-C still stops the job
            expected = isinstance(error, SETUP_ERRORS)  # a problem of the input or the machine, not a bug: no traceback
            message = str(error) if expected else f"{type(error).__name__}: {error}"
            logger.warning("%s failed (recorded; the job goes on): %s", started.input, message, exc_info=not expected)
            now = time.time()
            return started.finished(FAILED, error=message, seconds=round(now - started.started_at, 3), finished_at=now)
        return started.finished(DONE, frames=result.frames, seconds=round(result.seconds, 3), finished_at=time.time())


def _report(worker: Worker, store: dist.Store, manifest: Manifest, plan: Dict[str, Any], seconds: float) -> int:
    """Rank 0, once every process has finished: consolidate the manifest, log the failures, print the summary and
    publish the exit code."""
    _, this_run = manifest.consolidate()
    records = [this_run.get(item["input"]) for item in plan["pending"]]
    done = [record for record in records if record is not None and record.status == DONE]
    for item, record in zip(plan["pending"], records):
        if record is None or record.status != DONE:
            reason = "no record" if record is None else record.error or f"left {record.status}"
            logger.error("failed: %s: %s", item["input"], reason)
    summary = JobSummary(
        inputs=plan["inputs"],
        skipped=plan["inputs"] - len(plan["pending"]),
        converted=len(done),
        failed=len(records) - len(done),
        frames=sum(record.frames or 0 for record in done),
        seconds=seconds,
        workers=worker.world_size,
    )
    code = 0 if summary.succeeded else 1
    publish(store, VERDICT, code)
    print(f"{summary.line()}; manifest: {manifest.path}", flush=True)
    return code


def run_job(args: argparse.Namespace) -> int:
    """Convert every input of ``--input-source``/``--input-list`` into ``--output-dir`` as this process's part of
    the job (the whole job without torchrun); returns the exit code: 0 when every input is complete, 1 when some
    failed, 130 after Ctrl-C."""
    if args.output_dir is None:
        raise ValueError("--input-list needs --output-dir (outputs go to OUTPUT_DIR/<input name>/<output name>).")
    names = output_names({kind: getattr(args, f"output_{kind}") for kind in OUTPUT_KINDS})  # fail before any work
    worker = worker_from_environment(args.device, args.threads)
    use_device(worker)
    store = open_store(worker)
    plan = _share_plan(args, worker, store, Manifest(Path(args.output_dir).absolute()))
    manifest = Manifest(Path(plan["output_dir"]))
    pending = plan["pending"]
    if worker.is_main:
        logger.info(
            "%d inputs: %d already complete, %d to convert by %d worker(s)",
            plan["inputs"], plan["inputs"] - len(pending), len(pending), worker.world_size,
        )
    work = _Work(args, worker, store, manifest, plan["settings"], names) if pending else None
    sizes = _probe_all(pending, worker, store, args.input_resize)
    queue = [pending[i] for i in largest_first(sizes)]
    started = time.perf_counter()
    progress = None
    if worker.is_main and pending:
        frames = sum(size.frames or 0 for size in sizes)
        progress = JobProgress(store, inputs=len(pending), frames=frames, enabled=not args.disable_progress)
    try:
        if work is not None:
            work.run(queue)
        store.add(FINISHED, 1)
        if worker.is_main:
            wait_until(lambda: counter(store, FINISHED) >= worker.world_size)
    except KeyboardInterrupt:
        logger.warning("Interrupted; the inputs finished are recorded: run the same command again to convert the rest.")
        return INTERRUPTED
    finally:
        if progress is not None:
            progress.close()
    if worker.is_main:
        code = _report(worker, store, manifest, plan, time.perf_counter() - started)
    else:
        code = fetch(store, VERDICT)
        store.add(VERDICT_READ, 1)
    if worker.world_size > 1:
        _exit_with_on_termination(code)
    if worker.is_main:  # a launcher other than torchrun may host the store here: let the others read the verdict
        wait_until(lambda: counter(store, VERDICT_READ) >= worker.world_size - 1, timeout=VERDICT_READ_TIMEOUT)
    return code


def _exit_with_on_termination(code: int) -> None:
    """Once the job's exit code is known, the SIGTERM torchrun sends to the other processes when one exits non-zero
    ends this one with that code instead of -15 (its work is done and recorded)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(code))
