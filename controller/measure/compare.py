"""Comparing stored runs (`farmctl compare`, `compare_runs`): two or more sides, each a run, a model's or a
device's newest run; their latency deltas against the first side, with the paired speedup and its 95 %
interval where the store holds the two models timed in the same loop (controller/measure/paired.py), and
a per-layer diff aligned on the graph nodes behind each profile row (ONNX Runtime fuses and renames nodes:
`conv` and `relu` run as one kernel named after neither)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.stats import PairedRatio, paired_ratio
from controller.errors import FarmError, UsageError
from controller.measure import frames
from controller.measure.layer_diff import layer_diff, layers_markdown
from controller.measure.paired import NOISE_MARGIN
from controller.measure.store import ResultsStore, location, opened

PREFIXES = ("run", "model", "device")
LIST_RUNS = "`farmctl report` lists the stored runs"


@contextmanager
def reading(store: ResultsStore | Path | str) -> Iterator[ResultsStore]:
    """An open store to read (one given by path is closed after): a missing file or a store without runs is
    one sentence saying to measure first, never a new empty file."""
    if not isinstance(store, ResultsStore) and isinstance(location(store), Path) and not Path(store).exists():
        raise FarmError(f"no results store at '{store}'; run `farmctl bench` first or pass --store")
    with opened(store) as db:
        if not db.runs(limit=1):
            raise FarmError(f"the results store '{db.path}' holds no runs yet; measure first: `farmctl bench "
                            "MODEL` (and `farmctl profile MODEL` for its layers)")
        yield db


@dataclass
class Side:
    """One compared side: what was asked for, the run whose latency stands for it, and the profile run
    whose layers do (None when the store has no profile of that model on that device)."""

    key: str                 # A, B, C ...
    selector: str            # as given: '7', 'run:7', 'model:NAME', 'device:NAME'
    run: dict                # every column of the run
    layers_run: int | None = None
    layers_threads: int | None = None
    times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)

    @property
    def label(self) -> str:
        r = self.run
        return f"{self.key}: run {r['id']}, {r['model_name']} on {r['device_name']} ({r['kind']}, {r['threads']}t)"


@dataclass
class Comparison:
    """What `compare_runs` found: `frame` has one row per side (latency, deltas and speedups against the
    first side, the paired interval where one exists), `layers` one row per aligned layer."""

    sides: list[Side]
    frame: object            # pandas.DataFrame
    layers: object           # pandas.DataFrame
    notes: list[str] = field(default_factory=list)

    def to_markdown(self, top: int = 25) -> str:
        """The latency table, the notes and the slowest `top` aligned layers (0: all), paste-able."""
        keys = " vs ".join(s.key for s in self.sides)
        text = f"## latency: {keys}\n\n" + latency_markdown(self.frame) + "\n"
        text += "".join(f"- {n}\n" for n in self.notes)
        with_layers = [s for s in self.sides if s.layers_run is not None]
        if len(with_layers) >= 2:
            runs = ", ".join(f"{s.key} run {s.layers_run}" for s in with_layers)
            text += f"\n## layers ({runs}), aligned on graph nodes\n\n" + layers_markdown(self.layers, top)
        return text

    def to_json(self) -> dict:
        """The comparison as JSON-ready data (what `farmctl compare --json` prints)."""
        return {"sides": [{"key": s.key, "selector": s.selector, "run": s.run["id"], "layers_run": s.layers_run}
                          for s in self.sides],
                "latency": frames.records(self.frame), "layers": frames.records(self.layers), "notes": self.notes}


def _find_run(db: ResultsStore, run_id: int) -> dict:
    found = db.run(run_id)
    if found is None:
        raise FarmError(f"no run {run_id} in '{db.path}'; {LIST_RUNS}")
    return found


def _newest(db: ResultsStore, what: str, name: str, model: str | None, device: str | None) -> dict:
    """The newest successful benchmark (else profile) of a model or on a device, narrowed by the other."""
    filters = {"model": name if what == "model" else model, "device": name if what == "device" else device}
    for kind in ("benchmark", "profile"):
        found = db.runs(**filters, kind=kind, status="ok", limit=1)
        if found:
            return db.run(found[0]["id"])
    narrowed = f" on device '{device}'" if what == "model" and device else (
        f" of model '{model}'" if what == "device" and model else "")
    subject = f"of model '{name}'" if what == "model" else f"on device '{name}'"
    fix = (f"farmctl bench {name}.onnx{' --device ' + device if device else ''}" if what == "model" else
           f"farmctl bench {model + '.onnx' if model else 'MODEL'} --device {name}")
    failed = " (only failed ones)" if db.runs(**filters, limit=1) else ""
    raise FarmError(f"no successful run {subject}{narrowed} in '{db.path}'{failed}; measure it first "
                    f"with `{fix}` ({LIST_RUNS})")


def resolve(db: ResultsStore, selector: str | int, model: str | None = None, device: str | None = None) -> dict:
    """The run a selector stands for: a run id ('7', 'run:7'), 'model:NAME' (name or digest prefix) or
    'device:NAME' (its newest successful benchmark, else profile; `model`/`device` narrow them), or a bare
    name, taken as a model or a device by what the store holds."""
    text = str(selector).strip()
    prefix, _, rest = text.partition(":")
    if prefix not in PREFIXES or not rest:
        prefix, rest = ("run", text) if text.isdigit() else ("", text)
    if prefix == "run":
        if not rest.isdigit():
            raise UsageError(f"'{text}' is not a run id; give a number such as run:7 ({LIST_RUNS})")
        return _find_run(db, int(rest))
    if prefix:
        return _newest(db, prefix, rest, model, device)
    is_model, is_device = bool(db.runs(model=rest, limit=1)), bool(db.runs(device=rest, limit=1))
    if is_model and is_device:
        raise UsageError(f"'{rest}' names both a model and a device; write model:{rest} or device:{rest}")
    if not (is_model or is_device):
        raise FarmError(f"no run, model or device '{rest}' in '{db.path}'; measure it first with `farmctl bench "
                        f"{rest}.onnx`, or pick one of the stored runs ({LIST_RUNS})")
    return _newest(db, "model" if is_model else "device", rest, model, device)


def _layers_run(db: ResultsStore, run: dict) -> tuple[int | None, int | None]:
    """(id, threads) of the run itself when it is a profile, else of the newest successful profile of the
    same model on the same device (the same threads preferred); (None, None) without one."""
    if run["kind"] == "profile" and run["status"] == "ok":
        return run["id"], run["threads"]
    found = db.runs(model=run["model_digest"], device=run["device_name"], kind="profile", status="ok")
    same = [r for r in found if r["threads"] == run["threads"]]
    return ((same or found)[0]["id"], (same or found)[0]["threads"]) if found else (None, None)


def paired(db: ResultsStore, first: dict, other: dict) -> PairedRatio | None:
    """`other`'s speedup over `first` (first's time / other's, > 1: other is faster) from every stored loop
    that timed the two models in turn on the same device, backend and threads; None when there is none."""
    a, b = first["model_digest"], other["model_digest"]
    same = ("device_fingerprint", "backend", "threads")
    if a == b or any(first[k] != other[k] for k in same):
        return None
    rounds = []
    for timed, ref in ((b, a), (a, b)):
        for r in db.runs(model=timed, device=other["device_name"], status="ok"):
            if r["model_digest"] != timed or r["reference_digest"] != ref or any(r[k] != other[k] for k in same):
                continue
            times, ref_times = db.times(r["id"])
            if times.size and ref_times.size:   # a round is (first's times, other's times), pair by pair
                rounds.append((ref_times, times) if timed == b else (times, ref_times))
    return paired_ratio(rounds) if rounds else None


def latency_frame(db: ResultsStore, sides: list[Side]):
    """One row per side: p50/p95/mean, their deltas and the p50 speedup against the first side, and the
    paired speedup with its interval where the store can give one."""
    import pandas as pd

    first = sides[0].run
    rows = []
    for side in sides:
        r, ratio = side.run, paired(db, first, side.run) if side is not sides[0] else None
        p95 = r["p95_ms"] if r["p95_ms"] is not None or not side.times.size else float(np.percentile(side.times, 95))
        row = {"side": side.key, "run": r["id"], "model": r["model_name"], "device": r["device_name"],
               "kind": r["kind"], "threads": r["threads"], "p50_ms": r["p50_ms"], "p95_ms": p95,
               "mean_ms": r["mean_ms"]}
        rows.append(row)
        base = rows[0]
        for stat in ("p50_ms", "p95_ms", "mean_ms"):
            row[f"delta_{stat}"] = _minus(row[stat], base[stat])
        row["speedup"] = base["p50_ms"] / r["p50_ms"] if r["p50_ms"] and base["p50_ms"] else None
        row.update({"paired_speedup": ratio and ratio.median, "paired_low": ratio and ratio.low,
                    "paired_high": ratio and ratio.high, "paired_pairs": ratio and ratio.pairs,
                    "verdict": ratio.verdict(NOISE_MARGIN) if ratio else None})
    return pd.DataFrame(rows).convert_dtypes()


def _threads(n: int | None) -> str:
    return f"{n} thread{'' if n == 1 else 's'}"


def _minus(a, b):
    return a - b if a is not None and b is not None else None


def _signed(v) -> str:
    return f"{v:+.3f}"


def latency_markdown(df) -> str:
    """The latency frame as Markdown: the paired interval as one cell, '1.23x (1.20-1.26) faster'."""
    view = df.drop(columns=["paired_low", "paired_high", "paired_pairs", "verdict"]).copy()
    view["paired_speedup"] = [
        f"{m:.3f}x ({lo:.3f}-{hi:.3f}, {int(n)} pairs) {v}" if not frames.missing(m) else ""
        for m, lo, hi, n, v in zip(df["paired_speedup"], df["paired_low"], df["paired_high"], df["paired_pairs"],
                                   df["verdict"])]
    view.loc[0, [c for c in view.columns if c.startswith("delta_")]] = None   # the baseline: nothing to show
    view["speedup"] = ["baseline"] + [f"{v:.3f}x" if not frames.missing(v) else "" for v in view["speedup"][1:]]
    formats = {c: _signed for c in view.columns if c.startswith("delta_")}
    formats["speedup"] = str
    headers = {"p50_ms": "p50 ms", "p95_ms": "p95 ms", "mean_ms": "mean ms", "delta_p50_ms": "Δ p50 ms",
               "delta_p95_ms": "Δ p95 ms", "delta_mean_ms": "Δ mean ms", "speedup": "speedup (p50)",
               "paired_speedup": "paired speedup (95 % CI)"}
    return frames.markdown(view, formats, headers)


def _notes(sides: list[Side], frame) -> list[str]:
    notes = ["speedup: the first side's p50 over this side's (> 1: faster than "
             f"{sides[0].key}); Δ: this side minus {sides[0].key}"]
    unpaired = [s.key for s, m in zip(sides[1:], list(frame["paired_speedup"])[1:]) if frames.missing(m)]
    if unpaired:
        notes.append(f"{', '.join(unpaired)}: no paired interval, the store holds no loop that timed "
                     f"{'these models' if len(unpaired) > 1 else 'this model'} in turn with {sides[0].key}'s on "
                     "one device with the same threads; separate runs differ by the machine's moment too "
                     "(Python's `bench(..., reference=)` and `farmctl optimize` time pairs)")
    for s in sides:
        if s.run["status"] != "ok":
            notes.append(f"{s.key} is a failed run ({s.run['error_code']}): it has no latency")
        if s.run["kind"] == "profile":
            notes.append(f"{s.key} is a profile run: its latency is the profiled loop's (profiler on)")
    for s in sides:
        if s.layers_run is not None and s.layers_run != s.run["id"] and s.layers_threads != s.run["threads"]:
            notes.append(f"{s.key}'s layers come from run {s.layers_run} ({_threads(s.layers_threads)}), its "
                         f"latency from run {s.run['id']} ({_threads(s.run['threads'])})")
    missing = [s for s in sides if s.layers_run is None]
    if missing and len(missing) < len(sides):
        notes.append("no layers for " + ", ".join(f"{s.key} ({profile_hint(s.run)})" for s in missing))
    return notes


def profile_hint(run: dict) -> str:
    """The command that stores a run's layers: with the model's file where the run found it, if it is still
    there; else a placeholder naming the model."""
    path = run.get("model_path")
    if path and Path(path).is_file():
        return f"`farmctl profile {path} --device {run['device_name']}`"
    return f"`farmctl profile MODEL.onnx --device {run['device_name']}` with the file of model '{run['model_name']}'"


def compare_runs(store: ResultsStore | Path | str, selectors: Sequence[str | int], model: str | None = None,
                 device: str | None = None) -> Comparison:
    """Compare two or more sides of the store (run ids, 'run:ID', 'model:NAME', 'device:NAME' or a bare name;
    see `resolve`): `model` and `device` narrow the model/device selectors."""
    if len(selectors) < 2:
        raise UsageError("compare needs at least two runs, models or devices, e.g. `farmctl compare 3 7` or "
                         "`farmctl compare model:a model:b --device pi4`")
    with reading(store) as db:
        sides = []
        for i, sel in enumerate(selectors):
            run = resolve(db, sel, model, device)
            side = Side(chr(ord("A") + i) if i < 26 else f"S{i}", str(sel), run, *_layers_run(db, run),
                        times=db.times(run["id"])[0])
            sides.append(side)
        frame = latency_frame(db, sides)
        layer_sets = [db.layers(s.layers_run) if s.layers_run is not None else [] for s in sides]
    return Comparison(sides, frame, layer_diff([s.key for s in sides], layer_sets), _notes(sides, frame))
