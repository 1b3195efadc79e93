"""Events of one run may reach the log out of order (several processes log one run, a spool
is replayed late, Kafka only orders per key): the query answers must not depend on it."""

from __future__ import annotations

import random
from typing import Any

from modeldb.event_schema import Event, new_event, uuid7
from modeldb.infra.system import System
from tests.api.test_graphql import gql
from tests.helpers import run_events, wire

RUN = """query($id: ID!) { run(id: $id) { name status startTime endTime
  params { key value } tags { key value }
  metrics { key value step min max count }
  metricHistory(key: "loss") { step value }
  inputs { id kind } parent { name } } }"""


def a_run(run_id: str, parent: str | None, seed: int) -> list[Event]:
    rng = random.Random(seed)
    losses = [round(1 / (i + 1) + rng.random() / 10, 4) for i in range(30)]
    events = run_events(run_id, name=f"run-{seed}", params={"lr": 0.01 * seed, "opt": "adam"},
                        tags={"team": "vision"}, parent=parent, metrics={})
    # Metric points in three batches, and an input dataset.
    for chunk in (range(0, 10), range(10, 20), range(20, 30)):
        events.insert(-1, new_event("MetricsLogged", run_id, {"points": [
            {"key": "loss", "value": losses[i], "step": i, "timestamp": 1000 + i} for i in chunk]}))
    events.insert(-1, new_event("RunInputLogged", run_id, {
        "kind": "DatasetVersion", "id": f"iris@sha256:{'c' * 64}", "name": "train"}))
    return events


async def answers(system: System, ids: list[str]) -> list[dict[str, Any]]:
    return [(await gql(system, RUN, id=i))["run"] for i in ids]


async def test_out_of_order_events_give_the_same_answers(system: System) -> None:
    ordered_ids, shuffled_ids = [uuid7() for _ in range(3)], [uuid7() for _ in range(3)]

    def family(ids: list[str]) -> list[list[Event]]:
        return [a_run(ids[0], None, 1), a_run(ids[1], ids[0], 2), a_run(ids[2], ids[0], 3)]

    for events in family(ordered_ids):
        await system.writer.ingest(wire(events), "alice")
    # The same runs, every event in its own batch, children before parents, each run's
    # events shuffled (RunStarted anywhere, RunFinished before the metrics).
    scrambled = [e for events in reversed(family(shuffled_ids)) for e in events]
    random.Random(7).shuffle(scrambled)
    for event in scrambled:
        await system.writer.ingest(wire([event]), "bob")
    await system.catch_up()

    in_order, out_of_order = await answers(system, ordered_ids), await answers(system, shuffled_ids)
    assert in_order[0]["metrics"][0]["value"] == in_order[0]["metricHistory"][-1]["value"]  # step 29
    assert in_order[1]["parent"] == {"name": "run-1"}
    assert in_order == out_of_order
    # Search sees both families alike: aggregates, params and order.
    ranked = await gql(system, """query($f: String) { runs(filter: $f, orderBy: ["params.lr DESC"]) {
                                    edges { node { name } } } }""",
                       f="metrics.loss.min < 0.2 and params.opt = 'adam' and metrics.loss.count = 30")
    names = [e["node"]["name"] for e in ranked["runs"]["edges"]]
    assert names == ["run-3", "run-3", "run-2", "run-2", "run-1", "run-1"]
