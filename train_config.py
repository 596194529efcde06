"""Where the training data lives: the published folder layout under one data root, overridable without editing code.

Defaults follow the published setup (everything under ``../matting-data``). Change them with train.py's
``--data-root DIR`` (a new root for every relative path), ``--data-path KEY.FIELD=PATH`` (one entry), or the
``data_root`` / ``data_paths`` entries of a ``--config`` JSON file.
"""
import copy
import os
from typing import Dict, Mapping, Optional, Sequence

DATA_ROOT = "../matting-data"

# Relative to the data root (absolute paths are kept as they are).
DATA_PATHS: Dict[str, Dict[str, str]] = {
    "videomatte": {"train": "VideoMatte240K_JPEG_SD/train", "valid": "VideoMatte240K_JPEG_SD/valid"},
    "imagematte": {"train": "ImageMatte/train", "valid": "ImageMatte/valid"},
    "background_images": {"train": "Backgrounds/train", "valid": "Backgrounds/valid"},
    "background_videos": {"train": "BackgroundVideos/train", "valid": "BackgroundVideos/valid"},
    "coco_panoptic": {
        "imgdir": "coco/train2017",
        "anndir": "coco/panoptic_train2017",
        "annfile": "coco/annotations/panoptic_train2017.json",
    },
    "spd": {"imgdir": "SuperviselyPersonDataset/img", "segdir": "SuperviselyPersonDataset/seg"},
    "youtubevis": {"videodir": "YouTubeVIS/train/JPEGImages", "annfile": "YouTubeVIS/train/instances.json"},
}


def resolve_data_paths(
    data_root: str = DATA_ROOT,
    overrides: Sequence[str] = (),
    base: Optional[Mapping[str, Mapping[str, str]]] = None,
) -> Dict[str, Dict[str, str]]:
    """The dataset paths with ``overrides`` (``"KEY.FIELD=PATH"``) applied, relative ones joined onto ``data_root``.

    ``base`` replaces entries of the defaults (a config file's ``data_paths``, possibly partial).
    """
    paths = copy.deepcopy(DATA_PATHS)
    for key, fields in (base or {}).items():
        for field, path in fields.items():
            _set(paths, key, field, path, source="the config file's data_paths")
    for override in overrides:
        name, sep, path = override.partition("=")
        key, dot, field = name.partition(".")
        if not sep or not dot or not path:
            raise ValueError(f"--data-path {override!r} must look like KEY.FIELD=PATH, e.g. videomatte.train=/data/vm/train.")
        _set(paths, key, field, path, source="--data-path")
    return {key: {f: os.path.join(data_root, p) for f, p in fields.items()} for key, fields in paths.items()}


def _set(paths: Dict[str, Dict[str, str]], key: str, field: str, path: str, source: str) -> None:
    """Replace one known entry; unknown names are an error listing the known ones."""
    if key not in paths or field not in paths[key]:
        known = ", ".join(f"{k}.{f}" for k, fields in DATA_PATHS.items() for f in fields)
        raise ValueError(f"{source} names an unknown dataset path {key}.{field}; known ones: {known}.")
    paths[key][field] = path
