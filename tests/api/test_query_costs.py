"""What answering a page of runs costs the server, beyond its answer: one query per child
table for the whole page, the validation of a repeated text done once, and the loaded rows
released when the operation ends (not left for the cyclic garbage collector)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import strawberry.schema.schema as strawberry_schema

from modeldb.event_schema import uuid7
from modeldb.infra.settings import Settings
from modeldb.infra.system import System
from modeldb.projectors import db
from modeldb.projectors.db import fetch_rows
from modeldb.query_api.app import build_schema, graphql_context
from modeldb.query_api.runs import RunQueries
from tests.helpers import run_events, wire

PAGE = """query { runs(first: 50) { totalCount edges { node { id name
  params { key value } metrics { key value step } tags { key value } } } } }"""


@pytest.fixture
async def runs(system: System) -> System:
    events = []
    for i in range(30):
        events += run_events(uuid7(), name=f"r{i:02d}", params={"lr": i / 100, "opt": "adam"},
                             metrics={"acc": [0.1, i / 30]}, tags={"team": f"t{i % 3}"})
    await system.writer.ingest(wire(events), "tester")
    await system.catch_up()
    return system


async def _execute(system: System, schema: Any, query: str) -> tuple[dict[str, Any], dict[str, Any]]:
    context = graphql_context(RunQueries(system.engine), system.graph, system.audit)
    result = await schema.execute(query, context_value=context)
    assert not result.errors, result.errors
    return result.data, context


async def test_a_page_loads_each_child_table_once_and_releases_it(
        runs: System, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[str] = []
    original = db.fetch_rows

    async def counting(conn: Any, stmt: Any) -> list[Any]:
        fetched.append(stmt.get_final_froms()[0].name)
        return await original(conn, stmt)

    monkeypatch.setattr("modeldb.query_api.runs.fetch_rows", counting)
    data, context = await _execute(runs, build_schema(), PAGE)
    edges = data["runs"]["edges"]
    assert data["runs"]["totalCount"] == 30 and len(edges) == 30
    assert all(len(e["node"]["params"]) == 2 and e["node"]["tags"][0]["key"] == "team"
               for e in edges)
    assert sorted(fetched) == ["latest_metrics", "params", "tags"]  # per table, not per run
    loaders = context["loaders"]
    assert all(not loader.cache_map.cache_map for loader in
               (loaders.params, loaders.metrics, loaders.tags))  # released at the end


async def test_a_page_without_total_count_counts_nothing(runs: System) -> None:
    """totalCount costs a count of every match; a query that does not select it (as
    MLflow's search_runs, which has none) gets its page without one, the same page."""
    from sqlalchemy import event

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    schema, page = build_schema(), PAGE.replace("totalCount ", "")
    event.listen(runs.engine.sync_engine, "before_cursor_execute", record)
    try:
        for filter_ in ("", "metrics.acc > 0.5 and params.opt = 'adam'"):
            query = page.replace("runs(first: 50)", f'runs(first: 5, filter: "{filter_}")')
            without, _ = await _execute(runs, schema, query)
            assert "totalCount" not in without["runs"]
            assert not any("count(*) AS count_1 FROM runs" in s or "OVER ()" in s for s in statements)
            counted, _ = await _execute(runs, schema, query.replace("edges", "totalCount edges"))
            assert counted["runs"]["totalCount"] == (30 if not filter_ else 14)  # acc = i / 30
            assert counted["runs"]["edges"] == without["runs"]["edges"]
            statements.clear()
    finally:
        event.remove(runs.engine.sync_engine, "before_cursor_execute", record)


async def test_a_page_leaves_its_rows_to_reference_counting(runs: System) -> None:
    schema = build_schema()
    await _execute(runs, schema, PAGE)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await _execute(runs, schema, PAGE)
        gc.collect()
        rows = [o for o in gc.garbage if type(o).__name__ == "Row"]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert rows == []


async def test_a_repeated_query_text_is_validated_once(
        runs: System, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = strawberry_schema.validate  # what strawberry's (cached) validate_document calls

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(strawberry_schema, "validate", counting)
    schema = build_schema()
    text = PAGE.replace("first: 50", "first: 7")  # a text no other test validated
    for _ in range(3):
        await _execute(runs, schema, text)
    assert len(calls) == 1
    deep = "{ runs { edges { node { parent { parent { parent { parent { parent { parent { " \
           "parent { parent { parent { parent { parent { id } } } } } } } } } } } } } } }"
    result = await schema.execute(deep, context_value=graphql_context(
        RunQueries(runs.engine), runs.graph, runs.audit))
    assert result.errors and "exceeds maximum operation depth" in result.errors[0].message


async def test_fetch_rows_reads_what_sqlalchemy_reads(runs: System) -> None:
    from sqlalchemy import select

    from modeldb.projectors import read_model as rm

    query = select(rm.runs).order_by(rm.runs.c.id)
    async with runs.engine.connect() as conn:
        expected = [tuple(r) for r in await conn.execute(query)]
        got = await fetch_rows(conn, query)
    assert [tuple(r) for r in got] == expected
    assert got[0].deleted is False and got[0].name == expected[0][3]  # booleans converted


async def test_the_sqlite_planner_gets_statistics_as_the_read_model_grows(tmp_path: Path) -> None:
    system = await System.open(Settings.load(tmp_path / "home"))  # embedded: PostgreSQL's
    try:  # autovacuum analyzes its tables itself
        events = []
        for _ in range(250):
            events += run_events(uuid7(), params={"lr": 0.1}, metrics={"acc": [0.5]})
        await system.writer.ingest(wire(events), "tester")
        await system.catch_up()
        async with system.engine.connect() as conn:
            stats = await conn.exec_driver_sql("SELECT tbl FROM sqlite_stat1")
            analyzed = {row[0] for row in stats}
        assert {"runs", "params", "latest_metrics"} <= analyzed
        # Only the read model's own tables: statistics of FTS5's shadow tables, taken while
        # they were nearly empty, made the search projection's inserts 50 times slower.
        assert not {t for t in analyzed if t.startswith("search")}
    finally:
        await system.close()
