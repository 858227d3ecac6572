"""farmctl dashboard as a real server (uvicorn on 127.0.0.1) on a store a real agent filled: every page and
its JSON twin answer, filters work, bad input is one sentence, nothing but GET exists, and beyond loopback
the token is required (header, cookie or ?token= once), while /health stays open."""

from __future__ import annotations

import datetime
import subprocess
import sys

import pytest

from controller.measure.api import bench, profile
from controller.measure.settings import MeasureSettings
from controller.measure.store import ResultsStore
from tests.controller.dashboard.common import farmctl_env, start_dashboard

FAST = MeasureSettings(threads=1, warmup=1, min_iterations=20, min_seconds=0.05)


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory, shared_agent, conv_onnx):
    """A store with one benchmark and one profile of the tiny conv model, measured on a real agent."""
    client, _ = shared_agent
    path = tmp_path_factory.mktemp("dashboard") / "team.db"
    b = bench(conv_onnx, client, FAST, store=path)
    p = profile(conv_onnx, client, FAST, store=path)
    return path, b.run_id, p.run_id


@pytest.fixture(scope="module")
def served(filled_store):
    path, _, _ = filled_store
    dash = start_dashboard(path, "--device-timeout", "2")
    yield dash
    dash.stop()


def test_pages_and_their_json(served, filled_store):
    _, bench_id, profile_id = filled_store
    for page in ("/devices", "/runs", f"/runs/{bench_id}", f"/runs/{profile_id}", "/optimize",
                 f"/compare?sides={bench_id}+{profile_id}"):
        status, headers, body = served.get(page)
        assert status == 200 and headers["content-type"].startswith("text/html"), (page, status, body[:200])
    runs = served.json("/api/runs")
    assert {r["id"] for r in runs["runs"]} == {bench_id, profile_id} and runs["total"] == 2
    assert [r["id"] for r in served.json("/api/runs?kind=profile")["runs"]] == [profile_id]
    tomorrow = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
    assert served.json(f"/api/runs?since={tomorrow}")["total"] == 0
    assert served.json(f"/api/runs?until={tomorrow}&model=tiny_conv")["total"] == 2
    run = served.json(f"/api/runs/{bench_id}")
    assert run["kind"] == "benchmark" and len(run["times_ms"]) == run["iterations"] and run["settings"]["threads"] == 1
    layers = served.json(f"/api/runs/{profile_id}")["layers"]
    assert {"Conv", "Gemm"} <= {layer["op_type"] for layer in layers}
    for svg in (f"/runs/{bench_id}/latency.svg", f"/runs/{profile_id}/layers.svg"):
        status, headers, body = served.get(svg)
        assert status == 200 and headers["content-type"] == "image/svg+xml" and body.lstrip().startswith(b"<?xml")
    compared = served.json(f"/api/compare?sides={bench_id},{profile_id}")
    assert [s["run"] for s in compared["sides"]] == [bench_id, profile_id] and compared["layers"]
    assert served.json("/api/optimize") == {"optimize_runs": []}
    (local,) = served.json("/api/devices")["devices"]
    assert local["name"] == "local" and local["status"] == "embedded"   # never started by the dashboard


@pytest.mark.parametrize("path, status, words", [
    ("/runs/999999", 404, "there is no run 999999 in this store"),
    ("/runs?since=yesterday", 400, "'yesterday' is not a date for since; write it as YYYY-MM-DD"),
    ("/runs?kind=train", 400, "kind 'train' is not one of benchmark, profile"),
    ("/optimize/nope", 404, "there is no optimize run 'nope'"),
    ("/compare?sides=999999+1", 400, "no run 999999"),
])
def test_bad_requests_say_what_to_do(served, path, status, words):
    got, _, body = served.get(path)
    assert got == status and words in body.decode(), body[:300]


def test_read_only(served, filled_store):
    for method in ("POST", "PUT", "DELETE"):
        assert served.get("/runs", method=method)[0] == 405
    assert len(ResultsStore(filled_store[0]).runs()) == 2


def _farmctl(*args: str, cwd, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=farmctl_env(**env))


def test_beyond_loopback_needs_a_token(tmp_path, filled_store):
    store = str(filled_store[0])
    out = _farmctl("--store", store, "dashboard", "--host", "0.0.0.0", "--port", "0", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == ("farmctl: error: the dashboard would serve the results store to anyone who can "
                                  "reach 0.0.0.0 without a token; set EDGEFARM_DASHBOARD_TOKEN or pass "
                                  "--token-file FILE, or bind --host 127.0.0.1")
    (tmp_path / "empty.token").write_text("\n")
    out = _farmctl("--store", store, "dashboard", "--token-file", "empty.token", cwd=tmp_path)
    assert out.returncode == 2 and "the token file empty.token is empty" in out.stderr
    out = _farmctl("--store", str(tmp_path / "none.db"), "dashboard", cwd=tmp_path)
    assert out.returncode == 1 and "no results store at" in out.stderr and not (tmp_path / "none.db").exists()


def test_the_token_by_header_cookie_or_once_in_the_address(tmp_path, filled_store):
    (tmp_path / "dash.token").write_text("s3cret-token\n")
    dash = start_dashboard(filled_store[0], "--token-file", str(tmp_path / "dash.token"))
    try:
        status, _, body = dash.get("/runs")
        assert status == 401 and b"?token=TOKEN" in body
        assert dash.get("/runs", {"Authorization": "Bearer wrong"})[0] == 401
        assert dash.get("/runs", {"Authorization": "Bearer s3cret-token"})[0] == 200
        status, headers, _ = dash.get("/runs?kind=profile&token=s3cret-token")
        assert status == 303 and headers["location"] == "/runs?kind=profile"
        cookie = headers["set-cookie"].split(";")[0]
        assert "s3cret-token" not in cookie and "HttpOnly" in headers["set-cookie"]
        assert dash.get("/api/runs", {"Cookie": cookie})[0] == 200
        assert dash.get("/api/runs", {"Cookie": cookie[:-1] + "x"})[0] == 401
        assert dash.get("/health")[0] == 200
    finally:
        dash.stop()
