"""Hostile input: random bodies on the ingest route never make a 5xx, random filter strings
raise FilterError or parse, artifact paths cannot leave the store, oversized or deep
GraphQL is refused, and error answers carry no stack trace. Bounded for CI (a few hundred
examples, in-process on the real app and an embedded store)."""

from __future__ import annotations

import contextlib
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeldb.event_schema import uuid7
from modeldb.infra.server import create_app
from modeldb.infra.settings import Settings
from modeldb.query_api.filters import FilterError, parse_filter, parse_order_by
from modeldb.query_api.sql_filters import compile_filter
from tests.helpers import run_events, wire

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings_ = Settings.load(tmp_path_factory.mktemp("hostile") / "home")
    # raise_server_exceptions: an exception in a route fails the test, not just a 500
    with TestClient(create_app(settings_), raise_server_exceptions=True) as c:
        yield c


def _event_like(draw: Any) -> dict[str, Any]:
    """A real event with some of its fields replaced by random JSON: reaches the deeper
    validation (payload models, envelopes) rather than stopping at "not an array"."""
    event = wire(run_events(uuid7(), metrics={"loss": [0.5]}))[draw(st.integers(0, 2))]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from([("type",), ("aggregate",), ("payload",), ("event_id",),
                                     ("occurred_at",), ("schema_version",), ("aggregate", "id"),
                                     ("payload", "points"), ("payload", "project"),
                                     ("payload", "start_time"), ("extra",)]))
        target = event
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                break
            target = target[key]
        else:
            target[path[-1]] = draw(JSON)
    return event


@st.composite
def bodies(draw: Any) -> bytes:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return _dumps(draw(JSON))
    if choice == 1:
        return _dumps([_event_like(draw) for _ in range(draw(st.integers(1, 3)))])
    if choice == 2:
        return b"\n".join(_dumps(_event_like(draw)) for _ in range(draw(st.integers(1, 3))))
    return draw(st.binary(max_size=200))


def _dumps(value: Any) -> bytes:
    import json

    return json.dumps(value, allow_nan=True).encode()  # NaN and Infinity as Python writes them


@FUZZ
@given(body=bodies())
def test_random_ingest_bodies_never_make_a_server_error(client: TestClient, body: bytes) -> None:
    r = client.post("/api/v1/events", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (202, 400, 413, 422), r.text
    assert "Traceback" not in r.text and 'File "' not in r.text


@FUZZ
@given(body=bodies())
def test_random_lineage_bodies_never_make_a_server_error(client: TestClient, body: bytes) -> None:
    r = client.post("/api/v1/lineage", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (201, 400, 413, 422), r.text


FILTER_ALPHABET = string.ascii_letters + string.digits + " .=<>!'\"()_-*%,`" + "é\\\x00"
FILTER_WORDS = st.sampled_from(["metrics.loss", "params.lr", "tags.team", "attributes.status",
                                "AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "IS", "NULL", "=",
                                "!=", "<", ">=", "'x'", "0.5", "(", ")", ",", "`a b`", "min(",
                                "metrics.", "1e309", "-", "'"])


@settings(max_examples=400, deadline=None)
@given(text=st.text(alphabet=FILTER_ALPHABET, max_size=60)
       | st.lists(FILTER_WORDS, max_size=12).map(" ".join))
def test_the_filter_parser_raises_filter_error_or_parses(text: str) -> None:
    try:
        node = parse_filter(text)
    except FilterError:
        return
    compile_filter(node)  # whatever parses also compiles to SQL


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.text(alphabet=FILTER_ALPHABET, max_size=30), max_size=4))
def test_order_by_raises_filter_error_or_parses(keys: list[str]) -> None:
    with contextlib.suppress(FilterError):
        parse_order_by(keys)


ESCAPES = ["..%2F..%2Fetc%2Fpasswd", "sha256:..%2F..%2Fserver.key", "sha256:" + "..%2F" * 20,
           "sha256:%2E%2E%2F%2E%2E%2Fserver.key", "%2Fetc%2Fpasswd", "sha256:" + "g" * 64]


@pytest.mark.parametrize("path", ESCAPES)
def test_artifact_paths_cannot_escape_the_store(client: TestClient, path: str) -> None:
    r = client.get(f"/api/v1/artifacts/{path}")
    assert r.status_code in (400, 404)
    assert b"root:" not in r.content and len(r.content) < 500


def test_expensive_graphql_is_refused(client: TestClient) -> None:
    deep = "{ runs { edges { node { parent { parent { parent { parent { parent { parent { parent " \
           "{ parent { parent { parent { parent { id } } } } } } } } } } } } } } }"
    body = client.post("/graphql", json={"query": deep}).json()
    assert body["errors"] and "depth" in body["errors"][0]["message"].lower()
    aliases = "{ " + " ".join(f"a{i}: runs {{ totalCount }}" for i in range(40)) + " }"
    assert client.post("/graphql", json={"query": aliases}).json()["errors"]
    big = "{ " + " ".join("projects { name }" for _ in range(2000)) + " }"
    assert client.post("/graphql", json={"query": big}).json()["errors"]


def test_oversized_and_invalid_bodies_are_clear_4xx(client: TestClient, tmp_path: Path) -> None:
    huge = b"[" + b"1," * (17 * 1024 * 1024) + b"1]"
    r = client.post("/api/v1/events", content=huge)
    assert r.status_code == 413 and "exceeds" in r.json()["error"]
    r = client.post("/api/v1/registry/commands", content=b"{not json")
    assert r.status_code == 400
    nan = wire(run_events(uuid7(), metrics={"loss": [float("nan"), float("inf")]}))
    r = client.post("/api/v1/events", content=_dumps(nan))
    assert r.status_code == 202  # NaN and infinities are metric values users log (and read as null)
