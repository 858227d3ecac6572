"""Shared fixtures: real farm-agent processes on 127.0.0.1 (port 0), waited for on the health check.

Under pytest-xdist (`make test`: -n auto) each worker has its own temporary folder and cache; the trained digits
example, costly and the same for everyone, lives in one folder all workers of the run share (`shared_dir`),
trained under a file lock so it is trained once."""

from __future__ import annotations

import importlib
import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.fleet.client import AgentClient
from controller.fleet.local import LocalAgent
from optimizers.data.digits import pretrained_example, weights_path
from tests import models, postgres
from tests.workers import made_once, shared_dir

_STARTED = time.monotonic()

# Scheduling under pytest-xdist (`make test`: -n auto --dist loadscope --no-loadscope-reorder). A module's tests
# go to one worker together, so its module-scoped fixtures (an agent, a trained model, one optimize run) are
# made once, as in a serial run. Modules are handed out in collection order, so the longest are collected
# first (HEAVY_FIRST, the slowest first, from the durations in docs/development.md, the two users of the
# trained example apart so one worker does not wait for the other's training); the order changes only the
# wall time. (--dist loadgroup with an xdist_group per module was tried: with pytest 9.2 and xdist 3.8 the
# groups were not applied, and a module's tests, and its fixtures, were spread over both workers.)
HEAVY_FIRST = [
    "tests/test_docs_examples.py::test_examples_run",
    "tests/controller/optimization/test_optimize.py",         # trains the digits example (digits_example)
    "tests/controller/optimization/test_int8.py",             # the other worker, meanwhile
    "tests/optimizers/quantization/test_qat.py",
    "tests/controller/optimization/test_nas.py",
    "tests/optimizers/pytorch/test_torch_techniques.py",      # the digits example again: trained by then
    "tests/optimizers/test_unseen_models.py",
    "tests/controller/measure/test_paired_decision.py",
    "tests/controller/fleet/test_deploy.py",
    "tests/controller/fleet/test_wheel.py",
]


def pytest_collection_modifyitems(config, items) -> None:
    def rank(item) -> int:
        module, _, rest = item.nodeid.partition("::")
        function = f"{module}::{rest.split('[')[0]}"
        for i, key in enumerate(HEAVY_FIRST):
            if key in (module, function):
                return i
        return len(HEAVY_FIRST)

    items.sort(key=rank)     # stable: within a rank, the collection order


def _share_the_cores() -> None:
    """Under xdist, torch in each worker gets its share of the cores, not all of them: two workers each
    spinning two OpenMP threads on two cores slow each other down. (The digits example still trains at its
    fixed 2 threads: optimizers.pytorch.training.training_threads.)"""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and importlib.util.find_spec("torch") is not None:
        torch = importlib.import_module("torch")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory) -> Iterator[Path]:
    """Keep generated examples and the embedded agent's cache out of the user's home, from the session's
    start (module fixtures that run optimize in-process included). This worker's EDGEFARM_CACHE; the trained
    digits example's folder in it (`weights_path()`'s, keyed by recipe) is the run's shared one, which only
    `digits_example` writes, under its lock."""
    cache = tmp_path_factory.getbasetemp() / "edgefarm-cache"
    shared = shared_dir(tmp_path_factory) / "digits-weights"
    shared.mkdir(parents=True, exist_ok=True)
    _share_the_cores()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEFARM_CACHE", str(cache))
        mp.delenv("EDGEFARM_TOKEN", raising=False)
        mp.delenv("EDGEFARM_STORE", raising=False)
        weights = weights_path().parent           # where pretrained_example looks, under this cache
        weights.parent.mkdir(parents=True, exist_ok=True)
        if not weights.exists():
            weights.symlink_to(shared, target_is_directory=True)
        yield cache


@pytest.fixture(scope="session")
def digits_example(tmp_path_factory, _isolated_cache):
    """The built-in PyTorch example, trained as `farmctl optimize` trains it (8 epochs), once per run: the
    first worker to ask trains it under a run-wide lock into the shared weights folder, the others load it
    (model, data, test accuracy). Anything that runs optimize without a MODEL after this reuses it."""
    pytest.importorskip("torch")
    with made_once(tmp_path_factory, "digits-example"):
        return pretrained_example()


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


def pytest_terminal_summary(terminalreporter) -> None:
    workers = terminalreporter.config.getoption("numprocesses", None)
    seconds = time.monotonic() - _STARTED
    terminalreporter.write_line(f"suite wall time: {int(seconds // 60)} min {seconds % 60:.0f} s"
                                f"{f' ({workers} xdist workers)' if workers else ''}")
