"""Conversion jobs (``inference.py --output-dir``/``--input-list``, alone or under torchrun): the same outputs as a
single process, work shared so that no worker idles while another has inputs waiting, resumable after a worker is
killed or torchrun restarts the group, a bad input recorded while the others finish.

The torchrun tests start real ``torch.distributed.run --standalone --nproc_per_node 2`` jobs on the CPU (the
rendezvous store on a free 127.0.0.1 port) with six small clips cut from ../shared/data/video/vtest.avi and a
deterministic-weights model; each job takes seconds, most of it two Python processes importing torch.
"""
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import av
import numpy as np
import pytest
import torch
from PIL import Image

from conversion_jobs.inputs import (
    InputSize,
    gather_inputs,
    largest_first,
    output_names,
    probe_size,
    read_input_list,
)
from conversion_jobs.manifest import DONE, FAILED, MANIFEST_NAME, SHARDS_NAME, STARTED, Manifest, Record, read_records
from conversion_jobs import placement
from conversion_jobs.progress import FRAMES_DONE, FrameCounter, JobProgress, JobSummary, count_finished
from inference import main
from model import MattingNetwork
from model.weights.deterministic import deterministic_state_dict

ROOT = Path(__file__).resolve().parents[1]
CLIPS = {  # name → (frames, width, height); the list file names them in another order
    "walk": (20, 128, 96),
    "cross": (16, 112, 84),
    "wait": (12, 96, 72),
    "turn": (8, 80, 60),
    "stop": (5, 64, 48),
    "blink": (3, 64, 48),
}
LIST_ORDER = ["turn", "walk", "blink", "cross", "stop", "wait"]
OUTPUTS = {"alpha": "alpha.mov", "composition": "com.mp4"}
JOB_TIMEOUT = 180  # seconds; a job here takes about ten


class Footage:
    """The job's inputs: weights, six clips and their list, and a clip damaged in the middle."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.weights = folder / "weights.pth"
        self.clips = {name: folder / f"{name}.mp4" for name in CLIPS}
        self.list = folder / "clips.txt"
        self.damaged = folder / "damaged.mp4"

    def options(self, output_dir: Path) -> List[str]:
        """The job's command line after the script: the same for one process and for torchrun."""
        return [
            "--checkpoint", str(self.weights), "--device", "cpu", "--threads", "1", "--disable-progress",
            "--input-list", str(self.list), "--output-dir", str(output_dir),
            "--output-alpha", OUTPUTS["alpha"], "--output-composition", OUTPUTS["composition"],
        ]


def write_clip(path: Path, images: Sequence[Image.Image], width: int, height: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, image in enumerate(images):
            frame = av.VideoFrame.from_image(image.resize((width, height), Image.BILINEAR))
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def footage(data_dir, tmp_path_factory) -> Footage:
    footage = Footage(tmp_path_factory.mktemp("footage"))
    torch.save(deterministic_state_dict(MattingNetwork("mobilenetv3")), footage.weights)
    with av.open(str(data_dir / "video" / "vtest.avi")) as container:
        images = [frame.to_image() for _, frame in zip(range(20), container.decode(video=0))]
    for offset, (name, (frames, width, height)) in enumerate(CLIPS.items()):
        write_clip(footage.clips[name], images[offset : offset + frames], width, height)
    footage.list.write_text("# six clips\n\n" + "".join(f"{footage.clips[name]}\n" for name in LIST_ORDER))
    write_clip(footage.damaged, images[:20], 64, 48)
    data = bytearray(footage.damaged.read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = bytes(third)  # header and index intact, frames in the middle zeroed
    footage.damaged.write_bytes(bytes(data))
    return footage


@pytest.fixture(scope="module")
def reference(footage, tmp_path_factory) -> Path:
    """The single-process run of the job's command."""
    output_dir = tmp_path_factory.mktemp("one-process")
    main(footage.options(output_dir))
    return output_dir


def torchrun(
    arguments: Sequence[str], *, script: Path = ROOT / "inference.py", extra: Sequence[str] = ()
) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 [extra] script arguments`` with this interpreter."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*launcher, *extra, str(script), *arguments]
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=JOB_TIMEOUT)


def all_records(output_dir: Path) -> List[Record]:
    """Every record on disk: the consolidated manifest, then the shards a crashed run left."""
    files = [output_dir / MANIFEST_NAME] + sorted((output_dir / SHARDS_NAME).glob("*.jsonl"))
    return [record for path in files if path.exists() for record in read_records(path)]


def latest(records: List[Record]) -> Dict[str, Record]:
    return {record.input: record for record in records}


def decode(path: Path) -> List[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def assert_outputs_equal(output_dir: Path, reference: Path, names: Sequence[str] = tuple(CLIPS)) -> None:
    for name in names:
        for output in OUTPUTS.values():
            ours, theirs = decode(output_dir / name / output), decode(reference / name / output)
            assert len(ours) == len(theirs) == CLIPS[name][0], (name, output)
            same = all(np.array_equal(a, b) for a, b in zip(ours, theirs))
            assert same, f"{name}/{output} differs from the single-process run"


def assert_no_worker_idles(records: List[Record]) -> None:
    """No input starts on one worker after another worker finished its last one: that worker would have idled
    while work waited. A hand-out is one counter add (well under a millisecond), so the comparison allows half the
    shortest input's time, far above it and far below the time a whole input would start late."""
    slack = min(record.finished_at - record.started_at for record in records) / 2
    for rank in {record.worker["rank"] for record in records}:
        idle_from = max(record.finished_at for record in records if record.worker["rank"] == rank)
        late = [r.input for r in records if r.worker["rank"] != rank and r.started_at > idle_from + slack]
        assert not late, f"worker {rank} idled from {idle_from} while {late} had not started"


# ------------------------------------------------------------------------------------------- torchrun jobs
@pytest.mark.slow
def test_two_workers_equal_one_share_the_work_and_record_a_damaged_input(footage, reference, tmp_path):
    output_dir = tmp_path / "two-workers"
    job = torchrun(footage.options(output_dir) + ["--input-source", str(footage.damaged)])
    assert job.returncode != 0, "an input failed, so the job's exit code says so"
    assert "7 inputs: 6 converted, 0 already complete, 1 failed" in job.stdout, job.stdout + job.stderr

    records = all_records(output_dir)
    assert len(records) == 7 and not (output_dir / SHARDS_NAME).exists(), "one consolidated line per input"
    assert sorted(record.queue_index for record in records) == list(range(7)), "each input handed out once"
    failed = [record for record in records if record.status == FAILED]
    assert [record.input for record in failed] == [str(footage.damaged)]
    assert "damaged.mp4" in failed[0].error and failed[0].frames is None
    done = {Path(record.input).stem: record for record in records if record.status == DONE}
    assert {name: record.frames for name, record in done.items()} == {name: spec[0] for name, spec in CLIPS.items()}
    assert_outputs_equal(output_dir, reference)

    in_hand_out_order = [name for name, _ in sorted(done.items(), key=lambda item: item[1].queue_index)]
    assert in_hand_out_order == sorted(CLIPS, key=lambda name: -CLIPS[name][0] * CLIPS[name][1] * CLIPS[name][2])
    assert {record.worker["rank"] for record in records} == {0, 1}
    assert_no_worker_idles(records)


KILLER = """
import os
import signal

import inference

convert = inference.Converter.convert
calls = 0


def convert_or_die(self, input_source, **options):
    '''Rank 1 of the first attempt is killed (SIGKILL) when it takes its second input.'''
    global calls
    calls += 1
    if os.environ["RANK"] == "1" and os.environ["TORCHELASTIC_RESTART_COUNT"] == "0" and calls == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return convert(self, input_source, **options)


inference.Converter.convert = convert_or_die
inference.main()
"""


@pytest.fixture
def killer(tmp_path) -> Path:
    script = tmp_path / "killed_on_second_input.py"
    script.write_text(KILLER)
    return script


@pytest.mark.slow
def test_killed_job_rerun_converts_only_what_was_missing(footage, reference, killer, tmp_path):
    output_dir = tmp_path / "killed"
    first = torchrun(footage.options(output_dir), script=killer)
    assert first.returncode != 0 and "SIGKILL" in first.stderr, first.stderr
    before = latest(all_records(output_dir))
    completed = {source for source, record in before.items() if record.status == DONE}
    interrupted = {source for source, record in before.items() if record.status == STARTED}
    assert 0 < len(completed) < 6 and interrupted, "the job was killed mid-way with inputs in flight"
    def output_times(record: Record) -> List[int]:
        return [(output_dir / path).stat().st_mtime_ns for path in record.outputs.values()]

    untouched = {source: output_times(before[source]) for source in completed}

    second = torchrun(footage.options(output_dir))
    assert second.returncode == 0, second.stderr
    assert f"6 inputs: {6 - len(completed)} converted, {len(completed)} already complete, 0 failed" in second.stdout

    after = all_records(output_dir)
    assert len(after) == 6 and all(record.status == DONE for record in after), "the manifest is complete"
    assert not (output_dir / SHARDS_NAME).exists()
    for record in after:
        if record.input in completed:
            assert record == before[record.input], "a completed input is not converted again"
            assert output_times(record) == untouched[record.input]
        else:
            assert record.worker["pid"] not in {r.worker["pid"] for r in before.values()}, "converted by the re-run"
    assert_outputs_equal(output_dir, reference)


@pytest.mark.slow
def test_elastic_restart_resumes_the_job(footage, reference, killer, tmp_path):
    output_dir = tmp_path / "restarted"
    job = torchrun(footage.options(output_dir), script=killer, extra=["--max-restarts", "1"])
    assert job.returncode == 0, job.stderr
    records = all_records(output_dir)
    assert len(records) == 6 and all(record.status == DONE for record in records)
    attempts = [record.worker["attempt"] for record in records]
    assert 0 in attempts and 1 in attempts, "inputs done before the restart were kept, the rest done after it"
    assert f"{attempts.count(0)} already complete" in job.stdout
    assert_outputs_equal(output_dir, reference)


# ------------------------------------------------------------------------------------------- one process
def run(arguments: List[str]) -> int:
    """``inference.main``'s exit code."""
    try:
        main(arguments)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1
    return 0


def test_rerun_skips_complete_inputs_and_redoes_the_rest(footage, tmp_path, capsys):
    output_dir = tmp_path / "job"
    clips = [shutil.copy(footage.clips[name], tmp_path) for name in ("stop", "blink")]
    options = [
        "--checkpoint", str(footage.weights), "--device", "cpu", "--threads", "1", "--disable-progress",
        "--input-source", *clips, "--output-dir", str(output_dir), "--output-alpha", "alpha.mp4",
    ]
    assert run(options) == 0
    assert "2 inputs: 2 converted, 0 already complete, 0 failed; 8 frames" in capsys.readouterr().out

    assert run(options) == 0
    assert "2 inputs: 0 converted, 2 already complete" in capsys.readouterr().out

    (output_dir / "blink" / "alpha.mp4").unlink()  # an output lost: its input is converted again
    os.utime(clips[0])  # an input changed: converted again, replacing the job's own outputs
    assert run(options) == 0
    assert "2 inputs: 2 converted, 0 already complete" in capsys.readouterr().out

    # other settings: the existing outputs are not this job's any more; replaced only with --overwrite
    white = options + ["--output-background", "white"]
    assert run(white) == 1
    assert "2 inputs: 0 converted, 0 already complete, 2 failed" in capsys.readouterr().out
    assert all("already exists" in record.error for record in all_records(output_dir))
    assert run(white + ["--overwrite"]) == 0
    assert "2 inputs: 2 converted" in capsys.readouterr().out
    assert len(all_records(output_dir)) == 2


def test_job_errors_stop_before_any_work(footage, tmp_path):
    common = ["--checkpoint", str(footage.weights), "--device", "cpu", "--output-alpha", "alpha.mp4"]
    with pytest.raises(SystemExit, match="Input list .*missing.txt does not exist"):
        main(common + ["--input-list", str(tmp_path / "missing.txt"), "--output-dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="--input-list needs --output-dir"):
        main(common + ["--input-list", str(footage.list)])
    twin = tmp_path / "walk.mkv"
    twin.write_bytes(b"")
    with pytest.raises(SystemExit, match="would both write walk/"):
        main(common + ["--input-source", str(footage.clips["walk"]), str(twin), "--output-dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="must be a plain name"):
        main(["--input-list", str(footage.list), "--output-dir", str(tmp_path / "out"), "--output-alpha", "a/a.mp4"])
    with pytest.raises(SystemExit, match="give --input-source"):
        main(["--output-dir", str(tmp_path / "out"), "--output-alpha", "alpha.mp4"])
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- parts
def test_input_list_and_output_names(tmp_path):
    listing = tmp_path / "inputs.txt"
    listing.write_text("# a comment\n  a.mp4  \n\n/abs/b.mov\n   # indented comment\n")
    assert read_input_list(str(listing)) == ["a.mp4", "/abs/b.mov"]
    assert gather_inputs(["c.mp4"], str(listing)) == [os.path.abspath("c.mp4"), os.path.abspath("a.mp4"), "/abs/b.mov"]
    with pytest.raises(ValueError, match="No input given"):
        gather_inputs([], None)
    assert output_names({"alpha": "alpha.mov", "composition": None}) == {"alpha": "alpha.mov"}
    with pytest.raises(ValueError, match="No output asked for"):
        output_names({"alpha": None})


def test_largest_first_is_a_stable_sort_with_unprobed_inputs_last():
    rng = random.Random(0)
    for _ in range(200):
        count = rng.randrange(9)
        sizes = [InputSize(frames=1, work=rng.choice([None, 10, 20, 30]), bytes=rng.randrange(5)) for _ in range(count)]
        order = largest_first(sizes)
        assert sorted(order) == list(range(len(sizes)))
        keys = [(sizes[i].work is None, -(sizes[i].work or sizes[i].bytes)) for i in order]
        assert keys == sorted(keys)
        for a, b in zip(order, order[1:]):  # ties keep the given order: every process sorts alike
            assert keys[order.index(a)] != keys[order.index(b)] or a < b


def test_probe_size(footage, tmp_path):
    assert probe_size(str(footage.clips["walk"])) == InputSize(20, 20 * 128 * 96, footage.clips["walk"].stat().st_size)
    assert probe_size(str(footage.clips["walk"]), [32, 24]).work == 20 * 32 * 24
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(folder / f"{index}.png")
    probed = probe_size(str(folder))
    assert (probed.frames, probed.work) == (3, 3 * 10 * 6)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 100)
    assert probe_size(str(garbage)) == InputSize(None, None, 100)
    assert probe_size(str(tmp_path / "missing.mp4")) == InputSize(None, None, 0)


def test_workers_from_torchrun_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(placement, "available_cores", lambda: 16)
    worker = placement.worker_from_environment("cpu")
    assert (worker.rank, worker.local_rank, worker.world_size, worker.threads) == (3, 1, 4, 8)
    assert worker.device == torch.device("cpu")
    assert placement.worker_from_environment("cpu", threads=3).threads == 3
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ValueError, match="do not describe a job"):
        placement.worker_from_environment("cpu")
    monkeypatch.setenv("RANK", "three")
    with pytest.raises(ValueError, match="RANK='three' must be an integer"):
        placement.worker_from_environment("cpu")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert placement.worker_device("auto", local_rank=1, local_world_size=2) == torch.device("cuda", 1)
    assert placement.worker_device("cuda", local_rank=0, local_world_size=1) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="LOCAL_RANK 2 has no GPU of its own"):
        placement.worker_device("cuda", local_rank=2, local_world_size=3)
    with pytest.raises(ValueError, match="every process of this machine on one GPU"):
        placement.worker_device("cuda:1", local_rank=0, local_world_size=2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        placement.worker_device("cuda", local_rank=0, local_world_size=1)


def test_manifest_consolidates_shards_and_skips_a_damaged_line(tmp_path):
    manifest = Manifest(tmp_path)
    first = Record(input="/in/a.mp4", outputs={"alpha": "a/alpha.mov"}, status=STARTED, queue_index=0)
    manifest.append(first)
    manifest.append(first.finished(DONE, frames=4))
    other = manifest.shards / "elsewhere-1.jsonl"  # another process's shard, cut short by a crash
    other.write_text(Record(input="/in/b.mp4", outputs={}, status=STARTED).to_line() + '{"input": "/in/c.mp')
    everything, from_shards = manifest.consolidate()
    assert everything == from_shards
    assert everything["/in/a.mp4"].status == DONE and everything["/in/b.mp4"].status == STARTED
    assert "/in/c.mp4" not in everything and not manifest.shards.exists()
    assert [record.input for record in read_records(manifest.path)] == ["/in/a.mp4", "/in/b.mp4"]
    manifest.append(Record(input="/in/b.mp4", outputs={}, status=FAILED, error="broken"))
    everything, from_shards = manifest.consolidate()
    assert everything["/in/b.mp4"].error == "broken" and list(from_shards) == ["/in/b.mp4"]
    assert len(json.loads(manifest.path.read_text().splitlines()[0])) == len(Record.__dataclass_fields__)


def test_store_helpers_on_one_process():
    worker = placement.Worker(0, 0, 1, 1, "here", torch.device("cpu"), None)
    store = placement.open_store(worker)
    assert [store.add("next", 1) - 1 for _ in range(3)] == [0, 1, 2] and placement.counter(store, "next") == 3
    assert placement.gather(store, "sizes", [1, 2], worker) == [[1, 2]]
    assert placement.wait_until(lambda: False, timeout=0.05) is False


def test_ctrl_c_stops_the_job_and_the_rerun_finishes_it(footage, tmp_path, monkeypatch, capsys):
    import inference

    output_dir = tmp_path / "job"
    options = [
        "--checkpoint", str(footage.weights), "--device", "cpu", "--threads", "1", "--disable-progress",
        "--input-source", str(footage.clips["stop"]), str(footage.clips["blink"]), "--output-dir", str(output_dir),
        "--output-alpha", "alpha.mp4",
    ]
    convert, calls = inference.Converter.convert, []

    def interrupted_on_second(self, input_source, **kwargs):
        calls.append(input_source)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return convert(self, input_source, **kwargs)

    monkeypatch.setattr(inference.Converter, "convert", interrupted_on_second)
    assert run(options) == 130
    states = {Path(record.input).stem: record.status for record in latest(all_records(output_dir)).values()}
    assert states == {"stop": DONE, "blink": STARTED}, "the finished input is recorded, the interrupted one is not done"
    monkeypatch.setattr(inference.Converter, "convert", convert)
    assert run(options) == 0
    assert "2 inputs: 1 converted, 1 already complete, 0 failed" in capsys.readouterr().out


def test_rank_zero_progress_follows_every_worker(capsys):
    store = placement.open_store(placement.Worker(0, 0, 1, 1, "here", torch.device("cpu"), None))
    progress = JobProgress(store, inputs=3, frames=30, enabled=True, interval=0.01)
    converting = FrameCounter(store, interval=0)  # a worker in the middle of a long input: every write is sent
    converting(8)
    assert placement.wait_until(lambda: progress._bar.n == 8, timeout=5), "the bar moves before any input finishes"
    batching = FrameCounter(store, interval=3600)  # another worker, between two of its sends
    batching(12)
    assert placement.counter(store, FRAMES_DONE) == 8, "frames wait for the interval, not one store call each"
    batching.flush()  # as a worker does when it finishes an input
    count_finished(store, failed=False)
    count_finished(store, failed=True)
    assert placement.wait_until(lambda: progress._bar.n == 20, timeout=5)
    progress.close()
    assert "20/30" in capsys.readouterr().err and "inputs 2/3, 1 failed" in str(progress._bar)
    summary = JobSummary(inputs=4, skipped=1, converted=2, failed=1, frames=20, seconds=4.0, workers=2)
    assert not summary.succeeded
    assert summary.line() == (
        "4 inputs: 2 converted, 1 already complete, 1 failed; "
        "20 frames in 4.0 s (5.00 frames/s, 0.500 inputs/s) on 2 workers"
    )
