"""evaluation.compose: layout, compositing, seeding, synthetic motion, every source kind, and errors."""
import json

import cv2
import numpy as np
import pytest

from evaluation import compose as C
from evaluation.frames import list_frames, read_image, write_image

SIZE = (32, 24)


def make_image_mattes(root, count=2):
    """Small foreground photos with a soft elliptical alpha, named like the portraits (jpg + png)."""
    rng = np.random.default_rng(0)
    (root / "image").mkdir(parents=True)
    (root / "alpha").mkdir()
    yy, xx = np.mgrid[0:40, 0:30]
    alpha = np.clip(255 * (1.5 - ((xx - 15) / 10) ** 2 - ((yy - 25) / 15) ** 2), 0, 255).astype(np.uint8)
    for i in range(count):
        write_image(root / "image" / f"p{i}.png", rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
        write_image(root / "alpha" / f"p{i}.png", alpha)
    return root / "image", root / "alpha"


def make_frame_folders(root, clips=2, frames=6, grey=False):
    """Clip folders ``root/<clip>/<frame>.png`` whose frames differ (brightness grows with the frame index)."""
    for c in range(clips):
        (root / f"clip{c}").mkdir(parents=True)
        for f in range(frames):
            value = 20 * f + 5 * c
            shape = (30, 40) if grey else (30, 40, 3)
            write_image(root / f"clip{c}" / f"{f:04d}.png", np.full(shape, value, np.uint8))
    return root


def test_layout_compositing_and_motion(tmp_path):
    fgr_dir, pha_dir = make_image_mattes(tmp_path / "mattes")
    bgr = make_frame_folders(tmp_path / "bgr")
    out = C.compose_test_set(
        str(tmp_path / "set" / "d"), str(fgr_dir), str(pha_dir), [str(bgr)], num_samples=3, num_frames=4,
        size=SIZE, seed=1, progress=False,
    )
    assert sorted(p.name for p in out.iterdir()) == ["0000", "0001", "0002", "composition.json"]
    manifest = json.loads((out / "composition.json").read_text())
    assert [c["clip"] for c in manifest["clips"]] == ["0000", "0001", "0002"]
    assert {c["fgr"] for c in manifest["clips"]} == {str(fgr_dir / "p0.png"), str(fgr_dir / "p1.png")}  # both used
    for clip in ("0000", "0001", "0002"):
        for name in ("com", "fgr", "pha", "bgr"):
            frames = list_frames(out / clip / name)
            assert [p.name for p in frames] == ["0000.png", "0001.png", "0002.png", "0003.png"]
            assert read_image(frames[0]).shape == (SIZE[1], SIZE[0], 3)
        for i in range(4):
            fgr, bgr = read_image(out / clip / "fgr" / f"{i:04d}.png"), read_image(out / clip / "bgr" / f"{i:04d}.png")
            pha = read_image(out / clip / "pha" / f"{i:04d}.png", grey=True)
            com = read_image(out / clip / "com" / f"{i:04d}.png")
            a = pha[..., None] / 255
            assert np.abs(com - (fgr * a + bgr * (1 - a))).max() <= 0.5 + 1e-6
        first, last = (read_image(out / clip / "pha" / f"{i:04d}.png", grey=True) for i in (0, 3))
        assert first.max() > 0 and not np.array_equal(first, last)  # still images are moved
    # The background video window is consecutive frames: brightness steps by 20 per frame.
    bgrs = [int(read_image(out / "0000" / "bgr" / f"{i:04d}.png")[0, 0, 0]) for i in range(4)]
    assert np.diff(bgrs).tolist() == [20, 20, 20]


def test_same_seed_same_files_other_seed_differs(tmp_path):
    fgr_dir, pha_dir = make_image_mattes(tmp_path / "mattes")
    (tmp_path / "bgr").mkdir()
    for i in range(3):
        write_image(tmp_path / "bgr" / f"b{i}.jpg", np.random.default_rng(i).integers(0, 256, (50, 70, 3), dtype=np.uint8))

    def run(name, seed):
        out = C.compose_test_set(
            str(tmp_path / name), str(fgr_dir), str(pha_dir), [str(tmp_path / "bgr")], background_type="image",
            num_samples=2, num_frames=3, size=SIZE, seed=seed, progress=False,
        )
        return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.png"))}

    assert run("a", 5) == run("b", 5)
    assert run("a", 5) != run("c", 6)


def test_videomatte_clips_over_a_video_file(tmp_path):
    fgr_root = make_frame_folders(tmp_path / "vm" / "fgr", clips=1, frames=8)
    pha_root = make_frame_folders(tmp_path / "vm" / "pha", clips=1, frames=8, grey=True)
    video = tmp_path / "bgr.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 30))
    for f in range(10):
        writer.write(np.full((30, 40, 3), 20 * f, np.uint8))
    writer.release()
    out = C.compose_test_set(
        str(tmp_path / "set"), str(fgr_root), str(pha_root), [str(video)], foreground_type="video",
        num_samples=1, num_frames=5, size=SIZE, seed=0, progress=False,
    )
    clip = json.loads((out / "composition.json").read_text())["clips"][0]
    start = clip["fgr_start"]
    # A foreground clip is not moved: frame i is source frame start + i (value 20·(start + i), fitted bottom-centre).
    phas = [read_image(out / "0000" / "pha" / f"{i:04d}.png", grey=True) for i in range(5)]
    assert [int(p[-1, SIZE[0] // 2]) for p in phas] == [20 * (start + i) for i in range(5)]
    assert len(list_frames(out / "0000" / "com")) == 5


def test_bad_inputs_are_clear_errors(tmp_path):
    fgr_dir, pha_dir = make_image_mattes(tmp_path / "mattes")
    bgr = make_frame_folders(tmp_path / "bgr", clips=1, frames=3)
    with pytest.raises(ValueError, match="fewer than --num-frames 5"):
        C.compose_test_set(str(tmp_path / "o"), str(fgr_dir), str(pha_dir), [str(bgr)], num_frames=5, size=SIZE, progress=False)
    (pha_dir / "p1.png").unlink()
    with pytest.raises(FileNotFoundError, match="without an alpha.*p1.png"):
        C.compose_test_set(str(tmp_path / "o"), str(fgr_dir), str(pha_dir), [str(bgr)], size=SIZE, progress=False)
    with pytest.raises(FileNotFoundError, match="--fgr-dir .* is not a folder"):
        C.compose_test_set(str(tmp_path / "o"), str(tmp_path / "nope"), str(pha_dir), [str(bgr)], progress=False)
    with pytest.raises(ValueError, match="'image' or 'video'"):
        C.compose_test_set(str(tmp_path / "o"), str(fgr_dir), str(pha_dir), [str(bgr)], background_type="gif")


def test_real_portraits_over_vtest(data_dir, tmp_path):
    out = C.compose_test_set(
        str(tmp_path / "set"), str(data_dir / "portraits" / "image"), str(data_dir / "portraits" / "alpha"),
        [str(data_dir / "video" / "vtest.avi")], num_samples=1, num_frames=2, size=(128, 72), seed=0, progress=False,
    )
    pha = read_image(out / "0000" / "pha" / "0000.png", grey=True)
    assert pha.shape == (72, 128) and pha.max() == 255 and pha[0].mean() < pha[-1].mean()  # a person standing at the bottom


def test_command_line(tmp_path, capsys):
    fgr_dir, pha_dir = make_image_mattes(tmp_path / "mattes", count=1)
    bgr = make_frame_folders(tmp_path / "bgr", clips=1, frames=3)
    C.main([
        "--fgr-dir", str(fgr_dir), "--pha-dir", str(pha_dir), "--background", str(bgr / "clip0"),
        "--output-dir", str(tmp_path / "set" / "d"), "--num-samples", "2", "--num-frames", "3",
        "--size", "40", "24", "--seed", "3", "--disable-progress",
    ])
    assert "Composed 2 clips × 3 frames" in capsys.readouterr().out
    settings = json.loads((tmp_path / "set" / "d" / "composition.json").read_text())
    assert settings["size"] == [40, 24] and settings["seed"] == 3
    assert read_image(tmp_path / "set" / "d" / "0001" / "com" / "0002.png").shape == (24, 40, 3)
