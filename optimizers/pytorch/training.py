"""Training loops shared by the PyTorch techniques: train, fine_tune, accuracy, data loaders from
(x, y) arrays or any iterable of (inputs, labels) batches, and a fixed thread count for training."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from optimizers.errors import DataMismatch
from optimizers.pytorch.inputs import select_output

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# torch's intra-op thread count during training: the result of a seeded training is reproducible on a
# machine for a fixed thread count only (the reductions' summation order depends on it), so the example's
# teacher and the candidates' trainings use this many, whatever the machine's default
TRAIN_THREADS = 2


@contextmanager
def training_threads(n: int = TRAIN_THREADS) -> Iterator[None]:
    """torch.set_num_threads(n) inside the block, the previous count restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def as_loader(data, batch_size: int = 64, shuffle: bool = False, seed: int = 0):
    """A DataLoader from (x, y) arrays/tensors, a Split, or an existing DataLoader/iterable of batches."""
    import torch

    if hasattr(data, "x") and hasattr(data, "y"):
        data = (data.x, data.y)
    if isinstance(data, tuple) and len(data) == 2:
        x, y = (torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for v in data)
        if len(x) == 0:
            raise DataMismatch("the data are empty: give at least one (input, label) sample")
        if len(x) != len(y):
            raise DataMismatch(f"{len(x)} inputs but {len(y)} labels")
        gen = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x.float(), y.long()),
                                           batch_size=batch_size, shuffle=shuffle, generator=gen)
    if data is None:
        raise DataMismatch("no data given: pass (inputs, labels) arrays or a DataLoader")
    return data


def _check_nonempty(loader) -> None:
    try:
        n = len(loader)
    except TypeError:
        return
    if n == 0:
        raise DataMismatch("the data are empty: give at least one (input, label) batch")


def train(model, train_data, epochs: int = 1, learning_rate: float = 1e-3, batch_size: int = 64,
          loss_fn=None, progress: Progress | None = None, validation=None, weight_decay: float = 1e-4,
          max_batches: int | None = None) -> list[dict]:
    """AdamW with a cosine schedule and cross-entropy (or `loss_fn(model, x, y)`); returns per-epoch stats.
    A model that returns more than a tensor is trained on its logits (optimizers.pytorch.inputs.select_output)."""
    import torch

    if epochs < 1:
        raise DataMismatch(f"epochs must be >= 1, got {epochs}")
    loader = as_loader(train_data, batch_size, shuffle=True)
    _check_nonempty(loader)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    steps = epochs * (min(len(loader), max_batches) if max_batches else len(loader))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=max(steps, 1))
    ce = torch.nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        model.train()
        started, total, seen = time.perf_counter(), 0.0, 0
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            opt.zero_grad()
            loss = loss_fn(model, x, y) if loss_fn else ce(select_output(model(x)), y)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(y)
            seen += len(y)
        stats = {"epoch": epoch + 1, "loss": total / max(seen, 1), "seconds": time.perf_counter() - started}
        if validation is not None:
            stats["val_accuracy"] = accuracy(model, validation)
        history.append(stats)
        line = f"epoch {epoch + 1}/{epochs}: loss {stats['loss']:.4f}" + (
            f", val acc {stats['val_accuracy']:.4f}" if "val_accuracy" in stats else "") + \
            f" ({stats['seconds']:.1f} s)"
        (progress or log.info)(line)
    model.eval()
    return history


def fine_tune(model, train_data, epochs: int = 1, learning_rate: float = 1e-3, **kw) -> list[dict]:
    """Train an optimized model a little more, at a lower rate by default."""
    return train(model, train_data, epochs=epochs, learning_rate=learning_rate, **kw)


def accuracy(model, data, batch_size: int = 256) -> float:
    """Top-1 accuracy of a PyTorch classifier on (x, y) data."""
    import torch

    loader = as_loader(data, batch_size)
    _check_nonempty(loader)
    was_training = model.training
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((select_output(model(x)).argmax(1) == y).sum())
            total += len(y)
    model.train(was_training)
    return correct / max(total, 1)


def evaluate(model, data, batch_size: int = 256) -> float:
    """Top-1 accuracy (the name docs/techniques.md's PyTorch examples use)."""
    return accuracy(model, data, batch_size)
