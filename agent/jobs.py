"""Job queue (one measured job at a time) and the supervisor that runs each job in a child process
with a time limit and a memory limit, turning its output into events."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from agent.backends import BACKENDS
from agent.cache import ModelCache
from agent.errors import InvalidDigest, JobError, disk_full_message, is_disk_full
from agent.job_queue import DEFAULT_AGING_S, PRIORITIES, Job, JobQueue
from agent.limits import check_job_numbers
from agent.process import clean_leftovers, kill_group, pump, rss_bytes, runner_env, runner_preexec
from agent.telemetry import read_telemetry, result_flags
from core.npz import save_arrays

log = logging.getLogger(__name__)

POLL_S = 0.25  # supervision wake-ups stay rare so they barely touch the measured cores
KINDS = ("BENCHMARK", "PROFILE", "EVALUATE")
_JOB_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass
class JobSpec:
    """One job as the agent understands it, decoded from a RunRequest."""

    kind: str
    digest: str
    backend: str = "onnxruntime"
    job_id: str = ""
    threads: int = 0
    warmup: int = 10
    min_iterations: int = 50
    min_seconds: float = 1.0
    max_seconds: float = 60.0
    profile_iterations: int = 30
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] | None = None
    time_limit_s: float = 0.0
    memory_limit_bytes: int = 0
    reference_digest: str = ""   # BENCHMARK: a model timed alternately with this one (drift compensation)
    priority: str = "normal"     # low | normal | high: which waiting job takes the device next


@dataclass
class JobRecord:
    """How a job ended, for whoever watches (the metrics): outcome is 'ok' or the error code in lower
    case ('cancelled', 'timeout', ...); the seconds are None for a job that never got the device."""

    kind: str
    priority: str
    outcome: str
    wait_seconds: float | None
    run_seconds: float | None


class JobManager:
    """Runs jobs one at a time, each in `python -m agent.runner`, enforcing its limits. The agent's time and
    memory limits are defaults and ceilings: a job may ask for less, never more."""

    def __init__(self, cache: ModelCache, default_time_limit_s: float = 600.0,
                 default_memory_limit_bytes: int = 0, default_threads: int = 0,
                 priority_aging_s: float = DEFAULT_AGING_S) -> None:
        self.cache = cache
        self.queue = JobQueue(priority_aging_s)
        self.observers: list[Callable[[JobRecord], None]] = []   # told how each job ended (agent/metrics.py)
        self.default_time_limit_s = default_time_limit_s
        self.default_memory_limit_bytes = default_memory_limit_bytes or int(
            psutil.virtual_memory().total * 0.8)
        self.default_threads = default_threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1
        self.work_root = cache.root / "jobs"
        self.work_root.mkdir(parents=True, exist_ok=True)
        clean_leftovers(self.work_root)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def cancel(self, job_id: str) -> str:
        """Cancel a queued or running job by id; returns the state it was in (or 'unknown')."""
        with self._lock:
            job = self._jobs.get(job_id)
        return self.cancel_job(job) if job else "unknown"

    def cancel_job(self, job: Job) -> str:
        """Cancel this job (a no-op once it is done); returns the state it was in."""
        if job.state == "done":
            return "unknown"
        state = job.state
        job.cancelled.set()
        self.queue.wake()
        return state

    def cancel_all(self) -> None:
        """Cancel every queued and running job (at shutdown)."""
        with self._lock:
            ids = list(self._jobs)
        for job_id in ids:
            self.cancel(job_id)

    def register(self, spec: JobSpec) -> Job:
        """Create a job under its id (refusing an id in use), so it can be cancelled from now on."""
        if spec.job_id and not _JOB_ID.match(spec.job_id):
            raise JobError("INVALID_INPUT", f"job id {spec.job_id[:80]!r} is not allowed: use 1-64 letters, "
                                            "digits, '.', '_' or '-' (a uuid4 hex is ideal)")
        job = Job(spec)
        with self._lock:
            if job.id in self._jobs:
                raise JobError("INVALID_INPUT", f"job id {job.id} is already in use; send a fresh uuid")
            self._jobs[job.id] = job
        return job

    def execute(self, job: Job) -> Iterator[dict]:
        """Run a registered job, yielding event dicts shaped like RunEvent's oneof (e.g. {'queued': {...}})."""
        last: dict = {}
        try:
            for last in self._execute(job):
                yield last
        except JobError as exc:
            last = _error(exc.code, exc.message)
            yield last
        except OSError as exc:
            if not is_disk_full(exc, self.work_root):
                raise
            last = _error("INTERNAL", disk_full_message(self.work_root))
            yield last
        finally:
            self.queue.finish(job)
            with self._lock:
                self._jobs.pop(job.id, None)
            self._record(job, last)

    def _record(self, job: Job, last: dict) -> None:
        """Tell the observers how the job ended (a client that hung up mid-stream counts as cancelled)."""
        if "error" in last:
            outcome = last["error"]["code"].lower()
        else:
            outcome = "ok" if ("result" in last or "outputs" in last) else "cancelled"
        now = time.monotonic()
        ran = job.started_at > 0
        record = JobRecord(kind=job.spec.kind if job.spec.kind in KINDS else "unknown", priority=job.spec.priority,
                           outcome=outcome, wait_seconds=(job.started_at if ran else now) - job.queued_at
                           if job.queued_at else None, run_seconds=now - job.started_at if ran else None)
        for observer in self.observers:
            try:
                observer(record)
            except Exception:   # a watcher's bug must not end the job's stream
                log.exception("a job observer failed")

    def _execute(self, job: Job) -> Iterator[dict]:
        spec = job.spec
        if spec.kind not in KINDS:
            raise JobError("INVALID_INPUT", f"unknown job kind {spec.kind!r}; use one of {', '.join(KINDS)}")
        if spec.backend not in BACKENDS:
            raise JobError("BACKEND_UNAVAILABLE", f"unknown backend '{spec.backend}'; this agent knows: "
                                                  f"{', '.join(sorted(BACKENDS))}")
        if not spec.digest:
            raise JobError("INVALID_INPUT", "the job names no model: set model_digest to the sha256 of a model "
                                            "uploaded to this agent")
        if spec.kind == "EVALUATE" and not spec.inputs:
            raise JobError("INVALID_INPUT", "an EVALUATE job needs input tensors")
        check_job_numbers(spec)
        if spec.time_limit_s > self.default_time_limit_s:
            raise JobError("INVALID_INPUT", f"the job asks for a time limit of {spec.time_limit_s:g} s, above this "
                                            f"agent's ceiling of {self.default_time_limit_s:g} s (farm-agent "
                                            "--job-time-limit); ask for at most that, or leave it unset")
        if spec.memory_limit_bytes > self.default_memory_limit_bytes:
            raise JobError("INVALID_INPUT", f"the job asks for a memory limit of {spec.memory_limit_bytes / 2**20:.0f} "
                                            f"MiB, above this agent's ceiling of "
                                            f"{self.default_memory_limit_bytes / 2**20:.0f} MiB (farm-agent "
                                            "--job-memory-limit-mb); ask for at most that, or leave it unset")
        if spec.priority not in PRIORITIES:
            raise JobError("INVALID_INPUT", f"unknown priority {spec.priority!r}; use one of {', '.join(PRIORITIES)}")
        if spec.reference_digest and spec.kind != "BENCHMARK":
            raise JobError("INVALID_INPUT", f"a reference model is timed alongside a BENCHMARK job only, not a "
                                            f"{spec.kind} job; leave reference_digest empty")
        with ExitStack() as stack:
            paths = []
            for digest, what in ((spec.digest, "model"), (spec.reference_digest, "reference model")):
                if not digest:
                    continue
                try:
                    paths.append(stack.enter_context(self.cache.pinned(digest)))
                except FileNotFoundError:
                    raise JobError("MODEL_NOT_FOUND", f"{what} {digest} is not in this agent's cache; upload it "
                                                      "first (MissingModels, then UploadModel)") from None
                except InvalidDigest as exc:
                    raise JobError("INVALID_INPUT", f"{what}: {exc}") from None
            self.queue.submit(job)
            for position, priority in self.queue.wait_turn(job):
                yield {"queued": {"position": position, "priority": priority}}
            yield from self._run_child(job, *paths)

    def _job_description(self, job: Job, model_path: Path, work: Path, reference_path: Path | None = None) -> dict:
        s = job.spec
        desc = {"kind": s.kind, "backend": s.backend, "model_path": str(model_path), "work_dir": str(work),
                "threads": s.threads or self.default_threads, "warmup": max(0, s.warmup),
                "min_iterations": max(1, s.min_iterations), "min_seconds": max(0.0, s.min_seconds),
                "max_seconds": s.max_seconds if s.max_seconds > 0 else 60.0,
                "profile_iterations": max(1, s.profile_iterations), "input_shapes": s.input_shapes}
        if reference_path is not None:
            desc["reference_path"] = str(reference_path)
        if s.inputs:
            save_arrays(work / "inputs.npz", s.inputs)
            desc["inputs_path"] = str(work / "inputs.npz")
        return desc

    def _run_child(self, job: Job, model_path: Path, reference_path: Path | None = None) -> Iterator[dict]:
        spec = job.spec
        time_limit = spec.time_limit_s or self.default_time_limit_s
        mem_limit = spec.memory_limit_bytes or self.default_memory_limit_bytes
        work = Path(tempfile.mkdtemp(prefix=f"job-{os.getpid()}-", dir=self.work_root))
        try:
            desc = self._job_description(job, model_path, work, reference_path)
            before = read_telemetry()
            with open(work / "stderr.txt", "wb") as stderr:
                proc = subprocess.Popen([sys.executable, "-m", "agent.runner"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=stderr, cwd=work, env=runner_env(),
                                        start_new_session=True, preexec_fn=runner_preexec(mem_limit))
            try:
                yield from self._supervise(job, proc, desc, time_limit, mem_limit, before, work)
            finally:
                if proc.poll() is None:
                    kill_group(proc)
                proc.wait()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _supervise(self, job: Job, proc: subprocess.Popen, desc: dict, time_limit: float,
                   mem_limit: int, before: dict, work: Path) -> Iterator[dict]:
        try:
            proc.stdin.write(json.dumps(desc).encode())
            proc.stdin.close()
        except BrokenPipeError:   # the runner died before reading its job: its exit status says how (below)
            with contextlib.suppress(OSError):
                proc.stdin.close()
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=pump, args=(proc.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + time_limit
        try:
            child = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:  # died at once; its exit status is read below
            child = None
        result = error = None
        outputs_sent = False
        peak_rss = 0
        while True:
            try:
                ev = lines.get(timeout=POLL_S)
            except queue.Empty:
                ev = {}
            if ev is None:
                break
            name = ev.pop("event", None)
            if name in ("started", "progress", "layers"):
                yield {name: ev}
            elif name == "result":
                result = ev
            elif name == "outputs":
                with np.load(ev["path"]) as data:
                    yield {"outputs": {k: data[k] for k in data.files}}
                outputs_sent = True
            elif name == "error":
                error = _error(ev["code"], ev["message"])
            if error is None:
                rss = rss_bytes(child)
                peak_rss = max(peak_rss, rss)
                error = self._check_limits(job, deadline, time_limit, rss, mem_limit)
            if error and proc.poll() is None:
                kill_group(proc)
        proc.wait()
        if error:
            yield error
        elif outputs_sent:
            return
        elif result is None:
            yield _error("RUNNER_CRASHED", _crash_message(proc.returncode, work))
        elif (peak := max(result.get("peak_memory_bytes", 0), peak_rss)) > mem_limit:  # a spike between polls
            yield _error("OUT_OF_MEMORY", _memory_message(peak, mem_limit))
        else:
            after = read_telemetry()
            result["peak_memory_bytes"] = peak
            result["telemetry_before"], result["telemetry_after"] = before, after
            result["flags"] = result.get("flags", []) + result_flags(before, after, result["latency"]["cv"])
            yield {"result": result}

    @staticmethod
    def _check_limits(job: Job, deadline: float, time_limit: float, rss: int, mem_limit: int) -> dict | None:
        if job.cancelled.is_set():
            return _error("CANCELLED", "the job was cancelled while running; its runner was stopped")
        if time.monotonic() > deadline:
            return _error("TIMEOUT", f"the job ran past its time limit of {time_limit:g} s and was stopped; "
                                     "raise --time-limit, or lower --min-seconds/--min-iterations")
        if rss > mem_limit:
            return _error("OUT_OF_MEMORY", _memory_message(rss, mem_limit))
        return None


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _memory_message(used: int, limit: int) -> str:
    return (f"the job used {used / 2**20:.0f} MiB, over its memory limit of {limit / 2**20:.0f} MiB, and "
            "was stopped; use smaller inputs or raise --memory-limit-mb")


def _crash_message(returncode: int, work: Path) -> str:
    try:
        tail = (work / "stderr.txt").read_text(errors="replace").strip().splitlines()[-5:]
    except OSError:
        tail = []
    if returncode < 0:
        how = f"was killed by {signal.Signals(-returncode).name}"
        if -returncode == signal.SIGKILL:
            how += " (by another process or the kernel's out-of-memory killer)"
    else:
        how = f"exited with status {returncode}"
    msg = f"the runner process {how} before reporting a result; the backend crashed on this model"
    return msg + (": " + " | ".join(tail) if tail else "")
