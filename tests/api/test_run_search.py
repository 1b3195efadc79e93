"""query_api/run_search.py: the page shapes chosen by how many runs match (index-ordered
segments with per-run tests, or found-then-sorted) give the same runs in the same order,
page after page, as the nulls-last order says, on both stacks; a total is counted beside
the page."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from modeldb.event_schema import uuid7
from modeldb.infra.system import System
from modeldb.query_api import run_search
from modeldb.query_api.runs import RunQueries
from tests.helpers import T0, run_events, wire

ORDERS = [
    ["metrics.acc DESC"], ["metrics.acc ASC"], ["metrics.acc.max DESC"],
    ["params.lr ASC"], ["params.lr DESC"], ["tags.team ASC"], ["tags.team DESC"],
    ["tags.team ASC", "metrics.acc DESC"], ["params.lr DESC", "attributes.name ASC"],
    ["attributes.start_time DESC"], [],
]
FILTERS = [None, "metrics.acc > 0.3", "params.lr = 'fast'", "tags.team = 'b' or params.lr < 0.05",
           "params.lr like '0.0%'", "not metrics.acc <= 0.5"]


def _lr(i: int) -> dict[str, Any]:
    if i % 5 == 0:
        return {}  # no lr: sorts last
    if i % 5 == 1:
        return {"lr": ["fast", "slow", "0.01x"][i % 3]}  # text: after the numbers
    return {"lr": [0.001, 0.01, 0.1][i % 3]}  # ties


@pytest.fixture
async def runs(system: System) -> System:
    events = []
    for i in range(30):
        metrics = {} if i % 7 == 3 else {"acc": [0.1, round((i * 37 % 11) / 10, 2)]}  # ties, gaps
        events += run_events(uuid7(), name=f"r{i:02d}", start=T0 + timedelta(minutes=i // 2),
                             params=_lr(i), metrics=metrics,
                             tags={"team": "abc"[i % 3]} if i % 4 else None)
    await system.writer.ingest(wire(events), "tester")
    await system.catch_up()
    return system


async def _all_pages(system: System, flt: str | None, order: list[str],
                     count: bool = True) -> tuple[int | None, list[str]]:
    queries, names, after = RunQueries(system.engine), [], None
    while True:
        page = await queries.search(flt, order, 7, after, count=count)
        names += [r.name for r in page.rows]
        if not page.has_next:
            return page.total, names
        after = page.cursors[-1]


@pytest.mark.parametrize("flt", FILTERS)
async def test_every_page_shape_gives_the_same_order(runs: System, flt: str | None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for order in ORDERS:
        monkeypatch.setattr(run_search, "LAZY", 0)  # always index-ordered, tested per run
        lazy = await _all_pages(runs, flt, order)
        monkeypatch.setattr(run_search, "LAZY", 10**9)  # always found first, then sorted
        eager = await _all_pages(runs, flt, order)
        assert lazy == eager, order
        assert lazy[0] == len(lazy[1]) and len(set(lazy[1])) == len(lazy[1])
        if flt is None:
            assert lazy[0] == 30
        for shape in (0, 10**9):  # without a count, the shape is estimated: the same pages
            monkeypatch.setattr(run_search, "LAZY", shape)
            assert await _all_pages(runs, flt, order, count=False) == (None, lazy[1]), order
        monkeypatch.setattr(run_search, "LAZY", 1.0)
        assert await _all_pages(runs, flt, order, count=False) == (None, lazy[1]), order


async def test_key_value_orders_put_numbers_then_text_then_missing_last(
        runs: System, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_search, "LAZY", 0)
    _, names = await _all_pages(runs, None, ["params.lr ASC"])
    index = {f"r{i:02d}": i for i in range(30)}
    kinds = ["missing" if i % 5 == 0 else "text" if i % 5 == 1 else "number"
             for i in (index[n] for n in names)]
    assert kinds == sorted(kinds, key=["number", "text", "missing"].index)
    numbers = [_lr(index[n])["lr"] for n in names if kinds[names.index(n)] == "number"]
    assert numbers == sorted(numbers)
    texts = [_lr(index[n])["lr"] for n in names if kinds[names.index(n)] == "text"]
    assert texts == sorted(texts)
    _, names = await _all_pages(runs, None, ["metrics.acc DESC"])
    assert [index[n] % 7 == 3 for n in names][-4:] == [True] * 4  # runs without acc: last


async def test_the_total_is_counted_while_the_page_is_read(runs: System,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    count, page = run_search._count, run_search._page
    counting = asyncio.Event()

    async def observed_count(*args: Any) -> int:
        counting.set()
        return await count(*args)

    async def page_once_counting(*args: Any) -> Any:
        await asyncio.wait_for(counting.wait(), 10)  # times out if they run one after the other
        return await page(*args)

    monkeypatch.setattr(run_search, "_count", observed_count)
    monkeypatch.setattr(run_search, "_page", page_once_counting)
    found = await RunQueries(runs.engine).search("metrics.acc > 0.3", ["metrics.acc DESC"], 7)
    monkeypatch.undo()
    total, names = await _all_pages(runs, "metrics.acc > 0.3", ["metrics.acc DESC"], count=False)
    assert total is None and found.total == len(names) > 7
    assert [r.name for r in found.rows] == names[:7]


async def test_a_failing_page_leaves_no_count_behind(runs: System,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing(*args: Any) -> Any:
        await asyncio.sleep(0)  # the count has started
        raise RuntimeError("the database went away")

    monkeypatch.setattr(run_search, "_page", failing)
    before = asyncio.all_tasks()
    with pytest.raises(RuntimeError, match="went away"):
        await RunQueries(runs.engine).search("metrics.acc > 0.3", None, 7)
    assert asyncio.all_tasks() == before  # cancelled and awaited, not left running
