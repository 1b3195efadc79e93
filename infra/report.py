"""`modeldb audit ID`: one entity's history with who, when and from where, and its
upstream lineage, as Markdown or JSON. For a registered model or a model version also every
stage transition (who moved it, who requested and who approved it, with their comments),
the requests, and the version's deployments, all folded from the model's own events."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson

from modeldb.event_schema import decode
from modeldb.event_schema.nodes import aggregate_of, node_id, parse_node_id
from modeldb.infra.system import System
from modeldb.writer.deployments import DeploymentState
from modeldb.writer.registry import ModelAggregate

# Which aggregate kind an entity's events are filed under, where its id alone is ambiguous
# (a project and a model may share a name).
_KIND = {"RegisteredModel": "model", "ModelVersion": "model", "Environment": "environment",
         "Deployment": "deployment", "Project": "project", "Dataset": "dataset",
         "DatasetVersion": "dataset", "Run": "run", "Experiment": "experiment"}


async def audit_report(system: System, entity: str, fmt: str = "md") -> str:
    kind, ident = parse_node_id(entity)
    events = await system.audit.history(aggregate_of(entity), kind=_KIND.get(kind))
    if kind == "ModelVersion":  # the model's own events, and those about this version
        number = ident.rsplit("/", 1)[-1]
        events = [e for e in events if str(e["payload"].get("version", number)) == number]
    lineage = await system.graph.lineage(node_id(kind, ident), "UPSTREAM", 10)
    report: dict[str, Any] = {
        "entity": node_id(kind, ident),
        "events": [{k: e[k] for k in ("event_id", "type", "recorded_at", "occurred_at",
                                      "actor", "source", "payload")} for e in events],
        "upstream": {"nodes": [n.__dict__ for n in lineage.nodes],
                     "edges": [e.__dict__ for e in lineage.edges]},
    }
    if kind in ("RegisteredModel", "ModelVersion"):
        report.update(await _registry_sections(system, kind, ident, events))
    if fmt == "json":
        return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    return _markdown(report, lineage.edges)


async def _registry_sections(system: System, kind: str, ident: str,
                             events: list[dict[str, Any]]) -> dict[str, Any]:
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
        sections["deployments"] = await _deployments(system, name, version)
    return sections


async def _deployments(system: System, model: str, version: int) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from modeldb.projectors import read_model as rm

    async with system.engine.connect() as conn:
        ids = [r[0] for r in await conn.execute(
            select(rm.deployments.c.id).where(rm.deployments.c.model == model,
                                              rm.deployments.c.version == version)
            .order_by(rm.deployments.c.created_at))]
    found = []
    for deployment_id in ids:  # from the deployments' own events, like the rest of the report
        history = await system.audit.history(deployment_id, kind="deployment")
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
    lines = [f"# Audit report: {report['entity']}", "", f"{len(events)} event(s).", "",
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
    lines += ["", "## Upstream lineage", ""]
    lines += [f"- {e.source} **{e.kind}** {e.target}" for e in edges] or ["(none)"]
    return "\n".join(lines)
