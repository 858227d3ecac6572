"""Which order `farmctl optimize` takes (controller/optimization/pipelining.py): candidates are measured
while the next ones build only when no target agent shares the controller's CPUs. The agents' GetInfo says
where they run (host_id, a hash of the kernel's boot id) and on which CPUs (their affinity, --cpus)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.device import host_id
from controller.fleet.local import LocalAgent
from controller.optimization.pipelining import choose_schedule, shares_cpu
from protos import agent_pb2 as pb


def test_the_rule():
    here = host_id()
    assert shares_cpu(pb.DeviceInfo(name="b", host_id="0" * 16, cpus=[0]), {0}) is None      # another machine
    assert shares_cpu(pb.DeviceInfo(name="b", host_id=here, cpus=[1]), {0}) is None          # pinned apart
    assert "CPUs [1]" in shares_cpu(pb.DeviceInfo(name="b", host_id=here, cpus=[1]), {0, 1})
    assert "older agent" in shares_cpu(pb.DeviceInfo(name="b"), {0})


def test_real_agents_report_where_they_run(tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs: one for the controller, one for the pinned agent")
    cpus = sorted(os.sched_getaffinity(0))
    pinned = LocalAgent(cache_dir=tmp_path / "pinned", name="pinned", cpus={cpus[-1]})
    shared = LocalAgent(cache_dir=tmp_path / "shared", name="shared")
    with pinned as p, shared as s:
        info = p.info()
        assert info.host_id == host_id() and list(info.cpus) == [cpus[-1]]
        apart = choose_schedule({"board": {"pinned": p}}, controller_cpus=set(cpus[:-1]))
        assert apart.pipelined and apart.reason.startswith("pipelined")
        together = choose_schedule({"board": {"pinned": p}, "local": {"shared": s}}, controller_cpus=set(cpus[:-1]))
        assert not together.pipelined and "shared runs on this machine" in together.reason
        assert not choose_schedule({"board": {"pinned": p}}, controller_cpus=set(cpus)).pipelined


OVERLAP = r'''
import json, os, sys, time
os.sched_setaffinity(0, {int(sys.argv[3])})          # the controller on its own CPU
from controller.optimization import run as run_mod
from controller.optimization.api import optimize

original, waited = run_mod.OptimizeRun.build, {}


def measured(run, name):
    return any(c.name == name for c in run.store.candidates(run.plan.key, run.devices[0]))


def build(self, cand):
    """From the second candidate on, wait (60 s at most) until the first one's measurement is stored."""
    if waited:
        first, deadline = next(iter(waited)), time.monotonic() + 60
        while not measured(self, first) and time.monotonic() < deadline:
            time.sleep(0.05)
    waited[cand.name] = not waited or measured(self, next(iter(waited)))
    return original(self, cand)


run_mod.OptimizeRun.build = build
notes = []
result = optimize(sys.argv[1], devices=[sys.argv[2]], techniques="int8-minmax,int8-kl", out_dir="out",
                  store="r.db", progress=notes.append, confirm_rounds=0)
print(json.dumps({"waited": waited, "notes": [n for n in notes if "pipelined" in n or "sequential" in n],
                  "chosen": [d.chosen for d in result.devices]}))
'''


def test_a_candidate_is_measured_while_the_next_one_builds(tmp_path, conv_onnx):
    """A real optimize run, the controller pinned to one CPU and the agent to another: the second candidate
    builds only after the first one's measurement is in the store (a sequential run would never see it)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: one for the controller, one for the pinned agent")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
           "EDGEFARM_CACHE": str(tmp_path / "cache")}
    with LocalAgent(cache_dir=tmp_path / "agent", name="board", cpus={cpus[-1]}) as client:
        out = subprocess.run([sys.executable, "-c", OVERLAP, str(conv_onnx), client.address, str(cpus[0])],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(got["waited"]) >= 2 and all(got["waited"].values()), got
    assert got["notes"] and ": pipelined: no target device shares the controller's CPUs" in got["notes"][0], got
