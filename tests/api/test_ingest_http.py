"""POST /api/v1/events against a real `modeldb serve` process."""

from __future__ import annotations

import httpx
import orjson
import pytest

from modeldb.event_schema import encode, uuid7
from modeldb.writer.sqlite_log import SQLiteEventLog
from tests.helpers import ServerProcess, every_event_type, read_all, run_events, ungoverned, wire


def log_size(server: ServerProcess) -> int:
    """How many records the log holds (SQLite: the last position; Kafka: summed end offsets)."""
    head = httpx.get(f"{server.url}/api/v1/projections").json()["log_head"]
    return sum(head.values())


def test_array_and_ndjson_bodies_are_accepted_with_positions(modeldb_server: ServerProcess) -> None:
    events = ungoverned(every_event_type())
    r = httpx.post(f"{modeldb_server.url}/api/v1/events", json=wire(events[:10]))
    assert r.status_code == 202
    assert len(r.json()["positions"]) == 10
    ndjson = b"\n".join(encode(e) for e in events[10:])
    r = httpx.post(f"{modeldb_server.url}/api/v1/events", content=ndjson,
                   headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 202
    assert len(r.json()["positions"]) == len(events) - 10
    modeldb_server.wait_projected()
    run_id = events[4].aggregate.id
    history = modeldb_server.graphql("query($id: ID!) { history(id: $id) { eventId actor } }",
                                     id=run_id)["history"]
    expected = [e.event_id for e in events if e.aggregate.id == run_id]
    assert [h["eventId"] for h in history] == expected
    assert all(h["actor"] for h in history)


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_positions_are_the_sqlite_log_order(modeldb_server: ServerProcess) -> None:
    events = ungoverned(every_event_type())
    r = httpx.post(f"{modeldb_server.url}/api/v1/events", json=wire(events))
    assert r.json()["positions"] == list(range(1, len(events) + 1))
    stored = read_all(SQLiteEventLog(modeldb_server.home / "events.db"))
    assert [s.raw["event_id"] for s in stored] == [e.event_id for e in events]


def test_the_writer_stamps_actor_and_time_whatever_the_client_says(
    modeldb_server: ServerProcess,
) -> None:
    run_id = uuid7()
    (event,) = wire(run_events(run_id, status=None))
    event.update(actor="mallory", recorded_at="1999-01-01T00:00:00+00:00")
    assert httpx.post(f"{modeldb_server.url}/api/v1/events", json=[event]).status_code == 202
    modeldb_server.wait_projected()
    (stored,) = modeldb_server.graphql("query($id: ID!) { history(id: $id) { actor recordedAt } }",
                                       id=run_id)["history"]
    assert stored["actor"] != "mallory"
    assert not stored["recordedAt"].startswith("1999")


def test_registry_events_are_refused_as_raw_events(modeldb_server: ServerProcess) -> None:
    """Models, deployments and webhooks change only through registry commands, which check
    them against their history; a raw event would bypass every check."""
    events = every_event_type()
    kept = ungoverned(events)
    governed = [e for e in events if e not in kept]
    r = httpx.post(f"{modeldb_server.url}/api/v1/events", json=wire([kept[0], governed[0]]))
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert error["index"] == 1 and "registry command" in error["error"]
    assert log_size(modeldb_server) == 0


def _good() -> dict:
    return wire(run_events(uuid7(), status=None))[0]


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"[{\"event_id\": ", 400, "malformed JSON"),
    (b"{\"not\": \"a list\"}\n{", 400, "malformed JSON"),
    (orjson.dumps([{**_good(), "type": "RunTeleported"}]), 422, "unknown event type"),
    (orjson.dumps([{**_good(), "payload": {"project": 1, "experiment": [],
                                           "start_time": "x"}}]), 422, "payload.project"),
    (orjson.dumps([{**_good(), "surprise": True}]), 422, "unknown envelope field"),
    (orjson.dumps([_good(), {**_good(), "payload": {"bogus": 1}}]), 422, "event 1"),
])
def test_bad_input_gets_a_clear_4xx_and_the_log_is_unchanged(
    modeldb_server: ServerProcess, body: bytes, status: int, message: str
) -> None:
    r = httpx.post(f"{modeldb_server.url}/api/v1/events", content=body)
    assert r.status_code == status, r.text
    assert message in r.text
    assert log_size(modeldb_server) == 0  # nothing of a rejected batch is appended


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_an_oversize_body_is_refused(modeldb_server: ServerProcess) -> None:
    big = b"[" + b" " * (33 * 1024 * 1024) + b"]"
    r = httpx.post(f"{modeldb_server.url}/api/v1/events", content=big, timeout=60)
    assert r.status_code == 413
    assert "exceeds" in r.json()["error"]
    assert log_size(modeldb_server) == 0


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_a_too_large_batch_is_refused(modeldb_server: ServerProcess) -> None:
    run = uuid7()
    events = [{**_good(), "event_id": uuid7(), "aggregate": {"kind": "run", "id": run}}
              for _ in range(10_001)]
    r = httpx.post(f"{modeldb_server.url}/api/v1/events", json=events, timeout=60)
    assert r.status_code == 413
    assert "limit of 10000" in r.text


def test_artifacts_upload_and_download_by_digest(modeldb_server: ServerProcess) -> None:
    content = b"weights" * 1000
    r = httpx.post(f"{modeldb_server.url}/api/v1/artifacts", content=content)
    assert r.status_code == 201
    digest = r.json()["digest"]
    assert r.json()["size"] == len(content) and r.json()["uri"].endswith(digest)
    assert httpx.get(f"{modeldb_server.url}/api/v1/artifacts/{digest}").content == content
    wrong = httpx.post(f"{modeldb_server.url}/api/v1/artifacts", content=b"x",
                       headers={"x-content-digest": digest})
    assert wrong.status_code == 422
    escape = httpx.get(f"{modeldb_server.url}/api/v1/artifacts/..%2F..%2Fetc%2Fpasswd")
    assert escape.status_code in (400, 404)
    missing = "sha256:" + "0" * 64
    assert httpx.get(f"{modeldb_server.url}/api/v1/artifacts/{missing}").status_code == 404
