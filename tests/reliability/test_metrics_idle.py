"""Issue (D9): with mutual TLS, one plain TCP connection to the metrics port that sent nothing made every
scrape time out (the TLS handshake ran in the server's accept loop), and no certificate was needed to do it.
Now each connection is handshaken in its own thread, and an idle one is dropped after 10 s."""

from __future__ import annotations

import socket
import time

from tests.agent.test_metrics import scrape, tls_metrics_agent


def test_idle_connections_do_not_block_scrapes(tmp_path):
    agent, port, context, _ = tls_metrics_agent(tmp_path)
    agent.start()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]   # connect, send nothing
    try:
        for _ in range(3):
            started = time.monotonic()
            assert scrape(port, context)[("edgefarm_agent_queue_length", ())] == 0
            assert time.monotonic() - started < 3
    finally:
        for s in idle:
            s.close()
        agent.stop()
    assert "Traceback" not in agent.log_path.read_text()
