"""A PostgreSQL store's password never shows: `farmctl bench`, `profile` and `dashboard` (real processes, on a
real throwaway server whose role has a password) print the store as postgresql://USER:***@..., whether the URL
came from --store or $EDGEFARM_STORE, in their output, progress lines and -v logging; a `?password=` in the URL
is masked too, and a connection that fails is one clean sentence (libpq's hint without its tab)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.measure.store import ResultsStore, StoreError
from controller.measure.store_sql import masked
from tests.controller.dashboard.common import farmctl_env

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "S3cr3t-pw!"
FAST = ["--warmup", "1", "--min-iterations", "5", "--min-seconds", "0.02", "--threads", "1"]
REFUSED = ("(connection refused. Is the server running on that host and accepting TCP/IP connections?); check "
           "that the server runs and the URL in --store or $EDGEFARM_STORE")


@pytest.fixture(scope="module")
def secret_url(postgres_server) -> str:
    """A database owned by a role that has a password, as a URL carrying that password."""
    import psycopg

    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE ef LOGIN PASSWORD '{PASSWORD}'")
        conn.execute('CREATE DATABASE "ef" OWNER ef')
    return f"postgresql://ef:{PASSWORD}@127.0.0.1:{postgres_server.port}/ef"


def farmctl(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "EDGEFARM_STORE"}
    environ.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "controller", *args], check=False, capture_output=True,
                          text=True, timeout=300, env=environ, cwd=cwd)


def test_masked_hides_the_userinfo_password_and_a_password_parameter():
    assert masked(f"postgresql://ef:{PASSWORD}@db.lan:5433/ef") == "postgresql://ef:***@db.lan:5433/ef"
    assert masked(f"postgres://ef@db.lan/ef?sslmode=require&password={PASSWORD}&application_name=x") == \
        "postgres://ef@db.lan/ef?sslmode=require&password=***&application_name=x"
    assert masked(f"postgresql://ef:p@ss@db.lan/ef?password={PASSWORD}") == \
        "postgresql://ef:***@db.lan/ef?password=***"
    assert masked(f"postgresql://ef:{PASSWORD}@[::1:5/ef") == "postgresql://ef:***@[::1:5/ef"  # not a valid URL
    assert masked("postgresql://ef@db.lan/ef") == "postgresql://ef@db.lan/ef"
    assert masked(Path("team/results.db")) == "team/results.db"


@pytest.mark.parametrize("command", ["bench", "profile"])
@pytest.mark.parametrize("given", ["--store", "EDGEFARM_STORE"])
def test_bench_and_profile_print_the_store_without_its_password(secret_url, conv_onnx, tmp_path, command, given):
    extra = ["--iterations", "3"] if command == "profile" else []
    store, env = (["--store", secret_url], {}) if given == "--store" else ([], {"EDGEFARM_STORE": secret_url})
    out = farmctl("-v", *store, command, str(conv_onnx), *FAST, *extra, cwd=tmp_path, **env)   # -v: logs too
    assert out.returncode == 0, out.stderr
    shown = secret_url.replace(PASSWORD, "***")
    assert PASSWORD not in out.stdout + out.stderr
    assert out.stdout.rstrip().splitlines()[-1].endswith(f" in {shown}")


def test_a_password_parameter_is_masked_in_a_one_line_connection_error(tmp_path):
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'edgefarm[farm]'")
    url = f"postgresql://ef@127.0.0.1:1/ef?password={PASSWORD}"    # nothing listens on port 1: refused
    out = farmctl("--store", url, "report", cwd=tmp_path)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == ("farmctl: error: cannot open the results store postgresql://ef@127.0.0.1:1/ef?"
                          f"password=*** {REFUSED}\n")
    with pytest.raises(StoreError) as err:
        ResultsStore(f"postgresql://ef:{PASSWORD}@127.0.0.1:1/ef")
    assert str(err.value) == f"cannot open the results store postgresql://ef:***@127.0.0.1:1/ef {REFUSED}"


def test_a_url_libpq_cannot_parse_is_not_echoed_with_its_password():
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'edgefarm[farm]'")
    with pytest.raises(StoreError) as err:       # libpq's message quotes the whole URI it could not parse
        ResultsStore(f"postgresql://ef:{PASSWORD}@[::1:5/ef?password={PASSWORD}")
    message = str(err.value)
    assert PASSWORD not in message and "\t" not in message and "\n" not in message
    assert 'in URI: "postgresql://ef:***@[::1:5/ef?password=***"' in message


def test_the_dashboard_prints_the_store_without_its_password(secret_url, tmp_path):
    ResultsStore(secret_url).close()                # the tables exist: the dashboard only reads
    env = {k: v for k, v in farmctl_env().items() if k != "EDGEFARM_STORE"}
    proc = subprocess.Popen([sys.executable, "-m", "controller", "--store", secret_url, "dashboard", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()               # printed once it listens
    finally:
        os.kill(proc.pid, signal.SIGTERM)           # uvicorn shuts down cleanly
        rest, err = proc.communicate(timeout=60)
    assert line.startswith("dashboard: http://127.0.0.1:"), (line, err)
    assert line.rstrip().endswith(f"(store {secret_url.replace(PASSWORD, '***')})")
    assert PASSWORD not in line + rest + err
