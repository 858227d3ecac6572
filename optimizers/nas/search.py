"""Neural architecture search for a target device: MobileNetV3-style blocks, latency predicted from a
per-block lookup table measured on the device (not FLOPs), accuracy from short proxy training, and an
evolutionary search under the constraints (regularized evolution: tournament selection, one mutation per
child, the oldest member retired; Real et al. 2019)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from optimizers.errors import DataMismatch, OptimizerError, UnknownOption
from optimizers.nas.space import SEARCH_SPACES, Architecture, Block, MobileNetV3Space

log = logging.getLogger(__name__)

@dataclass
class LatencyTable:
    """Per-block latencies measured on one device. Each block measured alone also pays for being a whole
    model (the call, feeding its input, returning its output), so the table holds, per input shape, a
    probe model that only applies ReLU; predict(blocks) = probe(first input) + scale * sum(block -
    probe(its input)): the fixed cost once, each block's own work once. A block alone runs a little slower
    than inside a network (its output is allocated and copied out on every call; inside, tensors stay in
    the runtime's arena), so `scale` is fitted on a few whole architectures measured on the device
    (fit_scale); 1.0 until then."""

    measure: Callable[[list[Block]], dict[str, float]]   # measures the blocks it is given, returns key -> ms
    entries: dict[str, float] = field(default_factory=dict)
    measured: int = 0     # entries measured by this table (not found in an earlier run's table)
    scale: float = 1.0    # whole-network / sum-of-blocks ratio of the blocks' own work (fit_scale)
    context: Any = None   # whatever its maker keeps with it (controller.optimization.nas: the reference model entries are
                          # relative to, which checks and final measurements must be measured beside)

    def ensure(self, blocks: list[Block]) -> None:
        """Measure the blocks (and the input probes) the table lacks."""
        wanted = {b.key: b for blk in blocks for b in (blk, blk.probe)}
        missing = [b for k, b in wanted.items() if k not in self.entries]
        if missing:
            self.entries.update(self.measure(missing))
            self.measured += len(missing)

    def overhead_ms(self, input_block: Block) -> float:
        """The fixed cost of one inference fed this block's input."""
        self.ensure([input_block])
        return self.entries[input_block.probe.key]

    def own_ms(self, blocks: list[Block]) -> float:
        """The blocks' own work: each block alone less what any model fed its input costs."""
        self.ensure(blocks)
        return sum(max(self.entries[b.key] - self.entries[b.probe.key], 0.0) for b in blocks)

    def predict(self, blocks: list[Block]) -> float:
        """Predicted latency of a whole model made of these blocks."""
        own = self.own_ms(blocks)
        return self.entries[blocks[0].probe.key] + self.scale * own

    def fit_scale(self, measured: list[tuple[list[Block], float]]) -> float:
        """Fit `scale` on whole architectures measured on the device: the median over them of (measured -
        fixed cost) / own work (the median, so one disturbed measurement does not move it)."""
        ratios = [(ms - self.entries[blocks[0].probe.key]) / own for blocks, ms in measured
                  if (own := self.own_ms(blocks)) > 0]
        if ratios:
            self.scale = float(np.median(ratios))
        return self.scale


@dataclass
class Candidate:
    """One evaluated architecture."""

    arch: Architecture
    predicted_ms: float
    params: int
    size_mb: float
    accuracy: float | None = None
    meets: bool = False
    reason: str = ""

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "arch"}
        return {"arch": self.arch.to_json(), "describe": self.arch.describe(), **d}


@dataclass
class SearchResult:
    """What search() returns: the best architecture and everything evaluated."""

    best: Candidate | None
    history: list[Candidate]
    closest: list[Candidate]
    table_size: int
    blocks_measured: int
    failure: str = ""


def _check_constraints(constraints: dict) -> dict:
    allowed = {"latency_ms", "model_size_mb", "min_accuracy"}
    unknown = set(constraints) - allowed
    if unknown:
        raise OptimizerError(f"unknown constraint(s) {sorted(unknown)}; NAS takes {sorted(allowed)}")
    for k, v in constraints.items():
        if v is not None and (not isinstance(v, (int, float)) or v <= 0):
            raise OptimizerError(f"constraint {k} must be a positive number, got {v!r}")
    return dict(constraints)


@dataclass
class EvolutionSettings:
    """The regularized evolution: population size, tournament size, and the proxy training that scores each
    architecture (epochs on the first `proxy_samples` training images); `seed` makes a search repeatable."""

    population: int = 8
    tournament: int = 3
    proxy_epochs: int = 2
    proxy_samples: int = 1500
    seed: int = 0


class NASOptimizer:
    """`NASOptimizer(search_space="mobilenet_v3", constraints={"latency_ms": 0.2, "model_size_mb": 1,
    "min_accuracy": 0.9}, latency_table=table).search(train_data, validation_data, search_iterations)`.

    The latency of an architecture is predicted from `latency_table` (a LatencyTable measured on the
    device; `controller.optimization.nas.farm_latency_table` builds one through the farm). Accuracy is a proxy: each
    architecture is trained `proxy_epochs` on `proxy_samples` training images and scored on the
    validation data. Architectures predicted over the latency or size limits are never trained."""

    def __init__(self, search_space: str | MobileNetV3Space = "mobilenet_v3", constraints: dict | None = None,
                 latency_table: LatencyTable | None = None, evolution: EvolutionSettings | None = None,
                 choices: dict[str, tuple] | None = None, progress: Callable[[str], None] | None = None,
                 **evolution_fields) -> None:
        if isinstance(search_space, MobileNetV3Space):   # a space for the user's input shape and classes
            self.space = search_space
        elif search_space in SEARCH_SPACES:
            self.space = SEARCH_SPACES[search_space](choices=choices)
        else:
            raise UnknownOption("search space", search_space, SEARCH_SPACES)
        self.constraints = _check_constraints(constraints or {})
        if latency_table is None:
            raise OptimizerError("NAS needs a latency_table measured on the target device: build one with "
                                 "controller.optimization.nas.farm_latency_table(device) (or `farmctl nas --device D`)")
        self.table = latency_table
        unknown = sorted(set(evolution_fields) - {f.name for f in fields(EvolutionSettings)})
        if unknown:
            raise OptimizerError(f"NASOptimizer has no option {', '.join(unknown)}; the evolution's options are "
                                 f"{', '.join(f.name for f in fields(EvolutionSettings))}")
        ev = replace(evolution or EvolutionSettings(), **evolution_fields)
        if ev.population < 2:
            raise OptimizerError(f"population must be >= 2, got {ev.population}")
        self.population = ev.population
        self.tournament = max(2, min(ev.tournament, ev.population))
        self.proxy_epochs = ev.proxy_epochs
        self.proxy_samples = ev.proxy_samples
        self.rng = random.Random(ev.seed)
        self.seed = ev.seed
        self.progress = progress or log.info

    # --- pieces ------------------------------------------------------------------------------------
    def build_model(self, arch: Architecture | list[dict]):
        """The architecture (or its JSON) as an untrained PyTorch model."""
        if not isinstance(arch, Architecture):
            arch = Architecture.from_json(arch)
        return self.space.build(arch)

    def train(self, model, train_data, epochs: int = 8, learning_rate: float = 1e-2, **kw):
        """Train a found model (the shared training loop); returns it."""
        from optimizers.pytorch.training import train

        train(model, train_data, epochs=epochs, learning_rate=learning_rate, **kw)
        return model

    def _describe(self, arch: Architecture) -> Candidate:
        from optimizers.pytorch.helpers import count_params

        blocks = self.space.blocks(arch)
        params = count_params(self.space.build(arch))
        return Candidate(arch, self.table.predict(blocks), params, params * 4 / 1e6)

    def _fits(self, c: Candidate) -> str:
        lim, size = self.constraints.get("latency_ms"), self.constraints.get("model_size_mb")
        if lim is not None and c.predicted_ms > lim:
            return f"predicted {c.predicted_ms:.3f} ms > latency_ms {lim:g}"
        if size is not None and c.size_mb > size:
            return f"{c.size_mb:.3f} MB > model_size_mb {size:g}"
        return ""

    def _score(self, c: Candidate, train_data, validation_data) -> None:
        import torch

        from optimizers.pytorch.training import accuracy, train

        torch.manual_seed(self.seed)
        model = self.space.build(c.arch)
        x, y = train_data
        train(model, (x[:self.proxy_samples], y[:self.proxy_samples]), epochs=self.proxy_epochs,
              learning_rate=1e-2, progress=lambda s: None)
        c.accuracy = accuracy(model, validation_data)
        min_acc = self.constraints.get("min_accuracy")
        c.meets = min_acc is None or c.accuracy >= min_acc
        if not c.meets:
            c.reason = f"proxy accuracy {c.accuracy:.4f} < min_accuracy {min_acc:g}"

    # --- the search ----------------------------------------------------------------------------------
    def search(self, train_data, validation_data, search_iterations: int = 20) -> SearchResult:
        """Regularized evolution under the constraints; returns the best architecture found."""
        train_data = _xy(train_data, "train_data")
        validation_data = _xy(validation_data, "validation_data")
        history: list[Candidate] = []
        rejected: list[Candidate] = []
        population: list[Candidate] = []
        lim = self.constraints.get("latency_ms")
        fixed = self.table.overhead_ms(self.space.blocks(self.space.sample(random.Random(0)))[0])
        if lim is not None and lim <= fixed:
            return SearchResult(None, [], [], len(self.table.entries), self.table.measured,
                                failure=f"latency_ms {lim:g} is below this device's fixed cost of one inference "
                                        f"({fixed:.4f} ms, measured on a model that only applies ReLU to the "
                                        "input): no architecture can meet it")
        tries = 0
        while len(population) < self.population and tries < self.population * 25:
            tries += 1
            c = self._describe(self.space.sample(self.rng))
            why = self._fits(c)
            if why:
                c.reason = why
                rejected.append(c)
                continue
            self._score(c, train_data, validation_data)
            population.append(c)
            history.append(c)
            self.progress(f"initial {len(population)}/{self.population}: {c.arch.describe()}: predicted "
                          f"{c.predicted_ms:.3f} ms, proxy accuracy {c.accuracy:.4f}")
        if not population:
            closest = sorted(rejected, key=lambda r: r.predicted_ms)[:3]
            return SearchResult(None, history, closest, len(self.table.entries), self.table.measured)
        for it in range(search_iterations):
            sample = self.rng.sample(population, min(self.tournament, len(population)))
            parent = max(sample, key=lambda c: c.accuracy or 0.0)
            for _attempt in range(25):
                child = self._describe(self.space.mutate(parent.arch, self.rng))
                why = self._fits(child)
                if not why:
                    break
                child.reason = why
                rejected.append(child)
            else:
                continue
            self._score(child, train_data, validation_data)
            history.append(child)
            population.append(child)
            population.pop(0)  # the oldest leaves (regularized evolution)
            self.progress(f"iteration {it + 1}/{search_iterations}: {child.arch.describe()}: predicted "
                          f"{child.predicted_ms:.3f} ms, proxy accuracy {child.accuracy:.4f}")
        ok = [c for c in history if c.meets]
        best = max(ok, key=lambda c: (c.accuracy, -c.predicted_ms)) if ok else None
        closest = [] if best else sorted(history, key=lambda c: -(c.accuracy or 0))[:3]
        return SearchResult(best, history, closest, len(self.table.entries), self.table.measured)


def _xy(data, what: str) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(data, "x") and hasattr(data, "y"):
        data = (data.x, data.y)
    if not (isinstance(data, tuple) and len(data) == 2):
        raise DataMismatch(f"{what} must be (inputs, labels) arrays or a Split")
    x, y = np.asarray(data[0], np.float32), np.asarray(data[1], np.int64)
    if len(x) == 0:
        raise DataMismatch(f"{what} is empty")
    if len(x) != len(y):
        raise DataMismatch(f"{what}: {len(x)} inputs but {len(y)} labels")
    return x, y
