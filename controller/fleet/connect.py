"""Opening ready clients to inventory devices: health checked, the same edgefarm version, the embedded
local agent started for the duration; one device or every answering agent of a class."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import agent
from controller.errors import DeviceError
from controller.fleet import ca
from controller.fleet.client import AgentClient
from controller.fleet.inventory import DeviceEntry, resolve_devices
from controller.fleet.local import LocalAgent


def check_version(client: AgentClient, info=None) -> None:
    """An agent of another edgefarm version (major.minor) speaks a different contract: a DeviceError
    naming the device and the fix."""
    info = info or client.info()
    theirs, ours = info.agent_version, agent.__version__
    if theirs.split(".")[:2] != ours.split(".")[:2]:
        raise DeviceError(f"farm-agent '{client.name}' at {client.address} runs edgefarm {theirs or '?'} but farmctl "
                          f"is {ours}; update the agent (`farmctl deploy {client.name}` installs this version)")


@contextmanager
def connect(entry: DeviceEntry, ready_timeout: float = 10.0) -> Iterator[AgentClient]:
    """A ready client for the device (health checked, same edgefarm version); the embedded agent is
    started here and stopped on exit."""
    if entry.embedded:
        with LocalAgent(name=entry.name) as client:
            yield client
        return
    if entry.tls:
        ca.warn_expiring([Path(entry.tls.ca), Path(entry.tls.cert)])
    client = entry.client()
    try:
        client.wait_ready(timeout=ready_timeout, wait_for_port=False)
        check_version(client)
        yield client
    finally:
        client.close()


def connect_pool(spec: str, inventory: dict[str, DeviceEntry], stack, ready_timeout: float = 10.0,
                 progress=None) -> dict[str, AgentClient]:
    """Ready clients for a --device value: one device, or every healthy agent of a class (the unreachable
    ones are named and left out; none reachable is a DeviceError). `stack` (an ExitStack) closes them."""
    entries = resolve_devices(spec, inventory)
    if len(entries) == 1:
        return {entries[0].name: stack.enter_context(connect(entries[0], ready_timeout))}
    pool, errors = {}, []
    for entry in entries:
        try:
            pool[entry.name] = stack.enter_context(connect(entry, ready_timeout))
        except DeviceError as exc:
            errors.append(f"{entry.name}: {exc}")
            if progress:
                progress(f"{spec}: leaving out {entry.name}, which does not answer ({exc})")
    if not pool:
        raise DeviceError(f"no agent of class '{spec}' answers: " + " | ".join(errors))
    return pool
