"""`runUpdates`: a GraphQL subscription over a real websocket (graphql-transport-ws) against
a real `modeldb serve`, while the run is being logged over HTTP."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
import websockets

from modeldb.event_schema import Event, new_event
from modeldb.infra.system import System
from modeldb.query_api import live
from tests.helpers import T0, ServerProcess, run_events, wire

SUBSCRIPTION = """subscription($id: ID!) {
  runUpdates(id: $id, interval: 0.2) { runId status endTime metrics { key step value } } }"""


def points(run: str, key: str, steps: range, value: float = 0.5) -> Event:
    return new_event("MetricsLogged", run, {"points": [
        {"key": key, "value": value if s != 4 else float("nan"), "step": s, "timestamp": 1000 + s}
        for s in steps]})


async def post(client: httpx.AsyncClient, events: list[Event]) -> None:
    response = await client.post("/api/v1/events", json=wire(events))
    assert response.status_code == 202, response.text


async def receive(ws: Any) -> dict[str, Any]:
    message = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
    assert message["type"] != "error", message
    return message


async def test_run_updates_stream_points_and_status_until_the_run_ends(
        modeldb_server: ServerProcess) -> None:
    run = "live-run-1"
    ws_url = modeldb_server.url.replace("http://", "ws://") + "/graphql"
    async with httpx.AsyncClient(base_url=modeldb_server.url, timeout=30) as client:
        await post(client, [*run_events(run, status=None), points(run, "loss", range(3))])
        modeldb_server.wait_projected()
        async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(orjson.dumps({"type": "connection_init"}).decode())
            assert (await receive(ws))["type"] == "connection_ack"
            await ws.send(orjson.dumps({"id": "1", "type": "subscribe", "payload": {
                "query": SUBSCRIPTION, "variables": {"id": run}}}).decode())

            first = (await receive(ws))["payload"]["data"]["runUpdates"]
            assert (first["runId"], first["status"], first["endTime"]) == (run, "RUNNING", None)
            assert [(m["key"], m["step"]) for m in first["metrics"]] == [("loss", s) for s in
                                                                         range(3)]

            # Logged while subscribed: arrives as new points only (NaN as null).
            await post(client, [points(run, "loss", range(3, 6)), points(run, "acc", range(2))])
            seen: list[tuple[str, int, float | None]] = []
            while len(seen) < 5:
                update = (await receive(ws))["payload"]["data"]["runUpdates"]
                assert update["status"] == "RUNNING"
                seen += [(m["key"], m["step"], m["value"]) for m in update["metrics"]]
            assert sorted(seen, key=str) == sorted([("loss", 3, 0.5), ("loss", 4, None),
                                                    ("loss", 5, 0.5), ("acc", 0, 0.5),
                                                    ("acc", 1, 0.5)], key=str)

            await post(client, [points(run, "loss", range(6, 8)), new_event(
                "RunFinished", run, {"status": "FAILED", "end_time": T0 + timedelta(hours=1)})])
            last = (await receive(ws))["payload"]["data"]["runUpdates"]
            while last["status"] == "RUNNING":  # points may come before the status does
                seen += [(m["key"], m["step"], m["value"]) for m in last["metrics"]]
                last = (await receive(ws))["payload"]["data"]["runUpdates"]
            seen += [(m["key"], m["step"], m["value"]) for m in last["metrics"]]
            assert last["status"] == "FAILED" and last["endTime"].startswith("2026-01-01T01:00")
            assert {("loss", 6, 0.5), ("loss", 7, 0.5)} <= set(seen)
            assert len(seen) == 7  # nothing sent twice
            assert await receive(ws) == {"id": "1", "type": "complete"}


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
async def test_unknown_runs_end_the_subscription_with_an_error(system: System,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "WAIT_FOR_RUN", 0.3)
    stream = live.run_updates(system.engine, "no-such-run", interval=0.1)
    with pytest.raises(ValueError, match="no run 'no-such-run'"):
        await anext(stream)
    # A run in a project the caller may not read does not exist for them either.
    await system.writer.ingest(wire(run_events("r1", project="secret")), "tester")
    await system.catch_up()
    stream = live.run_updates(system.engine, "r1", interval=0.1, visible=frozenset({"p"}))
    with pytest.raises(ValueError, match="no run 'r1'"):
        await anext(stream)
    updates = [u async for u in live.run_updates(system.engine, "r1", interval=0.1)]
    assert [u.status for u in updates] == ["FINISHED"]  # one update, then complete
