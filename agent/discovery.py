"""Zeroconf advertisement: the agent announces `_edgefarm._tcp` with its class, arch, backends and
version in TXT records, so `farmctl devices` finds it without an inventory entry."""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)

SERVICE_TYPE = "_edgefarm._tcp.local."


def _addresses(host: str) -> list[str]:
    """The IPv4 addresses to announce: the bound one, or every interface's when bound to all."""
    if host not in ("0.0.0.0", "", "::"):
        return [socket.gethostbyname(host)]
    import ifaddr

    found = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
             if isinstance(ip.ip, str) and not ip.ip.startswith("169.254.")]
    return found or ["127.0.0.1"]


class Advertiser:
    """Registers the agent's service on start(), withdraws it on stop()."""

    def __init__(self, name: str, host: str, port: int, properties: dict[str, str]) -> None:
        self.name, self.host, self.port, self.properties = name, host, port, properties
        self._zc = None
        self._info = None

    def start(self) -> None:
        """Announce the service on the interfaces of the bound address."""
        from zeroconf import IPVersion, ServiceInfo, Zeroconf

        addresses = _addresses(self.host)
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.name)[:60] or "agent"
        self._info = ServiceInfo(SERVICE_TYPE, f"{safe}.{SERVICE_TYPE}",
                                 addresses=[socket.inet_aton(a) for a in addresses], port=self.port,
                                 properties=self.properties, server=f"{safe}.local.")
        self._zc = Zeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
        self._zc.register_service(self._info, allow_name_change=True)
        log.info("advertising %s on %s port %d", self._info.name, ",".join(addresses), self.port)

    def stop(self) -> None:
        """Withdraw the announcement."""
        if self._zc:
            try:
                self._zc.unregister_service(self._info)
            finally:
                self._zc.close()
                self._zc = None
