"""Enrichers: pluggable projections deriving run attributes (metric anomalies, model
framework), queried through the runs filter and `ExperimentRun.attributes`."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest

from modeldb.event_schema import Event, new_event
from modeldb.infra.system import ENRICHERS, PROJECTIONS, System
from modeldb.projectors.enrichment import (
    ENTRY_POINT_GROUP,
    Enricher,
    EnrichmentProjection,
    EnrichmentSession,
    discover_enrichers,
)
from modeldb.projectors.runtime import ProjectorRuntime
from modeldb.query_api.app import build_schema, graphql_context
from modeldb.query_api.runs import RunQueries
from tests.helpers import run_events, wire

RUNS = """query($f: String) { runs(filter: $f, orderBy: ["attributes.name"]) {
  edges { node { name attributes { key value } } } } }"""


async def runs(system: System, flt: str) -> dict[str, dict[str, str]]:
    """name → attributes of the runs matching `flt`, through GraphQL."""
    result = await build_schema().execute(
        RUNS, variable_values={"f": flt},
        context_value=graphql_context(RunQueries(system.engine), system.graph, system.audit))
    assert not result.errors, result.errors
    return {e["node"]["name"]: {a["key"]: a["value"] for a in e["node"]["attributes"]}
            for e in result.data["runs"]["edges"]}


async def ingest(system: System, events: list[Event]) -> None:
    await system.writer.ingest(wire(events), "tester")
    await system.catch_up()


def points(run: str, key: str, values: list[float], start: int = 0) -> Event:
    return new_event("MetricsLogged", run, {"points": [
        {"key": key, "value": v, "step": start + i, "timestamp": 1000 + start + i}
        for i, v in enumerate(values)]})


HEALTHY = [2.0 / (1 + i) for i in range(30)]  # keeps improving
DIVERGING = [1.0, 0.5, 0.2, 0.1, 0.3, 0.9, 1.5, 3.0]  # 3 points in a row > 5 x best (0.1)
PLATEAU = [1.0, 0.5] + [0.5] * 60  # no improvement for 60 steps


async def test_metric_anomalies_are_flagged_and_filterable(system: System) -> None:
    await ingest(system, [
        *run_events("r-healthy", name="healthy", metrics={"loss": HEALTHY, "acc": [0.5, 0.9]},
                    status=None),
        *run_events("r-diverged", name="diverged", metrics={"loss": DIVERGING}),
        *run_events("r-nan", name="nan", metrics={"val_loss": [0.4, float("nan"), 0.3],
                                                  "acc": [0.6, 0.7]}),
        *run_events("r-plateau", name="plateau", metrics={"loss": PLATEAU}, status=None),
        *run_events("r-spike", name="spike", metrics={"loss": [1.0, 0.1, 0.9, 0.05, 0.04]}),
    ])
    assert await runs(system, "attributes.anomaly = 'diverged'") == {
        "diverged": {"anomaly": "diverged", "anomaly.loss": "diverged"}}
    assert set(await runs(system, "attributes.anomaly = 'nan'")) == {"nan"}
    assert (await runs(system, "attributes.`anomaly.val_loss` = 'nan'"))["nan"]["anomaly"] == "nan"
    assert set(await runs(system, "attributes.anomaly = 'plateau'")) == {"plateau"}
    assert set(await runs(system, "attributes.anomaly in ('nan', 'diverged')")) == {"nan",
                                                                                    "diverged"}
    # one spike (not `window` points in a row) and steady improvement are not anomalies
    assert set(await runs(system, "attributes.anomaly is null")) == {"healthy", "spike"}
    assert set(await runs(system, "attributes.anomaly is not null and attributes.status = "
                          "'FINISHED'")) == {"diverged", "nan"}

    # Across batches: state is kept per run, a plateau ends with an improvement, and a
    # divergence found later is flagged then.
    await ingest(system, [points("r-plateau", "loss", [0.1], start=62),
                          points("r-healthy", "loss", [0.5, 0.6, 0.7], start=30)])
    assert (await runs(system, "attributes.name = 'plateau'"))["plateau"] == {}
    assert set(await runs(system, "attributes.anomaly = 'diverged'")) == {"diverged", "healthy"}


async def test_framework_and_model_type_from_autolog_and_artifacts(system: System) -> None:
    sk, pt = "r-sklearn", "r-torch"
    await ingest(system, [
        new_event("RunStarted", sk, {"project": "p", "experiment": "e", "name": "sk",
                                     "start_time": "2026-01-01T00:00:00Z"}, source="autolog:sklearn"),
        new_event("ArtifactLogged", sk, {"name": "model.pkl", "digest": "sha256:" + "c" * 64,
                                         "size": 3, "uri": "x", "kind": "model"}),
        new_event("TagsSet", sk, {"tags": {
            "modeldb.model.framework": "sklearn",
            "modeldb.model.class": "sklearn.ensemble._forest.RandomForestClassifier"}}),
        *run_events(pt, name="torch", status=None),
        new_event("ArtifactLogged", pt, {"name": "weights.PT", "digest": "sha256:" + "d" * 64,
                                         "size": 3, "uri": "x", "kind": "model"}),
        *run_events("r-plain", name="plain"),
    ])
    found = await runs(system, "attributes.framework = 'sklearn'")
    assert found == {"sk": {"framework": "sklearn", "model_type": "RandomForestClassifier",
                            "model_class": "sklearn.ensemble._forest.RandomForestClassifier"}}
    assert set(await runs(system, "attributes.model_type like 'RandomForest%'")) == {"sk"}
    assert (await runs(system, "attributes.name = 'torch'"))["torch"] == {"framework": "pytorch"}
    assert (await runs(system, "attributes.name = 'plain'"))["plain"] == {}


async def test_each_enricher_is_a_projection_that_rebuilds_equal(system: System) -> None:
    assert {"enrich-anomalies", "enrich-framework"} <= set(PROJECTIONS)
    await ingest(system, [*run_events("r1", metrics={"loss": DIVERGING}),
                          new_event("AttributesSet", "r1", {"attributes": {"gpu": "a100"}})])
    for name in ("enrich-anomalies", "enrich-framework"):
        assert system.runtimes[name].checkpoint  # its own checkpoint
    before = await system.projections["enrich-anomalies"].digest()
    other = await system.projections["enrich-framework"].digest()
    await system.runtimes["enrich-anomalies"].rebuild()
    assert await system.projections["enrich-anomalies"].digest() == before
    assert await system.projections["enrich-framework"].digest() == other  # left alone
    # attributes the training code set and derived ones appear side by side
    assert (await runs(system, "attributes.gpu = 'a100'"))["r1"] == {
        "anomaly": "diverged", "anomaly.loss": "diverged", "gpu": "a100"}


class TagCounter(Enricher):
    """A plug-in for the test: the number of TagsSet events of a run."""

    name: ClassVar[str] = "tag_counter"
    event_types: ClassVar[frozenset[str]] = frozenset({"TagsSet"})

    async def apply(self, events: list[Event], session: EnrichmentSession) -> None:
        states = await session.states(e.aggregate.id for e in events)
        for event in events:
            state = states[event.aggregate.id]
            state["n"] = state.get("n", 0) + 1
            session.set_attribute(event.aggregate.id, "tag_events", state["n"])
            session.put_state(event.aggregate.id, state)


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution declaring enrichers, as pip would leave it."""
    info = tmp_path / "site" / "modeldb_test_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: modeldb-test-plugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(f"""
        [{ENTRY_POINT_GROUP}]
        tag_counter = tests.projectors.test_enrichment:TagCounter
        broken = tests.projectors.no_such_module:Nothing
        """))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
async def test_enrichers_are_discovered_through_entry_points(plugin_dist: None, system: System,
                                                             caplog: Any) -> None:
    found = {e.name: e for e in discover_enrichers()}
    assert {"anomalies", "framework", "tag_counter"} <= set(found)
    assert "broken" not in found and "no_such_module" in caplog.text  # logged, skipped
    assert set(ENRICHERS) == {"enrich-anomalies", "enrich-framework"}  # the installed ones
    projection = EnrichmentProjection(system.engine, found["tag_counter"])
    await system.writer.ingest(wire([
        *run_events("r1", tags={"a": "1"}), new_event("TagsSet", "r1", {"tags": {"b": "2"}}),
        *run_events("r2")]), "tester")
    await system.catch_up()
    await ProjectorRuntime(system.log, projection).catch_up()
    assert await projection.load_checkpoint()
    assert set(await runs(system, "attributes.tag_events >= 2")) == {"r1"}
    assert set(await runs(system, "attributes.tag_events = 2")) == {"r1"}


def test_the_built_in_enrichers_are_declared_as_entry_points() -> None:
    from importlib.metadata import entry_points

    declared = {p.name: p.value for p in entry_points(group=ENTRY_POINT_GROUP)}
    assert declared["anomalies"] == "modeldb.projectors.enrichers:MetricAnomalies"
    assert declared["framework"] == "modeldb.projectors.enrichers:ModelFramework"
    assert "modeldb.projectors.enrichers" in sys.modules  # loaded by discovery at startup


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
async def test_custom_attribute_filters_error_clearly(system: System) -> None:
    result = await build_schema().execute(
        """{ runs(orderBy: ["attributes.anomaly"]) { totalCount } }""",
        context_value=graphql_context(RunQueries(system.engine), system.graph, system.audit))
    assert result.errors and "cannot order by the custom attribute 'anomaly'" in \
        result.errors[0].message
