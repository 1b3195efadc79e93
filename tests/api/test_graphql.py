"""The GraphQL contract over a System: search, order, pagination, lineage, history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from modeldb.event_schema import new_event, uuid7
from modeldb.infra.system import System
from modeldb.query_api.app import build_schema, graphql_context
from modeldb.query_api.runs import RunQueries
from tests.helpers import T0, run_events, wire


async def gql(system: System, query: str, **variables: Any) -> dict[str, Any]:
    result = await build_schema().execute(
        query, variable_values=variables,
        context_value=graphql_context(RunQueries(system.engine), system.graph, system.audit))
    assert not result.errors, result.errors
    return result.data


async def gql_error(system: System, query: str, **variables: Any) -> str:
    result = await build_schema().execute(
        query, variable_values=variables,
        context_value=graphql_context(RunQueries(system.engine), system.graph, system.audit))
    assert result.errors
    return result.errors[0].message


RUNS = """query($f: String, $o: [String!], $first: Int!, $after: String) {
  runs(filter: $f, orderBy: $o, first: $first, after: $after) {
    totalCount edges { cursor node { id name } } pageInfo { hasNextPage endCursor } } }"""


@pytest.fixture
async def zoo(system: System) -> System:
    """Twelve runs with distinct params, metrics and tags."""
    events = []
    for i in range(12):
        events += run_events(
            uuid7(), name=f"run{i:02d}", start=T0 + timedelta(minutes=i),
            params={"lr": [0.001, 0.01, 0.1][i % 3], "opt": ["adam", "sgd"][i % 2],
                    **({"depth": i} if i < 6 else {})},
            metrics={"acc": [0.5, 0.5 + i / 30], "loss": [1.0 - i / 20, 0.9 - i / 20]},
            tags={"team": ["vision", "nlp", "speech"][i % 3]},
            status="FINISHED" if i % 4 else "FAILED",
            experiment="e1" if i < 8 else "e2",
        )
    await system.writer.ingest(wire(events), "tester")
    await system.catch_up()
    return system


async def names(system: System, flt: str | None = None, order: list[str] | None = None) -> list[str]:
    data = await gql(system, RUNS, f=flt, o=order, first=100)
    return [e["node"]["name"] for e in data["runs"]["edges"]]


@pytest.mark.parametrize(("flt", "expected"), [
    ("metrics.acc > 0.8", {"run10", "run11"}),
    ("params.lr = '0.01'", {"run01", "run04", "run07", "run10"}),
    ("params.lr < 0.005", {"run00", "run03", "run06", "run09"}),
    ("params.lr = 0.1 and tags.team = 'speech'", {"run02", "run05", "run08", "run11"}),
    ("tags.team = 'vision' or tags.team = 'nlp' and params.opt = 'sgd'",
     {"run00", "run03", "run06", "run09", "run01", "run07"}),
    ("(tags.team = 'vision' or tags.team = 'nlp') and params.opt = 'sgd'",
     {"run03", "run09", "run01", "run07"}),
    ("not attributes.status = 'FINISHED'", {"run00", "run04", "run08"}),
    ("attributes.status = 'failed'", {"run00", "run04", "run08"}),
    ("params.depth is null", {f"run{i:02d}" for i in range(6, 12)}),
    ("params.depth >= 4", {"run04", "run05"}),
    ("tags.team in ('nlp', 'speech') and metrics.loss.min <= 0.4", {"run11", "run10"}),
    ("attributes.name like 'run1%'", {"run10", "run11"}),
    ("attributes.experiment = 'e2'", {"run08", "run09", "run10", "run11"}),
    ("metrics.acc.count = 2 and metrics.acc.first = 0.5 and metrics.acc.max > 0.85",
     {"run11"}),
    ("attributes.start_time >= '2026-01-01T00:10:00+00:00'", {"run10", "run11"}),
    ("params.opt != 'adam' and params.lr in (0.001, 0.1)", {"run03", "run05", "run09", "run11"}),
])
async def test_filters_select_the_right_runs(zoo: System, flt: str, expected: set[str]) -> None:
    assert set(await names(zoo, flt)) == expected


async def test_ordering_by_metric_param_and_attribute(zoo: System) -> None:
    assert (await names(zoo, order=["metrics.acc DESC"]))[:3] == ["run11", "run10", "run09"]
    by_lr = await names(zoo, order=["params.lr DESC", "attributes.name"])
    assert by_lr[:4] == ["run02", "run05", "run08", "run11"]
    assert (await names(zoo))[0] == "run11"  # newest first by default
    nulls_last = await names(zoo, order=["params.depth DESC"])
    assert nulls_last[:2] == ["run05", "run04"] and set(nulls_last[6:]) == {
        f"run{i:02d}" for i in range(6, 12)}


async def test_cursor_pagination_walks_every_run_once_and_stays_stable(zoo: System) -> None:
    seen: list[str] = []
    after = None
    while True:
        data = (await gql(zoo, RUNS, o=["params.lr", "metrics.acc DESC"], first=5,
                          after=after))["runs"]
        assert data["totalCount"] == (12 if len(seen) < 5 else 13)
        seen += [e["node"]["name"] for e in data["edges"]]
        if len(seen) == 5:
            # a new run arriving mid-walk must not shift the pages already handed out
            await zoo.writer.ingest(wire(run_events(uuid7(), name="late", params={"lr": 0.0001},
                                                    metrics={"acc": [0.1]})), "t")
            await zoo.catch_up()
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 12
    assert seen == [n for n in await names(zoo, order=["params.lr", "metrics.acc DESC"])
                    if n != "late"]


async def test_bad_filters_get_messages_with_columns(zoo: System) -> None:
    message = await gql_error(zoo, RUNS, f="metrics.acc >", first=5)
    assert message == "invalid filter: column 14: expected a value after '>', found end of filter"
    assert "column 1" in await gql_error(zoo, RUNS, f="acc > 1", first=5)
    assert "cursor" in await gql_error(zoo, RUNS, f=None, first=5, after="garbage")


async def test_run_fields_history_and_time_travel(system: System) -> None:
    run = uuid7()
    events = run_events(run, name="tt", params={"lr": 0.1}, metrics={"acc": [0.1, 0.2, 0.3]},
                        status=None)
    await system.writer.ingest(wire(events), "alice")
    await system.catch_up()
    data = await gql(system, """query($id: ID!) { run(id: $id) { name status
        project { name } experiment { name } params { key value } metrics { key value step }
        metricHistory(key: "acc") { step value } }
        history(id: $id) { type actor source payload } }""", id=run)
    assert data["run"]["status"] == "RUNNING"
    assert data["run"]["metrics"] == [{"key": "acc", "value": 0.3, "step": 2}]
    assert [p["value"] for p in data["run"]["metricHistory"]] == [0.1, 0.2, 0.3]
    assert [h["type"] for h in data["history"]] == ["RunStarted", "ParamsLogged", "MetricsLogged"]
    assert {h["actor"] for h in data["history"]} == {"alice"}
    before_finish = (await gql(system, "query($id: ID!) { history(id: $id) { recordedAt } }",
                               id=run))["history"][-1]["recordedAt"]
    await system.writer.ingest(wire([new_event("RunFinished", run, {"status": "KILLED",
                                                                    "end_time": T0})]), "bob")
    await system.catch_up()
    now = await gql(system, "query($id: ID!) { run(id: $id) { status } }", id=run)
    assert now["run"]["status"] == "KILLED"
    then = await gql(system, """query($id: ID!, $at: DateTime!) {
        runAsOf(id: $id, at: $at) { status params { key value } } }""", id=run, at=before_finish)
    assert then["runAsOf"] == {"status": "RUNNING", "params": [{"key": "lr", "value": "0.1"}]}
    by_bob = await gql(system, 'query($id: ID!) { history(id: $id, actor: "bob") { type } }', id=run)
    assert by_bob["history"] == [{"type": "RunFinished"}]


async def test_lineage_through_graphql(system: System) -> None:
    run = uuid7()
    await system.writer.ingest(wire([
        *run_events(run),
        new_event("RegisteredModelCreated", "m", {"name": "m"}),
        new_event("ModelVersionCreated", "m", {"version": 1, "run_id": run}),
    ]), "t")
    await system.catch_up()
    data = await gql(system, """{ lineage(id: "modelversion:m/1", depth: 3) {
        nodes { id kind } edges { source target kind } } }""")
    kinds = {n["kind"] for n in data["lineage"]["nodes"]}
    assert kinds == {"ModelVersion", "RegisteredModel", "Run", "Experiment", "Project"}
    down = await gql(system, """query($id: ID!) { lineage(id: $id, direction: DOWNSTREAM) {
        nodes { id } } }""", id=run)  # a bare run id works too
    assert {n["id"] for n in down["lineage"]["nodes"]} == {f"run:{run}", "modelversion:m/1"}


async def test_query_depth_is_limited(system: System) -> None:
    deep = "{ runs { edges { node { " + "parent { " * 10 + "id" + " }" * 10 + " } } } }"
    assert "exceeds maximum operation depth" in await gql_error(system, deep)
