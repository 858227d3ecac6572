"""NAS through the farm: the per-block latency table measured on the device (each distinct block shipped
as a small ONNX model and benchmarked there), kept in the results store by device fingerprint, backend
and settings so later runs reuse it; the search itself is optimizers.nas."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from controller.client import AgentClient
from controller.errors import FarmError
from controller.inventory import LOCAL, connect, load_inventory, resolve_device
from controller.measure import bench
from controller.settings import MeasureSettings
from controller.store import ResultsStore

log = logging.getLogger(__name__)

LUT_SETTINGS = MeasureSettings(threads=1, warmup=10, min_iterations=100, min_seconds=0.3)
REPEATS = 3              # each table entry and each check: the lowest p50 of this many measurements
CALIBRATION_ARCHS = 6    # whole architectures measured to fit the table's scale
CALIBRATION_KEY = "calibration:scale"   # stored beside the blocks in latency_lut
CALIBRATION_SEED = 1000  # the architectures of the check (prediction_errors) use other seeds


def farm_latency_table(client: AgentClient, store: ResultsStore, space, settings: MeasureSettings = LUT_SETTINGS,
                       progress=None, repeats: int = REPEATS, calibrate: int = CALIBRATION_ARCHS):
    """A LatencyTable for the device behind `client`: what the store already has for this device, backend
    and settings is reused; missing blocks are exported, shipped and benchmarked on the device. With
    calibrate > 0, its scale is fitted once on that many whole architectures measured on the device
    (and stored, so later runs reuse it)."""
    from optimizers.nas import LatencyTable, export_block

    info = client.info()
    version = next((b.version for b in info.backends if b.name == "onnxruntime"), "")
    ident = {"device_fingerprint": info.fingerprint, "backend": "onnxruntime", "backend_version": version,
             "settings_key": settings.key(settings.threads)}
    stored = store.lut_get(**ident)
    say = progress or log.info

    def measure(blocks) -> dict[str, float]:
        out = {}
        with tempfile.TemporaryDirectory(prefix="edgefarm-nas-") as tmp:
            paths = [export_block(space, b, Path(tmp) / f"block{i}.onnx") for i, b in enumerate(blocks)]

            def done(i: int, best) -> None:
                b = blocks[i]
                out[b.key] = best.latency_ms["p50"]
                store.lut_put(**ident, block_key=b.key, p50_ms=out[b.key], device_name=info.name,
                              run_id=best.run_id)
                say(f"latency table: {b.key}: {out[b.key] * 1000:.1f} us ({i + 1}/{len(blocks)} new on "
                    f"{info.name})")

            _lowest_in_rounds(paths, client, settings, store, repeats, done)
        return out

    entries = dict(stored)
    scale = entries.pop(CALIBRATION_KEY, None)
    table = LatencyTable(measure=measure, entries=entries, scale=scale or 1.0)
    say(f"latency table for {info.name}: {len(table.entries)} entries from the store"
        + (f", scale {scale:.3f}" if scale else ""))
    if scale is None and calibrate > 0:
        import random

        rng = random.Random(CALIBRATION_SEED)
        archs = [space.sample(rng) for _ in range(calibrate)]
        measured = measure_architectures(client, store, space, archs, settings, repeats)
        for i, (arch, ms) in enumerate(zip(archs, measured)):
            say(f"calibration {i + 1}/{calibrate}: {arch.describe()}: {ms * 1000:.1f} us measured whole")
        table.fit_scale([(space.blocks(a), ms) for a, ms in zip(archs, measured)])
        store.lut_put(**ident, block_key=CALIBRATION_KEY, p50_ms=table.scale, device_name=info.name)
        say(f"latency table scale for {info.name}: {table.scale:.3f} (whole networks / sum of blocks alone)")
    return table


def measure_architectures(client: AgentClient, store: ResultsStore, space, archs: list, settings: MeasureSettings,
                          repeats: int = REPEATS) -> list[float]:
    """p50 of whole architectures on the device (untrained weights: latency does not depend on them)."""
    from optimizers.torch_helpers import export_onnx

    with tempfile.TemporaryDirectory(prefix="edgefarm-nas-arch-") as tmp:
        paths = [export_onnx(space.build(a), Path(tmp) / f"arch{i}.onnx", space.input_shape)
                 for i, a in enumerate(archs)]
        return [b.latency_ms["p50"] for b in _lowest_in_rounds(paths, client, settings, store, repeats)]


def _lowest_in_rounds(paths: list[Path], client: AgentClient, settings: MeasureSettings, store: ResultsStore,
                      repeats: int, on_done=None) -> list:
    """Each file benchmarked `repeats` times in rounds (every file once, then again ...), keeping its lowest
    p50: interference on a shared device only ever adds time, and a slow spell of seconds lands on
    different files in different rounds. on_done(i, best) is called as each file's last round ends."""
    best: list = [None] * len(paths)
    for rnd in range(repeats):
        for i, path in enumerate(paths):
            b = bench(path, client, settings, store)
            if best[i] is None or b.latency_ms["p50"] < best[i].latency_ms["p50"]:
                best[i] = b
            if rnd == repeats - 1 and on_done:
                on_done(i, best[i])
    return best


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
    prediction_errors: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        """The object `farmctl nas --json` prints."""
        return {k: v for k, v in self.__dict__.items()}


def run_nas(device: str | AgentClient = LOCAL, constraints: dict | None = None, iterations: int = 10,
            search_space: str = "mobilenet_v3",
            population: int = 6, proxy_epochs: int = 2, proxy_samples: int = 1500, final_epochs: int = 8,
            out_dir: Path | str = "edgefarm-nas", store: ResultsStore | Path | str | None = None,
            inventory: Path | None = None, choices: dict | None = None, seed: int = 0,
            settings: MeasureSettings = LUT_SETTINGS, progress=None, calibrate: int = CALIBRATION_ARCHS) -> NASRun:
    """Search the MobileNetV3 space on the built-in digits data for the device, then train the best
    architecture, export it and measure it on the device."""
    from optimizers.digits import load_digits_data
    from optimizers.nas import SEARCH_SPACES, NASOptimizer, SearchResult
    from optimizers.torch_helpers import count_params, export_onnx
    from optimizers.training import accuracy

    check_space(search_space)
    started = time.monotonic()
    say = progress or log.info
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    db = store if isinstance(store, ResultsStore) else ResultsStore(store or "edgefarm-results.db")
    data = load_digits_data()
    try:
        ctx = (nullcontext(device) if isinstance(device, AgentClient)
               else connect(resolve_device(device, load_inventory(inventory))))
        with ctx as client:
            table = farm_latency_table(client, db, SEARCH_SPACES[search_space](choices=choices), settings, say,
                                       calibrate=calibrate)
            nas = NASOptimizer(search_space, constraints=constraints, latency_table=table, population=population,
                               proxy_epochs=proxy_epochs, proxy_samples=proxy_samples, seed=seed, choices=choices,
                               progress=say)
            res: SearchResult = nas.search(data.train, data.val, iterations)
            history = [c.to_json() for c in res.history]
            if res.best is None:
                closest = [c.to_json() for c in res.closest]
                what = ", ".join(f"{c['describe']} ({c['reason'] or 'proxy accuracy %.4f' % (c['accuracy'] or 0)})"
                                 for c in closest)
                failure = (f"no architecture in the space meets {constraints}; "
                           + (res.failure if res.failure else f"closest found: {what}") + "; relax a constraint")
                run = NASRun(client.name, dict(constraints or {}), None, None, None, None, history, closest,
                             res.table_size, res.blocks_measured, round(time.monotonic() - started, 1),
                             failure=failure)
                _plot(run, out)
                return run
            say(f"best: {res.best.arch.describe()}: training it {final_epochs} epochs on the full training split")
            import torch

            torch.manual_seed(seed)
            model = nas.train(nas.build_model(res.best.arch), data.train, epochs=final_epochs,
                              progress=lambda s: say("  " + s))
            acc = accuracy(model, data.test)
            path = export_onnx(model, out / "nas-best.onnx")
            measured = bench(path, client, settings, db).latency_ms["p50"]
            say(f"measured on {client.name}: p50 {measured:.3f} ms (predicted {res.best.predicted_ms:.3f} ms), "
                f"test accuracy {acc:.4f}")
            run = NASRun(client.name, dict(constraints or {}), {**res.best.to_json()}, measured, acc,
                         count_params(model), history, [], res.table_size, res.blocks_measured,
                         round(time.monotonic() - started, 1), model_path=str(path))
            lim = (constraints or {}).get("latency_ms")
            if lim is not None and measured > lim:
                run.failure = (f"the best architecture was predicted at {res.best.predicted_ms:.3f} ms but measures "
                               f"{measured:.3f} ms > latency_ms {lim:g} on {client.name}")
            (out / "nas-best.json").write_text(json.dumps(run.best, indent=1))
            _plot(run, out)
            return run
    finally:
        if db is not store:
            db.close()


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
    from optimizers.nas import SEARCH_SPACES

    if name not in SEARCH_SPACES:
        raise FarmError(f"unknown search space '{name}'; known: {', '.join(SEARCH_SPACES)}")


def prediction_errors(client: AgentClient, store: ResultsStore, table, space, n: int = 20, seed: int = 1,
                      settings: MeasureSettings = LUT_SETTINGS, progress=None, repeats: int = REPEATS) -> list[dict]:
    """Check the table: sample n architectures (other than the calibration's), predict each from its
    blocks, measure the whole model on the device; relative error = (predicted - measured) / measured."""
    import random

    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(n)]
    predicted = [table.predict(space.blocks(a)) for a in archs]
    measured = measure_architectures(client, store, space, archs, settings, repeats)
    out = []
    for i, (arch, p, m) in enumerate(zip(archs, predicted, measured)):
        out.append({"arch": arch.describe(), "predicted_ms": p, "measured_ms": m, "error": (p - m) / m})
        (progress or log.info)(f"check {i + 1}/{n}: predicted {p:.3f} ms, measured {m:.3f} ms "
                               f"({out[-1]['error'] * 100:+.1f} %)")
    return out
