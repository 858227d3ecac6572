"""farmctl optimize: the full loop on the embedded local agent, its reports, bad input, and a resume
after kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.cli.main import main
from controller.measure.paired import NOISE_MARGIN
from controller.optimization.api import Constraints
from controller.optimization.rows import CandidateRow

pytestmark = pytest.mark.slow   # whole optimize runs, one on the trained example

FAST = ["--threads", "1", "--warmup", "3", "--min-iterations", "20", "--min-seconds", "0.5"]
TECHNIQUES = "int8-minmax,int8-percentile,int8-dynamic,fp16"


def _optimize(tmp_path: Path, *extra: str) -> list[str]:
    return ["--store", str(tmp_path / "results.db"), "optimize", "example:mobilenetv2", "--out",
            str(tmp_path / "out"), *FAST, *extra]


@pytest.fixture(scope="module")
def optimized(tmp_path_factory):
    """One full run on MobileNetV2 (224x224, synthetic inputs, fidelity): INT8 x 3 calibrations, dynamic
    INT8 and FP16, measured on the local agent. Whether static INT8 or FP16 beats FP32 depends on the CPU
    (on x86 VMs without VNNI it often does not), so the run may end in a choice (exit 0) or in "no
    candidate meets the constraints" (exit 3); the tests check that the decision follows the measurements."""
    tmp = tmp_path_factory.mktemp("optimize")
    out = subprocess.run([sys.executable, "-m", "controller", *_optimize(tmp, "--techniques", TECHNIQUES,
                                                                          "--json")],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "EDGEFARM_CACHE": str(tmp / "cache")})
    assert out.returncode in (0, 3), out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert (out.returncode == 0) == (doc["chosen"] is not None), out.stderr[-3000:]
    return tmp, doc, out.stderr


def test_full_loop_decides_from_the_measurements(optimized):
    tmp, doc, err = optimized
    assert set(doc) == {"device", "model", "metric", "baseline", "candidates", "chosen", "artifact", "report",
                        "closest", "lost"}
    assert doc["lost"] == [] and (doc["closest"] == []) == (doc["chosen"] not in (None, "baseline"))
    assert doc["metric"] is None
    names = {c["name"]: c for c in doc["candidates"]}
    assert set(names) == {"int8-minmax", "int8-percentile", "int8-dynamic", "fp16"}
    for c in doc["candidates"]:
        assert set(c) == {"name", "techniques", "status", "reason", "latency_ms", "size_bytes", "accuracy",
                          "fidelity", "metric_value", "speedup", "speedup_ci", "meets_constraints"}
        assert c["latency_ms"]["p50"] > 0 and c["fidelity"] >= 0.99 and c["accuracy"] is None  # synthetic data
        # the speedup is the median of ratios paired with the baseline in the same loop, inside its interval
        low, high = c["speedup_ci"]
        assert low <= c["speedup"] <= high
        # a candidate meets the constraints exactly when the interval clears the noise margin (fidelity holds)
        assert c["meets_constraints"] == (low >= NOISE_MARGIN), c
        if not c["meets_constraints"]:
            assert "95 % CI" in c["reason"] and ("slower than the baseline" in c["reason"]
                                                 or "not measurably faster" in c["reason"]), c
    assert doc["baseline"]["speedup"] == 1.0 and doc["baseline"]["speedup_ci"] == [1.0, 1.0]
    # dynamic INT8 on a conv net runs slower than float, is in the table, and is never chosen
    slower = [c for c in doc["candidates"] if c["speedup_ci"][1] < 1]
    assert names["int8-dynamic"] in slower
    assert all(not c["meets_constraints"] and "slower than the baseline" in c["reason"] for c in slower)
    ok = [c for c in doc["candidates"] if c["meets_constraints"]]
    if ok:   # the chosen one is the fastest of those meeting the constraints, and its file is the artifact
        chosen = names[doc["chosen"]]
        assert chosen["speedup"] == max(c["speedup"] for c in ok)
        assert "chosen: fastest candidate meeting every constraint" in chosen["reason"]
        assert Path(doc["artifact"]).read_bytes() == \
            (tmp / "out" / "candidates" / f"{doc['chosen']}.onnx").read_bytes()
    else:    # nothing faster on this CPU: the model as it is is kept (its copy is the artifact), exit 0
        assert doc["chosen"] == "baseline" and Path(doc["artifact"]).is_file()
        assert "farmctl: error" not in err
    assert "building int8-percentile" in err and "done, 1 running" in err  # the progress bar, one line per event
    # builds are steps: the total is known from the start and does not move until the confirmation loops
    totals = set(re.findall(r"\] \d+/(\d+) done", err.split("contender(s)")[0].rsplit("\n", 1)[0]))
    assert len(totals) == 1 and "built int8-percentile" in err, totals
    if doc["chosen"] not in (None, "baseline"):   # the winner was timed again, paired with the baseline
        assert f"again: {doc['chosen']} on local, paired with the baseline" in err


def test_reports_and_store(optimized):
    tmp, doc, _ = optimized
    out = tmp / "out"
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    if doc["chosen"]:
        assert f"**{doc['chosen']}** (chosen)" in md and f"chose {doc['chosen']}" in html
    else:
        assert "(chosen)" not in md and "no candidate meets the constraints on local" in html
    assert "int8-dynamic" in md
    csv = (out / "report.csv").read_text().splitlines()
    assert csv[0].startswith("device,candidate,techniques") and len(csv) == 1 + 5
    assert "data:image/png;base64," in html
    assert (out / "latency-vs-quality.png").stat().st_size > 10_000
    assert json.loads((out / "summary.json").read_text()) == doc
    with sqlite3.connect(tmp / "results.db") as db:
        rows = db.execute("SELECT name, status, p50_ms, detail_json FROM candidates").fetchall()
        assert {r[0] for r in rows} == {"baseline", "int8-minmax", "int8-percentile", "int8-dynamic", "fp16"}
        assert all(r[1] == "ok" and r[2] > 0 for r in rows)
        kinds = dict(db.execute("SELECT kind, COUNT(*) FROM runs GROUP BY kind").fetchall())
    paired = {r[0]: json.loads(r[3]).get("paired") for r in rows if r[0] != "baseline"}
    assert all(p and p["pairs"] > 0 for p in paired.values())   # every candidate was timed beside the baseline
    timed_again = {name for name, p in paired.items() if p["rounds"] == 3}
    assert {p["rounds"] for p in paired.values()} <= {1, 3}
    assert kinds["profile"] == 1 and kinds["benchmark"] == 5 + 2 * len(timed_again)  # + 2 paired loops each
    by_name = {c["name"]: c for c in doc["candidates"]}
    for name, p in paired.items():   # the store keeps the paired estimate the JSON reports
        assert by_name[name]["speedup"] == pytest.approx(p["median"], abs=1e-4)
        assert by_name[name]["speedup_ci"] == pytest.approx([p["low"], p["high"]], abs=1e-4)
        # timed again exactly when its first interval still reached the noise margin
    assert doc["chosen"] in (None, "baseline") or doc["chosen"] in timed_again   # a winner: timed again, paired


def test_resume_after_kill_does_not_remeasure(tmp_path):
    """Kill -9 the whole run after two candidates are measured; the rerun measures only the rest."""
    args = [sys.executable, "-m", "controller", *_optimize(tmp_path, "--techniques", "int8-minmax,int8-percentile,fp16",
                                                          "--confirm-rounds", "0")]
    env = {**os.environ, "EDGEFARM_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True)
    measured = []
    for line in proc.stderr:
        if " on local: p50 " in line and not line.split(": ", 1)[1].startswith("baseline"):
            measured.append(line.split(": ", 1)[1].split(" on local")[0])
            if len(measured) == 2:
                os.killpg(proc.pid, signal.SIGKILL)
                break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and len(measured) == 2
    db = tmp_path / "results.db"
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT COUNT(*) FROM runs WHERE kind = 'benchmark'").fetchone()[0]
    assert before == 3  # baseline + the two candidates

    again = subprocess.run(args + ["--json"], capture_output=True, text=True, timeout=600, env=env)
    # 3 = nothing met the constraints: whether INT8 beats FP32 depends on the CPU (on some x86 VMs it does
    # not); what this test checks is that the rerun resumes
    assert again.returncode in (0, 3), again.stderr[-2000:]
    for name in measured:
        assert f"{name} on local: measured by an earlier run (resumed)" in again.stderr
    with sqlite3.connect(db) as conn:
        after = conn.execute("SELECT COUNT(*) FROM runs WHERE kind = 'benchmark'").fetchone()[0]
        profiles = conn.execute("SELECT COUNT(*) FROM runs WHERE kind = 'profile'").fetchone()[0]
    assert after == before + 1 and profiles == 1  # only the third candidate was measured; no new baseline
    doc = json.loads(again.stdout)
    assert len(doc["candidates"]) == 3


def test_a_rerun_says_it_came_from_the_store_and_remeasure_and_fresh_measure_again(tmp_path, capsys):
    args = _optimize(tmp_path, "--techniques", "fp16", "--confirm-rounds", "0")

    def benchmarks() -> int:
        with sqlite3.connect(tmp_path / "results.db") as conn:
            return conn.execute("SELECT COUNT(*) FROM runs WHERE kind = 'benchmark'").fetchone()[0]

    main(args)
    first, out = benchmarks(), capsys.readouterr().out
    assert first == 2 and "came from the store" not in out
    main(args)
    out = capsys.readouterr().out
    assert benchmarks() == first and "2 measurement(s) came from the store" in out and "--remeasure" in out
    built = (tmp_path / "out" / "candidates" / "fp16.onnx").stat().st_mtime_ns
    main([*args, "--remeasure"])
    assert benchmarks() == first + 2 and "came from the store" not in capsys.readouterr().out
    assert (tmp_path / "out" / "candidates" / "fp16.onnx").stat().st_mtime_ns == built    # build reused
    main([*args, "--fresh"])
    assert benchmarks() == first + 4
    assert (tmp_path / "out" / "candidates" / "fp16.onnx").stat().st_mtime_ns > built      # built again


@pytest.mark.parametrize("extra, message, status", [
    (["--techniques", "int8,turbo"], "unknown technique(s) 'turbo'", 2),        # a wrong command line
    (["--device", "127.0.0.1:1"], "127.0.0.1:1", 1),                             # a failure at run time
    (["--max-accuracy-drop", "1"], "--max-accuracy-drop needs labelled evaluation data", 2),
])
def test_bad_input_is_a_clear_error(tmp_path, capsys, extra, message, status):
    assert main(_optimize(tmp_path, *extra)) == status
    assert message in capsys.readouterr().err


def test_the_example_brings_its_own_data(tmp_path, capsys):
    assert main(["--store", str(tmp_path / "r.db"), "optimize", "--eval-data", str(tmp_path / "x.npz")]) == 2
    assert "the built-in example brings its own data" in capsys.readouterr().err


def test_tflite_twins_say_what_they_need(tmp_path, capsys):
    import importlib.util

    assert main(_optimize(tmp_path, "--tflite")) == 2          # an ONNX MODEL: not a PyTorch candidate
    assert "--tflite converts the PyTorch candidates with litert-torch" in capsys.readouterr().err
    if importlib.util.find_spec("litert_torch") or importlib.util.find_spec("ai_edge_torch"):
        pytest.skip("litert-torch is installed here")
    assert main(["--store", str(tmp_path / "r.db"), "optimize", "--tflite", "--out", str(tmp_path / "o")]) == 1
    assert "needs litert-torch, an optional extra of about 2 GB (pip install 'edgefarm[litert-torch]')" in \
        capsys.readouterr().err


def test_data_that_do_not_fit_the_model(tmp_path, capsys):
    np.savez(tmp_path / "cal.npz", pixels=np.zeros((4, 3, 224, 224), np.float32))
    assert main(_optimize(tmp_path, "--calibration-data", str(tmp_path / "cal.npz"))) == 1
    err = capsys.readouterr().err
    assert "the data do not fit mobilenetv2" in err and "'pixels'" in err


def test_impossible_constraint_names_it_and_keeps_the_measurements(tmp_path, capsys):
    code = main(_optimize(tmp_path, "--techniques", "fp16", "--max-latency-ms", "0.001", "--json",
                          "--confirm-rounds", "0"))
    assert code == 3
    captured = capsys.readouterr()
    assert "no candidate meets the constraints on local" in captured.err
    assert "> --max-latency-ms 0.001 (by" in captured.err
    doc = json.loads(captured.out)
    assert doc["chosen"] is None and doc["artifact"] is None
    with sqlite3.connect(tmp_path / "results.db") as db:
        assert db.execute("SELECT COUNT(*) FROM candidates WHERE status = 'ok'").fetchone()[0] == 2


def test_nothing_faster_keeps_the_model_as_it_is(tmp_path, capsys):
    """FP16 on a CPU without FP16 kernels runs slower than the float model: with no limit the model breaks,
    the answer is to keep it (exit 0, a copy of it as the artifact), not "relax a constraint"."""
    code = main(_optimize(tmp_path, "--techniques", "fp16", "--confirm-rounds", "0"))
    out = capsys.readouterr()
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    if doc["chosen"] == "fp16":
        pytest.skip("FP16 ran measurably faster than float on this CPU: nothing to keep")
    assert code == 0 and doc["chosen"] == "baseline", out.err[-2000:]
    assert "local: keep the model as it is: no candidate was measurably faster" in out.out
    assert "Closest: fp16 (" in out.out and "farmctl: error" not in out.err
    assert Path(doc["artifact"]).stat().st_size == doc["baseline"]["size_bytes"]   # a copy of the model
    assert "**baseline** (chosen)" in (tmp_path / "out" / "report.md").read_text()


def test_a_run_blocked_only_by_fidelity_says_which_value_would_choose_int8(tmp_path, capsys):
    code = main(_optimize(tmp_path, "--techniques", "int8-minmax", "--min-fidelity", "0.99999", "--json"))
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    # the model itself meets the limit, so it is kept (exit 0); the closest candidate and its relaxation follow
    assert code == 0 and doc["chosen"] == "baseline" and "local: keep the model as it is" in captured.err
    assert any(c.startswith("int8-minmax") for c in doc["closest"])
    row = CandidateRow(**next(c for c in doc["candidates"] if c["name"] == "int8-minmax"))
    if row.speedup_ci[0] >= NOISE_MARGIN:   # measurably faster here: only the fidelity limit blocks it
        none = CandidateRow("baseline")
        relax = Constraints(min_fidelity=0.99999).relaxations(row, none)[0]
        assert relax.value <= row.fidelity and not Constraints(min_fidelity=relax.value).failures(row, none)
        want = f"int8-minmax: {row.speedup:.2f}x faster; allow {relax.text()}"
        assert f"Closest: {want} to choose it" in captured.err
    else:
        assert "Closest: int8-minmax (" in captured.err


@pytest.mark.timeout(1800)   # the built-in example is trained once per run (8 epochs: 3-20 minutes on a busy VM)
def test_builtin_pytorch_example_prunes_with_the_device_profile(tmp_path, digits_example, monkeypatch):
    """No MODEL: the trained digits example, labelled validation data (accuracy measured on the device),
    structured pruning uniform and with per-layer ratios from the baseline's device profile. One fine-tuning
    epoch per candidate instead of two: what is checked is which candidates are made and how, not how much
    accuracy the fine-tuning wins back (the demo and benchmarks/optimize.py show that)."""
    from controller.measure.settings import MeasureSettings
    from controller.optimization.api import optimize

    monkeypatch.setattr("controller.optimization.torch_candidates.FINE_TUNE_EPOCHS", 1)

    result = optimize(None, ["local"], techniques=["prune"], out_dir=tmp_path / "out", store=tmp_path / "r.db",
                      settings=MeasureSettings(threads=1, warmup=3, min_iterations=50, min_seconds=0.3),
                      confirm_rounds=0, progress=lambda line: None)
    dev = result.devices[0]
    assert result.constraints.max_accuracy_drop == 1.0  # labelled data: the default quality guard
    assert 0.95 < dev.baseline.accuracy <= 1.0
    rows = {r.name: r for r in dev.candidates}
    assert set(rows) == {"prune-30", "prune-50", "prune-50-profiled"}  # no int8 asked: no + INT8 combinations
    assert all(r.accuracy is not None and r.p50 > 0 for r in rows.values())
    details = json.loads((tmp_path / "out" / "candidates" / "prune-50-profiled.json").read_text())["details"]
    ratios = details["layer_ratios"]
    assert len(ratios) > 10 and max(ratios.values()) > 0.5 > min(ratios.values())
    assert details["params_after"] < details["params_before"]
    assert result.skipped == []
    doc = result.to_json()
    assert doc["chosen"] in (None, "baseline") or rows[doc["chosen"]].meets_constraints


def test_several_devices_one_table_a_choice_each(tmp_path, start_agent):
    """The embedded agent and a second agent at HOST:PORT: the same candidates measured on both."""
    from controller.measure.settings import MeasureSettings
    from controller.optimization.api import optimize

    client, _ = start_agent(name="second")
    result = optimize("example:mobilenetv2", ["local", client.address], techniques="int8-minmax,int8-dynamic",
                      out_dir=tmp_path / "out", store=tmp_path / "r.db", confirm_rounds=0,
                      settings=MeasureSettings(threads=1, warmup=3, min_iterations=20, min_seconds=0.3),
                      progress=lambda line: None)
    doc = result.to_json()
    assert [d["device"] for d in doc["devices"]] == ["local", client.address]
    for d in doc["devices"]:
        assert {c["name"] for c in d["candidates"]} == {"int8-minmax", "int8-dynamic"}
        assert d["baseline"]["latency_ms"]["p50"] > 0
        assert d["chosen"] in (None, "int8-minmax")
    md = (tmp_path / "out" / "report.md").read_text()
    for dev in ("local", client.address):
        assert f"| {dev} | baseline |" in md and f"| {dev} | int8-dynamic |" in md
