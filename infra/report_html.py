"""The audit report as one self-contained HTML page: inline CSS, no scripts, no links to
anything outside the file, every value escaped — so it can be archived, mailed or opened
offline, and no logged value (a run name, a comment, a payload) can inject markup."""

from __future__ import annotations

from html import escape
from typing import Any

import orjson

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem; color: #1b1f24; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f6f8fa; }
code { font: 12px ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; }
.muted { color: #57606a; }
"""


def _e(value: Any) -> str:
    if value is None:
        return ""
    return escape(value if isinstance(value, str) else orjson.dumps(value).decode(), quote=True)


def _table(headers: list[str], rows: list[list[Any]], code: frozenset[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    if not rows:
        return f'<table><tr>{head}</tr><tr><td colspan="{len(headers)}">(none)</td></tr></table>'
    body = "".join(
        "<tr>" + "".join(f"<td><code>{_e(v)}</code></td>" if i in code else f"<td>{_e(v)}</td>"
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _registry(report: dict[str, Any]) -> list[str]:
    parts = ["<h2>Stage transitions</h2>",
             f"<p>Lock: {_e(report['lock']['level'])}.</p>",
             _table(["at", "version", "from", "to", "by", "requested by", "approved by", "cause",
                     "comment"],
                    [[t["at"], t["version"], t["from_stage"], t["to_stage"], t["actor"],
                      t["requested_by"], t["actor"] if t["cause"] == "approval" else "", t["cause"],
                      t["comment"]] for t in report["transitions"]]),
             "<h2>Transition requests</h2>",
             _table(["requested at", "version", "to", "by", "status", "decided by", "decided at",
                     "comment", "decision"],
                    [[r["requested_at"], r["version"], r["to_stage"], r["requested_by"], r["status"],
                      r["decided_by"], r["decided_at"], r["comment"], r["decision_comment"]]
                     for r in report["requests"]])]
    if "deployments" in report:
        parts += ["<h2>Deployments</h2>",
                  _table(["id", "environment", "status", "history"],
                         [[d["id"], d["environment"], d["status"],
                           ", ".join(f"{h['status']} at {h['at']} by {h['actor']}" for h in d["history"])]
                          for d in report["deployments"]])]
    return parts


def render_html(report: dict[str, Any]) -> str:
    events = report["events"]
    upstream = report["upstream"]
    as_of = f" as of {report['as_of']}" if report.get("as_of") else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Audit report: {_e(report['entity'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Audit report: {_e(report['entity'])}</h1>",
        f'<p class="muted">{len(events)} event(s){_e(as_of)}.</p>',
        _table(["recorded at", "actor", "source", "event", "details"],
               [[e["recorded_at"], e["actor"], e["source"], e["type"], e["payload"]] for e in events],
               code=frozenset({4})),
    ]
    if "transitions" in report:
        parts += _registry(report)
    parts += [
        "<h2>Upstream lineage</h2>",
        f'<p class="muted">{_e(upstream["source"])}, {_e(upstream["depth"])} hops.</p>',
        _table(["node", "kind", "name"], [[n["id"], n["kind"], n["name"]] for n in upstream["nodes"]]),
        _table(["from (effect)", "edge", "to (cause)"],
               [[e["source"], e["kind"], e["target"]] for e in upstream["edges"]]),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
