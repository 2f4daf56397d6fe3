"""Image datasets: a folder with one sub-folder per class, MNIST-style IDX files, or synthetic shapes.

``[data]`` keys (defaults in ``DATA_DEFAULTS``):
    source          "folder" | "idx" | "shapes"
    path            the folder (folder: ``path/<class>/*.png``, or ``path/train/<class>`` and
                    ``path/test/<class>``; idx: the directory holding ``train-images-idx3-ubyte[.gz]``...)
    resolution      images are resized (shorter side) and centre-cropped to resolution x resolution
    channels        1 (grayscale) or 3 (RGB)
    conditional     false: labels are -1 and there are no class names
    hflip           true: the training split also holds every image mirrored left-right, at indices
                    N..2N-1; which ones a step sees follows from the engine's seeded shuffle
    limit           > 0: train on a seeded random subset of this many images (the test split stays whole,
                    so evaluation figures compare across presets)
    skip_bad_files  false: an unreadable file is an error naming it; true: skipped with one line naming it,
                    and a count at the end
    test_fraction   folders without train/ and test/: the share of each class held out (seeded)
    seed            the seed of the subset, the held-out share and the synthetic shapes
    n_train, n_test sizes of the synthetic splits
Pixels are scaled to [-1, 1]; 16-bit images are scaled to 8 bits first (65535 -> 255), and an image
beyond Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is a bad file. Every class
must have examples: an empty class folder, or IDX labels that leave a class (nearly) empty, such as
one corrupt label byte of 255 among the ten MNIST digits, are refused naming the folder or the label.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..bad_files import report_count, report_skip

from .idx import read_idx
from .synthetic import SHAPES, make_shapes

SPLITS = ("train", "test")
SOURCES = ("folder", "idx", "shapes")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
#: A class this many times rarer than the median class of an IDX label file is taken for corrupt labels.
RARE_CLASS_FACTOR = 100
#: Pillow's modes of one-channel images deeper than 8 bits (PNG's 16-bit grayscale opens as "I;16").
DEEP_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
DATA_DEFAULTS = {"source": "folder", "path": "", "resolution": 32, "channels": 3, "conditional": True,
                 "hflip": False, "limit": 0, "skip_bad_files": False, "test_fraction": 0.1, "seed": 0,
                 "n_train": 4000, "n_test": 1000}


class ImageSet(torch.utils.data.Dataset):
    """Images held in memory as uint8 (N, C, H, W); items are {"x": (C, H, W) in [-1, 1], "label"}."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: list[str], hflip: bool = False):
        self.images = images
        self.labels = labels
        self.class_names = class_names
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.images) * (2 if self.hflip else 1)

    def __getitem__(self, i: int) -> dict:
        batch = self.__getitems__([i])
        return {"x": batch["x"][0], "label": batch["label"][0]}

    def __getitems__(self, indices: list[int]) -> dict:
        """A whole batch at once (torch's DataLoader calls this instead of one item at a time)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        if idx.numel() and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"image index out of range 0..{len(self) - 1}")
        n = len(self.images)
        x = self.images[idx % n].float() / 127.5 - 1.0
        mirrored = (idx >= n)[:, None, None, None]
        return {"x": torch.where(mirrored, x.flip(-1), x), "label": self.labels[idx % n]}


def data_config(cfg: dict) -> dict:
    """The recipe's ``[data]`` over the defaults, checked."""
    data = {**DATA_DEFAULTS, **cfg.get("data", {})}
    if data["source"] not in SOURCES:
        raise ValueError(f"unknown data.source {data['source']!r}; choose one of: {', '.join(SOURCES)}")
    if data["channels"] not in (1, 3):
        raise ValueError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {data['channels']}")
    if data["resolution"] < 1:
        raise ValueError(f"data.resolution must be positive, got {data['resolution']}")
    if data["source"] != "shapes" and not data["path"]:
        raise ValueError(f"data.source = {data['source']!r} needs data.path")
    return data


def image_dataset(cfg: dict, split: str, *, full: bool = False, with_labels: bool = False) -> ImageSet:
    """The ``split`` of the recipe's images. ``full``: ignore ``limit`` and ``hflip`` (the plain split);
    ``with_labels``: keep the classes even when the recipe trains unconditionally (for evaluation)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    data = data_config(cfg)
    if data["source"] == "shapes":
        n = data["n_train"] if split == "train" else data["n_test"]
        seed = int(np.random.SeedSequence([data["seed"], SPLITS.index(split)]).generate_state(1)[0])
        pixels, labels = make_shapes(n, data["resolution"], seed)
        class_names = list(SHAPES)
    elif data["source"] == "idx":
        pixels, labels, class_names = _read_idx_split(Path(data["path"]), split)
    else:
        pixels, labels, class_names = _list_folder_split(Path(data["path"]), split, data)
    limit = data["limit"] if split == "train" and not full else 0
    if 0 < limit < len(labels):
        keep = np.sort(np.random.default_rng([data["seed"], 1]).choice(len(labels), limit, replace=False))
        pixels = pixels[keep] if isinstance(pixels, np.ndarray) else [pixels[i] for i in keep]
        labels = labels[keep]
    if data["source"] == "folder":
        listed = labels
        pixels, labels = _read_images(pixels, labels, data)
        _check_no_class_lost(listed, labels, class_names, data)
    else:
        pixels = _conform(pixels, data["resolution"], data["channels"])
    if len(labels) == 0:
        raise ValueError(f"the {split} split of {data['path'] or data['source']} holds no images")
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(labels, dtype=torch.long)
    if not (data["conditional"] or with_labels):
        labels, class_names = torch.full_like(labels, -1), []
    return ImageSet(images, labels, class_names, hflip=data["hflip"] and split == "train" and not full)


def dataset_identity(cfg: dict) -> str:
    """A short hash naming the images and their preparation, to key caches (e.g. the eval classifier)."""
    data = data_config(cfg)
    keys = {k: data[k] for k in ("source", "resolution", "channels")}
    if data["source"] == "shapes":
        keys.update({k: data[k] for k in ("n_train", "seed")})
    elif data["source"] == "idx":
        keys["train_images"] = hashlib.sha1(_idx_file(Path(data["path"]), "train", "images").read_bytes()).hexdigest()
    else:
        root = Path(data["path"])
        keys["files"] = [(str(p.relative_to(root)), p.stat().st_size) for p in sorted(root.rglob("*"))
                         if p.suffix.lower() in IMAGE_SUFFIXES]
        keys.update({k: data[k] for k in ("test_fraction", "seed")})
    return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def _conform(pixels: np.ndarray, resolution: int, channels: int) -> np.ndarray:
    """(N, H, W[, C]) uint8 -> (N, resolution, resolution, channels) uint8."""
    if pixels.ndim == 3:
        pixels = pixels[..., None]
    if pixels.shape[1:3] == (resolution, resolution):
        if pixels.shape[3] == channels:
            return np.ascontiguousarray(pixels)
        if pixels.shape[3] == 1:
            return np.repeat(pixels, 3, axis=3)
    return np.stack([_fit(Image.fromarray(p.squeeze(-1) if p.shape[-1] == 1 else p), resolution, channels)
                     for p in pixels])


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit grayscale scaled to 8 bits (v / 257, rounded): Pillow's convert("L") clips it at 255 instead.
    (Pillow already opens 16-bit RGB as 8-bit RGB, keeping the high byte.)"""
    if image.mode not in DEEP_GRAY_MODES:
        return image
    values = np.asarray(image, dtype=np.float64)
    if values.min() < 0 or values.max() > 65535:
        raise ValueError(f"pixel values {values.min():.0f}..{values.max():.0f} lie outside the 16-bit range")
    return Image.fromarray(np.round(values / 257).astype(np.uint8), mode="L")


def _fit(image: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """Convert to L or RGB, scale the shorter side to ``resolution`` and crop the centre square."""
    image = _eight_bit(image).convert("L" if channels == 1 else "RGB")
    w, h = image.size
    scale = resolution / min(w, h)
    if (w, h) != (resolution, resolution):
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def _idx_file(root: Path, split: str, kind: str) -> Path:
    prefix = "train" if split == "train" else "t10k"
    name = f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {name} or {name}.gz in {root}")


def _read_idx_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images_file, labels_file = _idx_file(root, split, "images"), _idx_file(root, split, "labels")
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim not in (3, 4) or images.dtype != np.uint8:
        raise ValueError(f"{images_file}: expected uint8 images (N, H, W[, C]), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{labels_file}: expected {len(images)} labels, got an array of shape {labels.shape}")
    train_file = labels_file if split == "train" else _idx_file(root, "train", "labels")
    num_classes = _check_train_labels(train_file, labels if split == "train" else read_idx(train_file))
    _check_label_range(labels_file, labels, num_classes)
    return images, labels.astype(np.int64), [str(c) for c in range(num_classes)]


def _check_label_range(labels_file: Path, labels: np.ndarray, num_classes: int) -> None:
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{labels_file}: labels must be integers, got {labels.dtype}")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(bad.argmax())
        raise ValueError(f"{labels_file}: label {labels[i]} at position {i} is not among the training classes "
                         f"0..{num_classes - 1}")


def _check_train_labels(labels_file: Path, labels: np.ndarray) -> int:
    """The number of classes, max(label) + 1, once every one of them has a fair share of the examples."""
    _check_label_range(labels_file, labels, np.iinfo(np.int64).max)
    if not len(labels):
        return 0
    counts = np.bincount(labels.astype(np.int64))
    typical = float(np.median(counts[counts > 0]))
    rare = np.flatnonzero(counts * RARE_CLASS_FACTOR < typical)
    if len(rare):
        top = int(labels.argmax())
        if counts[rare[0]] == 0:
            raise ValueError(f"{labels_file}: label {labels[top]} at position {top} makes {len(counts)} classes, "
                             f"{int((counts == 0).sum())} of them without an example (a corrupt label?)")
        c = int(rare[0])
        raise ValueError(f"{labels_file}: label {c} occurs {counts[c]} time(s) (first at position "
                         f"{int(np.argmax(labels == c))}), the median class {typical:.0f} times (a corrupt label?)")
    return len(counts)


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{root} has no class sub-folders (expected {root}/<class>/<image>.png)")
    return folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _check_class_folders_hold_images(folders: list[Path]) -> None:
    """An empty class folder would be a class the model is asked for but never shown."""
    for folder in folders:
        if not _image_files(folder):
            raise ValueError(f"{folder}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                             f"add some or remove the folder")


def _check_no_class_lost(listed: np.ndarray, kept: np.ndarray, class_names: list[str], data: dict) -> None:
    lost = sorted(set(listed.tolist()) - set(kept.tolist()))
    if lost:
        raise ValueError(f"every image of class {class_names[lost[0]]!r} under {data['path']} was skipped as "
                         f"unreadable, so the class has no example")


def _list_folder_split(root: Path, split: str, data: dict) -> tuple[list[Path], np.ndarray, list[str]]:
    """The split's image files with their class indices."""
    split_dirs = (root / "train").is_dir() and (root / "test").is_dir()
    class_folders = _class_folders(root / "train" if split_dirs else root)
    _check_class_folders_hold_images(class_folders)
    class_names = [p.name for p in class_folders]
    files, labels = [], []
    if split_dirs:
        for folder in _class_folders(root / split):
            if folder.name not in class_names:
                raise ValueError(f"{folder}: class {folder.name!r} is not among the training classes {class_names}")
            found = _image_files(folder)
            files += found
            labels += [class_names.index(folder.name)] * len(found)
    else:
        rng = np.random.default_rng([data["seed"], 2])
        for c, name in enumerate(class_names):
            found = _image_files(root / name)
            held_out = set(rng.permutation(len(found))[:round(data["test_fraction"] * len(found))].tolist())
            chosen = [f for i, f in enumerate(found) if (i in held_out) == (split == "test")]
            files += chosen
            labels += [c] * len(chosen)
    return files, np.asarray(labels, dtype=np.int64), class_names


def _read_images(files: list[Path], labels: np.ndarray, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """Decode, convert and resize every file; unreadable ones raise or, with skip_bad_files, are counted."""
    images, kept, bad = [], [], 0
    for f, label in zip(files, labels):
        try:
            with warnings.catch_warnings():  # Pillow only warns below twice its pixel limit: refuse those too
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(f) as im:
                    images.append(_fit(im, data["resolution"], data["channels"]))
            kept.append(label)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            # PIL's errors for unreadable, corrupt or oversized files
            if not data["skip_bad_files"]:
                raise ValueError(f"cannot read image {f}: {e} (set data.skip_bad_files = true to skip such files)") from None
            report_skip(f"cannot read image {f}: {e}")
            bad += 1
    report_count(bad, len(files), "image files", data["path"])
    shape = (0, data["resolution"], data["resolution"], data["channels"])
    return (np.stack(images) if images else np.zeros(shape, np.uint8)), np.asarray(kept, dtype=np.int64)
