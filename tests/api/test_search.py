"""Full-text search (the search projection and the `search` GraphQL field), on both stacks:
FTS5 on SQLite, a tsvector under a GIN index on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from modeldb.event_schema import new_event
from modeldb.infra.system import System
from modeldb.projectors import read_model as rm
from modeldb.query_api.app import build_schema, graphql_context
from modeldb.query_api.runs import RunQueries
from modeldb.query_api.search import search
from tests.helpers import every_event_type, run_events, seen_while_rebuilding, wire

SEARCH = """query($t: String!, $k: [String!], $n: Int!) {
  search(text: $t, kinds: $k, first: $n) { kind id name snippet score } }"""


async def gql(system: System, query: str, **variables: Any) -> Any:
    return await build_schema().execute(
        query, variable_values=variables,
        context_value=graphql_context(RunQueries(system.engine), system.graph, system.audit))


async def hits(system: System, text: str, kinds: list[str] | None = None) -> list[dict[str, Any]]:
    result = await gql(system, SEARCH, t=text, k=kinds, n=20)
    assert not result.errors, result.errors
    return result.data["search"]


def ids(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(h["kind"], h["id"]) for h in found]


@pytest.fixture
async def corpus(system: System) -> System:
    events = [
        new_event("ProjectCreated", "vision", {"name": "vision", "description": "image models"}),
        new_event("ExperimentCreated", "vision/tuning", {"project": "vision", "name": "tuning",
                                                         "description": "sweeps of the forest"}),
        *run_events("run-forest", project="vision", experiment="tuning",
                    name="random-forest-baseline",
                    params={"learning_rate": 0.01, "backbone": "resnet-50"},
                    tags={"team": "perception", "note": "it's the baseline"}),
        *run_events("run-boost", project="vision", experiment="tuning", name="xgb-boost",
                    params={"learning_rate": 0.3}, tags={"team": "ranking",
                                                         "about": "gradient boosting forest"}),
        *every_event_type(),  # datasets (iris: "flowers"), model "clf" ("iris classifier")
    ]
    await system.writer.ingest(wire(events), "tester")
    await system.catch_up()
    return system


async def test_search_finds_each_kind_by_name_description_tags_and_params(corpus: System) -> None:
    assert ids(await hits(corpus, "perception")) == [("Run", "run-forest")]  # a tag value
    assert ids(await hits(corpus, "resnet-50")) == [("Run", "run-forest")]  # a param value
    assert ids(await hits(corpus, "learning_rate 0.3")) == [("Run", "run-boost")]  # key + value
    assert ids(await hits(corpus, "flowers")) == [("Dataset", "iris")]  # a description
    assert ids(await hits(corpus, "image models")) == [("Project", "vision")]
    assert set(ids(await hits(corpus, "clf"))) == {("RegisteredModel", "clf"),
                                                    ("ModelVersion", "clf/1")}
    # every word must match
    assert await hits(corpus, "perception ranking") == []
    found = await hits(corpus, "perception")
    assert found[0]["name"] == "random-forest-baseline" and found[0]["score"] > 0
    assert "**perception**" in found[0]["snippet"]


async def test_search_ranks_name_matches_first_and_filters_kinds(corpus: System) -> None:
    found = await hits(corpus, "forest")
    # In a name (random-forest-baseline) beats in a tag (gradient boosting forest) or in an
    # experiment's description.
    assert found[0]["id"] == "run-forest"
    assert {("Run", "run-boost"), ("Experiment", "vision/tuning")} <= set(ids(found))
    assert [h["score"] for h in found] == sorted((h["score"] for h in found), reverse=True)
    assert ids(await hits(corpus, "forest", ["Experiment"])) == [("Experiment", "vision/tuning")]
    assert {k for k, _ in ids(await hits(corpus, "forest", ["Run", "Dataset"]))} == {"Run"}


async def test_the_last_word_matches_as_a_prefix(corpus: System) -> None:
    assert ids(await hits(corpus, "rand")) == [("Run", "run-forest")]
    assert ids(await hits(corpus, "gradient boo")) == [("Run", "run-boost")]
    assert ids(await hits(corpus, "random baseli")) == ids(await hits(corpus, "random baseline"))
    assert ids(await hits(corpus, "random baseli")) == [("Run", "run-forest")]
    assert await hits(corpus, "boo gradient") == []  # only the last word is a prefix


HOSTILE = ['"foo AND (bar* OR -x) NEAR:', "'; DROP TABLE runs; --", "*", "NOT", "AND OR", ":*",
           "a:b", "\\", '"', "team:perception", "(", "^forest", "forest -", "!&|", "ñandú é",
           "forest:*", "forest'", "x" * 300, " ".join(["forest"] * 100)]


async def test_user_text_is_never_query_syntax(corpus: System) -> None:
    for text in HOSTILE:
        result = await gql(corpus, SEARCH, t=text, k=None, n=5)
        assert not result.errors, (text, result.errors)
    async with corpus.engine.connect() as conn:  # and nothing happened to the data
        assert await conn.scalar(select(func.count()).select_from(rm.runs)) == 4


async def test_quotes_and_operators_in_text_are_searched_as_words(corpus: System) -> None:
    assert ids(await hits(corpus, "it's")) == [("Run", "run-forest")]
    assert ids(await hits(corpus, '"perception"')) == [("Run", "run-forest")]
    assert ids(await hits(corpus, "perception OR")) == []  # OR is a word here, not an operator
    assert await hits(corpus, "") == [] and await hits(corpus, " - ") == []


async def test_bad_arguments_get_clear_errors(corpus: System) -> None:
    result = await gql(corpus, SEARCH, t="forest", k=["Run", "Spaceship"], n=5)
    assert result.errors and "unknown kind 'Spaceship'" in result.errors[0].message
    assert await search(corpus.engine, "forest", first=-3) == []
    assert len(await search(corpus.engine, "forest", first=10_000)) <= 200


async def test_search_follows_changes_deletions_and_rebuilds_equal(corpus: System) -> None:
    await corpus.writer.ingest(wire([
        new_event("TagsDeleted", "run-forest", {"keys": ["team"]}),
        new_event("TagsSet", "run-boost", {"tags": {"team": "perception"}}),
        new_event("RunDeleted", "run-forest", {}),
        new_event("ParamsLogged", "run-boost", {"params": {"learning_rate": 99}}),  # immutable
    ]), "tester")
    await corpus.catch_up()
    assert ids(await hits(corpus, "perception")) == [("Run", "run-boost")]
    assert await hits(corpus, "rand") == []  # deleted runs are not found
    assert ids(await hits(corpus, "learning_rate 0.3")) == [("Run", "run-boost")]
    assert await hits(corpus, "99") == []
    incremental = await corpus.projections["search"].digest()
    await corpus.runtimes["search"].rebuild()
    assert await corpus.projections["search"].digest() == incremental
    assert ids(await hits(corpus, "perception")) == [("Run", "run-boost")]


async def _full_text_index(system: System) -> list[str]:
    """The structures that keep the full-text index in step with the documents."""
    async with system.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            found = await conn.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'search_documents'"
                " AND indexname = 'search_documents_tsv'")
        else:
            found = await conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                " AND tbl_name = 'search_documents' ORDER BY name")
        return [row[0] for row in found]


async def test_a_rebuild_indexes_the_documents_once_at_its_end(corpus: System) -> None:
    """Rebuilt without its full-text index (SQLite: the per-row triggers; PostgreSQL: the GIN
    index), then indexed in one pass: found as before, and kept in step afterwards."""
    before = await _full_text_index(corpus)
    assert before
    during = await seen_while_rebuilding(corpus, "search", lambda: _full_text_index(corpus))
    assert during and all(found == [] for found in during)
    assert await _full_text_index(corpus) == before
    assert ids(await hits(corpus, "perception")) == [("Run", "run-forest")]
    assert ids(await hits(corpus, "flowers")) == [("Dataset", "iris")]
    await corpus.writer.ingest(wire([new_event("TagsSet", "run-boost", {"tags": {"x": "glacier"}})]),
                               "tester")
    await corpus.catch_up()
    assert ids(await hits(corpus, "glacier")) == [("Run", "run-boost")]


async def test_search_shows_only_the_projects_a_caller_may_read(corpus: System) -> None:
    assert await search(corpus.engine, "perception", visible=frozenset({"p"})) == []
    found = await search(corpus.engine, "perception", visible=frozenset({"vision"}))
    assert [h.id for h in found] == ["run-forest"]
    # datasets and models belong to no project
    assert [h.id for h in await search(corpus.engine, "flowers", visible=frozenset())] == ["iris"]


async def test_huge_documents_are_indexed_up_to_a_cap(system: System) -> None:
    # ~180 kB of params: past what a tsvector may hold, the rest is not indexed, and the
    # projection goes on.
    params = {f"k{i:03d}": f"w{i:03d}x " * 90 for i in range(400)}
    await system.writer.ingest(wire(run_events("big", name="enormous-run", params=params)),
                               "tester")
    await system.catch_up()
    assert ids(await hits(system, "enormous")) == [("Run", "big")]
    assert ids(await hits(system, "w001x")) == [("Run", "big")]  # early: indexed
    assert await hits(system, "w399x") == []  # past the cap
