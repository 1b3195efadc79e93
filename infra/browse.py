"""`modeldb runs|models|versions|deployments list|show`: browse what ModelDB holds.

Every answer comes from the public GraphQL API: over HTTP with `--url http://host:port`
(or MODELDB_URL), else in this process on the embedded home (`--data-dir`). Tables for
people, `--json` for programs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

RUN_FIELDS = "id name status startTime endTime project { name } experiment { name }"
VERSION_FIELDS = """name version stage aliases description createdAt sourceUri redacted
  run { id } artifact { name digest uri }"""
DEPLOYMENT_FIELDS = """id model version status message endpoint createdBy createdAt updatedAt since
  environment { name stage location }"""


class BrowseError(Exception):
    pass


def graphql(args: argparse.Namespace, query: str, **variables: Any) -> dict[str, Any]:
    url = args.url or os.environ.get("MODELDB_URL")
    if url and url.startswith(("http://", "https://")):
        import httpx

        token = os.environ.get("MODELDB_TOKEN")  # servers in token mode (README "Security model")
        response = httpx.post(f"{url.rstrip('/')}/graphql",
                              json={"query": query, "variables": variables}, timeout=60,
                              headers={"authorization": f"Bearer {token}"} if token else {})
        if response.status_code in (401, 403, 429):
            raise BrowseError(f"HTTP {response.status_code}: {response.json().get('error')}")
        body = response.json()
        if body.get("errors"):
            raise BrowseError("; ".join(e.get("message", str(e)) for e in body["errors"]))
        return body["data"]
    from modeldb.infra.embedded import execute_graphql_async
    from modeldb.infra.settings import Settings

    home = Settings.load(args.data_dir).home
    try:
        return asyncio.run(execute_graphql_async(Path(home), query, variables))
    except ValueError as exc:
        raise BrowseError(str(exc)) from None


# -- output -----------------------------------------------------------------------------------------


def _cell(value: Any, width: int = 40) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    text = str(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as an aligned text table; columns are (header, key) pairs."""
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(header), *(len(c[i]) for c in cells)) for i, (header, _) in
              enumerate(columns)]
    lines = ["  ".join(h.upper().ljust(w) for (h, _), w in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in cells]
    return "\n".join(lines)


def details(item: dict[str, Any], indent: str = "") -> str:
    lines = []
    for key, value in item.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(details(value, indent + "  "))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{indent}{key}:")
            columns = [(re.sub(r"(?<!^)(?=[A-Z])", " ", k), k) for k in value[0]]
            lines.append("\n".join(indent + "  " + line for line in
                                   table(value, columns).splitlines()))
        else:
            lines.append(f"{indent}{key}: {_cell(value, 200)}")
    return "\n".join(lines)


def _emit(args: argparse.Namespace, data: Any, render: Callable[[Any], str]) -> int:
    if args.json:
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        print(render(data))
    return 0


def _flat(run: dict[str, Any]) -> dict[str, Any]:
    return {**run, "project": (run.get("project") or {}).get("name"),
            "experiment": (run.get("experiment") or {}).get("name")}


# -- the commands -------------------------------------------------------------------------------------


def runs_list(args: argparse.Namespace) -> int:
    data = graphql(args, f"""query($f: String, $o: [String!], $n: Int, $p: String, $e: String) {{
        runs(filter: $f, orderBy: $o, first: $n, project: $p, experiment: $e) {{
          totalCount edges {{ node {{ {RUN_FIELDS} }} }} }} }}""",
                   f=args.filter, o=args.order_by or None, n=args.limit, p=args.project,
                   e=args.experiment)["runs"]
    runs = [_flat(e["node"]) for e in data["edges"]]
    if args.status:
        runs = [r for r in runs if r["status"] == args.status.upper()]
    return _emit(args, runs, lambda rows: table(rows, [
        ("id", "id"), ("name", "name"), ("status", "status"), ("project", "project"),
        ("experiment", "experiment"), ("started", "startTime"), ("ended", "endTime")])
        + f"\n{len(rows)} of {data['totalCount']} run(s)")


def runs_show(args: argparse.Namespace) -> int:
    run = graphql(args, f"""query($id: ID!) {{ run(id: $id) {{ {RUN_FIELDS}
        params {{ key value }} metrics {{ key value step }} tags {{ key value }}
        artifacts {{ name digest kind }} inputs {{ id kind }} outputs {{ id kind }} }} }}""",
                  id=args.id)["run"]
    if run is None:
        raise BrowseError(f"no run {args.id!r}")
    return _emit(args, run, lambda r: details(_flat(r)))


def models_list(args: argparse.Namespace) -> int:
    models = graphql(args, """{ registeredModels { name description redacted revision
        lock { level } versions { version stage } aliases { alias version } } }""")["registeredModels"]
    rows = [{**m, "lock": m["lock"]["level"], "versions": len(m["versions"]),
             "production": [v["version"] for v in m["versions"] if v["stage"] == "Production"],
             "aliases": [f"{a['alias']}→{a['version']}" for a in m["aliases"]]} for m in models]
    return _emit(args, models if args.json else rows, lambda rs: table(rs, [
        ("name", "name"), ("versions", "versions"), ("production", "production"),
        ("aliases", "aliases"), ("lock", "lock"), ("description", "description")]))


def models_show(args: argparse.Namespace) -> int:
    model = graphql(args, """query($n: String!) { registeredModel(name: $n) {
        name description redacted revision createdAt tags { key value }
        lock { level role comment } rules { singleProduction approvalRequired }
        versions { version stage } aliases { alias version }
        pendingRequests { id version toStage requestedBy comment }
        transitions { at version fromStage toStage actor approvedBy cause comment } } }""",
                    n=args.name)["registeredModel"]
    if model is None:
        raise BrowseError(f"no registered model {args.name!r}")
    return _emit(args, model, details)


def _version_id(value: str) -> tuple[str, str]:
    name, sep, version = value.rpartition("/")
    if not sep or not name or not version:
        raise BrowseError(f"a version is NAME/VERSION (or NAME/ALIAS), not {value!r}")
    return name, version


def versions_list(args: argparse.Namespace) -> int:
    if args.model:
        model = graphql(args, f"""query($n: String!) {{ registeredModel(name: $n) {{
            modelVersions {{ {VERSION_FIELDS} }} }} }}""", n=args.model)["registeredModel"]
        if model is None:
            raise BrowseError(f"no registered model {args.model!r}")
        versions = model["modelVersions"]
    else:
        models = graphql(args, f"""{{ registeredModels {{ modelVersions {{ {VERSION_FIELDS} }} }} }}""")
        versions = [v for m in models["registeredModels"] for v in m["modelVersions"]]
    if args.stage:
        versions = [v for v in versions if v["stage"].lower() == args.stage.lower()]
    rows = [{**v, "run": (v.get("run") or {}).get("id"),
             "source": (v.get("artifact") or {}).get("name") or v.get("sourceUri")}
            for v in versions]
    return _emit(args, versions if args.json else rows, lambda rs: table(rs, [
        ("model", "name"), ("version", "version"), ("stage", "stage"), ("aliases", "aliases"),
        ("run", "run"), ("source", "source"), ("created", "createdAt")]))


def versions_show(args: argparse.Namespace) -> int:
    name, version = _version_id(args.id)
    found = graphql(args, f"""query($n: String!, $v: String!) {{ modelVersion(name: $n, version: $v) {{
        {VERSION_FIELDS}
        transitions {{ at fromStage toStage actor requestedBy approvedBy cause comment }}
        requests {{ id toStage status requestedBy decidedBy comment }}
        deployments {{ id status since environment {{ name }} }} }} }}""",
                    n=name, v=version)["modelVersion"]
    if found is None:
        raise BrowseError(f"no model version {args.id!r}")
    if not args.json:
        found = {**found, "deployments": [{**d, "environment": (d.get("environment") or {}).get("name")}
                                          for d in found["deployments"]]}
    return _emit(args, found, details)


def deployments_list(args: argparse.Namespace) -> int:
    found = graphql(args, f"""query($m: String, $v: String, $e: String, $s: String) {{
        deployments(model: $m, version: $v, environment: $e, status: $s) {{ {DEPLOYMENT_FIELDS} }} }}""",
                    m=args.model, v=args.version, e=args.environment, s=args.status)["deployments"]
    rows = [{**d, "environment": (d.get("environment") or {}).get("name"),
             "version": f"{d['model']}/{d['version']}"} for d in found]
    return _emit(args, found if args.json else rows, lambda rs: table(rs, [
        ("id", "id"), ("version", "version"), ("environment", "environment"),
        ("status", "status"), ("serving since", "since"), ("updated", "updatedAt")]))


def deployments_show(args: argparse.Namespace) -> int:
    found = graphql(args, f"""query($id: String!) {{ deployment(id: $id) {{ {DEPLOYMENT_FIELDS}
        history {{ at status actor message }} }} }}""", id=args.id)["deployment"]
    if found is None:
        raise BrowseError(f"no deployment {args.id!r}")
    return _emit(args, found, details)


def add_parsers(sub: Any, data_dir: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `runs`, `models`, `versions` and `deployments` on the CLI's subparsers."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--url", default=None,
                       help="a ModelDB server (default $MODELDB_URL, else the embedded home)")
        data_dir(p)

    specs: dict[str, tuple[str, Callable[..., int], Callable[..., int], str, list[tuple[Any, ...]]]] = {
        "runs": ("runs, newest first", runs_list, runs_show, "run id", [
            ("--project",), ("--experiment",), ("--filter",),
            ("--order-by", {"action": "append", "help": "e.g. 'metrics.acc DESC'"}),
            ("--status",), ("--limit", {"type": int, "default": 50})]),
        "models": ("registered models", models_list, models_show, "model name", []),
        "versions": ("model versions", versions_list, versions_show, "NAME/VERSION or NAME/ALIAS",
                     [("--model",), ("--stage",)]),
        "deployments": ("deployments of model versions", deployments_list, deployments_show,
                        "deployment id", [("--model",), ("--version",), ("--environment",),
                                          ("--status",)]),
    }
    for noun, (text, list_fn, show_fn, what, filters) in specs.items():
        parser = sub.add_parser(noun, help=f"list or show {text}")
        verbs = parser.add_subparsers(dest="verb", required=True)
        p = verbs.add_parser("list", help=f"list {text}")
        for flag, *options in filters:
            p.add_argument(flag, **(options[0] if options else {}))
        common(p)
        p.set_defaults(fn=_guarded(list_fn))
        p = verbs.add_parser("show", help=f"show one of the {text}")
        p.add_argument("id" if noun != "models" else "name", metavar="ID", help=what)
        common(p)
        p.set_defaults(fn=_guarded(show_fn))


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except BrowseError as exc:
            import sys

            print(f"modeldb: {exc}", file=sys.stderr)
            return 1

    return run
