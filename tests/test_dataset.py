"""dataset/: the synthetic writer, every dataset's shapes/dtypes/ranges, seeded augmentation, alignment, samplers, errors."""
import gc
import os
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dataset.augmentation import (
    MotionAugmentation,
    MotionProbabilities,
    AffineRange,
    image_segmentation_augmentation,
    images_to_tensor,
    matting_train_augmentation,
    motion_affine,
    video_segmentation_augmentation,
)
from dataset.coco import CocoPanopticDataset
from dataset.concat import KeyedConcatDataset
from dataset.imagematte import ImageMatteDataset
from dataset.sampler import SampleStream, TrainFrameSampler, ValidFrameSampler
from dataset.spd import SuperviselyPersonDataset
from dataset.synthetic import SyntheticWriter, compress_counts, encode_rle
from dataset.videomatte import VideoMatteDataset
from dataset.youtubevis import YouTubeVISDataset, decode_counts_string, decode_rle
from train_config import resolve_data_paths

SIZE, T = 64, 3


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    SyntheticWriter(str(root), width=96, height=72, frames=6, seed=0).write_all()
    return resolve_data_paths(str(root))


def unchanged(images, masks, rng):
    """A transform that only converts, to look at the raw masks."""
    return images_to_tensor(images), images_to_tensor(masks)


def matting_sets(paths):
    for cls, key in ((VideoMatteDataset, "videomatte"), (ImageMatteDataset, "imagematte")):
        yield cls(
            paths[key]["train"], paths["background_images"]["train"], paths["background_videos"]["train"], SIZE, T,
            TrainFrameSampler(), matting_train_augmentation(key, SIZE),
        )


def test_matting_datasets_return_documented_tensors(paths):
    for dataset in matting_sets(paths):
        assert len(dataset) > 0
        for key in [(0, 1), (len(dataset) - 1, 2)]:
            fgr, pha, bgr = dataset[key]
            assert fgr.shape == (T, 3, SIZE, SIZE) and pha.shape == (T, 1, SIZE, SIZE) and bgr.shape == (T, 3, SIZE, SIZE)
            for x in (fgr, pha, bgr):
                assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
            assert pha.max() > 0.9 and pha.min() < 0.1  # a subject and some background in view


def test_segmentation_datasets_return_documented_tensors(paths):
    coco = CocoPanopticDataset(
        paths["coco_panoptic"]["imgdir"], paths["coco_panoptic"]["anndir"], paths["coco_panoptic"]["annfile"],
        image_segmentation_augmentation(SIZE), shortest_side=SIZE,
    )
    spd = SuperviselyPersonDataset(paths["spd"]["imgdir"], paths["spd"]["segdir"], image_segmentation_augmentation(SIZE))
    stills = KeyedConcatDataset([coco, spd])
    assert len(stills) == 6
    for index in range(len(stills)):
        image, mask = stills[(index, index)]
        assert image.shape == (3, SIZE, SIZE) and mask.shape == (1, SIZE, SIZE)
        assert image.dtype == mask.dtype == torch.float32 and 0 <= mask.min() and mask.max() <= 1 and mask.max() > 0.5
    clips = YouTubeVISDataset(
        paths["youtubevis"]["videodir"], paths["youtubevis"]["annfile"], SIZE, T, TrainFrameSampler((1,)),
        video_segmentation_augmentation(SIZE),
    )
    assert len(clips) == 4  # two person videos of 6 frames, sequences start every 3 frames; the dog is ignored
    images, masks = clips[(3, 7)]
    assert images.shape == (T, 3, SIZE, SIZE) and masks.shape == (T, 1, SIZE, SIZE)


def test_coco_foreground_is_person_and_backpack_not_car(paths):
    coco = CocoPanopticDataset(
        paths["coco_panoptic"]["imgdir"], paths["coco_panoptic"]["anndir"], paths["coco_panoptic"]["annfile"], unchanged
    )
    _, mask = coco[0]  # [3, H, W] image, [1, H, W] mask of image 0 (which has the backpack)
    height, width = mask.shape[-2:]
    assert mask[0, -2, -2] == 1.0  # backpack corner
    assert mask[0, 1, 1] == 0.0  # car corner
    assert 0.05 < mask.mean() < 0.9  # the person


def test_rle_round_trips_both_encodings():
    mask = np.zeros((7, 5), dtype=bool)
    mask[0, 0] = mask[2:6, 1:4] = True  # starts with foreground: counts begin with a zero run
    counts = encode_rle(mask)
    assert counts[0] == 0
    assert decode_counts_string(compress_counts(counts)) == counts
    for form in (counts, compress_counts(counts)):
        assert np.array_equal(decode_rle({"size": [7, 5], "counts": form}), mask)


def test_youtubevis_masks_follow_the_annotation(paths):
    clips = YouTubeVISDataset(
        paths["youtubevis"]["videodir"], paths["youtubevis"]["annfile"], SIZE, T, ValidFrameSampler(), unchanged
    )
    _, masks = clips[0]  # frames 0..2 of the first video; frame 1 has no annotation
    assert masks[0].mean() > 0.05 and masks[2].mean() > 0.05
    assert masks[1].max() == 0.0
    _, compressed = clips[2]  # the second video stores compressed RLE
    assert compressed[0].mean() > 0.05


def test_augmentation_is_reproducible_under_a_seed(paths):
    dataset = next(matting_sets(paths))
    first, again, other = dataset[(1, 42)], dataset[(1, 42)], dataset[(1, 43)]
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_augmentation_keeps_foreground_and_alpha_aligned():
    """With every geometric step forced on, a foreground that *is* its alpha must stay equal to it."""
    rng = np.random.default_rng(0)
    alpha = np.zeros((60, 80), dtype=np.uint8)
    alpha[10:50, 20:45] = 255
    alpha[30:40, 50:70] = rng.integers(0, 255, (10, 20))  # asymmetric detail that a flip or shift would move
    from PIL import Image

    frames = [Image.fromarray(np.roll(alpha, t, axis=1)) for t in range(4)]
    geometric = MotionProbabilities(fgr_affine=1, bgr_affine=2, sharpness=1, blur=3, hflip=1, pause=1)
    augment = MotionAugmentation(48, geometric)
    for seed in range(3):
        fgr, pha, bgr = augment([f.convert("RGB") for f in frames], frames, [frames[0].convert("RGB")] * 4, random.Random(seed))
        assert (fgr - pha).abs().max() < 1e-5, seed
        assert pha.std() > 0.1


def test_joint_motion_moves_foreground_and_background_alike():
    clip = torch.rand(4, 3, 40, 40)
    fg, bg = motion_affine(random.Random(5), [clip, clip.clone()], AffineRange())
    assert torch.equal(fg, bg)
    assert not torch.allclose(fg[0], fg[-1])  # it does move


def test_train_frame_sampler_has_constant_speed_and_both_directions():
    sampler = TrainFrameSampler()
    directions = set()
    for seed in range(40):
        frames = sampler(6, random.Random(seed))
        steps = {b - a for a, b in zip(frames, frames[1:])}
        directions.add(frames[0] < frames[-1])
        assert len(frames) == 6 and min(frames) >= 0 and len(steps) <= 2  # int(i·0.5) alternates 0 and 1
    assert directions == {True, False}
    assert ValidFrameSampler()(4, random.Random(0)) == [0, 1, 2, 3]


def test_sample_stream_splits_ranks_and_resumes_exactly():
    full = [list(SampleStream(10, rank, 2, seed=3)) for rank in range(2)]
    assert len(full[0]) == len(full[1]) == 5
    assert sorted(i for rank in full for i, _ in rank) == list(range(10))
    stream = SampleStream(10, 1, 2, seed=3)
    stream.set_epoch(0, start=2)
    assert list(stream) == full[1][2:]
    stream.set_epoch(1)
    assert list(stream) != full[1]  # a new epoch reshuffles


@pytest.mark.slow
def test_missing_file_is_named_through_dataloader_workers(paths):
    dataset = next(matting_sets(paths))
    dataset.seq_sampler = ValidFrameSampler()
    dataset.frames[0] = dataset.frames[0] + ["does-not-exist.jpg"]  # a frame listed but gone from disk
    dataset.index = [(0, len(dataset.frames[0]) - 1)]
    batches = iter(DataLoader(dataset, batch_size=1, num_workers=1, sampler=[(0, 0)]))
    with pytest.raises(FileNotFoundError, match="does-not-exist.jpg") as raised:
        next(batches)
    del raised, batches  # shutting down a worker that raised takes torch about 5 s: here, not in the next test
    gc.collect()


def test_unreadable_and_mismatched_files_are_errors(paths, tmp_path):
    from dataset.files import read_image

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        read_image(str(broken))
    root = tmp_path / "vm"
    for part in ("fgr", "pha"):
        os.makedirs(root / part / "clip")
    (root / "fgr" / "clip" / "0.jpg").write_bytes(b"")
    (root / "pha" / "clip" / "1.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="different frames"):
        VideoMatteDataset(
            str(root), paths["background_images"]["train"], paths["background_videos"]["train"], SIZE, T,
            TrainFrameSampler(), matting_train_augmentation("videomatte", SIZE),
        )


def test_batches_do_not_depend_on_the_number_of_workers(paths):
    """Each item's randomness comes from its key, so workers (and resuming) cannot change the data."""
    dataset = next(matting_sets(paths))
    batches = []
    for workers in (0, 2):
        stream = SampleStream(len(dataset), rank=0, world_size=1, seed=5)
        batches.append(list(DataLoader(dataset, batch_size=2, sampler=stream, num_workers=workers)))
    assert len(batches[0]) == len(batches[1]) > 1
    for a, b in zip(*batches):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_each_item_of_an_epoch_gets_its_own_augmentation(paths):
    """The generator an item's augmentation draws from differs between the items of one epoch (one shared seed
    would give every clip of the epoch the same motion, colour, crop and background choice), yet is the same
    when the epoch is read again, as a resumed run reads it."""

    def first_draws(fgrs, phas, bgrs, rng):  # stands in for the augmentation: what it would draw first
        return tuple(rng.random() for _ in range(4))

    for key, cls in (("videomatte", VideoMatteDataset), ("imagematte", ImageMatteDataset)):
        dataset = cls(
            paths[key]["train"], paths["background_images"]["train"], paths["background_videos"]["train"], SIZE, T,
            TrainFrameSampler(), first_draws,
        )
        keys = [k for rank in range(2) for k in SampleStream(len(dataset), rank, world_size=2, seed=7)]
        items = {k: dataset[k] for k in keys}  # the last rank's share is padded by repeating an item
        assert len(items) == len(dataset) >= 3, key
        assert len(set(items.values())) == len(items), key
        assert all(dataset[k] == draws for k, draws in items.items()), key
