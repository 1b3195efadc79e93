"""The search projection: one text document per project, experiment, run, dataset,
registered model and model version (name, description, tags, params), indexed for
full-text search by the database itself.

- SQLite: an FTS5 table over `search_documents` (external content), kept in step by
  triggers, ranked with bm25.
- PostgreSQL: a generated `tsvector` column (`simple` configuration: no stemming, so
  identifiers such as `resnet50` or `lr` match as written) under a GIN index, ranked with
  ts_rank.

Both are created by migration 3 (`create_index`); the projection itself only upserts rows
of `search_documents`, the same statements on both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from modeldb.event_schema import Event, RecordedEvent
from modeldb.projectors.base import SqlProjection
from modeldb.projectors.db import in_keys, is_postgres, upsert_rows

metadata = MetaData()
BODY_MAX = 100_000  # characters of a document's body that are indexed
KINDS = ("Project", "Experiment", "Run", "Dataset", "RegisteredModel", "ModelVersion")

search_documents = Table(
    "search_documents",
    metadata,
    # INTEGER PRIMARY KEY on SQLite: the stable rowid the FTS5 index refers to.
    Column("doc_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("kind", String(20), nullable=False),
    Column("entity_id", String(700), nullable=False),
    # The project a project, experiment or run belongs to (NULL for the rest), so search
    # shows a caller only the projects they may read.
    Column("project", String(700)),
    Column("name", Text, nullable=False, default=""),
    Column("body", Text, nullable=False, default=""),  # description, tags, params as text
    Column("fields", Text, nullable=False, default="{}"),  # JSON: what `body` is made of
    Column("deleted", Boolean, nullable=False, default=False),
    Index("search_documents_by_entity", "kind", "entity_id", unique=True),
)

_SQLITE_INDEX = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5("
    " name, body, content='search_documents', content_rowid='doc_id',"
    " tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS search_documents_ai AFTER INSERT ON search_documents BEGIN"
    " INSERT INTO search_fts(rowid, name, body) VALUES (new.doc_id, new.name, new.body); END",
    "CREATE TRIGGER IF NOT EXISTS search_documents_ad AFTER DELETE ON search_documents BEGIN"
    " INSERT INTO search_fts(search_fts, rowid, name, body)"
    " VALUES ('delete', old.doc_id, old.name, old.body); END",
    "CREATE TRIGGER IF NOT EXISTS search_documents_au AFTER UPDATE ON search_documents BEGIN"
    " INSERT INTO search_fts(search_fts, rowid, name, body)"
    " VALUES ('delete', old.doc_id, old.name, old.body);"
    " INSERT INTO search_fts(rowid, name, body) VALUES (new.doc_id, new.name, new.body); END",
)
# What a rebuild on SQLite goes without (see SqlProjection.deferred_in_rebuild): the triggers
# that index one document at a time, and the index itself, then built in one pass over the
# documents ('rebuild'), several times faster than upserting each row through the triggers.
_SQLITE_TRIGGERS = ("search_documents_ai", "search_documents_ad", "search_documents_au")
_SQLITE_DEFERRED = (
    *((name, f"DROP TRIGGER IF EXISTS {name}", create)
      for name, create in zip(_SQLITE_TRIGGERS, _SQLITE_INDEX[1:], strict=True)),
    ("search_fts", "INSERT INTO search_fts(search_fts) VALUES ('delete-all')",
     "INSERT INTO search_fts(search_fts) VALUES ('rebuild')"),
)
_POSTGRES_INDEX = (
    "ALTER TABLE search_documents ADD COLUMN IF NOT EXISTS tsv tsvector GENERATED ALWAYS AS ("
    " setweight(to_tsvector('simple', name), 'A') || setweight(to_tsvector('simple', body), 'B')"
    ") STORED",
    "CREATE INDEX IF NOT EXISTS search_documents_tsv ON search_documents USING gin (tsv)",
)


async def create_index(conn: AsyncConnection) -> None:
    """Migration 3's half for search: the table and the engine's full-text index on it."""
    await conn.run_sync(lambda sync: metadata.create_all(sync, checkfirst=True))
    for statement in _POSTGRES_INDEX if is_postgres(conn) else _SQLITE_INDEX:
        await conn.exec_driver_sql(statement)


# -- folding events into documents -----------------------------------------------------------

_DROP = None  # a tag or param value of None in a pending change removes the key


@dataclass
class _Pending:
    """What one batch changes in one document."""

    fields: dict[str, Any] = field(default_factory=dict)  # name, description, parent …
    tags: dict[str, str | None] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    redacted: dict[str, dict[str, str]] = field(default_factory=dict)  # group → key → marker
    deleted: bool | None = None


Key = tuple[str, str]
Handler = Callable[[dict[Key, _Pending], Event], None]
HANDLERS: dict[str, Handler] = {}


def _on(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS.update(dict.fromkeys(names, fn))
        return fn

    return register


def _doc(docs: dict[Key, _Pending], kind: str, entity_id: str) -> _Pending:
    return docs.setdefault((kind, entity_id), _Pending())


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)


@_on("ProjectCreated", "DatasetCreated")
def _named(docs: dict[Key, _Pending], e: Event) -> None:
    kind = "Project" if e.type == "ProjectCreated" else "Dataset"
    doc = _doc(docs, kind, e.aggregate.id)
    doc.fields.update(name=e.payload.name, description=e.payload.description)  # type: ignore[attr-defined]
    doc.deleted = False


@_on("ExperimentCreated")
def _experiment(docs: dict[Key, _Pending], e: Event) -> None:
    p: Any = e.payload
    doc = _doc(docs, "Experiment", e.aggregate.id)
    doc.fields.update(name=p.name, description=p.description, project=p.project)
    doc.deleted = False


@_on("RunStarted")
def _run(docs: dict[Key, _Pending], e: Event) -> None:
    p: Any = e.payload
    doc = _doc(docs, "Run", e.aggregate.id)
    doc.fields.update(name=p.name or e.aggregate.id[-12:], project=p.project,
                      experiment=p.experiment)
    doc.deleted = False


@_on("ParamsLogged")
def _params(docs: dict[Key, _Pending], e: Event) -> None:
    doc = _doc(docs, "Run", e.aggregate.id)
    for key, value in e.payload.params.items():  # type: ignore[attr-defined]
        doc.params.setdefault(key, _text(value))  # params are immutable once set


@_on("TagsSet", "TagsDeleted")
def _tags(docs: dict[Key, _Pending], e: Event) -> None:
    doc = _doc(docs, "Run", e.aggregate.id)
    if e.type == "TagsSet":
        doc.tags.update(e.payload.tags)  # type: ignore[attr-defined]
    else:
        doc.tags.update(dict.fromkeys(e.payload.keys, _DROP))  # type: ignore[attr-defined]


@_on("RegisteredModelCreated", "RegisteredModelUpdated")
def _model(docs: dict[Key, _Pending], e: Event) -> None:
    p: Any = e.payload
    doc = _doc(docs, "RegisteredModel", e.aggregate.id)
    if e.type == "RegisteredModelCreated":
        doc.fields["name"] = p.name
        doc.deleted = False
    if p.description is not None:
        doc.fields["description"] = p.description
    if p.tags is not None:  # the model's whole tag set
        doc.fields["model_tags"] = dict(p.tags)


@_on("ModelVersionCreated")
def _model_version(docs: dict[Key, _Pending], e: Event) -> None:
    p: Any = e.payload
    doc = _doc(docs, "ModelVersion", f"{e.aggregate.id}/{p.version}")
    doc.fields.update(name=f"{e.aggregate.id} v{p.version}", description=p.description,
                      artifact=p.artifact_name or "")
    doc.deleted = False


@_on("ModelVersionStageChanged")
def _stage(docs: dict[Key, _Pending], e: Event) -> None:
    p: Any = e.payload
    _doc(docs, "ModelVersion", f"{e.aggregate.id}/{p.version}").fields["stage"] = p.stage


@_on("ValuesRedacted")
def _redacted(docs: dict[Key, _Pending], e: Event) -> None:
    # The values' keys are destroyed: what was indexed in clear must go too (as in the sql
    # projection, the value reads as a marker naming the digest the log keeps).
    from modeldb.event_schema.sensitive import split_path
    from modeldb.writer.vault import redacted_marker

    doc = _doc(docs, "Run", e.aggregate.id)
    for path, digest in e.payload.redacted.items():  # type: ignore[attr-defined]
        group, key = split_path(path)
        if group in ("params", "tags"):
            doc.redacted.setdefault(group, {})[key] = redacted_marker(digest)


@_on("ProjectDeleted", "ExperimentDeleted", "RunDeleted", "DatasetDeleted",
     "RegisteredModelDeleted", "ModelVersionDeleted")
def _deleted(docs: dict[Key, _Pending], e: Event) -> None:
    kind = e.type.removesuffix("Deleted")
    entity = e.aggregate.id
    if kind == "ModelVersion":
        entity = f"{entity}/{e.payload.version}"  # type: ignore[attr-defined]
    _doc(docs, kind, entity).deleted = True


def _merge(stored: dict[str, Any], pending: _Pending) -> dict[str, Any]:
    merged = {**stored, **pending.fields}
    tags = {**stored.get("tags", {}), **pending.tags}
    merged["tags"] = {k: v for k, v in tags.items() if v is not None}
    merged["params"] = {**pending.params, **stored.get("params", {})}  # the first one stays
    for group, markers in pending.redacted.items():  # a redaction overwrites even a param
        merged[group] = {**merged.get(group, {}), **markers}
    return merged


def _render(fields: dict[str, Any]) -> str:
    """The searchable body: description, `key value` per tag and param, then context (the
    project and experiment of a run, a model version's stage and artifact)."""
    parts = [str(fields.get("description") or "")]
    for group in ("tags", "params", "model_tags"):
        parts.extend(f"{k} {v}" for k, v in sorted(fields.get(group, {}).items()))
    parts.extend(str(fields.get(k) or "") for k in ("project", "experiment", "stage", "artifact"))
    # Capped: a tsvector holds at most 1 MB, and a run with thousands of long params must
    # not stop the projection; what is past the cap is not searchable.
    return " · ".join(p for p in parts if p)[:BODY_MAX]


_COLUMNS = ("kind", "entity_id", "project", "name", "body", "fields", "deleted")


class SearchProjection(SqlProjection):
    name = "search"
    metadata = metadata
    digest_ignores = frozenset({"doc_id"})  # a surrogate key: differs between builds
    rebuilds_without_indexes = True  # documents are read by (kind, entity_id), a unique index

    async def deferred_in_rebuild(self, conn: AsyncConnection) -> list[tuple[str, str, str]]:
        deferred = await super().deferred_in_rebuild(conn)  # PostgreSQL: the GIN index
        return deferred if is_postgres(conn) else [*deferred, *_SQLITE_DEFERRED]

    async def _unseen(self, conn: AsyncConnection, events: list[RecordedEvent]) -> list[RecordedEvent]:
        # Dedupe marks only for what this projection reads: metric points, the bulk of the
        # log, are not indexed.
        return await super()._unseen(conn, [e for e in events if e.raw["type"] in HANDLERS])

    async def apply_events(self, conn: AsyncConnection, events: list[RecordedEvent]) -> None:
        docs: dict[Key, _Pending] = {}
        for recorded in events:
            handler = HANDLERS.get(recorded.raw["type"])  # skip decoding what is not indexed
            if handler is not None:
                handler(docs, recorded.event)
        if not docs:
            return
        stored = await self._stored(conn, list(docs))
        rows = []
        for (kind, entity_id), pending in docs.items():
            before = stored.get((kind, entity_id))
            fields = _merge(orjson.loads(before.fields) if before else {}, pending)
            deleted = pending.deleted if pending.deleted is not None else bool(
                before and before.deleted)
            project = entity_id if kind == "Project" else fields.get("project")
            rows.append((kind, entity_id, project, str(fields.get("name") or ""), _render(fields),
                         orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode(), deleted))
        await upsert_rows(conn, search_documents, _COLUMNS, rows, _COLUMNS[:2], _COLUMNS[2:])
        if not is_postgres(conn) and any(r.raw["type"] == "ValuesRedacted" for r in events):
            # FTS5 deletes leave the old terms in their segments until a merge: merge now, so
            # no redacted value survives in the index.
            await conn.exec_driver_sql("INSERT INTO search_fts(search_fts) VALUES ('optimize')")

    async def _stored(self, conn: AsyncConnection, keys: list[Key]) -> dict[Key, Any]:
        t = search_documents
        found: dict[Key, Any] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = await conn.execute(select(t.c.kind, t.c.entity_id, t.c.fields, t.c.deleted)
                                      .where(in_keys((t.c.kind, t.c.entity_id), chunk)))
            found.update({(r.kind, r.entity_id): r for r in rows})
        return found
