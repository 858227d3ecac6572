"""A real `farmctl optimize` writing to a PostgreSQL store, killed with SIGKILL after its first candidate is
measured; the rerun against the same server resumes: it measures only what the first run had not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.measure.store import ResultsStore

pytestmark = pytest.mark.slow   # optimize runs against SQLite and PostgreSQL

ROOT = Path(__file__).resolve().parents[3]
FAST = ["--threads", "1", "--warmup", "2", "--min-iterations", "20", "--min-seconds", "0.3"]


@pytest.mark.timeout(600)
def test_optimize_resumes_from_a_postgresql_store(tmp_path, conv_onnx, postgres_url):
    args = [sys.executable, "-m", "controller", "--store", postgres_url, "optimize", str(conv_onnx), "--out",
            str(tmp_path / "out"), "--techniques", "fp16,int8-dynamic", "--confirm-rounds", "0", *FAST]
    env = {**os.environ, "EDGEFARM_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    env.pop("EDGEFARM_STORE", None)
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True, cwd=tmp_path)
    measured, log = None, []
    for line in proc.stderr:
        log.append(line)
        if " on local: p50 " in line and not line.split(": ", 1)[1].startswith("baseline"):
            measured = line.split(": ", 1)[1].split(" on local")[0]
            os.killpg(proc.pid, signal.SIGKILL)     # the run and its embedded agent
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and measured, "".join(log)[-3000:]
    with ResultsStore(postgres_url) as store:
        before = store.count_runs(kind="benchmark")
        assert before == 2 and not (tmp_path / "results.db").exists()   # baseline + one candidate, on the server

    again = subprocess.run(args + ["--json"], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert again.returncode in (0, 3), again.stderr[-3000:]    # 3: nothing beat the baseline on this CPU
    assert f"{measured} on local: measured by an earlier run (resumed)" in again.stderr
    doc = json.loads(again.stdout)
    assert len(doc["candidates"]) == 2
    with ResultsStore(postgres_url) as store:
        assert store.count_runs(kind="benchmark") == before + 1      # only the other candidate was measured
        names = [c.name for c in store.candidates(store.dataframe("candidates")["optimize_key"].iloc[0])]
        assert set(names) == {"baseline", "fp16", "int8-dynamic"}
