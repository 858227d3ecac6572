"""A real `farmctl dashboard` process for the tests: started on 127.0.0.1 port 0, its address read from the
line it prints once it listens, and waited for on its /health endpoint (never on a sleep)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def farmctl_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEFARM_DASHBOARD_TOKEN", "EDGEFARM_STORE")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@dataclass
class Served:
    """One dashboard process and its address."""

    proc: subprocess.Popen
    url: str

    def get(self, path: str, headers: dict | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
        """(status, headers, body) of one request; redirects are not followed."""
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kw):
                return None

        req = urllib.request.Request(self.url + path.lstrip("/"), headers=headers or {}, method=method)
        try:
            with urllib.request.build_opener(NoRedirect).open(req, timeout=60) as reply:
                return reply.status, dict(reply.headers), reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, path: str, headers: dict | None = None) -> dict:
        status, _, body = self.get(path, headers)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def stop(self) -> str:
        """Stop it (SIGTERM: uvicorn shuts down cleanly) and return what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err or ""


def start_dashboard(store: Path, *args: str, env: dict | None = None, cwd: Path | None = None) -> Served:
    """`farmctl --store STORE dashboard --port 0 ARGS`, ready: its /health answered."""
    proc = subprocess.Popen([sys.executable, "-m", "controller", "--store", str(store), "dashboard", "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or farmctl_env(), cwd=cwd or store.parent)
    line = proc.stdout.readline()           # printed once the socket listens
    if "http://" not in line:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the dashboard did not start: {line!r} {err}")
    url = line.split()[1]
    served = Served(proc, url)
    status, _, body = served.get("/health")   # accepted by the listening socket, answered once uvicorn runs
    assert status == 200 and json.loads(body)["status"] == "ok", body
    return served
