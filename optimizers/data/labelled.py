"""Labelled image data for the training-time techniques and NAS: (inputs, labels) splits, made from the
user's arrays, an .npz, or an image folder with one sub-folder per class (preprocessing stated), split
70/15/15 with a fixed seed, stratified by class."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.inputs import InputSpec
from optimizers.data.feeds import ImagePreprocess, image_folder
from optimizers.errors import DataMismatch

SPLIT = (0.7, 0.15, 0.15)
NPZ_KEYS = (("x", "y"), ("images", "labels"), ("inputs", "labels"), ("data", "labels"))


@dataclass
class Split:
    """Inputs [N, ...] float32 and labels [N] int64."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, n: int) -> Split:
        return Split(self.x[:n], self.y[:n])


@dataclass
class LabelledData:
    """Train, validation and test splits, and where the data came from (with its preprocessing)."""

    train: Split
    val: Split
    test: Split
    source: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, *self.train.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.train.y.max(), self.val.y.max(), self.test.y.max())) + 1


def stratified_split(x: np.ndarray, y: np.ndarray, source: str, seed: int = 0) -> LabelledData:
    """70/15/15, every class in every split in proportion, shuffled with `seed`."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        a, b = int(len(idx) * SPLIT[0]), int(len(idx) * (SPLIT[0] + SPLIT[1]))
        for part, chunk in zip(parts, (idx[:a], idx[a:b], idx[b:])):
            part.extend(chunk.tolist())
    splits = []
    for p in parts:
        order = rng.permutation(np.asarray(p, dtype=np.int64))
        splits.append(Split(x[order], y[order]))
    return LabelledData(*splits, source=source)


def load_labelled(data, image_size: int = 32, channels: int = 3, seed: int = 0) -> LabelledData:
    """(x, y) arrays, an .npz holding inputs and labels (x/y, images/labels, inputs/labels), or an image
    folder with a sub-folder per class (resized and center-cropped to image_size, ImageNet mean/std)."""
    source = str(data) if isinstance(data, (str, Path)) else "the arrays given"
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        x, y, source = _class_folders(Path(data), image_size, channels)
    elif isinstance(data, (str, Path)):
        x, y = _npz(Path(data))
    elif isinstance(data, tuple) and len(data) == 2:
        x, y = np.asarray(data[0], np.float32), np.asarray(data[1])
    else:
        raise DataMismatch("labelled data are (inputs, labels) arrays, an .npz with inputs and labels, or an image "
                           "folder with one sub-folder per class")
    if x.ndim == 3:
        x = x[:, None]   # [N, H, W] grayscale
    if x.ndim != 4 or len(x) != len(y):
        raise DataMismatch(f"labelled images must be [N, C, H, W] with N labels; got inputs {list(x.shape)} and "
                           f"{len(y)} labels")
    y = np.asarray(y).astype(np.int64)
    if y.min() < 0 or len(np.unique(y)) < 2:
        raise DataMismatch("the labels must be class numbers 0..K-1 with at least two classes")
    if np.bincount(y).min() < 4:
        raise DataMismatch("every class needs at least 4 samples (70/15/15 train/validation/test split)")
    return stratified_split(x.astype(np.float32), y, source, seed)


def _npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataMismatch(f"'{path}' does not exist; give an .npz with inputs and labels, or an image folder")
    with np.load(path) as z:
        for xk, yk in NPZ_KEYS:
            if xk in z.files and yk in z.files:
                return np.asarray(z[xk], np.float32), np.asarray(z[yk])
        raise DataMismatch(f"'{path}' holds {', '.join(z.files)}; name the inputs and labels "
                           + " or ".join(f"{a}/{b}" for a, b in NPZ_KEYS))


def _class_folders(root: Path, size: int, channels: int) -> tuple[np.ndarray, np.ndarray, str]:

    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataMismatch(f"'{root}' needs one sub-folder per class (at least two), each holding its images")
    pre = ImagePreprocess()
    spec = [InputSpec("input", np.dtype(np.float32), [1, channels, size, size])]
    xs, ys = [], []
    for label, folder in enumerate(classes):
        images = image_folder(folder, spec, pre, None)["input"]
        xs.append(images)
        ys.append(np.full(len(images), label, np.int64))
    names = ", ".join(f"{i}={c.name}" for i, c in enumerate(classes))
    return (np.concatenate(xs), np.concatenate(ys),
            f"{root} ({len(classes)} classes: {names}; {pre.describe()}, {channels}x{size}x{size})")
