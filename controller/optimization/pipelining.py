"""Whether `farmctl optimize` may build the next candidate while the devices measure the last one: only
when no target agent shares the controller's CPUs. Training beside a measured job on the same cores would
disturb its timing, so for `--device local`, or an agent on this machine whose CPUs overlap ours, candidates
are all built first and measured after (as before). An agent on another machine, or one on this machine
pinned to other CPUs (`farm-agent serve --cpus`), measures while the controller builds."""

from __future__ import annotations

import os
from dataclasses import dataclass

from agent.device import host_id
from controller.fleet.client import AgentClient


@dataclass
class Schedule:
    """The order chosen for a run and why."""

    pipelined: bool
    reason: str


def shares_cpu(info, controller_cpus: set[int] | None = None) -> str | None:
    """Why an agent (its GetInfo) shares this controller's CPUs, or None when it does not: another machine,
    or this machine with a CPU set disjoint from ours. An agent too old to report its host shares."""
    mine = controller_cpus if controller_cpus is not None else os.sched_getaffinity(0)
    if not info.host_id:
        return f"{info.name} does not say which machine it runs on (an older agent)"
    if info.host_id != host_id():
        return None
    overlap = sorted(set(info.cpus) & mine) if info.cpus else sorted(mine)
    if overlap:
        return f"{info.name} runs on this machine, on CPUs {overlap} that the controller uses too"
    return None


def choose_schedule(pools: dict[str, dict[str, AgentClient]], controller_cpus: set[int] | None = None) -> Schedule:
    """Pipelined when no agent of any target shares the controller's CPUs, else sequential."""
    for device, pool in pools.items():
        for client in pool.values():
            why = shares_cpu(client.info(), controller_cpus)
            if why is not None:
                return Schedule(False, f"sequential: {why} (building would disturb its timing)")
    return Schedule(True, "pipelined: no target device shares the controller's CPUs, so candidates are measured "
                          "while the next ones build")
