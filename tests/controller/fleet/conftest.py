"""Fixtures of the fleet tests: the throwaway sshd (tests/controller/fleet/sshd.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.controller.fleet.sshd import SSHServer, running_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> Iterator[SSHServer]:
    """A throwaway sshd on 127.0.0.1 that accepts one generated key (for any user)."""
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_user_ssh_config(monkeypatch) -> None:
    """Never read the real ~/.ssh/config; a test that wants one names it in EDGEFARM_SSH_CONFIG."""
    monkeypatch.setenv("EDGEFARM_SSH_CONFIG", "none")
