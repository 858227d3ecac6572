"""`farm-agent serve --metrics-port`: a real agent's Prometheus endpoint, scraped over HTTP and parsed with
prometheus-client's own parser; the device gauges on a fake sysfs tree; HTTPS with the agent's mutual TLS."""

from __future__ import annotations

import socket
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.cache import ModelCache
from agent.jobs import JobManager
from agent.metrics import OUTCOMES, AgentMetrics, SysRoots
from controller.errors import DeviceError
from controller.fleet import ca
from controller.fleet.client import TLSFiles
from controller.fleet.local import LocalAgent
from protos import agent_pb2 as pb

SHORT = pb.MeasureSettings(warmup=0, min_iterations=3, min_seconds=0.0, max_seconds=5, threads=1)
HOLD = pb.MeasureSettings(warmup=0, min_iterations=1, min_seconds=300, max_seconds=600, threads=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(port: int, context: ssl.SSLContext | None = None) -> dict[tuple, float]:
    scheme = "https" if context else "http"
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/metrics", timeout=10, context=context) as reply:
        assert reply.status == 200
        return parse(reply.read().decode())


def test_a_scrape_counts_jobs_by_outcome_and_times_them(start_agent, conv_onnx):
    port = free_port()
    client, _ = start_agent("--metrics-port", str(port), name="scraped")
    before = scrape(port)
    assert before[("edgefarm_agent_jobs_total", (("kind", "BENCHMARK"), ("outcome", "ok")))] == 0
    assert before[("edgefarm_agent_queue_length", ())] == 0
    digest = client.ensure_model(conv_onnx).digest
    events = list(client.run(pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, settings=SHORT)))
    assert events[-1].WhichOneof("event") == "result"
    missing = list(client.run(pb.RunRequest(kind=pb.PROFILE, model_digest="0" * 64, settings=SHORT)))
    assert pb.ErrorCode.Name(missing[-1].error.code) == "MODEL_NOT_FOUND"
    # a job holding the device, then cancelled
    held: list[pb.RunEvent] = []
    started = threading.Event()

    def hold() -> None:
        for event in client.run(pb.RunRequest(job_id="hold", kind=pb.BENCHMARK, model_digest=digest, settings=HOLD)):
            held.append(event)
            if event.WhichOneof("event") == "started":
                started.set()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert started.wait(60)
    busy = scrape(port)
    assert busy[("edgefarm_agent_job_running", ())] == 1
    assert busy[("edgefarm_agent_queue_length", ())] == 1
    assert client.cancel("hold").state == "running"
    holder.join(60)
    assert pb.ErrorCode.Name(held[-1].error.code) == "CANCELLED"

    m = scrape(port)
    jobs = {(dict(k[1])["kind"], dict(k[1])["outcome"]): v for k, v in m.items() if k[0] == "edgefarm_agent_jobs_total"}
    assert jobs[("BENCHMARK", "ok")] == 1 and jobs[("BENCHMARK", "cancelled")] == 1
    assert jobs[("PROFILE", "model_not_found")] == 1
    assert sum(jobs.values()) == 3 and {o for _, o in jobs} == set(OUTCOMES)
    assert m[("edgefarm_agent_queue_length", ())] == 0 and m[("edgefarm_agent_job_running", ())] == 0
    assert m[("edgefarm_agent_jobs_waiting", (("priority", "low"),))] == 0
    # the histogram saw the two jobs that held the device; the one refused before queueing is not in it
    bench_seconds = {dict(k[1]).get("le"): v for k, v in m.items()
                     if k[0] == "edgefarm_agent_job_seconds_bucket" and dict(k[1])["kind"] == "BENCHMARK"}
    assert m[("edgefarm_agent_job_seconds_count", (("kind", "BENCHMARK"),))] == 2 == bench_seconds["+Inf"]
    assert m[("edgefarm_agent_job_seconds_count", (("kind", "PROFILE"),))] == 0
    assert m[("edgefarm_agent_job_seconds_sum", (("kind", "BENCHMARK"),))] >= events[-1].result.measured_seconds
    assert m[("edgefarm_agent_queue_wait_seconds_count", (("priority", "normal"),))] == 2
    assert m[("edgefarm_agent_cache_bytes", ())] == conv_onnx.stat().st_size
    assert m[("edgefarm_agent_cache_max_bytes", ())] == 2048 * 2**20
    info = next(dict(k[1]) for k in m if k[0] == "edgefarm_agent_info")
    assert info["name"] == "scraped" and info["fingerprint"] == client.info().fingerprint
    assert {dict(k[1])["reason"] for k in m if k[0] == "edgefarm_agent_throttled"} >= {"thermal", "frequency_capped"}


def _sysfs(root, zones: list[tuple[int, int]], freq: tuple[int, int, int]) -> SysRoots:
    """A fake /sys: thermal zones (milli-degrees, passive trip) and one CPU's cur/max/hw max kHz."""
    for i, (milli, passive) in enumerate(zones):
        z = root / "thermal" / f"thermal_zone{i}"
        z.mkdir(parents=True)
        (z / "temp").write_text(f"{milli}\n")
        (z / "type").write_text(f"zone{i}\n")
        (z / "trip_point_0_type").write_text("passive\n")
        (z / "trip_point_0_temp").write_text(f"{passive}\n")
    cpu = root / "cpu" / "cpu0" / "cpufreq"
    cpu.mkdir(parents=True)
    for name, value in zip(("scaling_cur_freq", "scaling_max_freq", "cpuinfo_max_freq"), freq):
        (cpu / name).write_text(f"{value}\n")
    return SysRoots(thermal=root / "thermal", cpu=root / "cpu")


@pytest.mark.parametrize("zones, freq, temp, hot, capped", [
    ([(48_000, 85_000), (61_500, 85_000)], (1_500_000, 1_500_000, 1_500_000), 61.5, 0, 0),
    ([(82_000, 85_000)], (600_000, 1_000_000, 1_800_000), 82.0, 1, 1),
])
def test_temperature_is_the_hottest_zone_and_throttle_reasons_are_flags(tmp_path, zones, freq, temp, hot, capped):
    cache = ModelCache(tmp_path / "cache", 2**20)
    metrics = AgentMetrics(JobManager(cache), cache, roots=_sysfs(tmp_path / "sys", zones, freq))
    m = parse(generate_latest(metrics.registry).decode())
    assert m[("edgefarm_agent_temperature_celsius", ())] == temp
    assert m[("edgefarm_agent_throttled", (("reason", "thermal"),))] == hot
    assert m[("edgefarm_agent_throttled", (("reason", "frequency_capped"),))] == capped


def test_no_temperature_where_the_device_reports_none(tmp_path):
    cache = ModelCache(tmp_path / "cache", 2**20)
    (tmp_path / "empty").mkdir()
    metrics = AgentMetrics(JobManager(cache), cache, roots=SysRoots(tmp_path / "empty", tmp_path / "empty"))
    m = parse(generate_latest(metrics.registry).decode())
    assert not any(k[0] == "edgefarm_agent_temperature_celsius" for k in m)
    assert m[("edgefarm_agent_throttled", (("reason", "thermal"),))] == 0


def tls_metrics_agent(tmp_path) -> tuple[LocalAgent, int, ssl.SSLContext, Path]:
    """An agent with mutual TLS and a metrics port, not yet started; the port, a scraper's TLS context
    (a certificate the farm CA signed) and the CA folder."""
    d = tmp_path / "ca"
    ca.init_ca(d)
    ca.issue("agent-1", ["127.0.0.1", "localhost"], ca_dir=d)
    ca.issue("prometheus", ca_dir=d)
    port = free_port()
    agent = LocalAgent(cache_dir=tmp_path / "agent", tls=TLSFiles.read(d / "ca.pem", d / "prometheus.pem",
                                                                       d / "prometheus.key"),
                       extra_args=["--tls-ca", str(d / "ca.pem"), "--tls-cert", str(d / "agent-1.pem"),
                                   "--tls-key", str(d / "agent-1.key"), "--metrics-port", str(port)])
    context = ssl.create_default_context(cafile=str(d / "ca.pem"))
    context.load_cert_chain(str(d / "prometheus.pem"), str(d / "prometheus.key"))
    return agent, port, context, d


def test_with_mutual_tls_metrics_need_a_certificate_the_farm_ca_signed(tmp_path):
    agent, port, context, d = tls_metrics_agent(tmp_path)
    agent.start()
    try:
        assert scrape(port, context)[("edgefarm_agent_queue_length", ())] == 0
        anonymous = ssl.create_default_context(cafile=str(d / "ca.pem"))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            scrape(port, anonymous)
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            scrape(port)   # plain HTTP on a TLS port
        assert scrape(port, context)[("edgefarm_agent_queue_length", ())] == 0   # and it still serves
    finally:
        agent.stop()


def test_a_metrics_port_in_use_stops_the_agent_with_one_sentence(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        agent = LocalAgent(cache_dir=tmp_path / "agent", extra_args=["--metrics-port", str(taken.getsockname()[1])])
        with pytest.raises(DeviceError, match="could not serve metrics on 127.0.0.1:.*pick another --metrics-port"):
            agent.start()
