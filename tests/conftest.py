"""Shared fixtures: real farm-agent processes on 127.0.0.1 (port 0), waited for on the health check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.fleet.client import AgentClient
from controller.fleet.local import LocalAgent
from tests import models, postgres


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch) -> None:
    """Keep generated examples and the embedded agent's cache out of the user's home."""
    monkeypatch.setenv("EDGEFARM_CACHE", str(tmp_path_factory.getbasetemp() / "edgefarm-cache"))
    monkeypatch.delenv("EDGEFARM_TOKEN", raising=False)
    monkeypatch.delenv("EDGEFARM_STORE", raising=False)


@pytest.fixture
def start_agent(tmp_path) -> Iterator[Callable[..., tuple[AgentClient, LocalAgent]]]:
    """Start a real farm-agent process with extra `serve` flags; all are stopped after the test."""
    started: list[LocalAgent] = []

    def start(*args: str, name: str = "test-agent") -> tuple[AgentClient, LocalAgent]:
        agent = LocalAgent(cache_dir=tmp_path / f"agent{len(started)}", extra_args=list(args), name=name)
        started.append(agent)
        return agent.start(), agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture(scope="module")
def shared_agent(tmp_path_factory) -> Iterator[tuple[AgentClient, LocalAgent]]:
    """One agent for a module's tests that do not change its configuration."""
    agent = LocalAgent(cache_dir=tmp_path_factory.mktemp("shared-agent"), name="shared",
                       extra_args=["--cache-max-mb", "64", "--job-time-limit", "120"])
    client = agent.start()
    yield client, agent
    agent.stop()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def conv_onnx(model_dir) -> Path:
    return models.conv_model(model_dir / "tiny_conv.onnx")


@pytest.fixture(scope="session")
def dynamic_onnx(model_dir) -> Path:
    return models.conv_model(model_dir / "dynamic_conv.onnx", batch="batch", size="side")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """A throwaway PostgreSQL server for the session (tests/postgres.py). Without its binaries or psycopg the
    tests that need it skip, saying what to install; in CI ($CI, .ci/run installs postgresql) they fail."""
    reason = postgres.missing()
    if reason:
        (pytest.fail if postgres.required() else pytest.skip)(reason)
    with postgres.PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new empty database on the session's PostgreSQL server, as a postgresql:// URL."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request, tmp_path) -> Path | str:
    """Where a results store goes, once per kind: a SQLite file, then a PostgreSQL database (the contract
    every store keeps: tests/controller/measure/test_store_contract.py)."""
    if request.param == "sqlite":
        return tmp_path / "results.db"
    return request.getfixturevalue("postgres_url")
