"""Label-free recovery: a pruned (or otherwise changed) module is trained toward the original model's own
outputs on unlabelled images, so a model that came without its training code or labels gets its quality
back. The images are augmented (random crops with scale jitter, flips, brightness/contrast jitter, and
mosaics of four photos) so that a few dozen photos are enough; training stops at a time budget.

Each output is compared per channel, the channel axis being the non-batch axis with the fewest entries
(YOLOv8's 4+C of (1, 4+C, N), YOLOX's 5+C of (1, N, 5+C), a segmentation map's 1). Channels whose teacher
values all lie in [0, 1] on the first four batches are scores (binary cross-entropy against the teacher's); the
others (box coordinates) are compared in units of the teacher's spread, weighted by the teacher's highest
score at each position."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from optimizers.errors import DataMismatch
from optimizers.pytorch.training import training_threads

log = logging.getLogger(__name__)

# YOLOv8n at 320x320 trains at about 1.9 s per batch of 8 on 2 cores: 8 minutes is about 250 steps, and
# the whole prune + recovery + export stays under 10 minutes
DEFAULT_MINUTES = 8.0


@dataclass
class RecoveryOptions:
    """How to recover: the time budget, batch size, Adam's learning rate, the share of mosaics, the seed."""

    minutes: float = DEFAULT_MINUTES
    batch_size: int = 8
    learning_rate: float = 1e-4
    mosaic: float = 0.5
    seed: int = 0
    max_epochs: int | None = None   # stop earlier than the budget (tests)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class RecoveryReport:
    """What a recovery did."""

    images: int
    epochs: int
    steps: int
    seconds: float
    first_loss: float
    last_loss: float

    def to_json(self) -> dict:
        return asdict(self)


def as_images(data) -> np.ndarray:
    """(N, C, H, W) float32 from an array or a Dataset/list of single-input feeds."""
    if isinstance(data, np.ndarray):
        arrays = [data]
    else:
        feeds = getattr(data, "feeds", data)
        arrays = [next(iter(f.values())) if isinstance(f, dict) else np.asarray(f) for f in feeds]
    if not arrays:
        raise DataMismatch("recovery needs unlabelled images of the model's input shape; none were given")
    images = np.concatenate([np.asarray(a, dtype=np.float32) for a in arrays])
    if images.ndim != 4:
        raise DataMismatch(f"recovery trains on images (N, C, H, W); the data are {images.shape}")
    return images


def augment(images, count: int, generator, mosaic: float):
    """`count` augmented images of the same shape from `images` (a torch tensor N x C x H x W)."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = images.shape

    def crop(index: int, out_h: int, out_w: int):
        scale = float(torch.empty(1).uniform_(0.35, 1.0, generator=generator))
        aspect = float(torch.empty(1).uniform_(0.75, 1.33, generator=generator))
        ch = max(8, min(h, round(h * (scale / aspect) ** 0.5)))
        cw = max(8, min(w, round(w * (scale * aspect) ** 0.5)))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        part = images[index:index + 1, :, top:top + ch, left:left + cw]
        part = F.interpolate(part, size=(out_h, out_w), mode="bilinear", align_corners=False)
        if torch.rand(1, generator=generator) < 0.5:
            part = part.flip(-1)
        return part

    out = []
    for _ in range(count):
        pick = torch.randint(0, n, (4,), generator=generator)
        if torch.rand(1, generator=generator) < mosaic:
            hh, hw = h // 2, w // 2
            top = torch.cat([crop(int(pick[0]), hh, hw), crop(int(pick[1]), hh, w - hw)], dim=3)
            bottom = torch.cat([crop(int(pick[2]), h - hh, hw), crop(int(pick[3]), h - hh, w - hw)], dim=3)
            image = torch.cat([top, bottom], dim=2)
        else:
            image = crop(int(pick[0]), h, w)
        mean = image.mean()
        contrast = float(torch.empty(1).uniform_(0.8, 1.2, generator=generator))
        shift = float(torch.empty(1).uniform_(-0.1, 0.1, generator=generator)) * float(images.std())
        out.append((image - mean) * contrast + mean + shift)
    return torch.cat(out)


def _channel_axis(output) -> int:
    sizes = list(output.shape[1:])
    return 1 + sizes.index(min(sizes)) if sizes else 0


@dataclass
class _Target:
    """How one output is compared: its channel axis, which channels are scores (all teacher values in
    [0, 1]: compared by binary cross-entropy) and the scale of the others (1 / the teacher's std)."""

    axis: int
    scores: object      # bool tensor over the channels
    scale: object       # broadcastable 1 / std


def _targets(outputs) -> list[_Target]:
    import torch

    found = []
    for out in outputs:
        axis = _channel_axis(out)
        dims = [d for d in range(out.dim()) if d != axis]
        lo, hi = out.amin(dim=dims), out.amax(dim=dims)
        scores = (lo >= 0) & (hi <= 1)
        std = out.std(dim=dims, keepdim=True) if out.numel() > out.shape[axis] else torch.ones_like(out)
        found.append(_Target(axis, scores, 1.0 / (std + 1e-3 * (std.mean() + 1e-6))))
    return found


def _loss(got, want, target: _Target):
    """Scores: binary cross-entropy against the teacher's scores. Other channels: squared error in units of
    the teacher's spread, weighted per position by the teacher's highest score there (box coordinates matter
    where there is an object), uniformly when the output has no score channels."""
    import torch
    import torch.nn.functional as F

    got, want = got.movedim(target.axis, -1), want.movedim(target.axis, -1)
    scale = target.scale.movedim(target.axis, -1)
    loss = got.new_zeros(())
    if bool(target.scores.any()):
        scores = want[..., target.scores].clamp(0, 1)
        weight = scores.amax(dim=-1, keepdim=True) + 0.01
        bce = F.binary_cross_entropy(got[..., target.scores].clamp(1e-6, 1 - 1e-6), scores, reduction="none")
        loss = loss + (bce * weight).sum() / (weight.sum() * int(target.scores.sum())) * 10
    else:
        weight = torch.ones_like(want[..., :1])
    values = ~target.scores
    if bool(values.any()):
        err = ((got[..., values] - want[..., values]) * scale[..., values]).pow(2)
        loss = loss + (err * weight).sum() / (weight.sum() * int(values.sum()))
    return loss


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _batched(model, batch) -> bool:
    """Whether the model runs on a batch of several (an export may have the batch size fixed in a constant)."""
    import torch

    try:
        with torch.no_grad():
            model(batch[:2])
        return True
    except RuntimeError:
        return False


def _run(model, batch, batched: bool) -> list:
    """The model's outputs on a batch: one call, or one per image concatenated (a batch-1 model)."""
    import torch

    if batched:
        return _as_list(model(batch))
    parts = [_as_list(model(batch[i:i + 1])) for i in range(len(batch))]
    return [torch.cat(outs) for outs in zip(*parts)]


def recover(student, teacher, data, options: RecoveryOptions | None = None,
            progress: Callable[[str], None] | None = None) -> RecoveryReport:
    """Train `student` (in place) toward `teacher`'s outputs on augmented `data` (N x C x H x W images, or a
    Dataset of single-input feeds) for `options.minutes`; a progress line after every epoch (one epoch is
    as many augmented images as there are photos, at least 8 batches)."""
    import torch

    options = options or RecoveryOptions()
    images = torch.from_numpy(as_images(data))
    generator = torch.Generator().manual_seed(options.seed)
    torch.manual_seed(options.seed)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=options.learning_rate)
    steps_per_epoch = max(8, -(-len(images) // options.batch_size))
    budget = options.minutes * 60
    started = time.monotonic()
    epoch = steps = 0
    first = last = float("nan")
    targets = None
    batched = _batched(teacher, images[:2]) if len(images) > 1 else True
    with training_threads():
        while time.monotonic() - started < budget and (options.max_epochs is None or epoch < options.max_epochs):
            student.train()
            total = 0.0
            for _ in range(steps_per_epoch):
                batch = augment(images, options.batch_size, generator, options.mosaic)
                with torch.no_grad():
                    target = _run(teacher, batch, batched)
                if targets is None:   # score channels and spreads, from the teacher on 4 batches
                    probe = [target] + [_run(teacher, augment(images, options.batch_size, generator, options.mosaic),
                                             batched) for _ in range(3)]
                    targets = _targets([torch.cat(outs) for outs in zip(*probe)])
                got = _run(student, batch, batched)
                loss = sum(_loss(g, t, how) for g, t, how in zip(got, target, targets)) / len(target)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                steps += 1
                total += loss.detach().item()
                if time.monotonic() - started >= budget:
                    break
            epoch += 1
            last = total / max(1, steps - (epoch - 1) * steps_per_epoch)
            first = last if epoch == 1 else first
            if progress is not None:
                elapsed = time.monotonic() - started
                progress(f"epoch {epoch}: loss {last:.4f} ({elapsed / 60:.1f} of {options.minutes:g} min)")
    student.eval()
    return RecoveryReport(len(images), epoch, steps, round(time.monotonic() - started, 1), first, last)
