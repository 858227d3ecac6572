"""Scheduler: jobs -> agents. A job is submitted to a target (a device name, or a class such as `rpi4`);
every agent of the target has one worker thread that takes the target's next job, so a device measures
one job at a time while identical boards share the work. A job whose agent dies or stops answering is
retried on another agent of the target (up to max_retries), and that agent leaves the rotation until
its health check answers again. Agents of one target whose fingerprints differ (another runtime version,
other hardware) do not share its jobs: the largest group of alike agents takes them, the others are left out
with a warning, unless allow_mixed (farmctl --allow-mixed)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from controller.errors import AgentUnavailable, DeviceError
from controller.fleet import fingerprint
from controller.fleet.client import AgentClient
from protos.codec import to_dict

log = logging.getLogger(__name__)

JobFn = Callable[[AgentClient], Any]
MAX_RETRIES = 2
HEALTH_INTERVAL_S = 1.0


class JobLost(DeviceError):
    """A job's agents all died or stopped answering; the message lists where it was tried."""


@dataclass
class _Job:
    label: str
    fn: JobFn
    future: Future
    failed_on: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class _Agent:
    name: str
    target: str
    client: AgentClient
    healthy: bool = True
    fingerprint: str = ""        # "" until its GetInfo answered


class Scheduler:
    """`submit(target, label, fn)` runs `fn(client)` on a free, healthy agent of the target; `counts()`
    says how many jobs are done, running and waiting (for a progress bar); `events` logs what the
    scheduler decided (retries, agents leaving and rejoining the rotation, agents left out for their
    fingerprint: `left_out`)."""

    def __init__(self, targets: dict[str, AgentClient | dict[str, AgentClient]], max_retries: int = MAX_RETRIES,
                 health_interval: float = HEALTH_INTERVAL_S, on_event: Callable[[str], None] | None = None,
                 allow_mixed: bool = False) -> None:
        self.max_retries = max_retries
        self.health_interval = health_interval
        self.allow_mixed = allow_mixed
        self._on_event = on_event
        self._cond = threading.Condition()
        self._stop = False
        self._queues: dict[str, deque[_Job]] = {}
        self.agents: dict[str, list[_Agent]] = {}
        self.fingerprints: dict[str, str] = {}      # target -> the fingerprint its agents share
        self.left_out: dict[str, list[str]] = {}    # target -> agents kept out for another fingerprint
        self.events: list[str] = []
        for target, clients in targets.items():
            pool = clients if isinstance(clients, dict) else {target: clients}
            if not pool:
                raise DeviceError(f"no agent to schedule on for '{target}'")
            self._queues[target] = deque()
            self.agents[target] = [_Agent(name, target, c) for name, c in pool.items()]
            if len(pool) > 1:
                self._alike(target)
        self._done = 0
        self.running: dict[str, str] = {}     # agent name -> label of the job it is running
        self.assignments: list[tuple[str, str]] = []   # (job label, agent name) of every finished attempt
        self._threads = [threading.Thread(target=self._work, args=(a,), name=f"agent-{a.name}", daemon=True)
                         for pool in self.agents.values() for a in pool]
        for t in self._threads:
            t.start()

    def _say(self, line: str, warning: bool = False) -> None:
        self.events.append(line)
        log.log(logging.WARNING if warning and not self._on_event else logging.INFO, "%s", line)
        if self._on_event:
            self._on_event(("warning: " if warning else "") + line)

    def _alike(self, target: str) -> None:
        """Compare the target's agents' fingerprints (GetInfo); unless allow_mixed, keep the largest group of
        alike agents and leave the others out. An agent that does not answer starts out of rotation."""
        infos = {}
        for agent in self.agents[target]:
            try:
                info = agent.client.last_info or agent.client.info()
            except DeviceError:
                agent.healthy = False           # its fingerprint is read when it answers again
                continue
            infos[agent.name], agent.fingerprint = to_dict(info), info.fingerprint
        fps = {a.name: a.fingerprint for a in self.agents[target] if a.fingerprint}
        alike = fingerprint.groups(fps)
        if not alike:
            return
        self.fingerprints[target] = fps[alike[0][0]]
        if len(alike) == 1:
            return
        self._say(fingerprint.mixed_warning(target, infos, self.allow_mixed), warning=True)
        if self.allow_mixed:
            return
        out = [name for group in alike[1:] for name in group]
        self.left_out[target] = out
        self.agents[target] = [a for a in self.agents[target] if a.name not in out]
        self._say(f"'{target}': jobs go to {', '.join(alike[0])}; left out: {', '.join(out)}", warning=True)

    def _rejoins(self, agent: _Agent) -> bool:
        """An agent back from out of rotation whose fingerprint was never read: read it; one unlike the
        target's others is left out for good (unless allow_mixed)."""
        ref = self.fingerprints.get(agent.target)
        if agent.fingerprint or self.allow_mixed or not ref:
            return True
        try:
            agent.fingerprint = agent.client.info().fingerprint
        except DeviceError:
            return False
        if agent.fingerprint == ref:
            return True
        with self._cond:
            self.agents[agent.target].remove(agent)
            self.left_out.setdefault(agent.target, []).append(agent.name)
            self._cond.notify_all()
        self._say(f"agent '{agent.name}' of '{agent.target}' answers again but reports another fingerprint "
                  f"({agent.fingerprint}, the others {ref}): left out (--allow-mixed lets it share the jobs)",
                  warning=True)
        return False

    def submit(self, target: str, label: str, fn: JobFn) -> Future:
        """Queue a job on a target; the future holds fn's return value (or its exception)."""
        if target not in self._queues:
            raise DeviceError(f"the scheduler has no device '{target}'; it has: {', '.join(self._queues)}")
        job = _Job(label, fn, Future())
        with self._cond:
            if self._stop:
                raise DeviceError("the scheduler is shut down")
            if not any(a.healthy for a in self.agents[target]) and self._all_tried(target, job):
                job.future.set_exception(self._lost(target, job))
                return job.future
            self._queues[target].append(job)
            self._cond.notify_all()
        return job.future

    def _all_tried(self, target: str, job: _Job) -> bool:
        return all(a.name in job.failed_on or not a.healthy for a in self.agents[target])

    def _lost(self, target: str, job: _Job) -> JobLost:
        tried = "; ".join(f"{a}: {e}" for a, e in zip(job.failed_on, job.errors)) or "no agent was healthy"
        return JobLost(f"job '{job.label}' on '{target}' failed: every agent of '{target}' that could take it "
                       f"died or stopped answering ({tried}); check `farmctl devices` and restart the agents")

    def _take(self, agent: _Agent) -> _Job | None:
        """The next job of the agent's target it has not already failed; None when shutting down or the
        agent left the rotation."""
        queue = self._queues[agent.target]
        with self._cond:
            while not self._stop and agent.healthy:
                for job in queue:
                    if agent.name not in job.failed_on:
                        queue.remove(job)
                        self.running[agent.name] = job.label
                        return job
                self._cond.wait()
            return None

    def _work(self, agent: _Agent) -> None:
        while True:
            with self._cond:
                if self._stop or agent not in self.agents[agent.target]:
                    return
            if not agent.healthy:
                self._await_health(agent)
                continue
            job = self._take(agent)
            if job is None:
                continue
            if not job.failed_on and not job.future.set_running_or_notify_cancel():   # cancelled meanwhile
                with self._cond:
                    self.running.pop(agent.name, None)
                continue
            try:
                result = job.fn(agent.client)
            except AgentUnavailable as exc:
                self._agent_lost(agent, job, exc)
                continue
            except BaseException as exc:  # noqa: BLE001 - the job's own failure goes to its future
                self._finish(agent, job, error=exc)
            else:
                self._finish(agent, job, result=result)

    def _finish(self, agent: _Agent, job: _Job, result: Any = None, error: BaseException | None = None) -> None:
        with self._cond:
            self.running.pop(agent.name, None)
            self._done += 1
            self.assignments.append((job.label, agent.name))
            self._cond.notify_all()
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    def _agent_lost(self, agent: _Agent, job: _Job, exc: Exception) -> None:
        """The agent died under the job: it leaves the rotation; the job goes to another agent or fails."""
        job.failed_on.append(agent.name)
        job.errors.append(str(exc).split(";")[0])
        fail: list[_Job] = []
        with self._cond:
            self.running.pop(agent.name, None)
            agent.healthy = False
            target = agent.target
            if len(job.failed_on) > self.max_retries or self._all_tried(target, job):
                fail.append(job)
            else:
                self._queues[target].appendleft(job)
            if not any(a.healthy for a in self.agents[target]):
                fail.extend(self._queues[target])     # nobody left to run them
                self._queues[target].clear()
            self._done += len(fail)
            self._cond.notify_all()
        self._say(f"agent '{agent.name}' of '{target}' stopped answering during '{job.label}': out of rotation"
                  + ("" if job in fail else f"; retrying '{job.label}' on another agent of '{target}'"))
        for j in fail:
            j.future.set_exception(self._lost(target, j))

    def _await_health(self, agent: _Agent) -> None:
        """An agent out of rotation comes back when its health check answers SERVING."""
        with self._cond:
            if self._stop:
                return
            self._cond.wait(self.health_interval)
            if self._stop:
                return
        if agent.client.health(timeout=min(2.0, self.health_interval + 1)) and self._rejoins(agent):
            with self._cond:
                agent.healthy = True
                self._cond.notify_all()
            self._say(f"agent '{agent.name}' of '{agent.target}' answers its health check again: back in rotation")

    def healthy(self, target: str) -> list[str]:
        """Names of the target's agents now in rotation."""
        with self._cond:
            return [a.name for a in self.agents[target] if a.healthy]

    def counts(self) -> tuple[int, int, int]:
        """(done, running, waiting) jobs."""
        with self._cond:
            return self._done, len(self.running), sum(len(q) for q in self._queues.values())

    def shutdown(self, cancel_waiting: bool = True) -> None:
        """Stop the workers after their current job; jobs not yet started are cancelled (cancel_waiting)
        or run first."""
        with self._cond:
            if not cancel_waiting:
                while (any(self._queues.values()) or self.running) and \
                        any(a.healthy for p in self.agents.values() for a in p):
                    self._cond.wait(1.0)
            for q in self._queues.values():
                for job in q:
                    if job.failed_on:   # already running once: a running future cannot be cancelled
                        job.future.set_exception(JobLost(f"job '{job.label}' was not retried: the scheduler "
                                                         "shut down"))
                    else:
                        job.future.cancel()
                q.clear()
            self._stop = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
