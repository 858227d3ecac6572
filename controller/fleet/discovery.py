"""Finding farm-agents on the local network: browse zeroconf for `_edgefarm._tcp` and read each agent's
TXT records (name, class, arch, backends, agent version, whether it speaks TLS)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SERVICE_TYPE = "_edgefarm._tcp.local."


@dataclass
class Discovered:
    """One agent that answered on zeroconf."""

    name: str
    address: str                   # host:port
    device_class: str = ""
    arch: str = ""
    backends: list[str] = field(default_factory=list)
    agent_version: str = ""
    tls: bool = False


def _decode(props: dict) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else (v or ""))
            for k, v in (props or {}).items()}


def discover(timeout: float = 2.0, interfaces: list[str] | None = None,
             expect: set[str] | None = None) -> list[Discovered]:
    """Agents advertising `_edgefarm._tcp`, browsing up to `timeout` seconds (returning early once every
    name in `expect` was found). interfaces: addresses to browse on (default all; tests use 127.0.0.1)."""
    from zeroconf import InterfaceChoice, IPVersion, ServiceBrowser, ServiceListener, Zeroconf

    found: dict[str, Discovered] = {}
    lock = threading.Lock()
    complete = threading.Event()

    class Listener(ServiceListener):
        def add_service(self, zc, type_, name):
            info = zc.get_service_info(type_, name, timeout=int(timeout * 1000))
            if info is None or not info.parsed_addresses():
                return
            txt = _decode(info.properties)
            agent = Discovered(name=txt.get("name") or name.removesuffix("." + type_),
                               address=f"{info.parsed_addresses()[0]}:{info.port}",
                               device_class=txt.get("class", ""), arch=txt.get("arch", ""),
                               backends=[b for b in txt.get("backends", "").split(",") if b],
                               agent_version=txt.get("version", ""), tls=txt.get("tls") == "1")
            with lock:
                found[agent.name] = agent
                if expect and expect <= set(found):
                    complete.set()

        update_service = add_service

        def remove_service(self, zc, type_, name):
            pass

    zc = Zeroconf(interfaces=interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only)
    started = time.monotonic()
    try:
        browser = ServiceBrowser(zc, SERVICE_TYPE, Listener())
        complete.wait(timeout)
        browser.cancel()
    finally:
        zc.close()
    log.debug("discovery: %d agents in %.1f s", len(found), time.monotonic() - started)
    return sorted(found.values(), key=lambda a: a.name)
