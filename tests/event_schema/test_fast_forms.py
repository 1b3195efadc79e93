"""The fast stored form of MetricsLogged (no pydantic object per point) must be exactly the
form the validated path gives, and must hand every doubtful event to that path."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from modeldb.event_schema import InvalidEvent, codec, uuid7
from modeldb.event_schema.codec import stored_form

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _metrics(points: list[object], **envelope: object) -> dict[str, object]:
    return {"event_id": uuid7(), "type": "MetricsLogged", "schema_version": 2,
            "aggregate": {"kind": "run", "id": "r1"}, "occurred_at": "2026-11-23T10:00:00Z",
            "recorded_at": None, "actor": None, "source": "sdk", "payload": {"points": points},
            **envelope}


def _slow(raw: dict[str, object]) -> dict[str, object]:
    event = codec.decode(raw)
    form = {"event_id": event.event_id, "type": event.type, "schema_version": 2,
            "aggregate": {"kind": "run", "id": event.aggregate.id},
            "occurred_at": codec._iso(event.occurred_at), "recorded_at": codec._iso(NOW),
            "actor": "alice", "source": event.source,
            "payload": event.payload.model_dump(mode="json", by_alias=True)}
    return form


PLAIN = [
    [{"key": "loss", "value": 0.5, "step": 3, "timestamp": 1_700_000_000_000}],
    [{"key": "loss", "value": -0.0, "timestamp": 5}],  # no step: 0, as pydantic's default
    [{"key": "k" * 250, "value": 1e308, "step": -(2**63), "timestamp": 2**63 - 1}],
    [{"key": f"m{i}", "value": i / 7, "step": i, "timestamp": i} for i in range(1000)],
]


@pytest.mark.parametrize("points", PLAIN, ids=range(len(PLAIN)))
def test_the_fast_form_is_the_validated_form_byte_for_byte(points: list[object]) -> None:
    raw = _metrics(points, recorded_at="2026-01-01T00:00:00+00:00", actor="mallory")
    fast = codec._metrics_form(raw, "alice", NOW)
    assert fast is not None
    assert orjson.dumps(fast) == orjson.dumps(_slow(raw))
    assert orjson.dumps(stored_form(raw, actor="alice", recorded_at=NOW)) == orjson.dumps(fast)


DOUBTFUL = [
    [{"key": "loss", "value": 1, "step": 0, "timestamp": 1}],  # int value: pydantic makes 1.0
    [{"key": "loss", "value": "NaN", "step": 0, "timestamp": 1}],
    [{"key": "loss", "value": 0.5, "step": True, "timestamp": 1}],
    [{"key": "loss", "value": 0.5, "step": 2**64, "timestamp": 1}],
    [{"key": "loss", "value": 0.5, "step": 0, "timestamp": 1, "extra": 1}],
    [{"key": "", "value": 0.5, "step": 0, "timestamp": 1}],
    [{"key": "k" * 251, "value": 0.5, "step": 0, "timestamp": 1}],
    [{"key": "loss", "value": 0.5, "step": "3", "timestamp": 1}],
    ["not a point"],
    [],
]


@pytest.mark.parametrize("points", DOUBTFUL, ids=range(len(DOUBTFUL)))
def test_anything_unusual_takes_the_validated_path(points: list[object]) -> None:
    raw = _metrics(points)
    assert codec._metrics_form(raw, "alice", NOW) is None
    try:
        slow = _slow(raw)
    except InvalidEvent as exc:  # the same error as ever, from the validated path
        with pytest.raises(InvalidEvent) as caught:
            stored_form(raw, actor="alice", recorded_at=NOW)
        assert caught.value.reason == exc.reason
    else:
        assert stored_form(raw, actor="alice", recorded_at=NOW) == slow


@pytest.mark.parametrize("envelope,error", [
    ({"occurred_at": "yesterday"}, "occurred_at is not an ISO 8601 time"),
    ({"source": ""}, "source must be a string"),
    ({"aggregate": {"kind": "model", "id": "r1"}}, "belongs to aggregate kind"),
    ({"surprise": 1}, "unknown envelope field"),
    ({"recorded_at": "soon"}, "recorded_at is not an ISO 8601 time"),
])
def test_a_bad_envelope_is_refused_as_before(envelope: dict[str, object], error: str) -> None:
    raw = _metrics(PLAIN[0], **envelope)
    with pytest.raises(InvalidEvent, match=error):
        stored_form(raw, actor="alice", recorded_at=NOW)
