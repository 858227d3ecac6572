"""The NAS search space: MobileNetV3-style architectures (stages of inverted-residual blocks with optional
squeeze-excite and ReLU or hard-swish), the blocks they are made of (each with a key for the latency
table), sampling and mutation, and building or exporting them as PyTorch models."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from optimizers.errors import OptimizerError

ACTIVATIONS = ("relu", "hswish")


@dataclass(frozen=True)
class StageChoice:
    """The choices of one stage: how many blocks, and each block's kernel, expansion, width, SE, activation."""

    depth: int
    kernel: int
    expand: int
    width: float
    se: bool
    act: str


@dataclass(frozen=True)
class Architecture:
    """One point of the search space: a choice per stage."""

    stages: tuple[StageChoice, ...]

    def to_json(self) -> list[dict]:
        """The architecture as data."""
        return [asdict(s) for s in self.stages]

    @classmethod
    def from_json(cls, data: list[dict]) -> Architecture:
        """Inverse of to_json."""
        return cls(tuple(StageChoice(**d) for d in data))

    def describe(self) -> str:
        """e.g. 'd2 k3 e4 w1.0 se hswish / ...' (one part per stage)."""
        return " / ".join(f"d{s.depth} k{s.kernel} e{s.expand} w{s.width:g}{' se' if s.se else ''} {s.act}"
                          for s in self.stages)


@dataclass(frozen=True)
class Block:
    """One layer group as the latency table sees it: its kind, shapes and choices (the table's key)."""

    kind: str            # stem | mbconv | head
    cin: int
    cout: int
    size: int            # input height = width
    stride: int = 1
    kernel: int = 3
    expand: int = 1
    se: bool = False
    act: str = "relu"

    @property
    def probe(self) -> Block:
        """The "input" pseudo-block of this block's input shape: a lone ReLU. Measured alone it costs what
        any model fed this input costs beyond its compute (the call, feeding and returning tensors)."""
        return Block("input", self.cin, self.cin, self.size)

    @property
    def key(self) -> str:
        """Stable text key of the configuration."""
        return (f"{self.kind}:c{self.cin}-{self.cout}:s{self.size}/{self.stride}:k{self.kernel}:e{self.expand}:"
                f"{'se' if self.se else 'nose'}:{self.act}")


FINAL_SIZE = 7   # the last feature map's side the strides aim at


def _divisible(v: float, d: int = 8) -> int:
    return max(d, int(v + d / 2) // d * d)


class MobileNetV3Space:
    """MobileNetV3-style search space for an input shape and class count (the digits example's 1x28x28 and
    10 classes by default): a 3x3 stem, four stages of inverted-residual blocks (optional squeeze-excite,
    ReLU or hard-swish), a 1x1 head. The strides follow the input size: enough stride-2 stages (then a
    strided stem) to bring the last feature map to about 7x7 (28x28 and 32x32: two; 64: three; 96: four;
    224: four and the stem)."""

    name = "mobilenet_v3"
    # (base channels, stride of the first block) per stage
    STAGES = ((16, 2), (24, 2), (40, 1), (64, 1))
    STEM = 16
    HEAD = 128
    DEFAULT_CHOICES = {"depth": (1, 2, 3), "kernel": (3, 5), "expand": (2, 4, 6), "width": (0.75, 1.0),
                       "se": (False, True), "act": ACTIVATIONS}

    def __init__(self, input_shape: tuple[int, ...] = (1, 1, 28, 28), num_classes: int = 10,
                 choices: dict[str, tuple] | None = None) -> None:
        if len(input_shape) != 4 or input_shape[2] != input_shape[3] or min(input_shape) < 1:
            raise OptimizerError(f"the search space takes square images (1, C, S, S); got input shape "
                                 f"{list(input_shape)}")
        if num_classes < 2:
            raise OptimizerError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.input_shape = (1, *tuple(input_shape)[1:])
        self.num_classes = num_classes
        downsamples = max(0, round(math.log2(self.input_shape[-1] / FINAL_SIZE)))
        self.stem_stride = 2 if downsamples > len(self.STAGES) else 1
        self.strides = tuple(2 if i < downsamples else 1 for i in range(len(self.STAGES)))
        unknown = set(choices or {}) - set(self.DEFAULT_CHOICES)
        if unknown:
            raise OptimizerError(f"unknown search-space choice(s) {sorted(unknown)}; the choices are "
                                 f"{list(self.DEFAULT_CHOICES)}")
        self.choices = {**self.DEFAULT_CHOICES, **{k: tuple(v) for k, v in (choices or {}).items()}}
        if any(len(v) == 0 for v in self.choices.values()):
            raise OptimizerError("every search-space choice needs at least one value")

    def sample(self, rng: random.Random) -> Architecture:
        """A uniformly random architecture."""
        return Architecture(tuple(StageChoice(**{k: rng.choice(v) for k, v in self.choices.items()})
                                  for _ in self.STAGES))

    def mutate(self, arch: Architecture, rng: random.Random) -> Architecture:
        """Change one choice of one stage (to a different value when there is one)."""
        stages = list(arch.stages)
        i = rng.randrange(len(stages))
        options = [k for k, v in self.choices.items() if len(v) > 1]
        if not options:
            return arch
        key = rng.choice(options)
        values = [v for v in self.choices[key] if v != getattr(stages[i], key)]
        stages[i] = replace(stages[i], **{key: rng.choice(values)})
        return Architecture(tuple(stages))

    def blocks(self, arch: Architecture) -> list[Block]:
        """The layer groups of an architecture, in order, with their input sizes."""
        size = self.input_shape[-1]
        cin = self.STEM
        out = [Block("stem", self.input_shape[1], self.STEM, size, self.stem_stride, act="hswish")]
        size = (size + self.stem_stride - 1) // self.stem_stride
        for (base, _), stride, st in zip(self.STAGES, self.strides, arch.stages):
            cout = _divisible(base * st.width)
            for i in range(st.depth):
                s = stride if i == 0 else 1
                out.append(Block("mbconv", cin, cout, size, s, st.kernel, st.expand, st.se, st.act))
                size = (size + s - 1) // s
                cin = cout
        out.append(Block("head", cin, self.HEAD, size, act="hswish"))
        return out

    def block_module(self, block: Block):
        """One block as a PyTorch module (what the latency table measures and the model is built from)."""
        import torch.nn as nn

        act = nn.Hardswish if block.act == "hswish" else nn.ReLU
        if block.kind == "input":
            return nn.ReLU()
        if block.kind == "stem":
            return nn.Sequential(nn.Conv2d(block.cin, block.cout, 3, block.stride, 1, bias=False), nn.BatchNorm2d(block.cout),
                                 act())
        if block.kind == "head":
            return nn.Sequential(nn.Conv2d(block.cin, block.cout, 1, bias=False), nn.BatchNorm2d(block.cout), act(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(block.cout, self.num_classes))
        return _MBConv(block, act)

    def build(self, arch: Architecture):
        """The architecture as a PyTorch model."""
        import torch.nn as nn

        return nn.Sequential(*[self.block_module(b) for b in self.blocks(arch)])


def _MBConv(block: Block, act):
    import torch.nn as nn

    class SqueezeExcite(nn.Module):
        def __init__(self, ch: int) -> None:
            super().__init__()
            mid = _divisible(ch / 4)
            self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, mid, 1), nn.ReLU(), nn.Conv2d(mid, ch, 1),
                                    nn.Hardsigmoid())

        def forward(self, x):
            return x * self.fc(x)

    class MBConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            hidden = block.cin * block.expand
            layers = [nn.Conv2d(block.cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act(),
                      nn.Conv2d(hidden, hidden, block.kernel, block.stride, block.kernel // 2, groups=hidden,
                                bias=False), nn.BatchNorm2d(hidden), act()]
            if block.se:
                layers.append(SqueezeExcite(hidden))
            layers += [nn.Conv2d(hidden, block.cout, 1, bias=False), nn.BatchNorm2d(block.cout)]
            self.body = nn.Sequential(*layers)
            self.residual = block.stride == 1 and block.cin == block.cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    return MBConv()


SEARCH_SPACES = {"mobilenet_v3": MobileNetV3Space}


def export_block(space: MobileNetV3Space, block: Block, path: Path) -> Path:
    """One block as a single-file ONNX model with its own input shape (what the device measures)."""
    from optimizers.pytorch.helpers import export_onnx

    return export_onnx(space.block_module(block), path, (1, block.cin, block.size, block.size))
