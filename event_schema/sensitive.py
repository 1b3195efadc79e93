"""Which values an event may mark sensitive (sealed by the writer: see modeldb.writer.vault)."""

from __future__ import annotations

# Event types that may carry sensitive values, and the payload field that holds them.
SENSITIVE_CONTAINERS = {"ParamsLogged": "params", "TagsSet": "tags", "AttributesSet": "attributes"}
MAX_SENSITIVE_PATHS = 1000


def split_path(path: str) -> tuple[str, str]:
    """"params.optimizer.lr" → ("params", "optimizer.lr"): keys may contain dots."""
    container, _, key = path.partition(".")
    return container, key
