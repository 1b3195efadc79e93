"""Full-text search over the search projection (projectors/search.py): `search(text)`.

The user's text never becomes SQL or query syntax: it is cut into whitespace-separated
words, each passed to the engine as a literal (an FTS5 string on SQLite, a
`plainto_tsquery` on PostgreSQL) in a bound parameter. Words match whole tokens, except
the last, which also matches as a prefix ("ran" finds "random-forest"), for a search box
that answers while the user types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import strawberry
from sqlalchemy import String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.types import Info

from modeldb.projectors.db import is_postgres
from modeldb.projectors.search import KINDS

MAX_HITS = 200
MAX_WORDS = 32
_WORD = re.compile(r"[^\W_]", re.UNICODE)  # does a chunk hold anything a tokenizer keeps?
_PLAIN = re.compile(r"[^\W_]+", re.UNICODE)  # a chunk that is one token (prefix-able)


class SearchError(ValueError):
    pass


@dataclass(frozen=True)
class Hit:
    kind: str
    id: str
    name: str
    snippet: str
    score: float


def words(query: str) -> list[str]:
    """The whitespace-separated words of `query` that contain something searchable."""
    return [w for w in query.split() if _WORD.search(w)][:MAX_WORDS]


def fts5_query(chunks: list[str]) -> str:
    """An FTS5 MATCH expression: each word a quoted string (a literal phrase: operators,
    colons, stars and parentheses inside it mean nothing), all required, the last one
    also as a prefix."""
    quoted = ['"' + w.replace('"', '""') + '"' for w in chunks]
    return " ".join(quoted) + "*"


_SQLITE = """
SELECT d.kind, d.entity_id, d.name,
       snippet(search_fts, 1, '**', '**', '…', 12) AS snippet,
       -bm25(search_fts, 10.0, 1.0) AS score
FROM search_fts JOIN search_documents d ON d.doc_id = search_fts.rowid
WHERE search_fts MATCH :query AND d.deleted = 0 {kinds} {visible}
ORDER BY bm25(search_fts, 10.0, 1.0), d.doc_id
LIMIT :first
"""

# Ranked in the subquery; ts_headline (costly) runs for the returned rows only.
_POSTGRES = """
SELECT top.kind, top.entity_id, top.name, top.score,
       ts_headline('simple', top.body, top.query,
                   'StartSel=**, StopSel=**, MaxWords=20, MinWords=6, MaxFragments=1') AS snippet
FROM (
  SELECT d.kind, d.entity_id, d.name, d.body, q.query, ts_rank(d.tsv, q.query) AS score, d.doc_id
  FROM search_documents d,
       (SELECT plainto_tsquery('simple', :head) && to_tsquery('simple', :last) AS query) q
  WHERE d.tsv @@ q.query AND NOT d.deleted {kinds} {visible}
  ORDER BY score DESC, d.doc_id
  LIMIT :first
) top
ORDER BY top.score DESC, top.doc_id
"""


def _postgres_terms(chunks: list[str]) -> tuple[str, str]:
    """(plain text for plainto_tsquery, a to_tsquery term for the last word). The last word
    becomes a prefix term only when it is one plain token, which is then safe to quote."""
    last = chunks[-1]
    if _PLAIN.fullmatch(last):
        return " ".join(chunks[:-1]), f"'{last}':*"
    return " ".join(chunks), ""


async def search(engine: AsyncEngine, query: str, kinds: list[str] | None = None,
                 first: int = 20, visible: frozenset[str] | None = None) -> list[Hit]:
    """The best `first` hits; `visible`: the projects the caller may read (None: all), so
    projects, experiments and runs elsewhere are not found."""
    unknown = sorted(set(kinds or ()) - set(KINDS))
    if unknown:
        raise SearchError(f"unknown kind {', '.join(map(repr, unknown))}; kinds are "
                          f"{', '.join(KINDS)}")
    chunks = words(query)
    first = max(0, min(first, MAX_HITS))
    if not chunks or not first:
        return []
    params: dict[str, Any] = {"first": first}
    pg = is_postgres(engine)
    clauses = {"kinds": "AND d.kind IN :kinds" if kinds else "",
               "visible": "AND (d.project IS NULL OR d.project IN :visible)"
               if visible is not None else ""}
    if pg:
        sql = _POSTGRES.format(**clauses)
        params["head"], params["last"] = _postgres_terms(chunks)
    else:
        sql = _SQLITE.format(**clauses)
        params["query"] = fts5_query(chunks)
    statement = text(sql)
    if kinds:
        params["kinds"] = list(kinds)
        statement = statement.bindparams(bindparam("kinds", expanding=True, type_=String()))
    if visible is not None:
        params["visible"] = sorted(visible)
        statement = statement.bindparams(bindparam("visible", expanding=True, type_=String()))
    async with engine.connect() as conn:
        rows = await conn.execute(statement, params)
        return [Hit(kind=r.kind, id=r.entity_id, name=r.name, snippet=r.snippet or "",
                    score=float(r.score)) for r in rows]


@strawberry.type
class SearchHit:
    kind: str = strawberry.field(description="Project, Experiment, Run, Dataset, "
                                 "RegisteredModel or ModelVersion")
    id: strawberry.ID = strawberry.field(description="the entity's id: a run id, a project, "
                                         "dataset or model name, `project/experiment`, "
                                         "`model/version`")
    name: str | None
    snippet: str | None = strawberry.field(description="matching text, matches in **…**")
    score: float = strawberry.field(description="relevance, higher is better (bm25 on "
                                    "SQLite, ts_rank on PostgreSQL: not comparable across them)")


@strawberry.type
class SearchQuery:
    @strawberry.field(description="Full-text search over names, descriptions, tags and params "
                      "of projects, experiments, runs, datasets, registered models and model "
                      "versions; every word must match, the last one also as a prefix.")
    async def search(self, info: Info, text: str, kinds: list[str] | None = None,
                     first: int | None = 20) -> list[SearchHit]:
        queries = info.context["loaders"].queries
        hits = await search(queries.engine, text, kinds, 20 if first is None else first,
                            getattr(queries, "visible", None))
        return [SearchHit(kind=h.kind, id=strawberry.ID(h.id), name=h.name or None,
                          snippet=h.snippet or None, score=h.score) for h in hits]
