"""Every event type through the log and all three projections, on the System fixture."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from modeldb.event_schema import new_event, uuid7
from modeldb.infra.settings import Settings
from modeldb.infra.system import System
from modeldb.projectors import read_model as rm
from modeldb.writer.log import Batch
from tests.helpers import DIGEST_A, DIGEST_B, every_event_type, run_events, seen_while_rebuilding, wire


async def ingest(system: System, events, actor: str = "tester") -> list[int]:
    positions = await system.writer.ingest(wire(events), actor)
    await system.catch_up()
    return positions


async def rows(system: System, table, *where):
    async with system.engine.connect() as conn:
        return list(await conn.execute(select(table).where(*where)))


async def test_every_event_type_lands_in_every_projection(system: System) -> None:
    events = every_event_type()
    await ingest(system, events)
    run_id = events[4].aggregate.id
    (run,) = await rows(system, rm.runs, rm.runs.c.id == run_id)
    assert (run.name, run.status, run.project, run.experiment) == ("r", "FINISHED", "p", "e")
    assert run.end_time - run.start_time == 3_600_000
    params = {r.key: (r.value, r.value_num) for r in await rows(system, rm.params)}
    assert params == {"lr": ("0.01", 0.01), "opt": ("adam", None), "layers": ("3", 3.0),
                      "bn": ("true", None)}
    (loss,) = await rows(system, rm.latest_metrics, rm.latest_metrics.c.key == "loss")
    assert (loss.value, loss.step, loss.count) == (0.25, 3, 4)
    assert (loss.min_value, loss.max_value, loss.first_value) == (0.25, 1.0, 1.0)
    points = await rows(system, rm.metric_points, rm.metric_points.c.run_id == run_id)
    assert len(points) == 4 and any(p.value is None or math.isnan(p.value) for p in points)
    assert {r.key: r.value for r in await rows(system, rm.tags)} == {"team": "vision"}
    assert {r.key for r in await rows(system, rm.attributes)} == {"gpu", "rank"}
    (code,) = await rows(system, rm.code_versions)
    assert code.commit == "abc1234" and code.dirty
    (env,) = await rows(system, rm.environments)
    assert env.python == "3.11.7"
    (artifact,) = await rows(system, rm.artifacts)
    assert (artifact.name, artifact.digest, artifact.kind) == ("model.pkl", DIGEST_B, "model")
    links = {(r.direction, r.kind) for r in await rows(system, rm.run_links)}
    assert links == {("input", "DatasetVersion"), ("output", "Artifact")}
    (version,) = await rows(system, rm.dataset_versions)
    assert (version.id, version.row_count) == (f"iris@{DIGEST_A}", 150)
    versions = {r.version: (r.stage, r.deleted) for r in await rows(system, rm.model_versions)}
    assert versions == {1: ("Staging", False), 2: ("None", True)}
    transitions = [(r.version, r.from_stage, r.to_stage, r.cause, r.request_id)
                   for r in await rows(system, rm.model_transitions)]
    assert sorted(transitions, key=str) == sorted([(1, None, "Production", "direct", None),
                                                   (1, "Production", "Staging", "approval", "r2")],
                                                  key=str)
    requests = {r.request_id: (r.status, r.decided_by, r.to_stage)
                for r in await rows(system, rm.transition_requests)}
    assert requests == {"r1": ("rejected", "tester", "Archived"),
                        "r2": ("approved", "tester", "Staging")}
    (governance,) = await rows(system, rm.model_governance)
    assert (governance.lock_level, governance.single_production,
            governance.approval_required) == ("closed", True, '["Production"]')
    (model,) = await rows(system, rm.registered_models, rm.registered_models.c.name == "clf")
    assert (model.description, model.tags) == ("iris classifier", '{"team":"vision"}')
    (deployment,) = await rows(system, rm.deployments)
    assert (deployment.model, deployment.version, deployment.environment, deployment.status) == (
        "clf", 1, "prod-eu", "serving")
    assert [r.status for r in await rows(system, rm.deployment_history)] != []
    (environment,) = await rows(system, rm.deploy_environments)
    assert (environment.stage, environment.location) == ("production", "eu-west-1")
    assert [(a.alias, a.version) for a in await rows(system, rm.model_aliases)] == [("champion", 1)]
    deleted = {r.name for r in await rows(system, rm.registered_models, rm.registered_models.c.deleted)}
    assert deleted == {"gone"}
    child = (await rows(system, rm.runs, rm.runs.c.parent_id == run_id))[0]
    assert child.deleted and child.status == "FAILED"

    graph = await system.graph.lineage("modelversion:clf/1", "UPSTREAM", 10)
    kinds = {n.kind for n in graph.nodes}
    assert {"ModelVersion", "RegisteredModel", "Run", "Artifact", "DatasetVersion", "Dataset",
            "CodeVersion", "Experiment", "Project"} <= kinds

    history = await system.audit.history(run_id)
    assert [e["type"] for e in history][:3] == ["RunStarted", "ParamsLogged", "MetricsLogged"]
    assert all(e["actor"] == "tester" for e in history)
    assert (await system.audit.verify()).ok


async def test_duplicate_batches_change_nothing(system: System) -> None:
    events = every_event_type()
    first = await ingest(system, events)
    digests = {n: await p.digest() for n, p in system.projections.items() if n != "audit"}
    again = await ingest(system, events)  # a client retry: same event_ids
    if system.settings.embedded:
        assert again == first  # the SQLite log stores an event_id once; Kafka keeps both
    for name, digest in digests.items():
        assert await system.projections[name].digest() == digest, name


async def test_projections_skip_duplicates_delivered_twice(system: System) -> None:
    """Kafka may deliver an event twice (a retried produce); projections apply it once."""
    run = uuid7()
    events = run_events(run, metrics={"acc": [0.1, 0.2]})
    stored = system.writer.prepare(wire(events), "tester")
    from modeldb.event_schema import RecordedEvent

    records = [RecordedEvent(i + 1, raw) for i, raw in enumerate(stored + stored)]
    for projection in system.projections.values():
        await projection.apply(Batch(records[:3], {"position": 3}))
        await projection.apply(Batch(records[3:], {"position": len(records)}))
    (acc,) = await rows(system, rm.latest_metrics)
    assert acc.count == 2
    assert len(await rows(system, rm.metric_points)) == 2
    history = await system.audit.history(run)
    assert len(history) == len(events)  # the audit trail keeps the copy, marked duplicate


def _metric_batch(system: System, run: str, steps: range) -> Batch:
    """One batch as the SQLite log hands it out: `after` set, so applied by compare-and-set."""
    from modeldb.event_schema import RecordedEvent

    events = [new_event("MetricsLogged", run, {"points": [
        {"key": "loss", "value": 1.0 / (s + 1), "step": s, "timestamp": s}]}) for s in steps]
    stored = system.writer.prepare(wire(events), "tester")
    records = [RecordedEvent(steps.start + i + 1, raw) for i, raw in enumerate(stored)]
    return Batch(records, {"position": steps.stop}, after={"position": steps.start})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.engines)])
async def sqlite_log_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The SQLite log (whose batches carry `after`; Kafka's do not) with either read database."""
    settings = Settings.load(tmp_path / "home")
    if request.param == "sqlite":
        return settings
    from tests.conftest import engine_env, prepare_engines

    settings = replace(settings, read_db=engine_env(request.node.name[:40])["MODELDB_READ_DB"])
    await prepare_engines(settings)
    return settings


async def test_a_batch_from_where_the_projection_no_longer_is_changes_nothing(
    sqlite_log_settings: Settings,
) -> None:
    """The SQLite log stores an event once, so projections keep no event ids: the batch's
    transaction moves the checkpoint from where the batch starts, or applies nothing."""
    from modeldb.projectors.base import CheckpointMoved

    system = await System.open(sqlite_log_settings)
    try:
        run = uuid7()
        first, second = _metric_batch(system, run, range(0, 3)), _metric_batch(system, run, range(3, 5))
        for projection in system.projections.values():
            await projection.apply(first)
            await projection.apply(second)
            for stale in (first, second):  # as a second process that read the log earlier would
                with pytest.raises(CheckpointMoved):
                    await projection.apply(stale)
            assert await projection.load_checkpoint() == {"position": 5}
        (loss,) = await rows(system, rm.latest_metrics)
        assert loss.count == 5
        assert len(await rows(system, rm.metric_points)) == 5
        assert len(await system.audit.history(run)) == 5
    finally:
        await system.close()


async def test_two_processes_catching_up_one_home_apply_each_event_once(
    sqlite_log_settings: Settings,
) -> None:
    """Two embedded clients of one home catch up at the same time (each its own System, as
    two processes would): whichever applies a batch first wins, the other reads on past it."""
    import asyncio

    first, second = await System.open(sqlite_log_settings), await System.open(sqlite_log_settings)
    try:
        run = uuid7()
        for start in range(0, 60, 10):
            events = [new_event("MetricsLogged", run, {"points": [
                {"key": "loss", "value": float(s), "step": s, "timestamp": s}]})
                for s in range(start, start + 10)]
            await first.writer.ingest(wire(events), "tester")
        runtimes = [first.runtimes["sql"], second.runtimes["sql"]]
        for runtime in runtimes:
            runtime.batch_size = 4  # many small batches: the two interleave
        await asyncio.gather(*(runtime.catch_up() for runtime in runtimes))
        head = await first.log.head()
        for runtime in runtimes:
            assert runtime.checkpoint == head
        (loss,) = await rows(first, rm.latest_metrics)
        assert (loss.count, loss.value, loss.min_value, loss.max_value) == (60, 59.0, 0.0, 59.0)
        assert len(await rows(first, rm.metric_points)) == 60
    finally:
        await first.close()
        await second.close()


async def test_out_of_order_aggregates_fill_in_later(system: System) -> None:
    run = uuid7()
    # The model version (aggregate "model") arrives before its run (aggregate "run").
    await ingest(system, [
        new_event("RegisteredModelCreated", "m", {"name": "m"}),
        new_event("ModelVersionCreated", "m", {"version": 1, "run_id": run}),
        new_event("RunInputLogged", run, {"kind": "DatasetVersion", "id": f"d@{DIGEST_A}"}),
    ])
    early = await system.graph.lineage("modelversion:m/1", "UPSTREAM", 5)
    assert {n.id: n.name for n in early.nodes}[f"run:{run}"] == run  # a placeholder
    await ingest(system, run_events(run, name="late-run"))
    await ingest(system, [new_event("DatasetVersionCreated", "d", {"digest": DIGEST_A})])
    late = await system.graph.lineage("modelversion:m/1", "UPSTREAM", 5)
    names = {n.id: n.name for n in late.nodes}
    assert names[f"run:{run}"] == "late-run"
    assert "dataset:d" in names  # reached through the version defined later


async def test_replay_rebuilds_projections_equal_to_incremental(system: System) -> None:
    for _ in range(3):
        await ingest(system, every_event_type())
    for i in range(20):
        await ingest(system, run_events(uuid7(), params={"i": i}, metrics={"m": [i, i + 1]}))
    incremental = {n: await p.digest() for n, p in system.projections.items()}
    for name, runtime in system.runtimes.items():
        await runtime.rebuild()
        assert await system.projections[name].digest() == incremental[name], name


async def test_lineage_both_directions_beyond_depth_two(system: System) -> None:
    # raw → clean → features (dataset versions) → run → model version
    raw, clean, feats = (f"{n}@sha256:{c * 64}" for n, c in [("raw", "1"), ("clean", "2"),
                                                              ("feats", "3")])
    run = uuid7()
    await ingest(system, [
        new_event("DatasetVersionCreated", "raw", {"digest": "sha256:" + "1" * 64}),
        new_event("DatasetVersionCreated", "clean", {"digest": "sha256:" + "2" * 64,
                                                     "derived_from": [raw]}),
        new_event("DatasetVersionCreated", "feats", {"digest": "sha256:" + "3" * 64,
                                                     "derived_from": [clean]}),
        *run_events(run),
        new_event("RunInputLogged", run, {"kind": "DatasetVersion", "id": feats}),
        new_event("RegisteredModelCreated", "m", {"name": "m"}),
        new_event("ModelVersionCreated", "m", {"version": 1, "run_id": run}),
    ])
    up = await system.graph.lineage("modelversion:m/1", "UPSTREAM", 10)
    assert f"datasetversion:{raw}" in {n.id for n in up.nodes}
    shallow = await system.graph.lineage("modelversion:m/1", "UPSTREAM", 2)
    assert f"datasetversion:{raw}" not in {n.id for n in shallow.nodes}
    down = await system.graph.lineage(f"datasetversion:{raw}", "DOWNSTREAM", 10)
    assert "modelversion:m/1" in {n.id for n in down.nodes}
    only_derived = await system.graph.lineage(f"datasetversion:{raw}", "DOWNSTREAM", 10,
                                              ["DERIVED_FROM"])
    assert {n.id for n in only_derived.nodes} == {f"datasetversion:{v}" for v in (raw, clean, feats)}
    assert all(e.kind == "DERIVED_FROM" for e in only_derived.edges)


async def test_an_old_version_event_in_the_log_replays_through_todays_projections(
    system: System,
) -> None:
    run = uuid7()
    v1 = {"event_id": uuid7(), "type": "MetricsLogged", "schema_version": 1,
          "aggregate": {"kind": "run", "id": run}, "occurred_at": "2024-01-01T00:00:00+00:00",
          "source": "sdk", "payload": {"key": "acc", "value": 0.75, "step": 7, "timestamp": 5}}
    await system.writer.ingest([*wire(run_events(run, status=None)), v1], "tester")
    await system.catch_up()
    (acc,) = await rows(system, rm.latest_metrics, rm.latest_metrics.c.run_id == run)
    assert (acc.key, acc.value, acc.step) == ("acc", 0.75, 7)
    history = await system.audit.history(run)
    assert history[-1]["schema_version"] == 1  # the log and the audit keep what was sent
    await system.runtimes["sql"].rebuild()
    (again,) = await rows(system, rm.latest_metrics, rm.latest_metrics.c.run_id == run)
    assert again.value == 0.75


async def _secondary_indexes(system: System) -> list[tuple[str, str]]:
    from modeldb.projectors.db import secondary_indexes

    async with system.engine.connect() as conn:
        return await secondary_indexes(conn, rm.metadata.sorted_tables)


async def _deferred(system: System) -> list[str]:
    from modeldb.projectors.base import deferred_indexes

    return [r.name for r in await rows(system, deferred_indexes)]


async def test_a_rebuild_fills_the_read_model_first_and_builds_its_indexes_at_the_end(
    system: System,
) -> None:
    indexes = await _secondary_indexes(system)
    assert "params_by_key_text_run" in {name for name, _ in indexes}  # run search reads it
    for i in range(5):
        await ingest(system, run_events(uuid7(), params={"i": i}, metrics={"m": [i, i + 1]}))
    seen_during = await seen_while_rebuilding(system, "sql", lambda: _secondary_indexes(system))
    assert seen_during and all(found == [] for found in seen_during)
    assert await _secondary_indexes(system) == indexes
    assert await _deferred(system) == []
    (found,) = await rows(system, rm.params, rm.params.c.key == "i", rm.params.c.value == "3")
    assert found.value_num == 3.0


async def test_a_rebuild_that_stops_early_leaves_no_index_missing(system: System) -> None:
    indexes = await _secondary_indexes(system)
    await ingest(system, run_events(uuid7(), params={"a": 1}))
    projection = system.projections["sql"]

    async def failing(conn, events):  # type: ignore[no-untyped-def]
        raise RuntimeError("the database went away")

    projection.apply_events = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="went away"):
        await system.runtimes["sql"].rebuild()
    assert await _secondary_indexes(system) == indexes  # built again on the way out
    # A process killed mid-rebuild never gets there: the next start builds them.
    await projection.reset()
    await projection.prepare_rebuild()
    assert await _secondary_indexes(system) == [] and len(await _deferred(system)) == len(indexes)
    await projection.setup()
    assert await _secondary_indexes(system) == indexes
    assert await _deferred(system) == []
