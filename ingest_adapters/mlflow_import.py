"""Import MLflow experiments and runs into ModelDB (`modeldb import mlflow`).

Reads through `mlflow.tracking.MlflowClient` (any tracking URI MLflow understands: a file
store, `sqlite:///…`, a tracking server) and writes ModelDB events with source
`import:mlflow`, either to a server (`--url http://…`, batches to POST /api/v1/events) or
into an embedded data folder (`--data-dir`, through the writer directly).

Idempotent: every event id is a uuid5 over the MLflow run id and what the event states,
and the ModelDB run id is a uuid5 of the MLflow run id, so importing twice appends nothing
new on the SQLite log; on Kafka the copies are appended and the projections skip them.
Registered models and versions are not imported: they are governed aggregates that enter
only as registry commands (see modeldb.writer.commands), which this importer does not issue.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modeldb.event_schema.codec import to_wire
from modeldb.event_schema.envelope import new_event

SOURCE = "import:mlflow"
DEFAULT_PROJECT = "mlflow"
# Fixed namespace: the same MLflow record always gives the same ModelDB ids.
NAMESPACE = uuid.UUID("5b1d6f0e-6d6c-5f6c-8f77-6d6c666c6f77")
_STATUS = {"FINISHED": "FINISHED", "FAILED": "FAILED", "KILLED": "KILLED"}
_MAX_POINTS = 10_000  # MetricsLogged's limit per event
_MAX_KEYS = 1000  # ParamsLogged/TagsSet/AttributesSet limit per event
_MAX_TEXT = 8000


def _uuid(*parts: Any) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(str(p) for p in parts)))


def run_id_of(mlflow_run_id: str) -> str:
    """The ModelDB run id of an MLflow run: stable, so re-imports and parents line up."""
    return _uuid("run", mlflow_run_id)


def _at(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, UTC)


def _chunks(items: dict[str, Any], size: int) -> Iterator[dict[str, Any]]:
    keys = sorted(items)  # sorted: the same dict always gives the same chunks (and ids)
    for start in range(0, len(keys), size):
        yield {k: items[k] for k in keys[start:start + size]}


@dataclass
class ImportResult:
    experiments: int = 0
    runs: int = 0
    events: int = 0


def experiment_events(project: str, experiment: str) -> list[dict[str, Any]]:
    out = [new_event("ProjectCreated", project, {"name": project}, source=SOURCE,
                     event_id=_uuid("ProjectCreated", project)),
           new_event("ExperimentCreated", f"{project}/{experiment}",
                     {"project": project, "name": experiment}, source=SOURCE,
                     event_id=_uuid("ExperimentCreated", project, experiment))]
    return [to_wire(e) for e in out]


def run_events(client: Any, run: Any, project: str, experiment: str) -> list[dict[str, Any]]:
    """Every ModelDB event one MLflow run stands for (wire form)."""
    info, data = run.info, run.data
    mid = info.run_id
    rid = run_id_of(mid)
    started = _at(info.start_time)
    out: list[Any] = []

    def emit(type_: str, aggregate: str, payload: dict[str, Any], *key: Any,
             at: datetime = started) -> None:
        out.append(new_event(type_, aggregate, payload, source=SOURCE, occurred_at=at,
                             event_id=_uuid(mid, type_, aggregate, *key)))

    tags = dict(data.tags or {})
    payload: dict[str, Any] = {"project": project, "experiment": experiment,
                               "name": (info.run_name or mid)[:500], "start_time": started}
    if tags.get("mlflow.parentRunId"):
        payload["parent_run_id"] = run_id_of(tags["mlflow.parentRunId"])
    emit("RunStarted", rid, payload)
    for i, chunk in enumerate(_chunks(dict(data.params or {}), _MAX_KEYS)):
        emit("ParamsLogged", rid, {"params": chunk}, i)
    # Values longer than ModelDB's tag limit are cut: a tag is a label, not a document.
    clean_tags = {k[:250]: str(v)[:_MAX_TEXT] for k, v in tags.items()}
    for i, chunk in enumerate(_chunks(clean_tags, _MAX_KEYS)):
        emit("TagsSet", rid, {"tags": chunk}, i)
    attributes = {"mlflow.run_id": mid, "mlflow.experiment_id": info.experiment_id,
                  "mlflow.artifact_uri": info.artifact_uri or "",
                  "mlflow.lifecycle_stage": info.lifecycle_stage or "",
                  "mlflow.status": info.status}
    emit("AttributesSet", rid, {"attributes": attributes})
    # The full history, not data.metrics (which holds only the latest value per key).
    for key in sorted(data.metrics or {}):
        history = sorted(client.get_metric_history(mid, key),
                         key=lambda m: (m.step, m.timestamp))
        points = [{"key": key, "value": float(m.value), "step": int(m.step),
                   "timestamp": int(m.timestamp)} for m in history]
        for i in range(0, len(points), _MAX_POINTS):
            part = points[i:i + _MAX_POINTS]
            emit("MetricsLogged", rid, {"points": part}, key, i // _MAX_POINTS,
                 at=_at(part[0]["timestamp"]))
    for dataset_input in getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []:
        out.extend(_dataset_events(dataset_input, rid, mid, started))
    if info.status in _STATUS and info.end_time:
        emit("RunFinished", rid, {"status": _STATUS[info.status], "end_time": _at(info.end_time)},
             at=_at(info.end_time))
    return [to_wire(e) for e in out]


def _dataset_events(dataset_input: Any, rid: str, mid: str, at: datetime) -> list[Any]:
    """A logged MLflow input dataset → dataset, content-addressed version, USED edge."""
    ds = dataset_input.dataset
    name = (ds.name or "dataset").replace("@", "%40")[:500]  # "@" separates name and digest
    described = {"name": ds.name, "digest": ds.digest, "source_type": ds.source_type,
                 "source": ds.source}
    # MLflow's digest is a short hash of its own; ModelDB versions are sha256 over the same
    # description, so the same MLflow dataset is always the same ModelDB version.
    digest = "sha256:" + hashlib.sha256(
        json.dumps(described, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    version_id = f"{name}@{digest}"
    payload: dict[str, Any] = {"digest": digest, "uri": str(ds.source or "")[:_MAX_TEXT]}
    try:
        schema = json.loads(ds.schema) if ds.schema else None
    except ValueError:
        schema = None
    if isinstance(schema, dict):
        payload["schema"] = schema
    try:
        rows = json.loads(ds.profile).get("num_rows") if ds.profile else None
    except (ValueError, AttributeError):
        rows = None
    if isinstance(rows, int) and rows >= 0:
        payload["row_count"] = rows
    return [
        new_event("DatasetCreated", name, {"name": name}, source=SOURCE, occurred_at=at,
                  event_id=_uuid("DatasetCreated", name)),
        new_event("DatasetVersionCreated", name, payload, source=SOURCE, occurred_at=at,
                  event_id=_uuid("DatasetVersionCreated", version_id)),
        new_event("RunInputLogged", rid, {"kind": "DatasetVersion", "id": version_id, "name": name},
                  source=SOURCE, occurred_at=at, event_id=_uuid(mid, "RunInputLogged", version_id)),
    ]


def iter_events(tracking_uri: str, *, experiment: str | None = None,
                project: str = DEFAULT_PROJECT,
                progress: bool = True) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(what, events) per experiment and per run; parents before children within a page."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient
    from tqdm import tqdm

    client = MlflowClient(tracking_uri=tracking_uri)
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise LookupError(f"no MLflow experiment named {experiment!r} at {tracking_uri}")
        experiments = [found]
    else:
        experiments = client.search_experiments(view_type=ViewType.ALL)
    for exp in experiments:
        yield "experiment", experiment_events(project, exp.name)
        runs: list[Any] = []
        token: str | None = None
        while True:
            page = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL,
                                      max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                break
        # Parents first, so a reader following the import sees each parent before its child.
        runs.sort(key=lambda r: (bool(r.data.tags.get("mlflow.parentRunId")), r.info.start_time or 0))
        for run in tqdm(runs, desc=f"mlflow {exp.name}", unit="run", disable=not progress):
            yield "run", run_events(client, run, project, exp.name)


def import_mlflow(tracking_uri: str, send: Callable[[list[dict[str, Any]]], None], *,
                  experiment: str | None = None, project: str = DEFAULT_PROJECT,
                  batch_size: int = 2000, progress: bool = True) -> ImportResult:
    """Map and send everything; `send` gets batches of wire events (whole runs together)."""
    result, batch = ImportResult(), list[dict[str, Any]]()
    for what, events in iter_events(tracking_uri, experiment=experiment, project=project,
                                    progress=progress):
        result.experiments += what == "experiment"
        result.runs += what == "run"
        result.events += len(events)
        if batch and len(batch) + len(events) > batch_size:
            send(batch)
            batch = []
        batch.extend(events)
    if batch:
        send(batch)
    return result


def http_sender(url: str, timeout: float = 60.0) -> Callable[[list[dict[str, Any]]], None]:
    import httpx

    endpoint = url.rstrip("/") + "/api/v1/events"

    def send(events: list[dict[str, Any]]) -> None:
        # Big runs can exceed the writer's batch limit: split, never drop.
        for start in range(0, len(events), 5000):
            r = httpx.post(endpoint, json=events[start:start + 5000], timeout=timeout)
            if r.status_code >= 300:
                raise RuntimeError(f"{endpoint} answered {r.status_code}: {r.text[:2000]}")

    return send


def run_cli(args: argparse.Namespace) -> int:
    kwargs = {"experiment": args.experiment, "project": args.project,
              "progress": not args.no_progress}
    url = args.url if args.url is not None else (
        None if args.data_dir is not None else os.environ.get("MODELDB_URL"))
    if url and url.startswith(("http://", "https://")):
        result = import_mlflow(args.tracking_uri, http_sender(url), **kwargs)
    else:
        data_dir = Path(url) if url else args.data_dir
        result = asyncio.run(_import_embedded(args.tracking_uri, data_dir, kwargs))
    print(f"imported {result.runs} runs of {result.experiments} experiments "
          f"({result.events} events) from {args.tracking_uri}")
    return 0


async def _import_embedded(tracking_uri: str, data_dir: Path | None,
                           kwargs: dict[str, Any]) -> ImportResult:
    # Straight through the writer (like `modeldb serve` would), then bring projections up.
    from modeldb.infra.settings import Settings
    from modeldb.infra.system import System

    system = await System.open(Settings.load(data_dir))
    try:
        batches: list[list[dict[str, Any]]] = []
        result = await asyncio.to_thread(import_mlflow, tracking_uri, batches.append, **kwargs)
        for batch in batches:
            for start in range(0, len(batch), 5000):
                await system.writer.ingest(batch[start:start + 5000], "import:mlflow",
                                           governed=False)
        await system.catch_up()
    finally:
        await system.close()
    return result


def add_parsers(sub: Any, data_dir: Callable[[argparse.ArgumentParser], None]) -> None:
    """`modeldb import mlflow …` (called by modeldb.infra.cli.build_parser)."""
    imp = sub.add_parser("import", help="import runs from another tracking system")
    kinds = imp.add_subparsers(dest="source", required=True)
    p = kinds.add_parser("mlflow", help="MLflow experiments and runs (params, full metric "
                         "histories, tags, status, parents, input datasets)")
    p.add_argument("--tracking-uri", required=True, help="file store, sqlite:///…, or server URL")
    p.add_argument("--experiment", default=None, help="only this experiment (default: all)")
    p.add_argument("--project", default=DEFAULT_PROJECT, help="ModelDB project (default: mlflow)")
    p.add_argument("--url", default=None, help="ModelDB server http://host:port "
                   "(default $MODELDB_URL, else the embedded folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    data_dir(p)
    p.set_defaults(fn=run_cli)
