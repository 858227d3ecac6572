"""A throwaway PostgreSQL server for the tests and benchmarks/store.py: `initdb` and `pg_ctl` in a temporary
folder, listening on 127.0.0.1 at a free port (its unix socket in that folder), run as an unprivileged user
when we are root (`runuser`), waited for by `pg_ctl -w` and checked with `pg_isready`, stopped and removed
at the end. Debian's binaries live in /usr/lib/postgresql/VERSION/bin (`apt-get install postgresql`;
.ci/run does); $EDGEFARM_PG_BINDIR names another folder."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

RUN_AS = "postgres"            # Debian's postgresql package makes this user; created here when missing
FAST = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


def bindir() -> Path | None:
    """The folder with initdb, pg_ctl and pg_isready, or None."""
    named = os.environ.get("EDGEFARM_PG_BINDIR")
    candidates = [Path(named)] if named else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if
                      p.parent.name.isdigit() else 0, reverse=True)
    candidates += versions
    return next((d for d in candidates if all((d / b).is_file() for b in ("initdb", "pg_ctl", "pg_isready"))), None)


def required() -> bool:
    """In CI (.ci/run installs postgresql) a missing server is a failure, not a skip."""
    return bool(os.environ.get("CI") or os.environ.get("EDGEFARM_REQUIRE_POSTGRES"))


def missing() -> str | None:
    """Why no server can be started here, or None."""
    if bindir() is None:
        return ("no PostgreSQL binaries (initdb, pg_ctl, pg_isready): install Debian's `apt-get install -y "
                "postgresql` (.ci/run does) or set EDGEFARM_PG_BINDIR")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'edgefarm[farm]'"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser to start PostgreSQL as an unprivileged user"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One server in its own folder. durable=False turns fsync off (the tests: a killed process, never a
    lost machine); the benchmark keeps PostgreSQL's defaults."""

    def __init__(self, durable: bool = False) -> None:
        self.bin = bindir()
        if self.bin is None:
            raise RuntimeError(missing())
        self.durable = durable
        self.dir = Path(tempfile.mkdtemp(prefix="edgefarm-pg-"))
        self.data = self.dir / "data"
        self.port = 0
        self._names = itertools.count(1)
        self.user = None
        if os.geteuid() == 0:
            self.user = self._unprivileged_user()
            shutil.chown(self.dir, self.user, self.user)

    @staticmethod
    def _unprivileged_user() -> str:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_AS],
                           check=True, capture_output=True)
        return RUN_AS

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir)
        if check and out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
        return out

    def start(self) -> PostgresServer:
        """initdb, then pg_ctl start -w on a free port (another on a collision), then pg_isready."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C",
                  "--no-sync")
        for _attempt in range(3):
            self.port = _free_port()
            options = ["-c", "listen_addresses=127.0.0.1", "-p", str(self.port),
                       "-c", f"unix_socket_directories={self.dir}", "-c", "max_connections=200",
                       *(() if self.durable else FAST)]
            started = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w",
                                "-t", "60", "-o", " ".join(options), "start", check=False)
            if started.returncode == 0:
                break
        else:
            raise RuntimeError(f"PostgreSQL did not start: {self.log()}")
        ready = self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-t", "30", check=False)
        if ready.returncode != 0:
            raise RuntimeError(f"pg_isready: {ready.stdout.strip()} {self.log()}")
        return self

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text()[-2000:] if path.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = name or f"store_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions still open are ended) and remove its folder."""
        if self.port and (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
