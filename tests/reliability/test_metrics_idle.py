"""Issue (D9): with mutual TLS, one plain TCP connection to the metrics port that sent nothing made every
scrape time out (the TLS handshake ran in the server's accept loop), and no certificate was needed to do it.
Now each connection is handshaken in its own thread, and an idle one is dropped after 10 s."""

from __future__ import annotations

import socket
import ssl
import time

from controller.fleet import ca
from controller.fleet.client import TLSFiles
from controller.fleet.local import LocalAgent
from tests.agent.test_metrics import free_port, scrape


def test_idle_connections_do_not_block_scrapes(tmp_path):
    d = tmp_path / "ca"
    ca.init_ca(d)
    ca.issue("agent-1", ["127.0.0.1", "localhost"], ca_dir=d)
    ca.issue("prometheus", ca_dir=d)
    port = free_port()
    agent = LocalAgent(cache_dir=tmp_path / "agent", tls=TLSFiles.read(d / "ca.pem", d / "prometheus.pem",
                                                                       d / "prometheus.key"),
                       extra_args=["--tls-ca", str(d / "ca.pem"), "--tls-cert", str(d / "agent-1.pem"),
                                   "--tls-key", str(d / "agent-1.key"), "--metrics-port", str(port)])
    agent.start()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]   # connect, send nothing
    try:
        context = ssl.create_default_context(cafile=str(d / "ca.pem"))
        context.load_cert_chain(str(d / "prometheus.pem"), str(d / "prometheus.key"))
        for _ in range(3):
            started = time.monotonic()
            assert scrape(port, context)[("edgefarm_agent_queue_length", ())] == 0
            assert time.monotonic() - started < 3
    finally:
        for s in idle:
            s.close()
        agent.stop()
    assert "Traceback" not in agent.log_path.read_text()
