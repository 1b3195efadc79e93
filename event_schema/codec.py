"""The wire format (JSON via orjson): encode, decode with upcasting, and precise errors.

Wire form of one event::

    {"event_id": "0190…", "type": "MetricsLogged", "schema_version": 2,
     "aggregate": {"kind": "run", "id": "0190…"}, "occurred_at": "2026-11-23T10:00:00+00:00",
     "recorded_at": null, "actor": null, "source": "sdk", "payload": {…}}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from modeldb.event_schema.envelope import Aggregate, Event
from modeldb.event_schema.sensitive import MAX_SENSITIVE_PATHS, SENSITIVE_CONTAINERS, split_path
from modeldb.event_schema.types import EVENT_TYPES, EventType

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ENVELOPE_KEYS = frozenset(
    {"event_id", "type", "schema_version", "aggregate", "occurred_at", "recorded_at",
     "actor", "source", "payload", "sensitive"}
)
MAX_AGGREGATE_ID = 700


class InvalidEvent(ValueError):
    """One event that cannot be accepted, with where it was and why."""

    def __init__(self, reason: str, *, index: int | None = None, event_id: str | None = None):
        self.reason = reason
        self.index = index
        self.event_id = event_id
        where = f"event {index}" if index is not None else "event"
        super().__init__(f"{where}{f' ({event_id})' if event_id else ''}: {reason}")

    def at(self, index: int) -> InvalidEvent:
        return InvalidEvent(self.reason, index=index, event_id=self.event_id)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": self.event_id, "error": self.reason}


class InvalidBatch(ValueError):
    """A batch with at least one bad event; nothing of it may be appended."""

    def __init__(self, errors: list[InvalidEvent]):
        self.errors = errors
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} invalid event(s): {shown}{more}")


# -- encoding -------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def to_wire(event: Event) -> dict[str, Any]:
    wire = {
        "event_id": event.event_id,
        "type": event.type,
        "schema_version": event.schema_version,
        "aggregate": {"kind": event.aggregate.kind, "id": event.aggregate.id},
        "occurred_at": _iso(event.occurred_at),
        "recorded_at": _iso(event.recorded_at) if event.recorded_at else None,
        "actor": event.actor,
        "source": event.source,
        "payload": event.payload.model_dump(mode="json", by_alias=True),
    }
    if event.sensitive:  # only then: events without it keep the form they always had
        wire["sensitive"] = list(event.sensitive)
    return wire


def encode(event: Event) -> bytes:
    return orjson.dumps(to_wire(event))


def encode_many(events: Iterable[Event]) -> bytes:
    return orjson.dumps([to_wire(e) for e in events])


def canonical_bytes(raw: Mapping[str, Any]) -> bytes:
    """One byte form per stored event, so its hash does not depend on key order."""
    return orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)


# -- decoding -------------------------------------------------------------------------------


def _parse_time(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(f"{field} is not an ISO 8601 time: {value[:40]!r}") from None
    else:
        raise InvalidEvent(f"{field} must be an ISO 8601 string, got {type(value).__name__}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check_envelope(raw: Any) -> tuple[str, EventType, int, Aggregate]:
    if not isinstance(raw, Mapping):
        raise InvalidEvent(f"an event must be a JSON object, got {type(raw).__name__}")
    unknown = raw.keys() - _ENVELOPE_KEYS
    if unknown:
        raise InvalidEvent(f"unknown envelope field(s): {', '.join(sorted(unknown))}")
    event_id = raw.get("event_id")
    if not isinstance(event_id, str) or not _UUID.match(event_id):
        raise InvalidEvent("event_id must be a lowercase UUID string")
    name = raw.get("type")
    spec = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if spec is None:
        raise InvalidEvent(f"unknown event type {name!r}", event_id=event_id)
    version = raw.get("schema_version", spec.version)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidEvent("schema_version must be a positive integer", event_id=event_id)
    if version > spec.version:
        raise InvalidEvent(
            f"{name} schema_version {version} is newer than this server knows ({spec.version})",
            event_id=event_id,
        )
    aggregate = raw.get("aggregate")
    if not isinstance(aggregate, Mapping) or set(aggregate) != {"kind", "id"}:
        raise InvalidEvent("aggregate must be an object {kind, id}", event_id=event_id)
    kind, agg_id = aggregate["kind"], aggregate["id"]
    if kind != spec.aggregate_kind:
        raise InvalidEvent(
            f"{name} belongs to aggregate kind {spec.aggregate_kind!r}, not {kind!r}",
            event_id=event_id,
        )
    if not isinstance(agg_id, str) or not 0 < len(agg_id) <= MAX_AGGREGATE_ID:
        raise InvalidEvent("aggregate.id must be a non-empty string", event_id=event_id)
    return event_id, spec, version, Aggregate(kind, agg_id)


def _payload_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"payload.{loc}: {err['msg']}" if loc else f"payload: {err['msg']}")
    return "; ".join(parts)


def upcast(spec: EventType, version: int, payload: dict[str, Any]) -> dict[str, Any]:
    for v in range(version, spec.version):
        payload = spec.upcasters[v](payload)
    return payload


def decode(data: bytes | str | Mapping[str, Any]) -> Event:
    """Validate one event and upcast it to the current schema version of its type."""
    try:
        raw = orjson.loads(data) if isinstance(data, bytes | str) else data
    except orjson.JSONDecodeError as exc:  # e.g. a string item in a JSON array body
        raise InvalidEvent(f"malformed JSON: {exc}") from None
    event_id, spec, version, aggregate = _check_envelope(raw)
    payload = raw.get("payload", {})
    if not isinstance(payload, Mapping):
        raise InvalidEvent("payload must be a JSON object", event_id=event_id)
    try:
        model = spec.payload.model_validate(upcast(spec, version, dict(payload)))
    except ValidationError as exc:
        raise InvalidEvent(_payload_errors(exc), event_id=event_id) from None
    except (KeyError, TypeError) as exc:  # an old payload too broken to upcast
        raise InvalidEvent(f"cannot upcast v{version} payload: {exc}", event_id=event_id) from None
    recorded_at = raw.get("recorded_at")
    sensitive = _sensitive(raw.get("sensitive"), spec.name, model, event_id)
    return Event(
        event_id=event_id,
        type=spec.name,
        aggregate=aggregate,
        payload=model,
        occurred_at=_parse_time(raw.get("occurred_at"), "occurred_at"),
        schema_version=spec.version,
        source=_source(raw.get("source", "sdk")),
        recorded_at=_parse_time(recorded_at, "recorded_at") if recorded_at else None,
        actor=raw.get("actor"),
        sensitive=sensitive,
    )


def _sensitive(value: Any, type_name: str, payload: Any, event_id: str) -> tuple[str, ...]:
    """The envelope's sensitive paths, checked: each names a value this event carries."""
    if value is None or value == []:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise InvalidEvent("sensitive must be a list of payload paths such as 'params.email'",
                           event_id=event_id)
    container = SENSITIVE_CONTAINERS.get(type_name)
    if container is None:
        raise InvalidEvent(f"{type_name} cannot carry sensitive values; only "
                           f"{', '.join(SENSITIVE_CONTAINERS)} can", event_id=event_id)
    if len(value) > MAX_SENSITIVE_PATHS:
        raise InvalidEvent(f"more than {MAX_SENSITIVE_PATHS} sensitive paths", event_id=event_id)
    values = getattr(payload, container)
    for path in value:
        where, key = split_path(path)
        if where != container or values.get(key) is None:
            raise InvalidEvent(f"sensitive path {path[:300]!r} names no value of this event "
                               f"(expected '{container}.<key>' for a key it sets)", event_id=event_id)
    return tuple(dict.fromkeys(value))


def _source(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 100:
        raise InvalidEvent("source must be a string of 1 to 100 characters")
    return value


def stored_form(raw: Mapping[str, Any], *, actor: str, recorded_at: datetime) -> dict[str, Any]:
    """The form the log keeps: validated, normalised, stamped, at the version it was sent.

    Keeping the sent version (not the upcast one) means the log holds what the producer
    said; projections upcast on every read.
    """
    fast = _metrics_form(raw, actor, recorded_at)
    if fast is not None:
        return fast
    event = decode(raw)
    spec = EVENT_TYPES[event.type]
    version = raw.get("schema_version", spec.version)
    if version == spec.version:
        payload = event.payload.model_dump(mode="json", by_alias=True)
    else:
        payload = spec.old_payloads[version].model_validate(raw["payload"]).model_dump(mode="json")
    form = {
        "event_id": event.event_id,
        "type": event.type,
        "schema_version": version,
        "aggregate": {"kind": event.aggregate.kind, "id": event.aggregate.id},
        "occurred_at": _iso(event.occurred_at),
        "recorded_at": _iso(recorded_at),
        "actor": actor,
        "source": event.source,
        "payload": payload,
    }
    if event.sensitive:
        form["sensitive"] = list(event.sensitive)
    return form


_POINT_KEYS = frozenset({"key", "value", "step", "timestamp"})
_POINT_KEYS_NO_STEP = frozenset({"key", "value", "timestamp"})
_INT64 = 1 << 63
_KEY_MAX = 250  # types.Key
_POINTS_MAX = 10_000  # types.MetricsLogged.points


def _metrics_form(raw: Any, actor: str, recorded_at: datetime) -> dict[str, Any] | None:
    """The stored form of a current-version MetricsLogged whose points are plainly valid,
    built without a pydantic object per point (the ingest hot path: ~4 us a point that way).

    Only what pydantic would accept and dump unchanged takes this path: each point exactly
    {key, value, step?, timestamp} with a str key of 1..250 characters, a finite float value
    and int step and timestamp; the envelope is checked by the same functions as decode's.
    Anything else returns None and goes through decode, which names the error. A test
    checks both paths give the same form.
    """
    if type(raw) is not dict or raw.get("type") != "MetricsLogged" or "sensitive" in raw:
        return None
    payload = raw.get("payload")
    if type(payload) is not dict or len(payload) != 1:
        return None
    points = payload.get("points")
    if type(points) is not list or not 0 < len(points) <= _POINTS_MAX:
        return None
    event_id, spec, version, aggregate = _check_envelope(raw)
    if version != spec.version:
        return None
    out = []
    append = out.append
    for p in points:
        if type(p) is not dict:
            return None
        keys = p.keys()
        if keys == _POINT_KEYS:
            step = p["step"]
        elif keys == _POINT_KEYS_NO_STEP:
            step = 0
        else:
            return None
        key, value, timestamp = p["key"], p["value"], p["timestamp"]
        if not (type(key) is str and 0 < len(key) <= _KEY_MAX and type(value) is float
                and value - value == 0.0 and type(step) is int and -_INT64 <= step < _INT64
                and type(timestamp) is int and -_INT64 <= timestamp < _INT64):
            return None
        append({"key": key, "value": value, "step": step, "timestamp": timestamp})
    occurred_at = _parse_time(raw.get("occurred_at"), "occurred_at")
    source = _source(raw.get("source", "sdk"))
    if raw.get("recorded_at"):
        _parse_time(raw["recorded_at"], "recorded_at")  # checked as decode does; replaced
    return {
        "event_id": event_id,
        "type": spec.name,
        "schema_version": version,
        "aggregate": {"kind": aggregate.kind, "id": aggregate.id},
        "occurred_at": _iso(occurred_at),
        "recorded_at": _iso(recorded_at),
        "actor": actor,
        "source": source,
        "payload": {"points": out},
    }


def parse_body(body: bytes) -> list[Any]:
    """A JSON array of events, or NDJSON (one event per line)."""
    text = body.strip()
    if not text:
        return []
    if text[:1] == b"[":
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidBatch([InvalidEvent(f"malformed JSON: {exc}")]) from None
        return items
    items, errors = [], []
    for i, line in enumerate(text.split(b"\n")):
        if not line.strip():
            continue
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            errors.append(InvalidEvent(f"malformed JSON on line {i + 1}: {exc}", index=i))
    if errors:
        raise InvalidBatch(errors)
    return items


def decode_batch(body: bytes | list[Any]) -> list[Event]:
    """Decode a whole batch, collecting every bad event so one reply can name them all."""
    items = parse_body(body) if isinstance(body, bytes) else body
    events, errors = [], []
    for i, item in enumerate(items):
        try:
            events.append(decode(item))
        except InvalidEvent as exc:
            errors.append(exc.at(i))
    if errors:
        raise InvalidBatch(errors)
    return events
