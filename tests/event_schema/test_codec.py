from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson
import pytest

from modeldb.event_schema import (
    EVENT_TYPES,
    InvalidBatch,
    InvalidEvent,
    decode,
    decode_batch,
    encode,
    encode_many,
    json_schema,
    uuid7,
)
from modeldb.event_schema.codec import stored_form
from tests.helpers import every_event_type


def test_the_scenario_covers_every_event_type() -> None:
    assert {e.type for e in every_event_type()} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", every_event_type(), ids=lambda e: e.type)
def test_every_event_type_round_trips_through_the_codec(event) -> None:
    back = decode(encode(event))
    assert back.event_id == event.event_id
    assert back.type == event.type and back.aggregate == event.aggregate
    assert back.occurred_at == event.occurred_at
    # NaN never equals itself, so compare payloads through their JSON form.
    assert orjson.dumps(back.payload.model_dump(mode="json")) == orjson.dumps(
        event.payload.model_dump(mode="json"))


def test_non_finite_metric_values_survive_json() -> None:
    event = next(e for e in every_event_type() if e.type == "MetricsLogged")
    values = [p.value for p in decode(encode(event)).payload.points]
    assert math.isnan(values[2]) and values[3] == 0.25


def test_an_old_version_event_is_upcast_when_read() -> None:
    old = {"event_id": uuid7(), "type": "MetricsLogged", "schema_version": 1,
           "aggregate": {"kind": "run", "id": "r1"}, "occurred_at": "2024-01-01T00:00:00Z",
           "payload": {"key": "acc", "value": 0.5, "step": 3, "timestamp": 99}}
    event = decode(old)
    assert event.schema_version == 2
    assert [(p.key, p.value, p.step, p.timestamp) for p in event.payload.points] == [
        ("acc", 0.5, 3, 99)]
    # The log keeps what the producer sent: version 1, normalised.
    stored = stored_form(old, actor="alice", recorded_at=datetime.now(UTC))
    assert stored["schema_version"] == 1 and stored["payload"]["key"] == "acc"
    assert stored["actor"] == "alice"


def test_a_batch_names_every_bad_event() -> None:
    good = orjson.loads(encode(every_event_type()[0]))
    bad_type = {**good, "event_id": uuid7(), "type": "RunExploded"}
    bad_field = {**good, "event_id": uuid7(), "payload": {"name": 5}}
    unknown = {**good, "event_id": uuid7(), "payload": {"name": "x", "colour": "red"}}
    with pytest.raises(InvalidBatch) as info:
        decode_batch([good, bad_type, bad_field, unknown, 7])
    errors = {e.index: e.reason for e in info.value.errors}
    assert set(errors) == {1, 2, 3, 4}
    assert "unknown event type 'RunExploded'" in errors[1]
    assert "payload.name" in errors[2]
    assert "colour" in errors[3]
    assert "JSON object" in errors[4]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda e: e.update(event_id="not-a-uuid"), "event_id"),
    (lambda e: e.update(schema_version=99), "newer than this server knows"),
    (lambda e: e.update(aggregate={"kind": "run", "id": "x"}), "aggregate kind 'project'"),
    (lambda e: e.update(occurred_at="yesterday"), "ISO 8601"),
    (lambda e: e.update(extra=1), "unknown envelope field"),
])
def test_envelope_errors_are_precise(mutate, message) -> None:
    raw = orjson.loads(encode(every_event_type()[0]))
    mutate(raw)
    with pytest.raises(InvalidEvent, match=message):
        decode(raw)


def test_ndjson_and_array_bodies_decode_alike() -> None:
    events = every_event_type()
    ndjson = b"\n".join(encode(e) for e in events)
    assert [e.event_id for e in decode_batch(ndjson)] == [e.event_id for e in events]
    assert [e.event_id for e in decode_batch(encode_many(events))] == [e.event_id for e in events]
    with pytest.raises(InvalidBatch, match="malformed JSON"):
        decode_batch(b"[{")


def test_json_schema_describes_every_type() -> None:
    schema = json_schema()
    assert {b["title"] for b in schema["oneOf"]} == set(EVENT_TYPES)
    assert "MetricsLoggedPayload" in schema["$defs"]
    orjson.dumps(schema)  # serialisable as published


def test_uuid7_is_time_ordered_and_unique() -> None:
    ids = [uuid7() for _ in range(10_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i[14] == "7" for i in ids[:10])


@pytest.mark.parametrize("point", [{"step": 2**63}, {"timestamp": -(2**63) - 1}])
def test_integers_beyond_64_bits_are_refused_by_name(point: dict) -> None:
    # The log's encoder and the databases hold 64-bit integers; Python's are unbounded, so an
    # in-process producer (the embedded SDK) could otherwise pass validation and fail to append.
    raw = {"event_id": uuid7(), "type": "MetricsLogged", "schema_version": 2,
           "aggregate": {"kind": "run", "id": "r1"}, "occurred_at": "2024-01-01T00:00:00Z",
           "payload": {"points": [{"key": "acc", "value": 0.5, "step": 1, "timestamp": 99} | point]}}
    with pytest.raises(InvalidEvent, match=f"points.0.{next(iter(point))}"):
        decode(raw)
    raw["payload"]["points"][0] |= {"step": 2**63 - 1, "timestamp": -(2**63)}
    assert decode(raw).payload.points[0].step == 2**63 - 1
