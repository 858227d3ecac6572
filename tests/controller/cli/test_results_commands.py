"""farmctl report, compare and show as real processes, on a store filled by real `farmctl bench` and
`farmctl profile` runs on the embedded agent (and one paired loop through the Python API)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.fleet.local import LocalAgent
from controller.measure import frames
from controller.measure.api import bench
from controller.measure.settings import MeasureSettings
from controller.measure.store import ResultsStore
from tests import models

ROOT = Path(__file__).resolve().parents[3]
FAST = ["--warmup", "2", "--min-iterations", "20", "--min-seconds", "0.05", "--threads", "1"]


def farmctl(*args: str, store: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "controller", "-q", "--store", str(store), *args],
                          capture_output=True, text=True, timeout=300, env=env)


@dataclass
class Runs:
    store: Path
    small: int          # farmctl bench tiny_conv
    big: int            # farmctl bench tiny_conv_64
    small_profile: int
    big_profile: int
    paired: int         # tiny_conv_64 with tiny_conv as its reference, one inference of each in turn


@pytest.fixture(scope="module")
def runs(model_dir, tmp_path_factory) -> Runs:
    store = tmp_path_factory.mktemp("results") / "r.db"
    small = models.conv_model(model_dir / "tiny_conv.onnx")
    big = models.conv_model(model_dir / "tiny_conv_64.onnx", size=64)
    ids = []
    for command, model in (("bench", small), ("bench", big), ("profile", small), ("profile", big)):
        out = farmctl(command, str(model), *FAST, "--json", *(["--iterations", "5"] if command == "profile" else []),
                      store=store)
        assert out.returncode == 0, out.stderr
        ids.append(json.loads(out.stdout)["run_id"])
    settings = MeasureSettings(threads=1, warmup=2, min_iterations=40, min_seconds=0.05)
    with LocalAgent() as client:       # the embedded agent, as farmctl's, named local
        paired = bench(big, client, settings, store, reference=small).run_id
    return Runs(store, *ids, paired)


def test_report_markdown_has_the_model_by_device_pivot_then_every_run(runs):
    out = farmctl("report", store=runs.store)
    assert out.returncode == 0, out.stderr
    pivot, table = out.stdout.split("## runs\n\n")
    assert pivot.startswith("## p50 latency (ms), the newest successful benchmark of each model on each device")
    p50 = {r["id"]: r["p50_ms"] for r in ResultsStore(runs.store).runs()}
    assert "| model | local |\n|---|---:|\n" in pivot
    assert f"| tiny_conv | {p50[runs.small]:.3f} (#{runs.small}) |" in pivot
    assert f"| tiny_conv_64 | {p50[runs.paired]:.3f} (#{runs.paired}) |" in pivot    # the newest of the model
    assert table.startswith("| run | when | kind |") and table.count("\n") == 2 + 5


def test_report_csv_has_every_stored_column(runs):
    out = farmctl("report", "--format", "csv", store=runs.store)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    expected = [c for c in frames.RUN_FRAME_COLUMNS if c not in ("result_json", "device_json")]
    assert list(rows[0]) == expected and len(rows) == 5
    for column in ("min_ms", "mean_ms", "std_ms", "p95_ms", "max_ms", "model_digest", "load_ms",
                   "first_inference_ms", "settings_json"):
        assert all(r[column] for r in rows), column
    bench_row = next(r for r in rows if int(r["id"]) == runs.small)
    stored = ResultsStore(runs.store).runs(kind="benchmark")[-1]
    assert float(bench_row["mean_ms"]) == pytest.approx(stored["mean_ms"]) and int(bench_row["times"]) >= 20
    paired_row = next(r for r in rows if int(r["id"]) == runs.paired)
    assert paired_row["reference_digest"] == bench_row["model_digest"]


def test_report_json_and_html(runs, tmp_path):
    doc = json.loads(farmctl("report", "--format", "json", "--kind", "benchmark", store=runs.store).stdout)
    assert sorted(r["id"] for r in doc["runs"]) == sorted([runs.small, runs.big, runs.paired])
    assert [(c["model"], c["device"], c["run"]) for c in doc["pivot"]] == [
        ("tiny_conv", "local", runs.small), ("tiny_conv_64", "local", runs.paired)]
    assert all(isinstance(r["p95_ms"], float) and isinstance(r["threads"], int) for r in doc["runs"])
    page = tmp_path / "r.html"
    out = farmctl("report", "--format", "html", "-o", str(page), store=runs.store)
    assert out.returncode == 0 and "wrote 5 runs" in out.stderr
    text = page.read_text()
    assert "<h2>p50 latency (ms)" in text and "data:image/png;base64," in text and "<td>tiny_conv_64</td>" in text


def test_compare_two_runs_with_the_paired_interval_and_the_layer_diff(runs):
    out = farmctl("compare", str(runs.small), f"run:{runs.paired}", store=runs.store)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("## latency: A vs B\n\n| side | run | model | device |")
    row_b = next(line for line in text.splitlines() if line.startswith("| B |"))
    assert "pairs) slower |" in row_b    # tiny_conv_64 has four times the pixels
    assert f"## layers (A run {runs.small_profile}, B run {runs.big_profile}), aligned on graph nodes" in text
    assert "| conv +1 fused | Conv |" in text and "| total (all layers) |" in text
    doc = json.loads(farmctl("compare", "model:tiny_conv", "tiny_conv_64", "--json", store=runs.store).stdout)
    assert [s["run"] for s in doc["sides"]] == [runs.small, runs.paired]
    assert doc["latency"][1]["paired_low"] < doc["latency"][1]["paired_speedup"] < doc["latency"][1]["paired_high"]
    assert {r["layer"] for r in doc["layers"]} >= {"conv +1 fused", "fc", "pool"}


def test_show_one_run(runs):
    out = farmctl("show", str(runs.small_profile), "--top", "2", store=runs.store)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"## run {runs.small_profile}: tiny_conv on local (profile, ok)")
    assert "| threads | 1 |" in out.stdout and "### layers (5)" in out.stdout and "3 more layers" in out.stdout
    doc = json.loads(farmctl("show", str(runs.paired), "--json", store=runs.store).stdout)
    assert doc["run"]["id"] == runs.paired and doc["settings"]["threads"] == 1 and doc["times_stored"] >= 40
    assert doc["result"]["reference_latency"]["p50_ms"] > 0 and doc["device"]["name"] == "local"


@pytest.mark.parametrize("args, status, words", [
    (["show", "999"], 1, "no run 999 in '"),
    (["compare", "1"], 2, "compare needs at least two runs, models or devices, e.g. `farmctl compare 3 7`"),
    (["compare", "1", "model:resnet"], 1, "no successful run of model 'resnet'"),
    (["compare", "device:pi4", "1"], 1, "measure it first with `farmctl bench MODEL --device pi4`"),
    (["report", "--model", "resnet"], 0, "no stored run matches these filters"),
])
def test_a_bad_request_is_one_sentence(runs, args, status, words):
    out = farmctl(*args, store=runs.store)
    assert out.returncode == status, out.stderr
    assert words in out.stderr and "Traceback" not in out.stderr and out.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [["report"], ["compare", "1", "2"], ["show", "1"]])
def test_a_missing_or_empty_store_says_to_measure_first(tmp_path, command):
    out = farmctl(*command, store=tmp_path / "none.db")
    assert out.returncode == 1 and "no results store at" in out.stderr and "farmctl bench" in out.stderr
    assert not (tmp_path / "none.db").exists()
    ResultsStore(tmp_path / "empty.db").close()
    out = farmctl(*command, store=tmp_path / "empty.db")
    assert out.returncode == 1 and "holds no runs yet; measure first: `farmctl bench MODEL`" in out.stderr
