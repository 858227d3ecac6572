"""Calibration and evaluation data: numpy arrays, .npz files, image folders or iterables, checked
against the model's inputs and turned into a list of feed dicts (one per model call)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from core.errors import JobError
from core.inputs import InputSpec, make_feeds, resolve_shapes
from optimizers.errors import DataMismatch
from optimizers.graph.model import onnx_input_specs

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
DataLike = Union[str, Path, np.ndarray, Mapping, Iterable, None]


@dataclass(frozen=True)
class ImagePreprocess:
    """How an image folder becomes model input. The default is the common ImageNet recipe: RGB (or
    grayscale for 1-channel inputs), resize the shorter side then center-crop to the model's H x W,
    scale to [0, 1], subtract `mean` and divide by `std`, NCHW (NHWC when the last dim is 1 or 3)."""

    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    scale: float = 1.0 / 255.0
    layout: str = "auto"  # "NCHW", "NHWC" or "auto" (from the input's shape)

    def describe(self) -> str:
        return (f"resize shorter side + center crop, x*{self.scale:.6g}, (x-mean)/std with "
                f"mean={list(self.mean)} std={list(self.std)}, layout={self.layout}")


def model_inputs(model) -> list[InputSpec]:
    """Graph inputs that are not initializers (the controller's pre-flight reading of them)."""
    return onnx_input_specs(model)


@dataclass
class Dataset:
    """Feed dicts ready for InferenceSession.run, plus labels (one per sample row) when given."""

    feeds: list[dict[str, np.ndarray]]
    labels: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.feeds)

    def limit(self, n: int | None) -> "Dataset":
        """The first n feed dicts (labels cut to match)."""
        if n is None or n >= len(self.feeds):
            return self
        rows = sum(_batch(f) for f in self.feeds[:n])
        return Dataset(self.feeds[:n], None if self.labels is None else self.labels[:rows], self.source)


def _batch(feed: dict[str, np.ndarray]) -> int:
    first = next(iter(feed.values()))
    return int(first.shape[0]) if first.ndim else 1


def load_data(data: DataLike, model, labels: np.ndarray | None = None,
              preprocess: ImagePreprocess | None = None, max_samples: int | None = None,
              input_shapes: dict[str, list[int]] | None = None) -> Dataset:
    """Turn any accepted data form into checked feed dicts for `model` (an onnx ModelProto). `input_shapes`
    (--input-shape) fix dynamic dimensions: images are resized to them, arrays are checked against them."""
    inputs = with_shapes(model_inputs(model), input_shapes or {})
    names = [i.name for i in inputs]
    source = type(data).__name__
    if data is None:
        raise DataMismatch(f"no data given; the model's inputs are {_describe(inputs)}: give numpy arrays, "
                           "an .npz keyed by input name, an image folder or an iterable of feed dicts")
    if isinstance(data, str) and data == "synthetic":   # random inputs, said in the source
        return synthetic_data(model, n=max_samples or 8, input_shapes=input_shapes)
    if isinstance(data, (str, Path)):
        path = Path(data)
        source = str(path)
        if not path.exists():
            raise DataMismatch(f"data path '{path}' does not exist; give an .npz file or an image folder")
        if path.is_dir():
            arrays, labels = image_folder(path, inputs, preprocess or ImagePreprocess(), max_samples), labels
        elif path.suffix == ".npz":
            with np.load(path) as npz:
                arrays = {k: npz[k] for k in npz.files}
            npz_labels = arrays.pop("labels", None)
            labels = npz_labels if labels is None else labels
        else:
            raise DataMismatch(f"'{path}' is neither an .npz file nor a folder of images")
        feeds = _split_rows(arrays, inputs)
    elif isinstance(data, np.ndarray):
        if len(inputs) != 1:
            raise DataMismatch(f"a bare array fits a model with one input, but this one has {len(inputs)}: "
                               f"{', '.join(names)}; give a dict keyed by input name")
        feeds = _split_rows({names[0]: data}, inputs)
    elif isinstance(data, Mapping):
        feeds = _split_rows({str(k): np.asarray(v) for k, v in data.items()}, inputs)
    elif isinstance(data, Iterable):
        feeds = []
        for i, item in enumerate(data):
            if max_samples is not None and i >= max_samples:
                break
            if isinstance(item, np.ndarray) and len(inputs) == 1:
                item = {names[0]: item}
            if not isinstance(item, Mapping):
                raise DataMismatch(f"item {i} of the data is a {type(item).__name__}; each item must be a dict "
                                   f"keyed by input name ({', '.join(names)})")
            feed = {str(k): np.asarray(v) for k, v in item.items()}
            _check_feed(feed, inputs, where=f"item {i}")
            feeds.append(feed)
    else:
        raise DataMismatch(f"data of type {type(data).__name__} is not accepted; give numpy arrays, a dict of "
                           "arrays, an .npz path, an image folder path, or an iterable of feed dicts")
    if not feeds:
        raise DataMismatch(f"the data ({source}) hold no samples")
    ds = Dataset(feeds, None if labels is None else np.asarray(labels).reshape(-1), source)
    ds = ds.limit(max_samples)
    if ds.labels is not None:
        rows = sum(_batch(f) for f in ds.feeds)
        if len(ds.labels) != rows:
            raise DataMismatch(f"{len(ds.labels)} labels for {rows} samples; give one label per sample")
    return ds


def with_shapes(inputs: list[InputSpec], shapes: dict[str, list[int]]) -> list[InputSpec]:
    """The model's input specs with the dimensions --input-shape gave in place of its dynamic ones (checked
    as the agent checks them: known names, the rank, fixed dimensions kept, positive sizes)."""
    if not shapes:
        return inputs
    names = [i.name for i in inputs]
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise DataMismatch(f"--input-shape names {', '.join(map(repr, unknown))}, but the model's inputs are: "
                           f"{', '.join(names)}")
    given = {name: list(dims) for name, dims in shapes.items()}
    try:   # only the inputs given: each then has every dimension, so only the checks can fail
        resolve_shapes([i for i in inputs if i.name in given], given)
    except JobError as exc:
        raise DataMismatch(exc.message) from None
    return [InputSpec(i.name, i.dtype, given[i.name]) if i.name in given else i for i in inputs]


def _describe(inputs: list[InputSpec]) -> str:
    return ", ".join(f"'{i.name}' {i.dtype} {_fmt(i.shape)}" for i in inputs)


def _fmt(shape) -> str:
    return "[" + ",".join(str(d) if isinstance(d, int) else (d or "?") for d in shape) + "]"


def _check_names(given: Iterable[str], inputs: list[InputSpec]) -> None:
    names = [i.name for i in inputs]
    given = list(given)
    missing = [n for n in names if n not in given]
    extra = [g for g in given if g not in names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(repr(m) for m in missing)}")
        if extra:
            parts.append(f"unknown {', '.join(repr(e) for e in extra)}")
        raise DataMismatch(f"the data's names do not match the model's inputs ({'; '.join(parts)}); "
                           f"the model's inputs are {_describe(inputs)}")


def _check_feed(feed: dict[str, np.ndarray], inputs: list[InputSpec], where: str) -> None:
    _check_names(feed, inputs)
    for info in inputs:
        arr = feed[info.name]
        if arr.ndim != len(info.shape) or any(isinstance(d, int) and d != s for d, s in zip(info.shape, arr.shape)):
            raise DataMismatch(f"{where}: input '{info.name}' has shape {list(arr.shape)}, but the model "
                               f"expects {_fmt(info.shape)}")
        if arr.dtype != info.dtype:
            if np.can_cast(arr.dtype, info.dtype, "same_kind") or (
                    np.issubdtype(arr.dtype, np.integer) and np.issubdtype(info.dtype, np.integer)):
                feed[info.name] = arr.astype(info.dtype)
            else:
                raise DataMismatch(f"{where}: input '{info.name}' is {arr.dtype}, but the model expects "
                                   f"{info.dtype}")


def _split_rows(arrays: dict[str, np.ndarray], inputs: list[InputSpec]) -> list[dict[str, np.ndarray]]:
    """Arrays holding N rows -> feed dicts of the model's batch size (1 when the batch is dynamic)."""
    _check_names(arrays, inputs)
    by_name = {i.name: i for i in inputs}
    rows = set()
    for name, arr in arrays.items():
        info = by_name[name]
        if arr.ndim == len(info.shape) - 1:  # one sample without its batch dimension
            arrays[name] = arr = arr[None]
        if arr.ndim != len(info.shape) or not info.shape:
            raise DataMismatch(f"input '{name}': the data have shape {list(arr.shape)}, but the model expects "
                               f"{_fmt(info.shape)} (the first dimension may hold any number of samples)")
        for i, (d, s) in enumerate(zip(info.shape[1:], arr.shape[1:]), start=1):
            if isinstance(d, int) and d != s:
                raise DataMismatch(f"input '{name}': the data have shape {list(arr.shape)}, but the model "
                                   f"expects {_fmt(info.shape)} (dimension {i} differs)")
        rows.add(arr.shape[0])
    if len(rows) != 1:
        raise DataMismatch(f"the inputs hold different numbers of samples: "
                           f"{ {k: v.shape[0] for k, v in arrays.items()} }")
    n = rows.pop()
    batch = inputs[0].shape[0] if isinstance(inputs[0].shape[0], int) else 1
    if n % batch:
        raise DataMismatch(f"{n} samples do not split into the model's fixed batch of {batch}")
    feeds = []
    for start in range(0, n, batch):
        feed = {name: arr[start:start + batch] for name, arr in arrays.items()}
        _check_feed(feed, inputs, where=f"sample {start}")
        feeds.append(feed)
    return feeds


def image_folder(path: Path, inputs: list[InputSpec], pre: ImagePreprocess,
                  max_samples: int | None) -> dict[str, np.ndarray]:
    from PIL import Image

    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise DataMismatch(f"an image folder fits a model with one 4-D image input, but this one has "
                           f"{_describe(inputs)}")
    info = inputs[0]
    layout = pre.layout
    if layout == "auto":
        layout = "NHWC" if info.shape[3] in (1, 3) and info.shape[1] not in (1, 3) else "NCHW"
    c, h, w = (info.shape[1], info.shape[2], info.shape[3]) if layout == "NCHW" else \
        (info.shape[3], info.shape[1], info.shape[2])
    if not all(isinstance(d, int) for d in (c, h, w)):
        example = ",".join(str(d) if isinstance(d, int) else "N" for d in info.shape)
        raise DataMismatch(f"input '{info.name}' {_fmt(info.shape)} has dynamic channel/height/width, and "
                           f"images are resized to the model's input: fix them with --input-shape "
                           f"{info.name}={example} (input_shapes= in Python)")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if max_samples is not None:
        files = files[:max_samples]
    if not files:
        raise DataMismatch(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under '{path}'")
    mean = np.asarray(pre.mean[:c] if c > 1 else [np.mean(pre.mean)], np.float32)
    std = np.asarray(pre.std[:c] if c > 1 else [np.mean(pre.std)], np.float32)
    batch = []
    for f in files:
        img = Image.open(f).convert("RGB" if c == 3 else "L")
        scale = max(h / img.height, w / img.width)
        img = img.resize((max(w, round(img.width * scale)), max(h, round(img.height * scale))),
                         Image.BILINEAR)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        arr = np.asarray(img.crop((left, top, left + w, top + h)), np.float32).reshape(h, w, c)
        arr = (arr * pre.scale - mean) / std
        batch.append(arr if layout == "NHWC" else arr.transpose(2, 0, 1))
    log.info("loaded %d images from %s (%s)", len(batch), path, pre.describe())
    return {info.name: np.stack(batch).astype(info.dtype)}


def synthetic_data(model, n: int = 8, seed: int = 0, input_shapes: dict[str, list[int]] | None = None) -> Dataset:
    """Random inputs (normal floats, small integers) for when no data is given; fidelity on these is a
    weaker check than on real data, and records say so."""
    specs = model_inputs(model)
    try:
        shapes = resolve_shapes(specs, input_shapes or {})
    except JobError as exc:
        raise DataMismatch(f"{exc.message} (input_shapes= in Python)") from None
    return Dataset([make_feeds(specs, shapes, seed=seed + k) for k in range(n)], None, "synthetic")


def as_dataset(data: Any, model, **kw) -> Dataset:
    """A Dataset passes through; anything else goes through load_data."""
    return data if isinstance(data, Dataset) else load_data(data, model, **kw)
