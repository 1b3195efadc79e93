"""`modeldb audit ID`: one entity's history with who, when and from where, and its
upstream lineage, as Markdown or JSON."""

from __future__ import annotations

from typing import Any

import orjson

from modeldb.event_schema.nodes import aggregate_of, node_id, parse_node_id
from modeldb.infra.system import System


async def audit_report(system: System, entity: str, fmt: str = "md") -> str:
    kind, ident = parse_node_id(entity)
    events = await system.audit.history(aggregate_of(entity))
    lineage = await system.graph.lineage(node_id(kind, ident), "UPSTREAM", 10)
    report: dict[str, Any] = {
        "entity": node_id(kind, ident),
        "events": [{k: e[k] for k in ("event_id", "type", "recorded_at", "occurred_at",
                                      "actor", "source", "payload")} for e in events],
        "upstream": {"nodes": [n.__dict__ for n in lineage.nodes],
                     "edges": [e.__dict__ for e in lineage.edges]},
    }
    if fmt == "json":
        return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    lines = [f"# Audit report: {report['entity']}", "", f"{len(events)} event(s).", "",
             "| recorded at | actor | source | event | details |", "| --- | --- | --- | --- | --- |"]
    for e in report["events"]:
        details = orjson.dumps(e["payload"]).decode()
        details = details if len(details) <= 120 else details[:117] + "..."
        lines.append(f"| {e['recorded_at']} | {e['actor']} | {e['source']} | {e['type']} | "
                     f"`{details}` |")
    lines += ["", "## Upstream lineage", ""]
    lines += [f"- {e.source} **{e.kind}** {e.target}" for e in lineage.edges] or ["(none)"]
    return "\n".join(lines)
