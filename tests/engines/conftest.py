"""Fixtures for tests that need an engine of their own to stop and start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modeldb.infra import launcher
from tests.helpers import free_port


@pytest.fixture
def own_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A Kafka of this test's own, on free ports, that the test may stop and start:
    (its kafka:// URL, its launcher home)."""
    home = tmp_path / "infra"
    monkeypatch.setenv(launcher.PORT_VARS["kafka"], str(free_port()))
    monkeypatch.setenv(launcher.PORT_VARS["kafka_controller"], str(free_port()))
    urls = launcher.up(("kafka",), home=home)
    try:
        yield urls["MODELDB_EVENT_LOG"], home
    finally:
        launcher.down(home, purge=True)
