"""NAS through the farm: the per-block latency table measured on the device (each distinct block shipped
as a small ONNX model and benchmarked there), kept in the results store by device fingerprint, backend
and settings so later runs reuse it; the search itself is optimizers.nas.search."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from controller.errors import FarmError
from controller.fleet.client import AgentClient
from controller.fleet.connect import connect
from controller.fleet.inventory import LOCAL, load_inventory, resolve_device
from controller.measure.preflight import check_model
from controller.measure.settings import MeasureSettings
from controller.measure.store import ResultsStore
from controller.measure.undisturbed import Measured, Reference, Undisturbed, measure_undisturbed
from optimizers.data.digits import load_digits_data
from optimizers.data.labelled import load_labelled
from optimizers.nas.search import EvolutionSettings, LatencyTable, NASOptimizer, SearchResult
from optimizers.nas.space import SEARCH_SPACES, export_block
from optimizers.pytorch.helpers import count_params, export_onnx
from optimizers.pytorch.training import accuracy

log = logging.getLogger(__name__)

LUT_SETTINGS = MeasureSettings(threads=1, warmup=10, min_iterations=100, min_seconds=0.3)
CALIBRATION_ARCHS = 6    # whole architectures measured to fit the table's scale
CALIBRATION_KEY = "calibration:scale"   # stored beside the blocks in latency_lut
CALIBRATION_SEED = 1000  # the architectures of the check (prediction_errors) use other seeds
REFERENCE_SEED = 7       # the reference model: this random architecture of the space, timed beside everything
REFERENCE_KEY = "reference:p50"         # its p50 when the table was made: the speed entries are expressed at


def make_reference(space, rule: Undisturbed = Undisturbed()) -> Reference:
    """The space's reference architecture (fixed seed, fixed weights), exported into a temporary folder
    that lives as long as the Reference, and checked once."""
    import torch  # torch only once NAS runs: the farm extra has no torch

    arch = space.sample(random.Random(REFERENCE_SEED))
    torch.manual_seed(0)
    folder = tempfile.TemporaryDirectory(prefix="edgefarm-nas-ref-")
    path = export_onnx(space.build(arch), Path(folder.name) / "reference.onnx", space.input_shape)
    shape = "x".join(map(str, space.input_shape[1:]))
    return Reference(check_model(path), f"{arch.describe()} @ {shape}", rule, folder=folder)


def farm_latency_table(client: AgentClient, store: ResultsStore, space, settings: MeasureSettings = LUT_SETTINGS,
                       progress=None, calibrate: int = CALIBRATION_ARCHS, reference: Reference | None = None,
                       rule: Undisturbed = Undisturbed()):
    """A LatencyTable for the device behind `client`: what the store already has for this device, backend,
    settings and reference model is reused; missing blocks are exported, shipped and benchmarked on the
    device (measure_undisturbed). With calibrate > 0, its scale is fitted once on that many whole
    architectures measured on the device (and stored, so later runs reuse it). `table.context` is the
    Reference (made with `rule` unless one is given): checks and final measurements are measured beside it."""
    say = progress or log.info
    reference = reference or make_reference(space, rule)
    info = client.info()
    version = next((b.version for b in info.backends if b.name == "onnxruntime"), "")
    ref_id = hashlib.sha256(reference.key.encode()).hexdigest()[:12]
    ident = {"device_fingerprint": info.fingerprint, "backend": "onnxruntime", "backend_version": version,
             "settings_key": f"{settings.key(settings.threads)}|reference={ref_id}"}
    stored = store.lut_get(**ident)

    def measure(blocks) -> dict[str, float]:
        with tempfile.TemporaryDirectory(prefix="edgefarm-nas-") as tmp:
            paths = [export_block(space, b, Path(tmp) / f"block{i}.onnx") for i, b in enumerate(blocks)]
            say(f"latency table: measuring {len(blocks)} new block(s) on {info.name}, each beside the reference")
            got = measure_undisturbed(paths, client, settings, store, reference,
                                      progress=lambda line: say(f"  {line}"), labels=[b.key for b in blocks])
        if REFERENCE_KEY not in saved:    # the first entries fix the speed every entry is expressed at
            store.lut_put(**ident, block_key=REFERENCE_KEY, p50_ms=reference.nominal_ms, device_name=info.name)
            saved.add(REFERENCE_KEY)
            say(f"latency table: reference model {reference.nominal_ms * 1000:.1f} us at its fastest on {info.name}")
        out = {}
        for i, (b, m) in enumerate(zip(blocks, got)):
            out[b.key] = m.ms
            store.lut_put(**ident, block_key=b.key, p50_ms=m.ms, device_name=info.name, run_id=m.run_id)
            say(f"latency table: {b.key}: {m.ms * 1000:.1f} us ({i + 1}/{len(blocks)} new on {info.name}; "
                f"{m.undisturbed}/{m.attempts} measurements undisturbed)")
        return out

    entries = dict(stored)
    saved = set(entries)
    scale = entries.pop(CALIBRATION_KEY, None)
    if REFERENCE_KEY in entries:
        reference.nominal_ms = entries.pop(REFERENCE_KEY)
    table = LatencyTable(measure=measure, entries=entries, scale=scale or 1.0, context=reference)
    say(f"latency table for {info.name}: {len(table.entries)} entries from the store"
        + (f", scale {scale:.3f}" if scale else "") + f"; reference model {reference.key}")
    if scale is None and calibrate > 0:
        rng = random.Random(CALIBRATION_SEED)
        archs = [space.sample(rng) for _ in range(calibrate)]
        table.ensure([b for a in archs for b in space.blocks(a)])     # one batch: fewer small rounds
        measured = measure_architectures(client, store, space, archs, settings, reference)
        for i, (arch, m) in enumerate(zip(archs, measured)):
            say(f"calibration {i + 1}/{calibrate}: {arch.describe()}: {m.ms * 1000:.1f} us measured whole")
        table.fit_scale([(space.blocks(a), m.ms) for a, m in zip(archs, measured)])
        store.lut_put(**ident, block_key=CALIBRATION_KEY, p50_ms=table.scale, device_name=info.name)
        say(f"latency table scale for {info.name}: {table.scale:.3f} (whole networks / sum of blocks alone)")
    return table


def measure_architectures(client: AgentClient, store: ResultsStore, space, archs: list, settings: MeasureSettings,
                          reference: Reference, progress=None) -> list[Measured]:
    """Whole architectures measured on the device like the table's blocks (untrained weights: latency
    does not depend on them)."""
    with tempfile.TemporaryDirectory(prefix="edgefarm-nas-arch-") as tmp:
        paths = [export_onnx(space.build(a), Path(tmp) / f"arch{i}.onnx", space.input_shape)
                 for i, a in enumerate(archs)]
        return measure_undisturbed(paths, client, settings, store, reference, progress,
                                   labels=[a.describe() for a in archs])


@dataclass
class NASRun:
    """A finished `farmctl nas`: the best architecture, its measured latency and accuracy, the table."""

    device: str
    constraints: dict
    best: dict | None
    measured_ms: float | None
    accuracy: float | None
    params: int | None
    history: list[dict]
    closest: list[dict]
    table_blocks: int
    blocks_measured: int
    wall_seconds: float
    model_path: str | None = None
    plot: str | None = None
    failure: str | None = None

    def to_json(self) -> dict:
        """The object `farmctl nas --json` prints."""
        return {k: v for k, v in self.__dict__.items()}


@dataclass(kw_only=True)
class NASOptions:
    """How `run_nas` searches: the search (iterations, space, evolution), the final training, where it
    writes and stores, and how the device is measured (settings, the scale's calibration, the rule for
    an undisturbed measurement)."""

    iterations: int = 10
    search_space: str = "mobilenet_v3"
    population: int = 6
    proxy_epochs: int = 2
    proxy_samples: int = 1500
    final_epochs: int = 8
    out_dir: Path | str = "edgefarm-nas"
    store: ResultsStore | Path | str | None = None
    inventory: Path | None = None
    choices: dict | None = None
    seed: int = 0
    settings: MeasureSettings = field(default_factory=lambda: LUT_SETTINGS)
    progress: Any = None
    calibrate: int = CALIBRATION_ARCHS
    rule: Undisturbed = field(default_factory=Undisturbed)
    data: Any = None          # the user's labelled data (arrays, .npz, class folders); None: the digits example
    image_size: int = 32      # an image folder's images are resized to this

    def evolution(self) -> EvolutionSettings:
        return EvolutionSettings(population=self.population, proxy_epochs=self.proxy_epochs,
                                 proxy_samples=self.proxy_samples, seed=self.seed)


def run_nas(device: str | AgentClient = LOCAL, constraints: dict | None = None, *,
            options: NASOptions | None = None, **overrides) -> NASRun:
    """Search the MobileNetV3 space on the built-in digits data for the device, then train the best
    architecture, export it and measure it on the device. Options come as a NASOptions, or as its fields
    by keyword (`run_nas("local", {"latency_ms": 2}, iterations=4)`)."""
    known = {f.name for f in fields(NASOptions)}
    if set(overrides) - known:
        raise FarmError(f"run_nas() has no option {', '.join(sorted(set(overrides) - known))}; the options are: "
                        f"{', '.join(sorted(known))}")
    opts = replace(options or NASOptions(), **overrides)
    check_space(opts.search_space)
    started = time.monotonic()
    say = opts.progress or log.info
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    db = opts.store if isinstance(opts.store, ResultsStore) else ResultsStore(opts.store or "edgefarm-results.db")
    data = load_digits_data() if opts.data is None else load_labelled(opts.data, opts.image_size)
    space = SEARCH_SPACES[opts.search_space](input_shape=data.input_shape, num_classes=data.num_classes,
                                             choices=opts.choices)
    say(f"data: {data.source}: {len(data.train)} training, {len(data.val)} validation, {len(data.test)} test "
        f"samples, input {list(data.input_shape)}, {data.num_classes} classes")
    try:
        ctx = (nullcontext(device) if isinstance(device, AgentClient)
               else connect(resolve_device(device, load_inventory(opts.inventory))))
        with ctx as client:
            table = farm_latency_table(client, db, space, opts.settings, say, calibrate=opts.calibrate,
                                       rule=opts.rule)
            nas = NASOptimizer(space, constraints=constraints, latency_table=table,
                               evolution=opts.evolution(), choices=opts.choices, progress=say)
            res = nas.search(data.train, data.val, opts.iterations)
            run = (_nothing_fits(res, client.name, constraints) if res.best is None
                   else _train_best(nas, res, client, db, table, data, constraints, opts))
            run.wall_seconds = round(time.monotonic() - started, 1)
            if run.best is not None:
                (out / "nas-best.json").write_text(json.dumps(run.best, indent=1))
            _plot(run, out)
            return run
    finally:
        if db is not opts.store:
            db.close()


def _nothing_fits(res: SearchResult, device: str, constraints: dict | None) -> NASRun:
    closest = [c.to_json() for c in res.closest]
    what = ", ".join(f"{c['describe']} ({c['reason'] or 'proxy accuracy %.4f' % (c['accuracy'] or 0)})"
                     for c in closest)
    failure = (f"no architecture in the space meets {constraints}; "
               + (res.failure if res.failure else f"closest found: {what}") + "; relax a constraint")
    return NASRun(device, dict(constraints or {}), None, None, None, None, [c.to_json() for c in res.history],
                  closest, res.table_size, res.blocks_measured, 0.0, failure=failure)


def _train_best(nas: NASOptimizer, res: SearchResult, client: AgentClient, db: ResultsStore, table, data,
                constraints: dict | None, opts: NASOptions) -> NASRun:
    """Train the best architecture on the full training split, export it, measure it on the device."""
    import torch  # torch only once a search has found something to train

    say = opts.progress or log.info
    out = Path(opts.out_dir)
    say(f"best: {res.best.arch.describe()}: training it {opts.final_epochs} epochs on the full training split")
    torch.manual_seed(opts.seed)
    model = nas.train(nas.build_model(res.best.arch), data.train, epochs=opts.final_epochs,
                      progress=lambda s: say("  " + s))
    acc = accuracy(model, data.test)
    path = export_onnx(model, out / "nas-best.onnx", nas.space.input_shape)
    m = measure_undisturbed([path], client, opts.settings, db, table.context)[0]
    say(f"measured on {client.name}: p50 {m.ms:.3f} ms at the device's undisturbed speed (as measured "
        f"{m.raw_ms:.3f} ms; predicted {res.best.predicted_ms:.3f} ms), test accuracy {acc:.4f}")
    run = NASRun(client.name, dict(constraints or {}), {**res.best.to_json()}, m.ms, acc, count_params(model),
                 [c.to_json() for c in res.history], [], res.table_size, res.blocks_measured, 0.0,
                 model_path=str(path))
    lim = (constraints or {}).get("latency_ms")
    if lim is not None and m.ms > lim:
        run.failure = (f"the best architecture was predicted at {res.best.predicted_ms:.3f} ms but measures "
                       f"{m.ms:.3f} ms > latency_ms {lim:g} on {client.name}")
    return run


def _plot(run: NASRun, out: Path) -> None:
    """nas.png: predicted latency vs proxy accuracy of every evaluated architecture, the best marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    pts = [(h["predicted_ms"], h["accuracy"]) for h in run.history if h.get("accuracy") is not None]
    if not pts:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#4c78a8", s=28, label="evaluated (proxy)")
    if run.best:
        ax.scatter(run.best["predicted_ms"], run.best["accuracy"], s=200, facecolors="none", edgecolors="black",
                   label="best")
    lim = run.constraints.get("latency_ms")
    if lim:
        ax.axvline(lim, color="#e45756", linestyle="--", label=f"latency_ms {lim:g}")
    ax.set_xlabel(f"predicted latency on {run.device} (ms, from the measured block table)")
    ax.set_ylabel("proxy accuracy (validation)")
    ax.set_title("NAS: evaluated architectures")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "nas.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    run.plot = str(path)


def check_space(name: str) -> None:
    """An unknown search space is a FarmError naming the known ones."""
    if name not in SEARCH_SPACES:
        raise FarmError(f"unknown search space '{name}'; known: {', '.join(SEARCH_SPACES)}")


@dataclass(frozen=True)
class PredictionCheck:
    """One architecture of prediction_errors(): the table's prediction against the whole model measured."""

    arch: str            # Architecture.describe()
    predicted_ms: float  # from the block table
    measured_ms: float   # at the reference's nominal speed
    raw_ms: float        # as measured
    undisturbed: int     # measurements with the reference within Undisturbed.accept of its fastest
    attempts: int

    @property
    def error(self) -> float:
        """(predicted - measured) / measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


def prediction_errors(client: AgentClient, store: ResultsStore, table, space, n: int = 20, seed: int = 1,
                      settings: MeasureSettings = LUT_SETTINGS, progress=None) -> list[PredictionCheck]:
    """Check the table: sample n architectures (other than the calibration's), predict each from its
    blocks, measure the whole model on the device beside the table's reference model (measure_undisturbed)."""
    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(n)]
    table.ensure([b for a in archs for b in space.blocks(a)])   # the blocks it lacks, in one batch
    predicted = [table.predict(space.blocks(a)) for a in archs]
    measured = measure_architectures(client, store, space, archs, settings, table.context)
    out = []
    for i, (arch, p, m) in enumerate(zip(archs, predicted, measured)):
        c = PredictionCheck(arch.describe(), p, m.ms, m.raw_ms, m.undisturbed, m.attempts)
        out.append(c)
        (progress or log.info)(f"check {i + 1}/{n}: predicted {p:.3f} ms, measured {m.ms:.3f} ms "
                               f"({c.error * 100:+.1f} %; as measured {m.raw_ms:.3f} ms, "
                               f"{m.undisturbed}/{m.attempts} undisturbed)")
    return out
