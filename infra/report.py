"""`modeldb audit ID [--at TIME] [--format md|json|html]`: one entity's history with who,
when and from where, and its upstream lineage as it stood then, as Markdown, JSON or
self-contained HTML. For a registered model or a model version also every stage
transition (who moved it, who requested and who approved it, with their comments), the
requests, and the version's deployments, all folded from the model's own events."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import orjson

from modeldb.event_schema import decode
from modeldb.event_schema.nodes import aggregate_of, node_id, parse_node_id
from modeldb.infra.system import System
from modeldb.projectors.audit import AuditStore, audit_events
from modeldb.projectors.lineage_memory import LINEAGE_EVENT_TYPES, MemoryGraph
from modeldb.writer.deployments import DeploymentState
from modeldb.writer.registry import ModelAggregate

# Which aggregate kind an entity's events are filed under, where its id alone is ambiguous
# (a project and a model may share a name).
_KIND = {"RegisteredModel": "model", "ModelVersion": "model", "Environment": "environment",
         "Deployment": "deployment", "Project": "project", "Dataset": "dataset",
         "DatasetVersion": "dataset", "Run": "run", "Experiment": "experiment"}


FORMATS = ("md", "json", "html")
UPSTREAM_DEPTH = 10


async def audit_report(system: System, entity: str, fmt: str = "md", at: datetime | None = None) -> str:
    """The report as of `at` (default now): the events recorded until then, and the upstream
    lineage as it stood then — rebuilt from the audit store's events up to `at`, through the
    same `graph_changes` as the graph projection (without `at`, the live graph, which is the
    same thing for the whole log)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    kind, ident = parse_node_id(entity)
    events = await system.audit.readable_history(aggregate_of(entity), kind=_KIND.get(kind), until=at)
    if kind == "ModelVersion":  # the model's own events, and those about this version
        number = ident.rsplit("/", 1)[-1]
        events = [e for e in events if str(e["payload"].get("version", number)) == number]
    start = node_id(kind, ident)
    if at is None:
        lineage = await system.graph.lineage(start, "UPSTREAM", UPSTREAM_DEPTH)
        source = "the lineage graph now"
    else:
        lineage = await (await lineage_as_of(system.audit, at)).lineage(start, "UPSTREAM", UPSTREAM_DEPTH)
        source = f"rebuilt from the events recorded up to {at.isoformat()}"
    report: dict[str, Any] = {
        "entity": start,
        "as_of": at.isoformat() if at else None,
        "events": [{k: e[k] for k in ("event_id", "type", "recorded_at", "occurred_at",
                                      "actor", "source", "payload")} for e in events],
        "upstream": {"source": source, "depth": UPSTREAM_DEPTH,
                     "nodes": [n.__dict__ for n in lineage.nodes],
                     "edges": [e.__dict__ for e in lineage.edges]},
    }
    if kind in ("RegisteredModel", "ModelVersion"):
        report.update(await _registry_sections(system, kind, ident, events, at))
    if fmt == "json":
        return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if fmt == "html":
        from modeldb.infra.report_html import render_html

        return render_html(report)
    return _markdown(report, lineage.edges)


async def lineage_as_of(audit: AuditStore, at: datetime) -> MemoryGraph:
    """The lineage graph as it was at `at`: the lineage-bearing events recorded until then
    (streamed from the audit store, metric batches never read), replayed in memory."""
    from sqlalchemy import select

    t = audit_events
    query = (select(t.c.body)
             .where(t.c.duplicate.is_(False), t.c.recorded_at <= at.isoformat(),
                    t.c.type.in_(LINEAGE_EVENT_TYPES))
             .order_by(t.c.recorded_at, t.c.partition, t.c.position))
    async with audit.engine.connect() as conn:
        result = await conn.stream(query)
        raw = [orjson.loads(body) async for (body,) in result]
    vault = getattr(audit, "vault", None)
    if vault is not None:  # sensitive values as readers get them (decrypted or redacted)
        raw = [dict(e) for e in await vault.reveal(raw)]
    return MemoryGraph.of_events(decode(e) for e in raw)


async def _registry_sections(system: System, kind: str, ident: str,
                             events: list[dict[str, Any]], at: datetime | None) -> dict[str, Any]:
    name = aggregate_of(node_id(kind, ident))
    model = ModelAggregate.fold(name, (decode(e) for e in events))
    version = int(ident.rsplit("/", 1)[1]) if kind == "ModelVersion" else None
    sections: dict[str, Any] = {
        "transitions": [asdict(t) for t in model.transitions
                        if version is None or t.version == version],
        "requests": [asdict(r) for r in model.requests.values()
                     if version is None or r.version == version],
        "lock": {"level": model.lock, "role": model.lock_role},
    }
    if version is not None:
        sections["deployments"] = await _deployments(system, name, version, at)
    return sections


async def _deployments(system: System, model: str, version: int,
                       at: datetime | None) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from modeldb.projectors import read_model as rm

    async with system.engine.connect() as conn:
        ids = [r[0] for r in await conn.execute(
            select(rm.deployments.c.id).where(rm.deployments.c.model == model,
                                              rm.deployments.c.version == version)
            .order_by(rm.deployments.c.created_at))]
    found = []
    for deployment_id in ids:  # from the deployments' own events, like the rest of the report
        history = await system.audit.history(deployment_id, kind="deployment", until=at)
        if not history:
            continue  # recorded after `at`
        state = DeploymentState.fold(deployment_id, (decode(e) for e in history))
        found.append({"id": deployment_id, "environment": state.environment,
                      "status": state.status, "history": state.history})
    return found


def _short(value: Any, width: int = 120) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _markdown(report: dict[str, Any], edges: Any) -> str:
    events = report["events"]
    as_of = f" as of {report['as_of']}" if report.get("as_of") else ""
    lines = [f"# Audit report: {report['entity']}", "", f"{len(events)} event(s){as_of}.", "",
             "| recorded at | actor | source | event | details |", "| --- | --- | --- | --- | --- |"]
    for e in events:
        lines.append(f"| {e['recorded_at']} | {e['actor']} | {e['source']} | {e['type']} | "
                     f"`{_short(e['payload'])}` |")
    if "transitions" in report:
        lines += ["", "## Stage transitions", "",
                  f"Lock: {report['lock']['level']}.", "",
                  "| at | version | from → to | by | requested by | approved by | cause | comment |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for t in report["transitions"]:
            approved = t["actor"] if t["cause"] == "approval" else ""
            comment = t["comment"] + (f" (request: {t['request_comment']})"
                                      if t["request_comment"] and t["request_comment"] != t["comment"]
                                      else "")
            lines.append(f"| {t['at']} | {t['version']} | {t['from_stage']} → {t['to_stage']} | "
                         f"{t['actor']} | {t['requested_by'] or ''} | {approved} | {t['cause']} | "
                         f"{_short(comment, 200)} |")
        if not report["transitions"]:
            lines.append("| (none) | | | | | | | |")
        lines += ["", "## Transition requests", "",
                  "| requested at | version | to | by | status | decided by | decided at | comments |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in report["requests"]:
            comments = " / ".join(c for c in (r["comment"], r["decision_comment"]) if c)
            lines.append(f"| {r['requested_at']} | {r['version']} | {r['to_stage']} | "
                         f"{r['requested_by']} | {r['status']} | {r['decided_by'] or ''} | "
                         f"{r['decided_at'] or ''} | {_short(comments, 200)} |")
        if not report["requests"]:
            lines.append("| (none) | | | | | | | |")
    if "deployments" in report:
        lines += ["", "## Deployments", ""]
        for d in report["deployments"]:
            steps = ", ".join(f"{h['status']} at {h['at']} by {h['actor']}" for h in d["history"])
            lines.append(f"- {d['id']} in **{d['environment']}**: {d['status']} ({steps})")
        if not report["deployments"]:
            lines.append("(none)")
    lines += ["", "## Upstream lineage", "", f"({report['upstream']['source']}, "
              f"{report['upstream']['depth']} hops)", ""]
    lines += [f"- {e.source} **{e.kind}** {e.target}" for e in edges] or ["(none)"]
    return "\n".join(lines)
