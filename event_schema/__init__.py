"""The event contract: envelope, event types, codec, upcasters, JSON Schema. No I/O.

Depends on nothing else in ModelDB; every other component depends on it.
"""

from modeldb.event_schema.codec import (
    InvalidBatch,
    InvalidEvent,
    canonical_bytes,
    decode,
    decode_batch,
    encode,
    encode_many,
    to_wire,
)
from modeldb.event_schema.envelope import Aggregate, Event, RecordedEvent, new_event, uuid7
from modeldb.event_schema.jsonschema import json_schema
from modeldb.event_schema.nodes import node_id, parse_node_id
from modeldb.event_schema.types import EVENT_TYPES, EventType, event_type

__all__ = [
    "EVENT_TYPES",
    "Aggregate",
    "Event",
    "EventType",
    "InvalidBatch",
    "InvalidEvent",
    "RecordedEvent",
    "canonical_bytes",
    "decode",
    "decode_batch",
    "encode",
    "encode_many",
    "event_type",
    "json_schema",
    "new_event",
    "node_id",
    "parse_node_id",
    "to_wire",
    "uuid7",
]
