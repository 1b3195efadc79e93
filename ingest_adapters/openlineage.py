"""OpenLineage RunEvents → ModelDB events (POST /api/v1/lineage).

The official `openlineage-python` client's HTTP transport posts one RunEvent per request to
`<url>/api/v1/lineage`; the route in `modeldb.writer.http` hands the body here and appends
what comes back through the writer's ingest. This module depends only on `event_schema`
(no SDK, no I/O), so the writer can use it without pulling in the client.

Mapping:
- job namespace → project (``openlineage`` when empty), job name → experiment;
- `run.runId` → the run id (kept as is when it is a UUID, else uuid5 of it);
- START → RunStarted; COMPLETE/FAIL/ABORT → RunFinished FINISHED/FAILED/KILLED;
  RUNNING/OTHER (and every event) → attributes, facets verbatim as JSON text;
- input/output datasets → DatasetCreated + DatasetVersionCreated (content-addressed over
  namespace, name and facets) + RunInputLogged/RunOutputLogged.

Every event id is a uuid5 over what the event states (run, type, OpenLineage event time,
dataset version...), so posting the same OpenLineage event twice appends nothing new on the
SQLite log and nothing the projections do not already have on Kafka.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

from modeldb.event_schema.codec import to_wire
from modeldb.event_schema.envelope import new_event

SOURCE = "openlineage"
DEFAULT_PROJECT = "openlineage"
# Fixed namespace for every id this adapter derives: the same input always gives the same id.
NAMESPACE = uuid.UUID("0b6f3a52-5d0c-5a8e-9a55-6f70656e6c6e")
_FINISHED = {"COMPLETE": "FINISHED", "FAIL": "FAILED", "ABORT": "KILLED"}
MAX_INFLATED = 32 * 1024 * 1024
_EVENT_TYPES = {"START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER"}


class MalformedLineage(ValueError):
    """The body is not an OpenLineage RunEvent (or an array of them); the message says why."""


def decode_body(body: bytes, content_encoding: str | None = None) -> list[dict[str, Any]]:
    """One RunEvent or a JSON array of them; gzip/deflate bodies (the client's `compression`
    option) are accepted too."""
    encoding = (content_encoding or "").lower()
    if encoding in {"gzip", "deflate"} or body[:2] == b"\x1f\x8b":
        # wbits 47 reads gzip or zlib headers; the output is capped so a small compressed
        # body cannot expand past what the route would accept uncompressed.
        inflater = zlib.decompressobj(wbits=47)
        try:
            body = inflater.decompress(body, MAX_INFLATED)
        except zlib.error as exc:
            raise MalformedLineage(f"cannot decompress body: {exc}") from None
        if inflater.unconsumed_tail:
            raise MalformedLineage(f"decompressed body exceeds {MAX_INFLATED} bytes")
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedLineage(f"malformed JSON: {exc}") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items:
        raise MalformedLineage("empty array: expected at least one OpenLineage RunEvent")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise MalformedLineage(f"item {i}: expected a JSON object (an OpenLineage RunEvent)")
    return items


def _uuid(*parts: Any) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(str(p) for p in parts)))


def _canonical(value: Any) -> str:
    # Sorted keys, no whitespace: the same facets in any key order give the same bytes.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _strip_meta(value: Any) -> Any:
    """Facets without `_producer`/`_schemaURL`/`_deleted`: those say who wrote the facet, not
    what the data is, so a client upgrade must not make a new dataset version."""
    if isinstance(value, dict):
        return {k: _strip_meta(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_strip_meta(v) for v in value]
    return value


def run_id_of(ol_run_id: str) -> str:
    """OpenLineage runIds are UUIDs (v7 by the client): keep them, so both systems share
    one id; anything else is hashed into a stable UUID."""
    try:
        return str(uuid.UUID(ol_run_id))
    except ValueError:
        return _uuid("run", ol_run_id)


def _parse_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedLineage(f"{where}: eventTime must be an ISO 8601 string")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedLineage(f"{where}: eventTime {value!r} is not ISO 8601") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _req_str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedLineage(f"{where}: {key} must be a non-empty string")
    return value


def _facets(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj.get(key) or {}
    if not isinstance(value, dict):
        raise MalformedLineage(f"{where}: {key} must be an object")
    return value


def dataset_version_of(dataset: dict[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    """(dataset name, version id, DatasetVersionCreated payload) of one OpenLineage dataset."""
    namespace = _req_str(dataset, "namespace", where)
    name = _req_str(dataset, "name", where)
    facets = _facets(dataset, "facets", where)
    # The version is content-addressed over what identifies the data and its state.
    state = {"namespace": namespace, "name": name, "facets": _strip_meta(facets)}
    digest = "sha256:" + hashlib.sha256(_canonical(state).encode()).hexdigest()
    # "@" separates dataset and digest in version ids (modeldb.event_schema.nodes), so a
    # namespace such as "postgres://user@host" has it escaped.
    dataset_name = f"{namespace}/{name}".replace("@", "%40")[:500]
    payload: dict[str, Any] = {"digest": digest, "uri": dataset_name}
    schema = facets.get("schema")
    if isinstance(schema, dict) and isinstance(schema.get("fields"), list):
        payload["schema"] = {"fields": _strip_meta(schema["fields"])}
    stats = _facets(dataset, "outputFacets", where).get("outputStatistics")
    if isinstance(stats, dict) and isinstance(stats.get("rowCount"), int) and stats["rowCount"] >= 0:
        payload["row_count"] = stats["rowCount"]
    return dataset_name, f"{dataset_name}@{digest}", payload


def map_run_event(ol: dict[str, Any], index: int = 0) -> list[dict[str, Any]]:
    """The ModelDB events (wire form) one OpenLineage RunEvent stands for."""
    where = f"item {index}"
    event_type = ol.get("eventType") or "OTHER"  # the spec makes eventType optional
    if event_type not in _EVENT_TYPES:
        raise MalformedLineage(f"{where}: eventType {event_type!r} is not one of "
                               f"{', '.join(sorted(_EVENT_TYPES))}")
    at = _parse_time(ol.get("eventTime"), where)
    run, job = ol.get("run"), ol.get("job")
    if not isinstance(run, dict) or not isinstance(job, dict):
        raise MalformedLineage(f"{where}: run and job must be objects (is this a RunEvent?)")
    ol_run_id = _req_str(run, "runId", f"{where}.run")
    job_namespace = _req_str(job, "namespace", f"{where}.job")
    job_name = _req_str(job, "name", f"{where}.job")
    run_facets = _facets(run, "facets", f"{where}.run")
    job_facets = _facets(job, "facets", f"{where}.job")
    inputs, outputs = ol.get("inputs") or [], ol.get("outputs") or []
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise MalformedLineage(f"{where}: inputs and outputs must be arrays")

    run_id = run_id_of(ol_run_id)
    project = job_namespace[:500] or DEFAULT_PROJECT
    experiment = job_name[:500]
    # Identity of this OpenLineage event: ids below derived from it repeat on a re-post.
    ident = (ol_run_id, event_type, ol.get("eventTime"))
    out: list[Any] = []

    def emit(type_: str, aggregate: str, payload: dict[str, Any], *key: Any) -> None:
        out.append(new_event(type_, aggregate, payload, source=SOURCE, occurred_at=at,
                             event_id=_uuid(type_, aggregate, *key)))

    emit("ProjectCreated", project, {"name": project})
    emit("ExperimentCreated", f"{project}/{experiment}", {"project": project, "name": experiment})
    parent = run_facets.get("parent")
    parent_id = None
    if isinstance(parent, dict) and isinstance(parent.get("run"), dict) \
            and isinstance(parent["run"].get("runId"), str):
        parent_id = run_id_of(parent["run"]["runId"])
    # One RunStarted per run, whichever event arrives first (a COMPLETE without a START
    # still makes a run): its id depends on the run only, so later copies are duplicates.
    started: dict[str, Any] = {"project": project, "experiment": experiment, "name": job_name[:500],
                               "start_time": at}
    if parent_id and parent_id != run_id:
        started["parent_run_id"] = parent_id
    emit("RunStarted", run_id, started)

    attributes: dict[str, Any] = {
        "openlineage.job.namespace": job_namespace,
        "openlineage.job.name": job_name,
        "openlineage.runId": ol_run_id,
        f"openlineage.event.{event_type}": at.isoformat(),
    }
    if isinstance(ol.get("producer"), str):
        attributes["openlineage.producer"] = ol["producer"]
    if event_type in {"RUNNING", "OTHER"}:
        attributes["openlineage.eventType"] = event_type
    # Facets kept verbatim (any facet, known or not) as JSON text.
    for name, facet in run_facets.items():
        attributes[f"openlineage.facets.{name}"[:250]] = _canonical(facet)
    for name, facet in job_facets.items():
        attributes[f"openlineage.job.facets.{name}"[:250]] = _canonical(facet)
    emit("AttributesSet", run_id, {"attributes": attributes}, *ident)

    for kind, datasets in (("RunInputLogged", inputs), ("RunOutputLogged", outputs)):
        for i, dataset in enumerate(datasets):
            dwhere = f"{where}.{'inputs' if kind == 'RunInputLogged' else 'outputs'}[{i}]"
            if not isinstance(dataset, dict):
                raise MalformedLineage(f"{dwhere}: expected a dataset object")
            name, version_id, payload = dataset_version_of(dataset, dwhere)
            emit("DatasetCreated", name, {"name": name})
            emit("DatasetVersionCreated", name, payload, version_id)
            # Keyed by run and version, not by event: START and COMPLETE naming the same
            # dataset state make one edge, not two.
            emit(kind, run_id, {"kind": "DatasetVersion", "id": version_id, "name": name},
                 version_id)

    if event_type in _FINISHED:
        # After the links, so a reader seeing the run finished also sees its lineage.
        emit("RunFinished", run_id, {"status": _FINISHED[event_type], "end_time": at})
    return [to_wire(e) for e in out]


def map_body(body: bytes, content_encoding: str | None = None) -> list[dict[str, Any]]:
    """Every ModelDB event a POST /api/v1/lineage body stands for; MalformedLineage if bad."""
    from pydantic import ValidationError

    events: list[dict[str, Any]] = []
    for i, item in enumerate(decode_body(body, content_encoding)):
        try:
            events.extend(map_run_event(item, i))
        except ValidationError as exc:  # a value out of the event schema's limits
            raise MalformedLineage(f"item {i}: {exc.errors()[0].get('msg')} "
                                   f"at {exc.errors()[0].get('loc')}") from None
    # Events of one body repeat what they share (project, RunStarted, dataset versions):
    # send each id once, so a Kafka log does not even get duplicates to skip.
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        unique.setdefault(event["event_id"], event)
    return list(unique.values())
