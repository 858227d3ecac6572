"""A bounded soak of one farm-agent with its bearer token and mutual TLS on: mixed clients upload models and
run benchmark, profile and evaluate jobs, cancel some, SIGKILL runners mid-job, and SIGKILL the agent itself
now and then (it is started again on the same cache), while a hostile client stalls uploads after their
header, sends wrong digests and oversized headers, calls without the token and asks for NaN limits. Every
job must end in a result or an error with a code, once: a job still open at its deadline is lost, a second
terminal event is a duplicate (the goal is 0 of each); every hostile request must be refused with its
code; the agent's log must hold no traceback. Reports those counts and the agent's RSS and open file
descriptors at the start and end of each of its lives.

    python benchmarks/soak.py [--minutes 10] [--clients 4] [--agent-kills 3] [--write-docs]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import secrets
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, publish  # noqa: E402

JOB_DEADLINE_S = 120.0


AGENT_FLAGS = ["--max-jobs", "16", "--cache-max-mb", "64", "--upload-idle-s", "5"]


def secure(work: Path) -> tuple[list[str], object, str]:
    """A farm CA with the agent's and the client's certificates, and a token: (agent flags, client TLS, token)."""
    from controller.fleet import ca
    from controller.fleet.client import TLSFiles

    d = work / "ca"
    ca.init_ca(d)
    ca.issue("soak", ["127.0.0.1", "localhost"], ca_dir=d)
    ca.issue("soak-client", ca_dir=d)
    flags = ["--tls-ca", str(d / "ca.pem"), "--tls-cert", str(d / "soak.pem"), "--tls-key", str(d / "soak.key")]
    return flags, TLSFiles.read(d / "ca.pem", d / "soak-client.pem", d / "soak-client.key"), secrets.token_hex(16)


class Farm:
    """The agent under test (token and mutual TLS on) and the client everyone uses; restarted after each kill."""

    def __init__(self, cache: Path, work: Path) -> None:
        self.cache = cache
        self.flags, self.tls, self.token = secure(work)
        self.lock = threading.Lock()
        self.agent = self._start()
        self.lives = [self.reading("start")]

    def _start(self):
        from controller.fleet.local import LocalAgent

        agent = LocalAgent(cache_dir=self.cache, name="soak", tls=self.tls, token=self.token,
                           extra_args=AGENT_FLAGS + self.flags)
        self.client = agent.start()
        return agent

    def reading(self, when: str) -> dict:
        import psutil

        proc = psutil.Process(self.agent.proc.pid)
        return {f"rss_{when}": proc.memory_info().rss, f"fds_{when}": proc.num_fds()}

    def kill_and_restart(self) -> None:
        with self.lock:
            self.lives[-1].update(self.reading("end"))
            os.kill(self.agent.proc.pid, signal.SIGKILL)
            self.agent.proc.wait(30)
            self.agent.stop()
            self.agent = self._start()
            self.lives.append(self.reading("start"))

    def current(self):
        with self.lock:
            return self.client


class Counts:
    """Outcome counts shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.c: collections.Counter = collections.Counter()

    def add(self, key: str) -> None:
        with self.lock:
            self.c[key] += 1


def one_job(farm: Farm, models: list[tuple[Path, int]], rng: random.Random, counts: Counts) -> None:
    """Upload (if needed) and run one job; maybe cancel it or kill its runner; count how it ended."""
    from controller.errors import FarmError
    from protos import agent_pb2 as pb

    client = farm.current()
    path, size = rng.choice(models)
    action = rng.choice(["bench", "bench", "profile", "evaluate", "cancel", "kill-runner"])
    counts.add("submitted")
    try:
        digest = client.ensure_model(path).digest
        settings = pb.MeasureSettings(warmup=1, min_iterations=5, min_seconds=0.2 if action != "cancel" else 30,
                                      threads=1)
        kind = {"profile": pb.PROFILE, "evaluate": pb.EVALUATE}.get(action, pb.BENCHMARK)
        request = pb.RunRequest(kind=kind, model_digest=digest, settings=settings)
        if kind == pb.EVALUATE:
            import numpy as np

            x = np.zeros((1, 3, size, size), np.float32)
            request.inputs.append(pb.Tensor(name="x", dtype="float32", shape=list(x.shape), data=x.tobytes()))
        ended, terminal = None, 0
        for event in client.run(request, timeout=JOB_DEADLINE_S):
            which = event.WhichOneof("event")
            if which == "started" and action == "cancel":
                client.cancel(request.job_id)
            if which == "started" and action == "kill-runner":
                try:
                    os.kill(event.started.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if which in ("result", "outputs"):
                ended, terminal = "completed", terminal + 1
            if which == "error":
                ended, terminal = f"failed: {pb.ErrorCode.Name(event.error.code)}", terminal + 1
        counts.add(ended or "lost")
        if terminal > 1:
            counts.add("duplicated")
    except FarmError as exc:   # the agent was killed under the job, or refused it: a clear error either way
        text = str(exc)
        counts.add("lost" if "did not answer" in text and "in time" in text else f"failed: {type(exc).__name__}")
        print(f"{type(exc).__name__}: {text[:300]}", file=sys.stderr)


# what each hostile request must get back
EXPECTED = {"stall": "INVALID_ARGUMENT", "wrong-digest": "INVALID_ARGUMENT", "oversized": "RESOURCE_EXHAUSTED",
            "no-token": "UNAUTHENTICATED", "nan-limit": "INVALID_INPUT"}


def hostile_request(farm: Farm, attack: str) -> str:
    """One hostile request; the status code (or job error code) it got back."""
    import grpc

    from controller.fleet.client import AgentClient
    from protos import agent_pb2 as pb

    client = farm.current()

    def upload(header: pb.UploadHeader, data: bytes = b"", stall: float = 0.0):
        yield pb.UploadChunk(header=header)
        if data:
            yield pb.UploadChunk(data=data)
        time.sleep(stall)           # a client that goes quiet after its header

    digest = hashlib.sha256(b"soak").hexdigest()
    try:
        if attack == "stall":
            client.stub.UploadModel(upload(pb.UploadHeader(digest=digest, size_bytes=10), stall=8), timeout=20,
                                    metadata=client._metadata)
        elif attack == "wrong-digest":
            client.stub.UploadModel(upload(pb.UploadHeader(digest=digest, size_bytes=4), b"evil"), timeout=20,
                                    metadata=client._metadata)
        elif attack == "oversized":
            client.stub.UploadModel(upload(pb.UploadHeader(digest=digest, size_bytes=2**40)), timeout=20,
                                    metadata=client._metadata)
        elif attack == "no-token":
            anonymous = AgentClient(client.address, tls=farm.tls)
            try:
                anonymous.stub.GetInfo(pb.GetInfoRequest(), timeout=20)
            finally:
                anonymous.close()
        else:
            request = pb.RunRequest(kind=pb.BENCHMARK, model_digest=digest, time_limit_s=float("nan"))
            events = list(client.stub.Run(request, timeout=20, metadata=client._metadata))
            return pb.ErrorCode.Name(events[-1].error.code) if events[-1].WhichOneof("event") == "error" else "ran"
    except grpc.RpcError as exc:
        return exc.code().name
    return "accepted"


def hostile_loop(farm: Farm, stop: float, counts: Counts, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop:
        attack = rng.choice(list(EXPECTED))
        got = hostile_request(farm, attack)
        if got == "UNAVAILABLE":            # the agent was being killed and restarted: nobody answered
            counts.add("hostile during a restart")
        else:
            counts.add("hostile refused" if got == EXPECTED[attack] else f"hostile UNEXPECTED: {attack} -> {got}")
        time.sleep(rng.uniform(0.5, 2.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--agent-kills", type=int, default=3)
    parser.add_argument("--write-docs", "--write-readme", dest="write_readme", action="store_true",
                        help="write the table into docs/benchmarks.md between its <!-- NAME:start/end --> "
                             "markers (--write-readme: the old name)")
    args = parser.parse_args()
    from tests import models as test_models

    shared = Counts()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = [(test_models.conv_model(work / f"m{i}.onnx", size=24 + 2 * i), 24 + 2 * i) for i in range(6)]
        farm = Farm(work / "cache", work)
        stop = time.monotonic() + args.minutes * 60

        def client_loop(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                one_job(farm, paths, rng, shared)

        threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(args.clients)]
        threads.append(threading.Thread(target=hostile_loop, args=(farm, stop, shared, 99), daemon=True))
        for t in threads:
            t.start()
        kills = [stop - args.minutes * 60 * (1 - (k + 1) / (args.agent_kills + 1)) for k in range(args.agent_kills)]
        for at in kills:
            while time.monotonic() < at:
                time.sleep(0.5)
            farm.kill_and_restart()
            print(f"agent killed and restarted ({len(farm.lives) - 1} of {args.agent_kills})", file=sys.stderr)
        for t in threads:
            t.join(JOB_DEADLINE_S + 30)
        farm.lives[-1].update(farm.reading("end"))
        tracebacks = farm.agent.log_path.read_text(errors="replace").count("Traceback")
        farm.agent.stop()
    counts = shared.c
    failed = {k: v for k, v in counts.items() if k.startswith("failed")}
    unexpected = {k: v for k, v in counts.items() if k.startswith("hostile UNEXPECTED")}
    done = counts["completed"] + sum(failed.values()) + counts["lost"]
    lives = "; ".join(f"{life['rss_start'] / 2**20:.0f} -> {life['rss_end'] / 2**20:.0f} MiB, "
                      f"{life['fds_start']} -> {life['fds_end']} fds" for life in farm.lives)
    lines = [f"Measured on {machine()}, by `python benchmarks/soak.py --minutes {args.minutes:g} --clients "
             f"{args.clients} --agent-kills {args.agent_kills}`: one farm-agent with its bearer token and mutual TLS "
             f"on ({' '.join(AGENT_FLAGS)}), clients uploading 6 models and running benchmark/profile/evaluate jobs, "
             "cancelling some and SIGKILLing runners mid-job, a hostile client (uploads stalled after their header, "
             "wrong digests, 1 TiB headers, calls without the token, NaN time limits); the agent itself SIGKILLed "
             f"{args.agent_kills} times and restarted on its cache.", "",
             "| jobs submitted | completed | failed with a code | lost | duplicated | hostile requests refused "
             "| unexpected answers | tracebacks in the agent's log | agent RSS and open fds (start -> end, per life) |",
             "|---:|---:|---|---:|---:|---:|---|---:|---|",
             f"| {counts['submitted']} | {counts['completed']} | "
             + ", ".join(f"{k.split(': ')[1]} {v}" for k, v in sorted(failed.items()))
             + f" | {counts['lost']} | {counts['duplicated']} | {counts['hostile refused']} "
             + f"({counts['hostile during a restart']} more met a restart) | "
             + (", ".join(f"{k.split(': ', 1)[1]} x{v}" for k, v in sorted(unexpected.items())) or "0")
             + f" | {tracebacks} | {lives} |", ""]
    if done != counts["submitted"]:
        lines.append(f"({counts['submitted'] - done} jobs were still in flight when the clients stopped.)")
    return publish("soak", "\n".join(lines), args.write_readme)


if __name__ == "__main__":
    sys.exit(main())
