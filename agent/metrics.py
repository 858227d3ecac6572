"""Prometheus metrics of one agent (`farm-agent serve --metrics-port N`), in a registry of its own: jobs by
outcome, job and queue-wait seconds, the queue, the model cache, and the device's temperature and throttle
state read when Prometheus scrapes (docs/agent.md#metrics-prometheus)."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from agent.cache import ModelCache
from agent.job_queue import PRIORITIES
from agent.jobs import KINDS, JobManager, JobRecord
from agent.telemetry import HOT_MARGIN_C, SYS_CPU, SYS_THERMAL, cpu_frequencies, rpi_readings, thermal_zones
from protos import agent_pb2 as pb

CONNECTION_TIMEOUT_S = 10.0   # a metrics connection idle this long is closed

log = logging.getLogger(__name__)

# 'ok', or the error code a job ended with, in lower case
OUTCOMES = ("ok", *(name.lower() for name in pb.ErrorCode.keys() if name != "ERROR_CODE_UNSPECIFIED"))
JOB_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
RPI_NOW_REASONS = {0: "under_voltage", 1: "arm_frequency_capped", 2: "throttled", 3: "soft_temperature_limit"}


@dataclass
class SysRoots:
    """Where the device's sysfs readings are (a test points these at a fake tree)."""

    thermal: Path = SYS_THERMAL
    cpu: Path = SYS_CPU


class DeviceCollector(Collector):
    """Gauges computed at scrape time: the queue, the cache, the hottest thermal zone, the throttle reasons.
    Sysfs reads cost microseconds; `vcgencmd` (a process, on a Raspberry Pi) runs only while no job is
    measuring, and its last answer is reported during a job, so a scrape never disturbs a measurement."""

    def __init__(self, jobs: JobManager, cache: ModelCache, roots: SysRoots | None = None) -> None:
        self.jobs, self.cache, self.roots = jobs, cache, roots or SysRoots()
        self._rpi: dict = {}

    def collect(self):
        queue = self.jobs.queue
        yield GaugeMetricFamily("edgefarm_agent_queue_length", "Jobs queued or running (GetInfo's queue_length)",
                                value=len(queue))
        waiting = GaugeMetricFamily("edgefarm_agent_jobs_waiting", "Jobs waiting for the device, by the priority "
                                    "they asked for", labels=["priority"])
        for priority, count in queue.waiting_by_priority().items():
            waiting.add_metric([priority], count)
        yield waiting
        busy = queue.busy()
        yield GaugeMetricFamily("edgefarm_agent_job_running", "1 while a job holds the device", value=int(busy))
        yield GaugeMetricFamily("edgefarm_agent_cache_bytes", "Bytes of models in the cache",
                                value=self.cache.total_bytes())
        yield GaugeMetricFamily("edgefarm_agent_cache_max_bytes", "The cache's cap (--cache-max-mb)",
                                value=self.cache.max_bytes)
        if not busy:
            self._rpi = rpi_readings()
        yield from self._device(thermal_zones(self.roots.thermal), cpu_frequencies(self.roots.cpu), self._rpi)

    @staticmethod
    def _device(zones: list[dict], freqs: list[dict], rpi: dict):
        temps = [z["temp_c"] for z in zones] + ([rpi["temp_c"]] if rpi.get("temp_c") is not None else [])
        if temps:   # absent where the device reports no temperature (a VM, most containers)
            yield GaugeMetricFamily("edgefarm_agent_temperature_celsius", "The hottest thermal zone "
                                    "(or vcgencmd measure_temp)", value=max(temps))
        flags = GaugeMetricFamily("edgefarm_agent_throttled", "1 while the device is throttled for this reason "
                                  "(as the agent's 'throttled' result flag reads it)", labels=["reason"])
        hot = any(z["passive_c"] and z["temp_c"] >= z["passive_c"] - HOT_MARGIN_C for z in zones)
        capped = any(f["hw_max_khz"] and f["max_khz"] and f["max_khz"] < f["hw_max_khz"] * 0.95 for f in freqs)
        flags.add_metric(["thermal"], int(hot))
        flags.add_metric(["frequency_capped"], int(capped))
        if rpi.get("throttled"):
            value = rpi["throttled"].get("value", 0)
            for bit, reason in RPI_NOW_REASONS.items():
                flags.add_metric([reason], int(bool(value & (1 << bit))))
        yield flags


class AgentMetrics:
    """The agent's registry: counters and histograms fed by the job manager as jobs end, and the gauges of
    DeviceCollector. Every kind x outcome series exists from the start (at 0), so rates work at once."""

    def __init__(self, jobs: JobManager, cache: ModelCache, info: dict | None = None,
                 roots: SysRoots | None = None) -> None:
        self.registry = CollectorRegistry()
        self.jobs_total = Counter("edgefarm_agent_jobs", "Jobs ended, by kind and outcome ('ok' or the error "
                                  "code in lower case)", ["kind", "outcome"], registry=self.registry)
        self.job_seconds = Histogram("edgefarm_agent_job_seconds", "Seconds a job held the device, by kind",
                                     ["kind"], buckets=JOB_BUCKETS, registry=self.registry)
        self.wait_seconds = Histogram("edgefarm_agent_queue_wait_seconds", "Seconds a job waited for the "
                                      "device, by the priority it asked for", ["priority"], buckets=WAIT_BUCKETS,
                                      registry=self.registry)
        for kind in KINDS:
            self.job_seconds.labels(kind)
            for outcome in OUTCOMES:
                self.jobs_total.labels(kind, outcome)
        for priority in PRIORITIES:
            self.wait_seconds.labels(priority)
        if info:
            labels = ("name", "device_class", "arch", "agent_version", "fingerprint")
            agent = GaugeMetricFamily("edgefarm_agent_info", "The agent's identity (value 1)", labels=list(labels))
            agent.add_metric([str(info.get(k, "")) for k in labels], 1)
            self.registry.register(_Constant(agent))
        self.registry.register(DeviceCollector(jobs, cache, roots))
        jobs.observers.append(self.observe)

    def observe(self, record: JobRecord) -> None:
        """Count one ended job (JobManager calls this)."""
        self.jobs_total.labels(record.kind, record.outcome).inc()
        if record.run_seconds is not None:
            self.job_seconds.labels(record.kind).observe(record.run_seconds)
        if record.wait_seconds is not None:
            self.wait_seconds.labels(record.priority).observe(record.wait_seconds)


class _Constant(Collector):
    def __init__(self, family: GaugeMetricFamily) -> None:
        self.family = family

    def collect(self):
        yield self.family


@dataclass
class MetricsTLS:
    """The agent's mutual TLS, reused for the metrics endpoint beyond loopback."""

    ca: Path
    cert: Path
    key: Path


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr; a connection that sends nothing for CONNECTION_TIMEOUT_S is dropped."""

    timeout = CONNECTION_TIMEOUT_S

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        pass


class _MetricsServer(ThreadingWSGIServer):
    """A thread per connection; with TLS, the handshake runs in that thread (never in accept, where one
    client that connects and sends nothing would hold every other scrape), under the connection timeout."""

    tls_context: ssl.SSLContext | None = None

    def get_request(self):
        sock, address = self.socket.accept()
        sock.settimeout(CONNECTION_TIMEOUT_S)
        if self.tls_context is not None:
            sock = self.tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address) -> None:
        log.debug("metrics: a connection from %s failed", client_address[0], exc_info=True)


def _tls_context(tls: MetricsTLS) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls.cert), str(tls.key))
    context.load_verify_locations(str(tls.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def serve_metrics(metrics: AgentMetrics, host: str, port: int, tls: MetricsTLS | None = None) -> WSGIServer:
    """Serve /metrics on host:port (HTTPS requiring a client certificate the farm CA signed when `tls` is
    given); returns the server (its `server_port` is the bound port; `shutdown()` stops it)."""
    addr = host.strip("[]")
    family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    server_class = type("MetricsServer", (_MetricsServer,), {"address_family": family,
                                                              "tls_context": _tls_context(tls) if tls else None})
    try:
        server = make_server(addr, port, make_wsgi_app(metrics.registry), server_class, handler_class=_QuietHandler)
    except OSError as exc:
        raise SystemExit(f"farm-agent: could not serve metrics on {host}:{port} ({exc.strerror or exc}); pick "
                         "another --metrics-port (0 picks a free one)") from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
