"""Downsampled metric histories, run comparison, node-kind lineage filters, provenance and
impact, and the per-query time limit — on both stacks."""

from __future__ import annotations

import math
from typing import Any

import pytest

from modeldb.event_schema import Event, new_event, uuid7
from modeldb.event_schema.nodes import node_id
from modeldb.infra.system import System
from modeldb.projectors.lineage_memory import MemoryGraph
from modeldb.query_api import downsample as ds
from modeldb.query_api.app import build_schema, graphql_context
from modeldb.query_api.runs import RunQueries
from tests.helpers import run_events, wire


async def execute(system: System, query: str, **variables: Any) -> Any:
    return await build_schema().execute(
        query, variable_values=variables,
        context_value=graphql_context(RunQueries(system.engine), system.graph, system.audit))


async def gql(system: System, query: str, **variables: Any) -> dict[str, Any]:
    result = await execute(system, query, **variables)
    assert not result.errors, result.errors
    return result.data


async def gql_error(system: System, query: str, **variables: Any) -> str:
    result = await execute(system, query, **variables)
    assert result.errors
    return result.errors[0].message


def series(n: int) -> list[float]:
    """A wave with one spike up, one spike down, and non-finite values sprinkled in."""
    values = [math.sin(i / 300) for i in range(n)]
    values[1234], values[3210] = 9.0, -7.0
    for i in range(100, n, 997):
        values[i] = float("nan")
    values[2000], values[2001] = float("inf"), float("-inf")
    return values


def metric_events(run_id: str, key: str, values: list[float], chunk: int = 1000) -> list[Event]:
    return [new_event("MetricsLogged", run_id, {"points": [
        {"key": key, "value": v, "step": start + i, "timestamp": 10_000 + start + i}
        for i, v in enumerate(values[start : start + chunk])]})
        for start in range(0, len(values), chunk)]


HISTORY = """query($id: ID!, $key: String!, $m: Int) {
  run(id: $id) { metricHistory(key: $key, maxPoints: $m) { step timestamp value } } }"""


async def test_metric_history_downsampled_keeps_shape(system: System,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    run, n = uuid7(), 5000
    values = series(n)
    await system.writer.ingest(wire(run_events(run, status=None) + metric_events(run, "loss", values)),
                               "t")
    await system.catch_up()
    full = (await gql(system, HISTORY, id=run, key="loss", m=None))["run"]["metricHistory"]
    assert len(full) == n and full[100]["value"] is None and full[2000]["value"] is None
    for m in (500, 64, 10, 4, 3, 2):
        points = (await gql(system, HISTORY, id=run, key="loss", m=m))["run"]["metricHistory"]
        steps = [p["step"] for p in points]
        assert len(points) <= m
        assert steps == sorted(steps) and len(set(steps)) == len(steps)
        assert steps[0] == 0 and steps[-1] == n - 1  # first and last always kept
        kept = {p["step"]: p["value"] for p in points}
        assert all(kept[s] == full[s]["value"] for s in steps)  # real points, never averages
        if m >= 4:
            assert kept[1234] == 9.0 and kept[3210] == -7.0  # the extremes survive
        # Non-finite values are never a bucket's extreme (only first/last could carry them).
        assert all(v is not None for s, v in kept.items() if s not in (0, n - 1))
    # Each bucket holds its own extremes: a bucket's max is the max of the series there
    # (200: bucketed over the points; 60: over the rollups).
    for m in (200, 60):
        points = (await gql(system, HISTORY, id=run, key="loss", m=m))["run"]["metricHistory"]
        width, origin, rollup = ds.plan(0, n - 1, m)
        assert (rollup > 0) == (m == 60)
        for bucket_start in range(origin, n, width):
            inside = [p["value"] for p in full[bucket_start : bucket_start + width]
                      if p["value"] is not None and math.isfinite(p["value"])]
            shown = [p["value"] for p in points if bucket_start <= p["step"] < bucket_start + width]
            assert max(inside) in shown and min(inside) in shown
    # The rollups answer exactly what bucketing every point answers.
    sizes = (100, 20, 6)
    assert all(ds.plan(0, n - 1, m)[2] for m in sizes)  # each reads a rollup width
    from_rollups = [await ds.downsample(system.engine, run, "loss", m) for m in sizes]

    async def incomplete(*_: Any) -> bool:
        return False

    monkeypatch.setattr(ds, "_rollups_complete", incomplete)
    assert [await ds.downsample(system.engine, run, "loss", m) for m in sizes] == from_rollups
    # A series shorter than maxPoints comes whole; bad arguments are named.
    assert len((await gql(system, HISTORY, id=run, key="loss", m=n))["run"]["metricHistory"]) == n
    assert "maxPoints must be at least 2" in await gql_error(system, HISTORY, id=run, key="loss", m=1)
    assert (await gql(system, HISTORY, id=run, key="nope", m=10))["run"]["metricHistory"] == []


async def test_a_series_logged_at_one_step_is_bucketed_by_time(system: System) -> None:
    run = uuid7()
    values = [float(i % 7) for i in range(900)]
    values[444] = 100.0
    points = [{"key": "t", "value": v, "step": 0, "timestamp": 5000 + 3 * i} for i, v in enumerate(values)]
    events = [*run_events(run, status=None), new_event("MetricsLogged", run, {"points": points})]
    await system.writer.ingest(wire(events), "t")
    await system.catch_up()
    got = (await gql(system, HISTORY, id=run, key="t", m=40))["run"]["metricHistory"]
    stamps = [p["timestamp"] for p in got]
    assert 20 < len(got) <= 40 and stamps == sorted(stamps)  # buckets along time, not one step
    assert stamps[0] == 5000 and stamps[-1] == 5000 + 3 * 899 and 100.0 in [p["value"] for p in got]


COMPARE = """query($ids: [ID!]!, $keys: [String!], $m: Int!) {
  compareRuns(ids: $ids, metricKeys: $keys, maxPoints: $m) {
    runs { id name }
    params { key values differs }
    metrics { key values differs }
    histories { runId key points { step value } } } }"""


async def test_compare_runs(system: System) -> None:
    a, b, c = uuid7(), uuid7(), uuid7()
    events = (run_events(a, name="a", params={"lr": 0.1, "opt": "adam"}, metrics={"acc": [0.5, 0.7]})
              + run_events(b, name="b", params={"lr": 0.1, "opt": "sgd", "depth": 3},
                           metrics={"acc": [0.6, 0.8], "loss": [1.0, float("nan")]})
              + run_events(c, name="c", params={"lr": 0.1}))
    events += metric_events(c, "acc", series(4000))
    await system.writer.ingest(wire(events), "t")
    await system.catch_up()
    data = (await gql(system, COMPARE, ids=[b, a, c], keys=None, m=50))["compareRuns"]
    assert [r["name"] for r in data["runs"]] == ["b", "a", "c"]  # the order asked
    assert data["params"] == [
        {"key": "depth", "values": ["3", None, None], "differs": True},
        {"key": "lr", "values": ["0.1", "0.1", "0.1"], "differs": False},
        {"key": "opt", "values": ["sgd", "adam", None], "differs": True},
    ]
    acc, loss = data["metrics"]
    assert acc["key"] == "acc" and acc["values"][:2] == [0.8, 0.7] and acc["differs"]
    assert loss == {"key": "loss", "values": [None, None, None], "differs": False}  # NaN: null
    histories = {(h["runId"], h["key"]): h["points"] for h in data["histories"]}
    assert set(histories) == {(b, "acc"), (b, "loss"), (a, "acc"), (c, "acc")}
    assert [p["value"] for p in histories[(a, "acc")]] == [0.5, 0.7]
    long = histories[(c, "acc")]
    assert len(long) <= 50 and long[0]["step"] == 0 and long[-1]["step"] == 3999
    assert 9.0 in [p["value"] for p in long]
    only_loss = (await gql(system, COMPARE, ids=[a, b], keys=["loss"], m=50))["compareRuns"]
    assert [m["key"] for m in only_loss["metrics"]] == ["loss"]
    assert [(h["runId"], h["key"]) for h in only_loss["histories"]] == [(b, "loss")]
    missing = await gql_error(system, COMPARE, ids=[a, "no-such-run"], keys=None, m=50)
    assert missing == "unknown run id(s): no-such-run"
    too_many = await gql_error(system, COMPARE, ids=[str(i) for i in range(51)], keys=None, m=50)
    assert "at most 50 runs" in too_many


def digest(i: int, branch: str = "a") -> str:
    return "sha256:" + f"{branch}{i:02d}".ljust(64, "0")


def lineage_world() -> tuple[list[Event], dict[str, str]]:
    """A dataset derived 12 times in a chain (d0 ← d1 ← … ← d11), a branch off d5 (e6 ← e7),
    runs on d3, d7, d11 and e7, a child run, and model versions made by the runs."""
    events = [new_event("DatasetCreated", "raw", {"name": "raw"}),
              new_event("DatasetCreated", "side", {"name": "side"})]
    for i in range(12):
        events.append(new_event("DatasetVersionCreated", "raw", {
            "digest": digest(i), "derived_from": [f"raw@{digest(i - 1)}"] if i else []}))
    events.append(new_event("DatasetVersionCreated", "side", {
        "digest": digest(6, "e"), "derived_from": [f"raw@{digest(5)}"]}))
    events.append(new_event("DatasetVersionCreated", "side", {
        "digest": digest(7, "e"), "derived_from": [f"side@{digest(6, 'e')}"]}))
    runs = {name: uuid7() for name in ("r3", "r7", "r11", "re7", "child")}
    inputs = {"r3": f"raw@{digest(3)}", "r7": f"raw@{digest(7)}", "r11": f"raw@{digest(11)}",
              "re7": f"side@{digest(7, 'e')}"}
    events += [new_event("RegisteredModelCreated", "m", {"name": "m"})]
    for name, run in runs.items():
        events += run_events(run, name=name, parent=runs["r11"] if name == "child" else None)
        if name in inputs:
            events.append(new_event("RunInputLogged", run, {"kind": "DatasetVersion",
                                                            "id": inputs[name]}))
        events.append(new_event("CodeVersionRecorded", run, {"commit": f"c0ffee{name}"}))
    for version, name in ((1, "r11"), (2, "r7"), (3, "re7")):
        events.append(new_event("ModelVersionCreated", "m", {"version": version,
                                                             "run_id": runs[name]}))
    # r11 also fine-tunes version 2: a second path upstream through the registry.
    events.append(new_event("RunInputLogged", runs["r11"], {"kind": "ModelVersion", "id": "m/2"}))
    return events, runs


def plain(graph: Any) -> dict[str, Any]:
    return {"nodes": [{"id": n.id, "kind": n.kind, "name": n.name} for n in graph.nodes],
            "edges": [{"source": e.source, "target": e.target, "kind": e.kind} for e in graph.edges]}


GRAPH = "nodes { id kind name } edges { source target kind }"


@pytest.mark.parametrize("stack", ["embedded", pytest.param("engines", marks=pytest.mark.engines)],
                         indirect=True)
async def test_provenance_impact_and_node_kinds_agree_on_both_stacks(system: System) -> None:
    events, runs = lineage_world()
    await system.writer.ingest(wire(events), "t")
    await system.catch_up()
    reference = MemoryGraph.of_events(events)  # the answer both stores must give
    d0 = node_id("DatasetVersion", f"raw@{digest(0)}")

    provenance = (await gql(system, f'{{ provenance(name: "m", version: "1") {{ {GRAPH} }} }}'))
    expected = plain(await reference.lineage("modelversion:m/1", "UPSTREAM", 20))
    assert provenance["provenance"] == expected
    kinds = {n["kind"] for n in expected["nodes"]}
    assert kinds >= {"Run", "DatasetVersion", "CodeVersion", "ModelVersion", "Dataset"}
    assert sum(n["kind"] == "DatasetVersion" for n in expected["nodes"]) == 12  # the whole chain

    impact = (await gql(system, f"""query($id: ID!) {{ impact(id: $id) {{
        graph {{ {GRAPH} }} runs {{ id }} modelVersions {{ id name }} }} }}""", id=d0))["impact"]
    assert impact["graph"] == plain(await reference.lineage(d0, "DOWNSTREAM", 20))
    assert {r["id"] for r in impact["runs"]} == {f"run:{r}" for r in runs.values()}
    assert sorted(v["id"] for v in impact["modelVersions"]) == [
        "modelversion:m/1", "modelversion:m/2", "modelversion:m/3"]
    shallow = (await gql(system, """query($id: ID!) { impact(id: $id, depth: 5) {
        runs { id } } }""", id=d0))["impact"]
    assert [r["id"] for r in shallow["runs"]] == [f"run:{runs['r3']}"]  # d0→d3 is 3 hops, r3 the 4th

    filtered = (await gql(system, f"""{{ lineage(id: "modelversion:m/1", depth: 20,
        nodeKinds: ["DatasetVersion", "ModelVersion"]) {{ {GRAPH} }} }}"""))["lineage"]
    full = await reference.lineage("modelversion:m/1", "UPSTREAM", 20)
    keep = {n.id for n in full.nodes if n.kind in ("DatasetVersion", "ModelVersion")}
    assert filtered["nodes"] == [n for n in plain(full)["nodes"] if n["id"] in keep]
    assert filtered["edges"] == [e for e in plain(full)["edges"]
                                 if e["source"] in keep and e["target"] in keep]
    assert {n["id"] for n in filtered["nodes"]} >= {"modelversion:m/1", "modelversion:m/2", d0}
    assert {e["kind"] for e in filtered["edges"]} == {"DERIVED_FROM"}

    bad = await gql_error(system, '{ lineage(id: "modelversion:m/1", nodeKinds: ["Runn"]) { nodes { id } } }')
    assert bad.startswith("unknown node kind(s) Runn; known: Project, Experiment, Run")
    bad = await gql_error(system, '{ lineage(id: "modelversion:m/1", edgeKinds: ["USES"]) { nodes { id } } }')
    assert bad.startswith("unknown edge kind(s) USES")
    assert await gql_error(system, '{ provenance(name: "m", version: "9") { nodes { id } } }') == \
        "no model version m/9"
    nowhere = '{ impact(id: "datasetversion:nope") { runs { id } } }'
    assert "no lineage node" in await gql_error(system, nowhere)


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
async def test_a_query_over_its_time_limit_is_cancelled(system: System,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    await system.writer.ingest(wire(run_events(uuid7())), "t")
    await system.catch_up()
    assert (await gql(system, "{ runs { totalCount } }"))["runs"]["totalCount"] == 1
    monkeypatch.setenv("MODELDB_QUERY_TIMEOUT", "0.000001")
    result = await execute(system, "{ runs { totalCount } }")
    assert result.data is None
    assert result.errors[0].message == \
        "query cancelled: it ran longer than the 1e-06 s limit (MODELDB_QUERY_TIMEOUT)"
    assert result.errors[0].extensions == {"code": "TIMEOUT"}
    monkeypatch.setenv("MODELDB_QUERY_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="MODELDB_QUERY_TIMEOUT must be a number"):
        build_schema()


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_a_slow_query_answers_a_timeout_error_over_http(settings: Any, tmp_path: Any) -> None:
    import httpx

    from tests.helpers import ServerProcess, free_port, server_env

    server = ServerProcess(settings.home, free_port(), server_env({"MODELDB_QUERY_TIMEOUT": "0.000001"}))
    server.start()
    try:
        r = httpx.post(f"{server.url}/graphql", json={"query": "{ runs { totalCount } }"}, timeout=30)
    finally:
        server.stop()
    assert r.status_code == 200  # a GraphQL error, not a 500, and no hang
    assert r.json()["errors"][0]["extensions"] == {"code": "TIMEOUT"}
    assert "MODELDB_QUERY_TIMEOUT" in r.json()["errors"][0]["message"]


@pytest.mark.parametrize("stack", ["embedded", pytest.param("engines", marks=pytest.mark.engines)],
                         indirect=True)
async def test_a_node_limit_bounds_lineage_and_impact_and_says_truncated(system: System) -> None:
    """A dataset version used by 50 runs: with limit 10, the start and the 9 runs with the
    smallest ids, flagged truncated, on whichever graph store the stack uses."""
    runs = [uuid7() for _ in range(50)]
    version = f"shared@{digest(1)}"
    events = [new_event("DatasetCreated", "shared", {"name": "shared"}),
              new_event("DatasetVersionCreated", "shared", {"digest": digest(1), "derived_from": []})]
    for i, run in enumerate(runs):
        events += run_events(run, name=f"r{i}")
        events.append(new_event("RunInputLogged", run, {"kind": "DatasetVersion", "id": version}))
    await system.writer.ingest(wire(events), "t")
    await system.catch_up()
    start = node_id("DatasetVersion", version)
    reference = MemoryGraph.of_events(events)

    query = """query($id: ID!, $limit: Int!) { lineage(id: $id, direction: DOWNSTREAM, depth: 10,
        limit: $limit) { nodes { id } edges { source target } truncated } }"""
    cut = (await gql(system, query, id=start, limit=10))["lineage"]
    assert cut["truncated"] is True
    assert {n["id"] for n in cut["nodes"]} == {start, *sorted(f"run:{r}" for r in runs)[:9]}
    assert len(cut["edges"]) == 9
    expected = await reference.lineage(start, "DOWNSTREAM", 10, limit=10)
    assert [n["id"] for n in cut["nodes"]] == [n.id for n in expected.nodes]

    whole = (await gql(system, query, id=start, limit=1000))["lineage"]
    assert whole["truncated"] is False
    assert len(whole["nodes"]) == len((await reference.lineage(start, "DOWNSTREAM", 10)).nodes)
    runs_only = (await gql(system, """query($id: ID!) { lineage(id: $id, direction: DOWNSTREAM, limit: 3,
        nodeKinds: ["Run"]) { truncated nodes { id } } }""", id=start))["lineage"]
    first_runs = sorted(f"run:{r}" for r in runs)
    # Three nodes walked (the start and two runs), then only the runs kept.
    assert runs_only == {"truncated": True, "nodes": [{"id": i} for i in first_runs[:2]]}
    default = (await gql(system, """query($id: ID!) { lineage(id: $id, direction: DOWNSTREAM) {
        truncated nodes { id } } }""", id=start))["lineage"]
    assert default == {"truncated": False, "nodes": whole["nodes"]}  # under the default of 1000

    impact = (await gql(system, """query($id: ID!) { impact(id: $id, limit: 5) {
        graph { truncated } runs { id } } }""", id=start))["impact"]
    assert impact["graph"]["truncated"] is True
    assert [r["id"] for r in impact["runs"]] == sorted(f"run:{r}" for r in runs)[:4]

    bad = await gql_error(system, "query($id: ID!) { lineage(id: $id, limit: 0) { truncated } }", id=start)
    assert bad == "limit must be at least 1, not 0"
