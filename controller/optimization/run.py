"""One `farmctl optimize` run: measure the baseline on every device, build the candidates, measure each
on every device (paired with the baseline), time the contenders again, and decide. `OptimizeRun` holds
the run's state; the refinements (refine.py) add candidates to it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.errors import AgentUnavailable, FarmError
from controller.fleet.client import file_digest
from controller.fleet.scheduler import JobLost, Scheduler
from controller.measure.paired import (
    PairedRounds,
    could_be_faster,
    least_disturbed_baseline,
    paired_loop,
    ratio_to_json,
    speed_failure,
)
from controller.measure.preflight import check_model
from controller.measure.settings import MeasureSettings
from controller.measure.store import CandidateRecord, ResultsStore
from controller.optimization import candidates as plan_mod
from controller.optimization.candidates import REUSE_ALL, REUSE_NOTHING
from controller.optimization.constraints import Constraints, closest
from controller.optimization.measuring import (
    EvalSet,
    Measurement,
    describe,
    measure_on,
    row_from_store,
    safe_name,
)
from controller.optimization.pipelining import Schedule
from controller.optimization.quality import stack_inputs
from controller.optimization.results import DeviceResult
from controller.optimization.rows import CandidateRow
from controller.optimization.sources import Source
from controller.progress import ProgressBar
from core.npz import save_arrays
from optimizers.evaluation.metrics import Metric

log = logging.getLogger(__name__)


@dataclass
class RunPlan:
    """What one run works on and where: its inputs, how it measures, and what an earlier run may give."""

    source: Source
    devices: list[str]
    constraints: Constraints
    techniques: list[str]
    out_dir: Path
    settings: MeasureSettings
    store: ResultsStore
    key: str
    deadline: float | None = None
    metric: Metric | None = None
    reuse: str = REUSE_ALL   # what an earlier run of the same key may give: REUSE_CHOICES


def measuring_now(scheduler: Scheduler) -> str:
    """What the devices measure now ('measuring int8 on rpi4-a, ...'), for the progress line."""
    return ", ".join(f"measuring {name} on {dev}" for dev, name in list(scheduler.running.items()))


class OptimizeRun:
    """State of one optimize run: the rows measured on each device, the baseline's outputs and profile."""

    def __init__(self, plan: RunPlan, bar: ProgressBar) -> None:
        self.plan, self.bar = plan, bar
        self.source, self.devices, self.constraints = plan.source, plan.devices, plan.constraints
        self.techniques, self.settings, self.store, self.reuse = (plan.techniques, plan.settings, plan.store,
                                                                  plan.reuse)
        self.work = plan.out_dir / "candidates"
        self.work.mkdir(parents=True, exist_ok=True)
        inputs = stack_inputs(self.source.evaluation)
        n = len(next(iter(inputs.values())))
        labels = self.source.evaluation.labels
        self.data = EvalSet(inputs, None if labels is None else np.asarray(labels)[:n], plan.metric)
        self.rows: dict[str, dict[str, CandidateRow]] = {d: {} for d in self.devices}   # device -> name -> row
        self.baseline: dict[str, CandidateRow] = {}
        self.reference: dict[str, dict] = {}          # device -> the baseline's outputs there
        self.layers: dict[str, list[dict]] = {}       # device -> the baseline's profile rows there
        self.built: dict[str, Path] = {}
        self.baseline_ref = check_model(self.source.baseline, self.settings.input_shapes)
        self.budget_reached = False
        self.results: list[DeviceResult] = []   # per device, once decided
        self.lost: list[str] = []   # jobs that failed without failing a row: each named, the run went on
        self.schedule = Schedule(False, "sequential")   # api._run sets it from the devices (pipelining.py)

    def over_budget(self) -> bool:
        if self.plan.deadline is not None and time.monotonic() > self.plan.deadline:
            self.budget_reached = True
        return self.budget_reached

    def _measure(self, client, path: Path, device: str | None, **kw) -> Measurement:
        reference = None if device is None else self.reference[device]
        return measure_on(client, path, self.settings, self.store, self.data, reference, **kw)

    # baseline ---------------------------------------------------------------------------------------
    def baseline_job(self, device: str):
        ref_path = self.plan.out_dir / f"baseline-outputs-{safe_name(device)}.npz"
        stored = {c.name: c for c in self.store.candidates(self.plan.key, device)}
        if self.reuse == REUSE_ALL and "baseline" in stored and stored["baseline"].status == "ok" \
                and stored["baseline"].detail.get("profile_run_id") is not None and ref_path.exists():
            # (a baseline whose profile was lost is measured again: what needs the profile gets it this time)
            def resume(client) -> CandidateRow:
                row = row_from_store(stored["baseline"])
                with np.load(ref_path) as z:
                    self.reference[device] = {k: z[k] for k in z.files}
                self.layers[device] = self.store.layers(row.profile_run_id or -1)
                return row
            return resume

        def run(client) -> CandidateRow:
            m = self._measure(client, self.source.baseline, None, want_profile=True)
            self.reference[device] = m.outputs
            save_arrays(ref_path, m.outputs)
            self.layers[device] = m.profile.layers if m.profile else []
            if m.profile_error:
                self.lost.append(f"the baseline's profile on {device} failed ({m.profile_error}); what needs it "
                                 "(profile-guided pruning ratios, mixed precision's per-layer times) went without")
            row = CandidateRow("baseline", [], latency_ms=m.latency_ms, size_bytes=self.source.baseline.stat().st_size,
                               cv=m.cv, flags=m.flags, path=str(self.source.baseline), model_digest=m.model_digest,
                               profile_run_id=m.profile.run_id if m.profile else None)
            row.set_quality(m.quality)
            row.fidelity = 1.0
            self.save(device, row, m.run_id)
            return row
        return run

    def save(self, device: str, row: CandidateRow, run_id: int | None) -> None:
        """Store a row (again: a confirmed or rejected row replaces its earlier record)."""
        detail = {"top1_agreement": row.top1_agreement, "details": row.details, "metric_value": row.metric_value,
                  "fidelity_detail": row.fidelity_detail, "paired": ratio_to_json(row.ratio()),
                  "paired_p50s": row.paired.p50s() if row.paired else None}
        if row.profile_run_id is not None:
            detail["profile_run_id"] = row.profile_run_id
        if row.name == "baseline":   # the model's name as the report and plot give it (its file may be baseline.onnx)
            detail["model"] = self.source.name
        self.store.record_candidate(CandidateRecord(
            self.plan.key, device, row.name, row.techniques, row.status, row.reason, row.model_digest, row.path,
            row.size_bytes, row.latency_ms, row.cv, row.flags, row.accuracy, row.fidelity, run_id, detail))

    # candidates -------------------------------------------------------------------------------------
    def build(self, cand: plan_mod.Candidate) -> tuple[Path | None, dict, str]:
        """Build one candidate (or reuse an earlier run's complete build); (path, details, error)."""
        path = self.work / f"{cand.name}{cand.suffix}"
        details = plan_mod.read_details(path) if self.reuse != REUSE_NOTHING else None
        if details is not None:
            return path, details, ""
        try:
            details = cand.build(path)
        except Exception as exc:  # a technique that fails on this model fails its candidate only
            log.debug("building %s failed", cand.name, exc_info=True)
            return None, {}, f"could not be built: {type(exc).__name__}: {str(exc)[:300]}"
        plan_mod.write_details(path, cand, details)
        return path, details, ""

    def measure_job(self, device: str, cand: plan_mod.Candidate, path: Path, details: dict):
        def run(client) -> CandidateRow:
            row = CandidateRow(cand.name, cand.techniques, size_bytes=path.stat().st_size, path=str(path),
                               details=details)
            try:
                m = self._measure(client, path, device, baseline=self.baseline_ref)
            except AgentUnavailable:
                raise  # the scheduler retries it on another agent of the device's class
            except FarmError as exc:
                row.status, row.reason = "failed", f"measurement failed: {exc}"
                self.save(device, row, None)
                return row
            row.latency_ms, row.cv, row.flags, row.model_digest = m.latency_ms, m.cv, m.flags, m.model_digest
            row.set_quality(m.quality)
            row.paired = PairedRounds()
            row.paired.add(*m.pair)
            self.save(device, row, m.run_id)
            return row
        return run

    def finished(self, device: str, name: str, path: Path | None) -> CandidateRow | None:
        """A measurement of this exact file already in the store (resume)."""
        if self.reuse != REUSE_ALL or path is None or not path.exists():
            return None
        for c in self.store.candidates(self.plan.key, device):
            if c.name == name and c.status == "ok" and c.model_digest == file_digest(path) and c.detail.get("paired"):
                return row_from_store(c)
        return None

    def _fail_everywhere(self, cand: plan_mod.Candidate, reason: str, store: bool = True) -> None:
        for d in self.devices:
            row = CandidateRow(cand.name, cand.techniques, "failed", reason)
            self.rows[d][cand.name] = row
            if store:
                self.save(d, row, None)

    def _build_each(self, cands: list[plan_mod.Candidate],
                    scheduler: Scheduler) -> Iterator[tuple[plan_mod.Candidate, Path, dict]]:
        """Build the candidates one by one, yielding each as it is ready."""
        for cand in cands:
            if self.over_budget():
                self._fail_everywhere(cand, "not made: the --budget-minutes time ran out", store=False)
                self.bar.advance(1 + len(self.devices), f"{cand.name}: not made (budget)")
                continue
            measuring = measuring_now(scheduler)
            self.bar.note(f"building {cand.name} ({' + '.join(cand.techniques)})" + (f", {measuring}" if measuring else ""))
            started = time.monotonic()
            path, details, error = self.build(cand)
            if path is None:
                self._fail_everywhere(cand, error)
                self.bar.advance(1 + len(self.devices), f"{cand.name}: {error}")
                continue
            self.bar.advance(1, f"built {cand.name} ({time.monotonic() - started:.0f} s)")
            self.built[cand.name] = path
            yield cand, path, details

    def run_candidates(self, scheduler: Scheduler, cands: list[plan_mod.Candidate]) -> None:
        """Build the candidates and measure each on every device (resuming what the store has): all built
        first when a device shares the controller's CPUs, else each measured as soon as it is built
        (self.schedule, controller/optimization/pipelining.py)."""
        futures = []
        builds = self._build_each(cands, scheduler)
        if not self.schedule.pipelined:
            builds = list(builds)     # training would disturb a device on the controller's CPUs
        for cand, path, details in builds:
            for d in self.devices:
                done = self.finished(d, cand.name, path)
                if done is not None:
                    self.rows[d][cand.name] = done
                    self.bar.advance(1, f"{cand.name} on {d}: measured by an earlier run (resumed)")
                elif self.over_budget():
                    self.rows[d][cand.name] = CandidateRow(cand.name, cand.techniques, "failed",
                                                           "not measured: the --budget-minutes time ran out")
                    self.bar.advance(1, f"{cand.name} on {d}: skipped (budget)")
                else:
                    futures.append((d, cand, scheduler.submit(d, cand.name, self.measure_job(d, cand, path, details))))
        for d, cand, fut in futures:
            row = self._wait(scheduler, d, cand, fut)
            self.rows[d][cand.name] = row
            self.bar.advance(1, describe(d, row, self.baseline[d]), running=scheduler.counts()[1])

    def _wait(self, scheduler: Scheduler, device: str, cand: plan_mod.Candidate, fut) -> CandidateRow:
        """A measurement's row, the bar saying what runs meanwhile; a job no agent could run fails its row."""
        while True:
            try:
                return fut.result(timeout=0.5)
            except JobLost as exc:
                path = self.built[cand.name]
                row = CandidateRow(cand.name, cand.techniques, "failed", f"measurement failed: {exc}",
                                   size_bytes=path.stat().st_size, path=str(path))
                self.save(device, row, None)
                return row
            except FutureTimeout:
                _, running, _ = scheduler.counts()
                self.bar.update(self.bar.done, running, message=measuring_now(scheduler))

    def confirm(self, scheduler: Scheduler, rounds: int) -> None:
        """Time every candidate that could still be faster (its interval reaches the noise margin) in
        `rounds` more loops paired with the baseline, the order within the pair swapped every other round;
        its speedup is then the median of the paired ratios of all its loops."""
        jobs = []
        self.bar.then = ""
        for d in self.devices:
            contenders = [r for r in self.rows[d].values() if r.status == "ok" and r.paired
                          and could_be_faster(r.ratio())]
            if rounds <= 0 or not contenders:
                continue
            for rnd in range(rounds):
                swapped = rnd % 2 == 0
                for row in (contenders[::-1] if swapped else contenders):
                    jobs.append((d, row, scheduler.submit(d, f"again {row.name}", self._paired_job(row, swapped))))
            self.bar.total += rounds * len(contenders)
            self.bar.note(f"timing {len(contenders)} contender(s) on {d} again, each paired with the baseline "
                          f"({rounds} more loops)")
        for d, row, fut in jobs:
            try:
                this = row.paired.add(*fut.result())
            except FarmError as exc:   # a lost loop costs that loop: the row keeps the loops that finished
                self.lost.append(f"a confirmation loop of {row.name} on {d} ({exc}); its speedup is from the "
                                 "loops that finished")
                self.bar.advance(1, f"again: {row.name} on {d}: not timed ({exc})")
                continue
            self.bar.advance(1, f"again: {row.name} on {d}, paired with the baseline: {this:.2f}x in this loop",
                             running=scheduler.counts()[1])
        for d, row in {(d, id(row)): (d, row) for d, row, _ in jobs}.values():
            if row.paired.rounds:
                row.latency_ms = row.paired.least_disturbed()
                self.save(d, row, None)

    def _paired_job(self, row: CandidateRow, swapped: bool):
        """One loop of the candidate and the baseline; swapped: the baseline is the timed model and the
        candidate its reference (so neither always runs first)."""
        cand = check_model(Path(row.path), self.settings.input_shapes)

        def run(client):
            return paired_loop(client, self.baseline_ref, cand, self.settings, self.store, swapped)
        return run

    # choice -----------------------------------------------------------------------------------------
    def _judge(self, row: CandidateRow, base: CandidateRow) -> None:
        """Set a row's speedup and verdict: measurably faster and meeting every constraint, or why not."""
        ratio = row.ratio()
        row.speedup = round(ratio.median, 4) if ratio else None
        row.speedup_ci = ratio.interval if ratio else None
        row.meets_constraints = False
        if row.status != "ok":
            return
        fails = self.constraints.failures(row, base)
        row.speed_failure = speed_failure(ratio) if ratio else "not timed paired with the baseline"
        if row.speed_failure:
            fails.insert(0, row.speed_failure)
        row.meets_constraints = not fails
        if fails:
            row.status, row.reason = "rejected", "; ".join(fails)

    def decide(self, device: str) -> DeviceResult:
        base = self.baseline[device]
        rows = list(self.rows[device].values())
        for row in rows:
            self._judge(row, base)
        base.latency_ms = least_disturbed_baseline(base.latency_ms, [r.paired for r in rows if r.paired])
        base.speedup, base.speedup_ci = 1.0, [1.0, 1.0]
        base.meets_constraints = not self.constraints.failures(base, base)
        ok = [r for r in rows if r.meets_constraints]
        near = [] if ok else closest(rows, self.constraints, base)
        if ok:
            chosen = max(ok, key=lambda r: r.speedup)
            chosen.reason = (f"chosen: fastest candidate meeting every constraint "
                             f"({chosen.ratio().text()} paired with the baseline)")
        elif near and base.meets_constraints:   # nothing beats the model as it is, which meets every limit: keep it
            chosen = base
            chosen.reason = "kept: no candidate was measurably faster while meeting every constraint"
        else:
            failure = (f"no candidate meets the constraints on {device}. Closest: " + " | ".join(near) if near
                       else f"no candidate could be measured on {device}")
            return self.record_decision(DeviceResult(device, base, rows, None, None, failure, closest=near))
        artifact = self.plan.out_dir / f"chosen-{safe_name(device)}.onnx"
        artifact.write_bytes(Path(chosen.path).read_bytes())
        return self.record_decision(DeviceResult(device, base, rows, chosen.name, str(artifact), closest=near))

    def record_decision(self, result: DeviceResult) -> DeviceResult:
        """The decision, with each row's verdict, kept on the baseline's stored record (the store, not only
        the report, says what was chosen: the dashboard shows it); the rows' own records are left as measured,
        so a rerun resumes them."""
        base = next((c for c in self.store.candidates(self.plan.key, result.device) if c.name == "baseline"), None)
        if base is not None:
            base.detail["decision"] = {
                "chosen": result.chosen, "failure": result.failure, "decided_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "rows": {r.name: {"status": r.status, "reason": r.reason, "speedup": r.speedup,
                                  "meets": bool(r.meets_constraints)} for r in result.candidates}}
            self.store.record_candidate(base)
        return result
