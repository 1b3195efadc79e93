"""JSON Schema export: one document describing the envelope and every event type."""

from __future__ import annotations

from typing import Any

from modeldb.event_schema.sensitive import MAX_SENSITIVE_PATHS, SENSITIVE_CONTAINERS
from modeldb.event_schema.types import EVENT_TYPES


def _sensitive(type_name: str) -> dict[str, Any]:
    container = SENSITIVE_CONTAINERS.get(type_name)
    if container is None:
        return {}
    return {"sensitive": {
        "type": "array", "maxItems": MAX_SENSITIVE_PATHS,
        "description": "payload paths whose values the writer stores encrypted",
        "items": {"type": "string", "pattern": f"^{container}\\..+$"}}}


def json_schema() -> dict[str, Any]:
    """A JSON Schema (2020-12) whose `oneOf` has one branch per event type."""
    branches: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for spec in EVENT_TYPES.values():
        payload = spec.payload.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
        defs.update(payload.pop("$defs", {}))
        defs[f"{spec.name}Payload"] = payload
        branches.append({
            "type": "object",
            "title": spec.name,
            "required": ["event_id", "type", "aggregate", "occurred_at", "payload"],
            "additionalProperties": False,
            "properties": {
                "event_id": {"type": "string", "format": "uuid"},
                "type": {"const": spec.name},
                "schema_version": {"type": "integer", "minimum": 1, "maximum": spec.version},
                "aggregate": {
                    "type": "object",
                    "required": ["kind", "id"],
                    "additionalProperties": False,
                    "properties": {
                        "kind": {"const": spec.aggregate_kind},
                        "id": {"type": "string", "minLength": 1, "maxLength": 700},
                    },
                },
                "occurred_at": {"type": "string", "format": "date-time"},
                "recorded_at": {"type": ["string", "null"], "format": "date-time"},
                "actor": {"type": ["string", "null"]},
                "source": {"type": "string", "minLength": 1, "maxLength": 100},
                "payload": {"$ref": f"#/$defs/{spec.name}Payload"},
                **_sensitive(spec.name),
            },
        })
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ModelDB event",
        "oneOf": branches,
        "$defs": defs,
    }
