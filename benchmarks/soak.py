"""A bounded soak of one farm-agent: mixed clients upload models and run benchmark, profile and evaluate
jobs, cancel some, SIGKILL runners mid-job, and SIGKILL the agent itself now and then (it is started again
on the same cache). Every job must end in a result or an error with a code; a job still open at its
deadline is lost (the goal is 0). Reports jobs submitted, completed, failed by code, lost, and the agent's
RSS at start and end of each of its lives.

    python benchmarks/soak.py [--minutes 5] [--clients 4] [--agent-kills 3] [--write-docs]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, publish  # noqa: E402

JOB_DEADLINE_S = 120.0


class Farm:
    """The agent under test and the client everyone uses; restarted after each kill."""

    def __init__(self, cache: Path) -> None:
        from controller.fleet.local import LocalAgent

        self.cache = cache
        self.lock = threading.Lock()
        self.agent = LocalAgent(cache_dir=cache, name="soak", extra_args=["--max-jobs", "16", "--cache-max-mb", "64"])
        self.client = self.agent.start()
        self.lives = [{"rss_start": self.rss()}]

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.agent.proc.pid).memory_info().rss

    def kill_and_restart(self) -> None:
        from controller.fleet.local import LocalAgent

        with self.lock:
            self.lives[-1]["rss_end"] = self.rss()
            os.kill(self.agent.proc.pid, signal.SIGKILL)
            self.agent.proc.wait(30)
            self.agent.stop()
            self.agent = LocalAgent(cache_dir=self.cache, name="soak",
                                    extra_args=["--max-jobs", "16", "--cache-max-mb", "64"])
            self.client = self.agent.start()
            self.lives.append({"rss_start": self.rss()})

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
        ended = None
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
                ended = "completed"
            if which == "error":
                ended = f"failed: {pb.ErrorCode.Name(event.error.code)}"
        counts.add(ended or "lost")
    except FarmError as exc:   # the agent was killed under the job, or refused it: a clear error either way
        text = str(exc)
        counts.add("lost" if "did not answer" in text and "in time" in text else f"failed: {type(exc).__name__}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
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
        farm = Farm(work / "cache")
        stop = time.monotonic() + args.minutes * 60

        def client_loop(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                one_job(farm, paths, rng, shared)

        threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(args.clients)]
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
        farm.lives[-1]["rss_end"] = farm.rss()
        farm.agent.stop()
    counts = shared.c
    failed = {k: v for k, v in counts.items() if k.startswith("failed")}
    done = counts["completed"] + sum(failed.values()) + counts["lost"]
    lines = [f"Measured on {machine()}, by `python benchmarks/soak.py --minutes {args.minutes:g} --clients "
             f"{args.clients} --agent-kills {args.agent_kills}`: one farm-agent (--max-jobs 16, --cache-max-mb "
             "64), clients uploading 6 models and running benchmark/profile/evaluate jobs, cancelling some and "
             f"SIGKILLing runners mid-job; the agent itself SIGKILLed {args.agent_kills} times and restarted on "
             "its cache.", "",
             "| jobs submitted | completed | failed with a code | lost | agent RSS MiB (start -> end, per life) |",
             "|---:|---:|---|---:|---|",
             f"| {counts['submitted']} | {counts['completed']} | "
             + ", ".join(f"{k.split(': ')[1]} {v}" for k, v in sorted(failed.items())) + f" | {counts['lost']} | "
             + "; ".join(f"{life['rss_start'] / 2**20:.0f} -> {life['rss_end'] / 2**20:.0f}" for life in farm.lives)
             + " |", ""]
    if done != counts["submitted"]:
        lines.append(f"({counts['submitted'] - done} jobs were still in flight when the clients stopped.)")
    return publish("soak", "\n".join(lines), args.write_readme)


if __name__ == "__main__":
    sys.exit(main())
