"""search_runs: one GraphQL query (the contract's `runs`), paged, parsed into RunInfo."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modeldb._client import current
from modeldb._errors import ModelDBError, QueryError

# The only query text the SDK sends; field names are part of the public GraphQL contract.
RUNS_QUERY = """
query SearchRuns($filter: String, $orderBy: [String!], $first: Int, $after: String,
                 $project: String, $experiment: String) {
  runs(filter: $filter, orderBy: $orderBy, first: $first, after: $after,
       project: $project, experiment: $experiment) {
    totalCount
    edges { node {
      id name status startTime endTime
      params { key value }
      metrics { key value step }
      tags { key value }
    } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
PAGE = 1000  # the API's page-size limit; larger max_results are fetched page by page
READ_YOUR_WRITES_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunInfo:
    """A run as search_runs returns it: latest metric values, params and tags by key."""

    id: str
    name: str | None
    status: str
    start_time: datetime | None
    end_time: datetime | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):  # epoch milliseconds
        return datetime.fromtimestamp(value / 1000, UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_run(node: Mapping[str, Any]) -> RunInfo:
    def pairs(name: str) -> list[Mapping[str, Any]]:
        return list(node.get(name) or [])

    return RunInfo(
        id=str(node["id"]),
        name=node.get("name"),
        status=str(node.get("status")),
        start_time=_time(node.get("startTime")),
        end_time=_time(node.get("endTime")),
        params={p["key"]: p["value"] for p in pairs("params")},
        # GraphQL floats cannot carry NaN: the API sends null for a non-finite value.
        metrics={m["key"]: float("nan") if m["value"] is None else float(m["value"])
                 for m in pairs("metrics")},
        tags={t["key"]: t["value"] for t in pairs("tags")},
    )


def search_runs(filter: str | None = None, order_by: str | Sequence[str] | None = None,
                max_results: int = 100, *, project: str | None = None,
                experiment: str | None = None, as_frame: bool = False) -> Any:
    """Runs matching `filter` (e.g. "metrics.acc > 0.9 and params.lr = '0.01'"), ordered by
    `order_by` (e.g. "metrics.acc DESC"), at most `max_results`; all projects unless
    `project` / `experiment` narrow it. Waits (bounded) for this process's own events first,
    so a run just logged can be found.

    A list of RunInfo; with `as_frame=True` a pandas DataFrame instead (pandas stays
    optional), one row per run with `run_id`, `name`, `status`, `start_time`, `end_time`
    and a `params.<key>`, `metrics.<key>`, `tags.<key>` column per key."""
    runs = _search(filter, order_by, max_results, project, experiment)
    return _frame(runs) if as_frame else runs


def _frame(runs: list[RunInfo]) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise ModelDBError("search_runs(as_frame=True) needs pandas: pip install pandas") from exc
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run_id": run.id, "name": run.name, "status": run.status,
                               "start_time": run.start_time, "end_time": run.end_time}
        for scope, values in (("params", run.params), ("metrics", run.metrics),
                              ("tags", run.tags)):
            row.update({f"{scope}.{key}": value for key, value in values.items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["run_id", "name", "status",
                                                          "start_time", "end_time"])


def _search(filter: str | None, order_by: str | Sequence[str] | None, max_results: int,
            project: str | None, experiment: str | None) -> list[RunInfo]:
    client = current()
    client.flush(READ_YOUR_WRITES_TIMEOUT)
    orders = [order_by] if isinstance(order_by, str) else list(order_by or []) or None
    runs: list[RunInfo] = []
    after: str | None = None
    while len(runs) < max_results:
        data = client.query(RUNS_QUERY, {
            "filter": filter, "orderBy": orders, "first": min(PAGE, max_results - len(runs)),
            "after": after, "project": project, "experiment": experiment,
        })
        try:
            page = data["runs"]
            runs.extend(parse_run(edge["node"]) for edge in page["edges"])
            info = page.get("pageInfo") or {}
        except (KeyError, TypeError, ValueError) as exc:
            raise QueryError(f"unexpected answer to the runs query: {exc!r}") from None
        after = info.get("endCursor")
        if not info.get("hasNextPage") or not after or not page["edges"]:
            break
    return runs[:max_results]


SEARCH_QUERY = """
query Search($text: String!, $kinds: [String!], $first: Int!) {
  search(text: $text, kinds: $kinds, first: $first) { kind id name snippet score }
}
"""


def search(text: str, kinds: Sequence[str] | None = None, max_results: int = 20) -> list[dict[str, Any]]:
    """Full-text search over names, descriptions, tags and params of projects, experiments,
    runs, datasets, registered models and model versions, best first: dicts with `kind`,
    `id`, `name`, `snippet` (matches in **…**) and `score`. Every word must match; the
    last also as a prefix. `kinds` narrows it, e.g. ["Run"]."""
    client = current()
    client.flush(READ_YOUR_WRITES_TIMEOUT)
    data = client.query(SEARCH_QUERY, {"text": text, "kinds": list(kinds) if kinds else None,
                                       "first": max_results})
    return list(data.get("search") or [])
