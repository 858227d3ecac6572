"""`farm-agent serve`: the gRPC server with the health service, model cache and job manager."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent import __version__ as AGENT_VERSION
from agent import limits
from agent.auth import TokenAuthInterceptor, server_credentials
from agent.backends import available_backends
from agent.cache import ModelCache
from agent.device import device_info
from agent.jobs import JobManager
from agent.metrics import AgentMetrics, MetricsTLS, serve_metrics
from agent.servicer import AgentServicer
from agent.uploads import UploadGate
from core.net import is_loopback
from protos import agent_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 2**20  # evaluation outputs; uploads are chunked well below gRPC's 4 MB
# Each open Run stream and each upload holds a server thread for its whole life. The pool has this many
# threads beyond --max-jobs + --max-uploads, so health checks, Cancel and GetInfo answer whatever the load.
RESERVED_WORKERS = 8


def default_cache_dir() -> Path:
    """~/.cache/edgefarm/agent unless EDGEFARM_AGENT_CACHE is set."""
    env = os.environ.get("EDGEFARM_AGENT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgefarm" / "agent"


@dataclass
class AgentConfig:
    """Settings of one agent process."""

    host: str = "127.0.0.1"
    port: int = 50551
    cache_dir: Path = None
    cache_max_bytes: int = 2 * 2**30
    name: str | None = None
    device_class: str | None = None
    token: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    job_time_limit_s: float = 600.0
    job_memory_limit_bytes: int = 0
    threads: int = 0
    max_jobs: int = 64          # open Run streams (queued + running); more get RESOURCE_EXHAUSTED
    advertise: bool = False
    priority_aging_s: float = 60.0   # a waiting job gains one priority level this often (low never starves)
    metrics_port: int | None = None  # Prometheus /metrics on the agent's host; None = off, 0 = a free port
    max_uploads: int = 8             # uploads at once; each holds a server thread while it lasts
    upload_idle_s: float = 30.0      # an upload that sends nothing this long is cancelled


class AgentServer:
    """A running agent: start() binds and serves, stop() shuts down."""

    def __init__(self, config: AgentConfig) -> None:
        tls = [config.tls_ca, config.tls_cert, config.tls_key]
        if any(tls) and not all(tls):
            raise SystemExit("farm-agent: mutual TLS needs all three of --tls-ca, --tls-cert and --tls-key")
        if not is_loopback(config.host) and not all(tls):
            raise SystemExit(
                f"farm-agent: refusing to listen on {config.host} without TLS; give --tls-ca, --tls-cert and "
                "--tls-key (made by `farmctl ca init` and `farmctl ca issue NAME --host ADDRESS`), or listen on "
                "127.0.0.1")
        self.credentials = server_credentials(*tls) if all(tls) else None
        self.config = config
        self.cache = ModelCache(config.cache_dir or default_cache_dir(), config.cache_max_bytes)
        self.jobs = JobManager(self.cache, config.job_time_limit_s, config.job_memory_limit_bytes,
                               config.threads, config.priority_aging_s)
        self.info = device_info(config.name, available_backends(), config.device_class)
        self.metrics = AgentMetrics(self.jobs, self.cache, self.info) if config.metrics_port is not None else None
        self.metrics_server = None
        interceptors = [TokenAuthInterceptor(config.token)] if config.token else []
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.max_jobs + config.max_uploads + RESERVED_WORKERS),
            interceptors=interceptors,
            options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        self.uploads = UploadGate(config.max_uploads, config.upload_idle_s)
        pb_grpc.add_AgentServicer_to_server(AgentServicer(self.cache, self.jobs, self.info, config.max_jobs,
                                                          self.uploads), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0
        self.advertiser = None

    def start(self) -> int:
        """Bind, start serving, mark healthy; returns the bound port."""
        host = self.config.host
        bind = f"[{host}]" if ":" in host and not host.startswith("[") else host
        address = f"{bind}:{self.config.port}"
        self.port = (self.server.add_secure_port(address, self.credentials) if self.credentials
                     else self.server.add_insecure_port(address))
        if not self.port:
            raise SystemExit(f"farm-agent: could not bind {host}:{self.config.port}; is another agent "
                             "using that port? Pick another with --port (0 picks a free one)")
        if self.metrics is not None:
            tls = MetricsTLS(*(Path(p) for p in (self.config.tls_ca, self.config.tls_cert, self.config.tls_key))) \
                if self.credentials else None
            self.metrics_server = serve_metrics(self.metrics, host, self.config.metrics_port, tls)
            log.info("metrics on %s://%s:%d/metrics", "https" if tls else "http", bind,
                     self.metrics_server.server_port)
        self.server.start()
        if self.config.advertise:
            from agent.discovery import Advertiser

            info = self.info
            self.advertiser = Advertiser(info["name"], host, self.port, {
                "name": info["name"], "class": info["device_class"], "arch": info["arch"],
                "backends": ",".join(b["name"] for b in info["backends"]), "version": info["agent_version"],
                "tls": "1" if self.credentials else "0", "fingerprint": info["fingerprint"]})
            self.advertiser.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.health.set("edgefarm.agent.v1.Agent", health_pb2.HealthCheckResponse.SERVING)
        return self.port

    def stop(self, grace: float = 2.0) -> None:
        """Stop accepting calls and cancel what is running."""
        if self.advertiser:
            self.advertiser.stop()
        self.health.enter_graceful_shutdown()
        self.jobs.cancel_all()
        self.server.stop(grace).wait()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()


def parse_cpus(text: str) -> set[int]:
    """'3', '2-3', '0,2' -> a CPU set (checked against this machine's CPUs)."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cpus '{text}' is not a CPU list like 3, 2-3 or 0,2") from None
    available = set(range(os.cpu_count() or 1))
    if not cpus or not cpus <= available:
        raise argparse.ArgumentTypeError(f"--cpus {text}: this machine offers CPUs {sorted(available)}")
    return cpus


def read_token(path: Path | None) -> str | None:
    """The bearer token: the content of --token-file (one word; blank lines around it are ignored), else
    $EDGEFARM_TOKEN, else none. A token that is given but empty is refused (ValueError with the sentence):
    it would otherwise turn authentication off without a word."""
    if path is not None:
        token = Path(path).read_text().strip()
        if not token:
            raise ValueError(f"the token file {path} is empty, which would serve every client unauthenticated; "
                             "write the token into it (e.g. `openssl rand -hex 32 > FILE`)")
        if len(token.split()) != 1:
            raise ValueError(f"the token file {path} holds more than one word; put only the token in it")
        return token
    env = os.environ.get("EDGEFARM_TOKEN")
    if env is not None and not env.strip():
        raise ValueError("EDGEFARM_TOKEN is set but empty, which would serve every client unauthenticated; set it "
                         "to the token, or unset it to serve without one")
    return env.strip() if env else None


def build_parser() -> argparse.ArgumentParser:
    """farm-agent's command line."""
    parser = argparse.ArgumentParser(prog="farm-agent", description="edgefarm device agent")
    parser.add_argument("--version", action="version", version=f"farm-agent {AGENT_VERSION}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve models over gRPC")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                       "anything else needs mutual TLS: --tls-ca/--tls-cert/--tls-key)")
    serve.add_argument("--port", type=int, default=50551, help="port (0 picks a free one)")
    serve.add_argument("--cache-dir", type=Path, default=None, help="model cache folder "
                       "(default ~/.cache/edgefarm/agent or $EDGEFARM_AGENT_CACHE)")
    serve.add_argument("--cache-max-mb", type=limits.CACHE_MAX_MB.cli, default=2048, help="model cache cap; least recently "
                       "used models are evicted beyond it (default 2048)")
    serve.add_argument("--name", default=None, help="device name reported by GetInfo (default hostname)")
    serve.add_argument("--device-class", default=None, help="override the detected class (rpi4, x86 ...)")
    serve.add_argument("--token-file", type=Path, default=None,
                       help="a file whose first line is the bearer token clients must send (or set "
                            "$EDGEFARM_TOKEN; a token is never taken from the command line, where `ps` shows it)")
    serve.add_argument("--token", help=argparse.SUPPRESS)
    serve.add_argument("--tls-ca", type=Path, default=os.environ.get("EDGEFARM_TLS_CA"),
                       help="farm CA certificate: only clients it signed are served (`farmctl ca init`)")
    serve.add_argument("--tls-cert", type=Path, default=os.environ.get("EDGEFARM_TLS_CERT"),
                       help="this agent's certificate (`farmctl ca issue NAME --host ADDRESS`)")
    serve.add_argument("--tls-key", type=Path, default=os.environ.get("EDGEFARM_TLS_KEY"),
                       help="this agent's private key")
    serve.add_argument("--cpus", type=parse_cpus, default=None, metavar="LIST",
                       help="pin the agent and its measured jobs to these CPUs, e.g. 3 or 2-3 or 0,2 (keeps them "
                            "away from other work on the device; on a shared machine this steadies timing a lot)")
    serve.add_argument("--advertise", action="store_true",
                       help="announce this agent on the local network over zeroconf (_edgefarm._tcp)")
    serve.add_argument("--job-time-limit", type=limits.JOB_TIME_LIMIT.cli, default=600, help="seconds a job may run (default 600)")
    serve.add_argument("--job-memory-limit-mb", type=limits.JOB_MEMORY_MB.cli, default=0,
                       help="memory a job's runner may use (default 80%% of RAM)")
    serve.add_argument("--max-jobs", type=limits.MAX_JOBS.cli, default=64,
                       help="jobs a client may have open at once, queued or running (default 64); beyond it Run "
                            "answers RESOURCE_EXHAUSTED, and health checks always answer")
    serve.add_argument("--max-uploads", type=limits.MAX_UPLOADS.cli, default=8,
                       help="model uploads received at once (default 8); beyond it UploadModel answers "
                            "RESOURCE_EXHAUSTED")
    serve.add_argument("--upload-idle-s", type=limits.UPLOAD_IDLE_S.cli, default=30.0, metavar="SECONDS",
                       help="cancel an upload that sends nothing for SECONDS (default 30)")
    serve.add_argument("--threads", type=limits.THREADS.cli, default=0,
                       help="threads when a job does not say (default: physical cores)")
    serve.add_argument("--priority-aging-s", type=limits.AGING_S.cli, default=60.0, metavar="SECONDS",
                       help="a waiting job gains one priority level every SECONDS (low -> normal -> high), so "
                            "low-priority jobs never starve (default 60)")
    serve.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                       help="serve Prometheus metrics at http://HOST:PORT/metrics on the agent's --host (HTTPS "
                            "with the agent's mutual TLS when it has --tls-*, as it must beyond loopback; 0 picks "
                            "a free port; default: off)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the farm-agent console script."""
    args = build_parser().parse_args(argv)
    if args.token is not None:
        print("farm-agent: --token would show the secret to every user of this machine (ps); put it in a file "
              "and pass --token-file FILE, or set EDGEFARM_TOKEN", file=sys.stderr)
        return 2
    try:
        token = read_token(args.token_file)
    except OSError as exc:
        print(f"farm-agent: cannot read the token file {args.token_file} ({exc.strerror}); give a readable file "
              "that holds the token", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"farm-agent: {exc}", file=sys.stderr)
        return 2
    if args.cpus:
        try:
            os.sched_setaffinity(0, args.cpus)   # the runner children inherit it
        except OSError as exc:
            print(f"farm-agent: cannot pin to CPUs {sorted(args.cpus)} ({exc.strerror}); this process may use "
                  f"{sorted(os.sched_getaffinity(0))}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = AgentConfig(host=args.host, port=args.port,
                         cache_dir=args.cache_dir.resolve() if args.cache_dir else None,  # runners run elsewhere
                         cache_max_bytes=int(args.cache_max_mb * 2**20), name=args.name,
                         device_class=args.device_class, token=token,
                         advertise=args.advertise, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                         job_time_limit_s=args.job_time_limit,
                         job_memory_limit_bytes=int(args.job_memory_limit_mb * 2**20), threads=args.threads,
                         max_jobs=args.max_jobs, priority_aging_s=args.priority_aging_s,
                         metrics_port=args.metrics_port, max_uploads=args.max_uploads,
                         upload_idle_s=args.upload_idle_s)
    server = AgentServer(config)
    port = server.start()
    # The first stdout line is machine-read by the controller's local agent: keep its format.
    print(f"farm-agent listening on {args.host}:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down")
    server.stop()
    return 0
