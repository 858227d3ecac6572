"""The job queue: one job holds the device at a time; the next is the waiting job of highest priority,
first come first served within a priority, and a waiting job gains one priority level every `aging_s`
seconds, so a low-priority job never starves (after two steps it is high, and older than any newer job)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator

from agent.errors import JobError

PRIORITIES = ("low", "normal", "high")   # levels 0, 1, 2
TOP = len(PRIORITIES) - 1
DEFAULT_AGING_S = 60.0


MAX_WAIT_S = 3600.0     # the longest a waiting job sleeps before it looks again


class Job:
    """A job's live state: its spec (a JobSpec), whether it was cancelled, and when it queued and ran."""

    def __init__(self, spec) -> None:
        self.spec = spec
        self.id = spec.job_id or uuid.uuid4().hex
        asked = getattr(spec, "priority", "normal")   # checked before it queues (JobManager)
        self.level = PRIORITIES.index(asked) if asked in PRIORITIES else 1
        self.cancelled = threading.Event()
        self.state = "queued"
        self.seq = 0                # arrival order: the tie-break within one level
        self.queued_at = 0.0        # time.monotonic() at submit
        self.started_at = 0.0       # time.monotonic() when it got the device


class JobQueue:
    """Waiting jobs and the one that holds the device. The next job is chosen in one place (`_dispatch`,
    under the lock) whenever the device frees or a job arrives; a waiter only learns it was chosen."""

    def __init__(self, aging_s: float = DEFAULT_AGING_S) -> None:
        if not aging_s > 0:
            raise ValueError(f"the priority aging interval must be a positive number of seconds, not {aging_s}")
        self.aging_s = aging_s
        self._cond = threading.Condition()
        self._waiting: list[Job] = []
        self._running: Job | None = None
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        with self._cond:
            return len(self._waiting) + (self._running is not None)

    def waiting_by_priority(self) -> dict[str, int]:
        """How many jobs wait at each priority they asked for (not counting aging)."""
        with self._cond:
            counts = dict.fromkeys(PRIORITIES, 0)
            for job in self._waiting:
                counts[PRIORITIES[job.level]] += 1
            return counts

    def busy(self) -> bool:
        """True while a job holds the device."""
        with self._cond:
            return self._running is not None

    def level_now(self, job: Job, now: float) -> int:
        """The job's priority level now: asked for, plus one per `aging_s` seconds waited, at most high."""
        return min(TOP, job.level + int(max(0.0, now - job.queued_at) // self.aging_s))

    def _order(self, now: float) -> list[Job]:
        return sorted(self._waiting, key=lambda j: (-self.level_now(j, now), j.seq))

    def _next_aging(self, now: float) -> float | None:
        """Seconds until some waiting job moves up a level (which may reorder the queue), or None."""
        steps = [j.queued_at + self.aging_s * (self.level_now(j, now) - j.level + 1) - now
                 for j in self._waiting if self.level_now(j, now) < TOP]
        # capped: a wait of 1e10 s overflows the lock's timeout (time_t); waking early only re-checks
        return min(max(0.0, min(steps)) + 1e-3, MAX_WAIT_S) if steps else None

    def _dispatch(self) -> None:
        """Under the lock: if the device is free, give it to the first waiting job not cancelled."""
        if self._running is not None:
            return
        for job in self._order(time.monotonic()):
            if not job.cancelled.is_set():
                self._waiting.remove(job)
                self._running = job
                job.state = "running"
                job.started_at = time.monotonic()
                return

    def submit(self, job: Job) -> None:
        """Queue a job (it may take the device at once)."""
        with self._cond:
            job.seq = next(self._arrivals)
            job.queued_at = time.monotonic()
            self._waiting.append(job)
            self._dispatch()
            self._cond.notify_all()  # a higher job may have overtaken waiting ones: their positions changed

    def wait_turn(self, job: Job) -> Iterator[tuple[int, str]]:
        """Yield (position, priority now) whenever either changes; return once the job holds the device."""
        last = None
        while True:
            with self._cond:
                if job.cancelled.is_set():
                    if job in self._waiting:
                        self._waiting.remove(job)
                        self._cond.notify_all()
                    raise JobError("CANCELLED", "the job was cancelled while queued")
                if self._running is job:
                    return
                now = time.monotonic()
                current = (self._order(now).index(job) + 1, PRIORITIES[self.level_now(job, now)])
                if current == last:
                    self._cond.wait(self._next_aging(now))
                    continue
            last = current
            yield current

    def finish(self, job: Job) -> None:
        """Release the device (or drop a job that never ran) and hand the device to the next job."""
        with self._cond:
            job.state = "done"
            if self._running is job:
                self._running = None
            elif job in self._waiting:
                self._waiting.remove(job)
            self._dispatch()
            self._cond.notify_all()

    def wake(self) -> None:
        """Let waiters re-check (after a cancel)."""
        with self._cond:
            self._cond.notify_all()
