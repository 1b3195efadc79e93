"""Upcasters: small pure functions that lift an old payload one version up.

The log is never rewritten; old events are upgraded as they are read, one step at a time,
so the oldest event in the log replays through today's projections.
"""

from __future__ import annotations

from typing import Any


def metrics_logged_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 carried one point per event; v2 batches points so a training step is one event."""
    point = {k: payload[k] for k in ("key", "value", "step", "timestamp") if k in payload}
    return {"points": [point]}


def stage_changed_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v2 records where the version came from and why it moved; v1 knew neither."""
    return {**payload, "from_stage": None, "cause": "direct", "request_id": None}
