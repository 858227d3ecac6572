"""`farm-agent serve`: the gRPC server with the health service, model cache and job manager."""

from __future__ import annotations

import argparse
import ipaddress
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

from agent.auth import TokenAuthInterceptor
from agent.backends import available_backends
from agent.cache import ModelCache
from agent.device import device_info
from agent.jobs import JobManager
from agent.servicer import AgentServicer
from protos import agent_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 2**20  # evaluation outputs; uploads are chunked well below gRPC's 4 MB


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
    job_time_limit_s: float = 600.0
    job_memory_limit_bytes: int = 0
    threads: int = 0
    workers: int = 16


def is_loopback(host: str) -> bool:
    """True for localhost / 127.0.0.0/8 / ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AgentServer:
    """A running agent: start() binds and serves, stop() shuts down."""

    def __init__(self, config: AgentConfig) -> None:
        if not is_loopback(config.host) and not config.token:
            raise SystemExit(
                f"farm-agent: refusing to listen on {config.host} without authentication; set a token "
                "with --token or EDGEFARM_TOKEN (clients then pass the same token), or listen on 127.0.0.1")
        self.config = config
        self.cache = ModelCache(config.cache_dir or default_cache_dir(), config.cache_max_bytes)
        self.jobs = JobManager(self.cache, config.job_time_limit_s, config.job_memory_limit_bytes,
                               config.threads)
        self.info = device_info(config.name, available_backends(), config.device_class)
        interceptors = [TokenAuthInterceptor(config.token)] if config.token else []
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers), interceptors=interceptors,
            options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        pb_grpc.add_AgentServicer_to_server(AgentServicer(self.cache, self.jobs, self.info), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0

    def start(self) -> int:
        """Bind, start serving, mark healthy; returns the bound port."""
        host = self.config.host
        bind = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self.port = self.server.add_insecure_port(f"{bind}:{self.config.port}")
        if not self.port:
            raise SystemExit(f"farm-agent: could not bind {host}:{self.config.port}; is another agent "
                             "using that port? Pick another with --port (0 picks a free one)")
        self.server.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.health.set("edgefarm.agent.v1.Agent", health_pb2.HealthCheckResponse.SERVING)
        return self.port

    def stop(self, grace: float = 2.0) -> None:
        """Stop accepting calls and cancel what is running."""
        self.health.enter_graceful_shutdown()
        self.jobs.cancel_all()
        self.server.stop(grace).wait()


def build_parser() -> argparse.ArgumentParser:
    """farm-agent's command line."""
    parser = argparse.ArgumentParser(prog="farm-agent", description="edgefarm device agent")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve models over gRPC")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                       "anything else needs --token)")
    serve.add_argument("--port", type=int, default=50551, help="port (0 picks a free one)")
    serve.add_argument("--cache-dir", type=Path, default=None, help="model cache folder "
                       "(default ~/.cache/edgefarm/agent or $EDGEFARM_AGENT_CACHE)")
    serve.add_argument("--cache-max-mb", type=float, default=2048, help="model cache cap; least recently "
                       "used models are evicted beyond it (default 2048)")
    serve.add_argument("--name", default=None, help="device name reported by GetInfo (default hostname)")
    serve.add_argument("--device-class", default=None, help="override the detected class (rpi4, x86 ...)")
    serve.add_argument("--token", default=os.environ.get("EDGEFARM_TOKEN"),
                       help="bearer token clients must send (default $EDGEFARM_TOKEN)")
    serve.add_argument("--job-time-limit", type=float, default=600, help="seconds a job may run (default 600)")
    serve.add_argument("--job-memory-limit-mb", type=float, default=0,
                       help="memory a job's runner may use (default 80%% of RAM)")
    serve.add_argument("--threads", type=int, default=0,
                       help="threads when a job does not say (default: physical cores)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the farm-agent console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = AgentConfig(host=args.host, port=args.port, cache_dir=args.cache_dir,
                         cache_max_bytes=int(args.cache_max_mb * 2**20), name=args.name,
                         device_class=args.device_class, token=args.token,
                         job_time_limit_s=args.job_time_limit,
                         job_memory_limit_bytes=int(args.job_memory_limit_mb * 2**20), threads=args.threads)
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
