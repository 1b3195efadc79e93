"""The log is the backup: copy the SQLite log, restore it into a fresh home, replay, and
every query answers exactly as before."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from modeldb.event_schema import new_event, uuid7
from modeldb.infra.settings import Settings
from modeldb.infra.system import PROJECTIONS, System
from modeldb.query_api.app import build_schema, graphql_context
from modeldb.query_api.runs import RunQueries
from tests.helpers import DIGEST_B, run_events, wire

QUERIES = [
    "{ projects { name experiments { name } } }",
    "{ runs(orderBy: [\"metrics.loss ASC\"]) { totalCount edges { node { id name status "
    "params { key value } metrics { key value step min max count } tags { key value } "
    "artifacts { name digest } } } } }",
]


async def _answers(system: System, run_id: str) -> list[Any]:
    schema = build_schema()
    out = []
    for query in [*QUERIES,
                  f'{{ history(id: "{run_id}") {{ eventId type actor payload }} }}',
                  f'{{ lineage(id: "run:{run_id}", direction: DOWNSTREAM) {{ nodes {{ id kind }} '
                  "edges { source target kind } } }"]:
        result = await schema.execute(query, context_value=graphql_context(
            RunQueries(system.engine), system.graph, system.audit))
        assert result.errors is None, result.errors
        out.append(result.data)
    return out


async def test_backup_of_the_log_restores_into_identical_answers(tmp_path: Path) -> None:
    original = await System.open(Settings.load(tmp_path / "original"))
    try:
        runs = [uuid7() for _ in range(3)]
        for i, run in enumerate(runs):
            events = run_events(run, params={"lr": 0.1 * (i + 1)}, metrics={"loss": [1.0, 0.5 / (i + 1)]},
                                tags={"n": str(i)})
            events.insert(1, new_event("ArtifactLogged", run, {
                "name": "model.pkl", "digest": DIGEST_B, "size": 1,
                "uri": f"modeldb://artifacts/{DIGEST_B}", "kind": "model"}))
            await original.writer.ingest(wire(events), "alice")
        await original.catch_up()
        before = await _answers(original, runs[0])
        digests = {n: await original.projections[n].digest() for n in PROJECTIONS}
        # An online backup (SQLite's backup API), as `sqlite3 events.db ".backup FILE"` makes.
        backup = tmp_path / "events.backup.db"
        with sqlite3.connect(original.settings.home / "events.db") as src, \
                sqlite3.connect(backup) as dst:
            src.backup(dst)
    finally:
        await original.close()

    restored_home = tmp_path / "restored"
    restored_home.mkdir()
    backup.rename(restored_home / "events.db")  # restore = put the log back, then replay
    restored = await System.open(Settings.load(restored_home))
    try:
        await restored.catch_up()
        assert await _answers(restored, runs[0]) == before
        assert {n: await restored.projections[n].digest() for n in PROJECTIONS} == digests
    finally:
        await restored.close()
