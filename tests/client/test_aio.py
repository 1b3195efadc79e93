"""asyncio: aflush waits for delivery without blocking the event loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import modeldb
from modeldb import _client
from tests.client.conftest import metric_points, read_events


def test_aflush_delivers(tmp_path: Path) -> None:
    modeldb.init(tmp_path / "home")

    async def main() -> bool:
        with modeldb.start_run() as run:
            for step in range(10):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
        return await modeldb.aflush(10)

    assert asyncio.run(main())
    assert len(metric_points(read_events(tmp_path / "home" / "events.db"))) == 10


def test_a_slow_flush_does_not_block_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow_flush(timeout: float | None = None) -> bool:
        time.sleep(0.3)  # a server far away
        return True

    monkeypatch.setattr(_client, "flush", slow_flush)

    async def main() -> tuple[bool, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        ok = await modeldb.aflush(10)
        task.cancel()
        return ok, ticks

    ok, ticks = asyncio.run(main())
    assert ok and ticks >= 10  # other tasks ran while aflush waited


def test_aflush_without_a_client() -> None:
    assert asyncio.run(modeldb.aflush(1)) is True
