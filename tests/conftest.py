"""Fixtures: a stack (embedded; the engines join in tests/engines), a System on it, and a
real `modeldb serve` process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from modeldb.infra.settings import Settings
from modeldb.infra.system import System
from tests.helpers import ServerProcess, free_port, server_env


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never touch the developer's ~/.modeldb or inherit their MODELDB_* settings."""
    import os

    for key in list(os.environ):
        if key.startswith("MODELDB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MODELDB_HOME", str(tmp_path / "default-home"))
    monkeypatch.setenv("MODELDB_SPOOL_DIR", str(tmp_path / "spool"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(tmp_path / "home")


@pytest.fixture
async def system(settings: Settings) -> AsyncIterator[System]:
    opened = await System.open(settings)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def modeldb_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "server-home", free_port(), server_env())
    server.start()
    try:
        yield server
    finally:
        server.stop()
