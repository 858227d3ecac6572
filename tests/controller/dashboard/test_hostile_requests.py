"""Hostile requests to a real `farmctl dashboard` (uvicorn on 127.0.0.1): ids the store cannot hold, filter
values SQLite would choke on and numbers out of range are a 404 or a 400 with one sentence, never a 500 with
a traceback in the server's log; only this dashboard's own names are accepted in the Host header (DNS
rebinding); a device named `lab/rpi4-a` has its optimize plot; and the redirect that takes the token out of
the address stays on this site."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import quote, urlsplit

import pytest

from controller.measure.store import CandidateRecord, ResultsStore
from tests.controller.dashboard.common import Served, farmctl_env, start_dashboard
from tests.controller.measure.store_writer import run_record

KEY = "0123456789abcdef0123"            # an optimize key, as sources.optimize_key makes them
DEVICE = "lab/rpi4-a"
TOKEN = "s3cret-token"
BIG = "9" * 5000                        # past Python's 4300-digit limit on int("...")
WRAP = "99999999999999999999999"        # past SQLite's 64-bit integers


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two profile runs (ids 1 and 2, with layers and times) and an optimize run on DEVICE."""
    path = tmp_path_factory.mktemp("hostile") / "team.db"
    with ResultsStore(path) as db:
        assert [db.record(run_record(0, i)) for i in range(2)] == [1, 2]
        for name, p50, fidelity in (("baseline", 1.0, 1.0), ("int8-minmax", 0.5, 0.99)):
            db.record_candidate(CandidateRecord(KEY, DEVICE, name, [] if name == "baseline" else ["int8-minmax"],
                                                "ok", latency_ms={"p50": p50}, fidelity=fidelity,
                                                model_path="/models/m.onnx", detail={"model": "m"}))
    return path


@pytest.fixture
def dash(store):
    served = start_dashboard(store)
    yield served
    if served.proc.poll() is None:
        served.stop()


def said(served: Served, path: str, headers: dict | None = None) -> tuple[int, str]:
    """(status, body) of one GET, the body one sentence on one line."""
    status, _, body = served.get(path, headers)
    text = body.decode()
    assert text.count("\n") <= 1 and text.strip(), (path[:80], status, text[:300])
    return status, text.strip()


def raw(served: Served, target: str, headers: dict | None = None) -> http.client.HTTPResponse:
    """One GET of `target` sent as it is (urllib would drop a leading '//'), the reply read."""
    where = urlsplit(served.url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    conn.request("GET", target, headers=headers or {})
    reply = conn.getresponse()
    reply.read()
    conn.close()
    return reply


def quiet(served: Served) -> None:
    """Stop the server (uvicorn logs a handler's exception before it closes the connection, so after the
    stop its stderr is complete) and check that it logged no traceback."""
    err = served.stop()
    assert "Traceback" not in err and "Exception in ASGI application" not in err, err[-3000:]


# D12: no 500s ------------------------------------------------------------------------------------------------

def test_run_ids_the_store_cannot_hold_are_missing_runs(dash):
    for path, shown in ((f"/runs/{WRAP}", WRAP), ("/api/runs/9223372036854775808", "9223372036854775808"),
                        (f"/runs/{WRAP}/latency.svg", WRAP), (f"/runs/{WRAP}/layers.svg", WRAP),
                        ("/api/runs/9223372036854775807", "9223372036854775807"), ("/api/runs/0", "0"),
                        ("/runs/-1", "-1"), ("/runs/abc", "abc"), ("/runs/%C2%B2", "²")):
        assert said(dash, path) == (404, f"there is no run {shown} in this store; the runs page lists them")
    status, text = said(dash, f"/api/runs/{BIG}")
    assert status == 404 and text.startswith("there is no run 9999") and "(5000 characters)" in text
    assert said(dash, "/api/runs/2")[0] == 200
    quiet(dash)


@pytest.mark.parametrize("page", ["/runs", "/api/runs"])
def test_over_long_filter_values_are_refused(dash, page):
    for name in ("model", "device", "kind", "since", "until"):
        assert said(dash, f"{page}?{name}={'a' * 100_000}") == \
            (400, f"{name} is 100,000 characters long; give at most 200 characters")
    assert dash.get(f"{page}?model={'a' * 200}")[0] == 200          # at the limit: no match, no error
    assert dash.get(f"{page}?model=%25")[0] == 200
    quiet(dash)


def test_compare_sides_and_filters_the_store_cannot_take(dash):
    for query, sentence in (
            (f"sides=1,{WRAP}", f"no run {WRAP} in this store; run ids are whole numbers up to "
                                "9223372036854775807"),
            ("sides=1,run:%C2%B2", "no run ² in this store; run ids are whole numbers up to 9223372036854775807"),
            (f"sides=1,model:{'a' * 100_000}", "a side is 100,006 characters long; give at most 200 characters"),
            (f"sides=1,2&model={'a' * 300}", "model is 300 characters long; give at most 200 characters"),
            (f"sides=1,2&device={'b' * 300}", "device is 300 characters long; give at most 200 characters"),
            ("sides=" + ",".join(["1"] * 27), "27 sides are too many to compare; give at most 26")):
        for page in ("/compare", "/api/compare"):
            assert said(dash, f"{page}?{query}") == (400, sentence), query[:80]
    assert said(dash, f"/api/compare?sides=1,{BIG}") == (400, "a side is 5,000 characters long; give at most 200 "
                                                              "characters")
    assert said(dash, "/api/compare?sides=1,2,-3")[0] == 400    # a model or device: not in the store
    quiet(dash)


def test_top_is_a_whole_number_in_its_range(dash):
    sentence = "top '{}' is not a whole number from 0 to 100,000 (0: every layer)"
    for top in ("-1", "abc", "nan", "inf", "1e3", "2.5", "", "100001", "%C2%B2"):
        assert said(dash, f"/compare?sides=1,2&top={top}") == (400, sentence.format(top.replace("%C2%B2", "²")))
    status, text = said(dash, f"/compare?sides=1,2&top={BIG}")
    assert status == 400 and text.startswith("top '9999") and "(5000 characters)" in text
    assert text.endswith("is not a whole number from 0 to 100,000 (0: every layer)")
    for top in ("0", "3", "100000"):
        assert dash.get(f"/compare?sides=1,2&top={top}")[0] == 200
    quiet(dash)


# D13: Host header, slashes in device names, the token's redirect ---------------------------------------------

def test_only_this_dashboards_names_in_the_host_header(dash):
    port = urlsplit(dash.url).port
    refusal = ("Host header '{}' is not this dashboard's; open it by 127.0.0.1, localhost or [::1] (or the name "
               "given to --host, or one listed in $EDGEFARM_DASHBOARD_HOSTS)")
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example", "localhost:x",
                 "[::1]x", "dash.lab.example"):
        assert said(dash, "/api/runs", {"Host": host}) == (400, refusal.format(host))
    for host in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}", "::1", "[::1]",
                 f"[::1]:{port}"):
        assert dash.get("/api/runs", {"Host": host})[0] == 200, host
    assert dash.get("/health", {"Host": "attacker.example"})[0] == 200     # readiness probes stay open
    quiet(dash)


def test_host_names_given_to_host_or_in_the_environment(tmp_path, store):
    (tmp_path / "dash.token").write_text(TOKEN + "\n")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    served = start_dashboard(store, "--host", "0.0.0.0", "--token-file", str(tmp_path / "dash.token"),
                             env=farmctl_env(EDGEFARM_DASHBOARD_HOSTS="dash.lab.example, other.example"))
    try:
        port = urlsplit(served.url).port
        for host in (socket.gethostname(), f"{socket.gethostname()}:{port}", "dash.lab.example", "other.example",
                     f"127.0.0.1:{port}"):
            assert served.get("/api/runs", {**bearer, "Host": host})[0] == 200, host
        status, text = said(served, "/api/runs", {**bearer, "Host": "attacker.example"})
        assert status == 400 and text.startswith("Host header 'attacker.example' is not this dashboard's;")
        assert said(served, f"/runs?token={TOKEN}", {"Host": "attacker.example"})[0] == 400
    finally:
        quiet(served)


def test_a_device_named_with_a_slash_has_its_plot(dash):
    state = dash.json(f"/api/optimize/{KEY}")
    assert list(state["devices"]) == [DEVICE]
    for device in (quote(DEVICE, safe=""), DEVICE):   # the optimize page's link (encodeURIComponent), and plain
        status, headers, body = dash.get(f"/optimize/{KEY}/{device}/plot.svg?v={state['version']}")
        assert status == 200 and headers["content-type"] == "image/svg+xml" and b"<svg" in body, (device, status)
    assert said(dash, f"/optimize/{KEY}/lab%2Fnone/plot.svg") == \
        (404, f"optimize run '{KEY}' has no rows for device 'lab/none'")
    quiet(dash)


def test_the_token_redirect_stays_on_this_site(tmp_path, store):
    (tmp_path / "dash.token").write_text(TOKEN + "\n")
    served = start_dashboard(store, "--token-file", str(tmp_path / "dash.token"))
    try:
        for target in ("//attacker.example", "///attacker.example", "/\\attacker.example",
                       "/\\/attacker.example"):
            reply = raw(served, f"{target}?token={TOKEN}&kind=profile")
            assert (reply.status, reply.getheader("location")) == (303, "/"), target
        for target in ("/%2F%2Fattacker.example", "/%09/attacker.example", "/%5Cattacker.example"):
            reply = raw(served, f"{target}?token={TOKEN}")    # stays encoded: a path on this site
            assert (reply.status, reply.getheader("location")) == (303, target), target
        reply = raw(served, f"/optimize/{KEY}/lab%2Frpi4-a/plot.svg?v=1&token={TOKEN}")
        assert reply.getheader("location") == f"/optimize/{KEY}/lab%2Frpi4-a/plot.svg?v=1"
        cookie = reply.getheader("set-cookie").split(";")[0]
        assert raw(served, reply.getheader("location"), {"Cookie": cookie}).status == 200
        assert served.get(f"/runs?kind=profile&token={TOKEN}")[1]["location"] == "/runs?kind=profile"
    finally:
        quiet(served)
