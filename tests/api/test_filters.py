"""The filter language: the parser's error table, precedence and quoting, and a property
test — random runs logged into a real stack, random filters drawn from the grammar, and the
SQL the filters compile to must select exactly the runs a plain Python evaluator selects."""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from modeldb.infra.settings import Settings
from modeldb.infra.system import System
from modeldb.projectors.read_model import PREFIX
from modeldb.projectors.sql_projection import as_number, as_text
from modeldb.query_api.filters import BoolOp, Compare, Field, FilterError, Node, Not, parse_filter
from modeldb.query_api.runs import RunQueries
from modeldb.query_api.sql_filters import compile_filter
from tests.helpers import T0, run_events, wire

# -- the parser's error table ----------------------------------------------------------------

A_FIELD = "expected a field such as metrics.acc, params.lr, tags.team or attributes.status"


@pytest.mark.parametrize(("text", "message"), [
    ("metrics.acc >", "column 14: expected a value after '>', found end of filter"),
    ("metrics.acc > 1 and", f"column 20: {A_FIELD}, found end of filter"),
    ("and metrics.acc > 1", f"column 1: {A_FIELD}, found 'and'"),
    ("metrics.acc > 1 or or metrics.acc < 0", f"column 20: {A_FIELD}, found 'or'"),
    ("not", f"column 4: {A_FIELD}, found end of filter"),
    ("()", f"column 2: {A_FIELD}, found ')'"),
    # operators
    ("metrics.acc >> 1", "column 14: expected a value after '>', found '>'"),
    ("params.lr == 1", "column 12: expected a value after '=', found '='"),
    ("params.lr =< 1", "column 12: expected a value after '=', found '<'"),
    ("params.lr ! 1", "column 11: unexpected character '!'"),
    ("params.lr not = 1", "column 15: expected 'in', 'like' or 'ilike' after 'not', found '='"),
    ("params.lr is nul", "column 14: expected 'null', found 'nul'"),
    ("params.lr is not", "column 17: expected 'null', found end of filter"),
    ("params.lr = null", "column 13: compare with null using 'is null' or 'is not null'"),
    ("params.lr in 1", "column 14: expected '(' after 'in', found '1'"),
    ("params.lr in (1 2)", "column 17: expected ',' or ')', found '2'"),
    ("params.lr in ()", "column 15: expected a value after '(', found ')'"),
    ("params.lr in (1,)", "column 17: expected a value after ',', found ')'"),
    ("tags.t like 5", "column 13: expected a quoted pattern after 'like', found '5'"),
    ("tags.t not like", "column 16: expected a quoted pattern after 'like', found end of filter"),
    ("metrics.acc.median > 1", "column 13: expected one of latest, min, max, first, count after "
     "'metrics.acc.' (quote keys containing dots with backquotes), found 'median'"),
    # precedence and grouping
    ("(metrics.acc > 1", "column 17: expected ')', found end of filter"),
    ("metrics.acc > 1)", "column 16: expected 'and', 'or' or the end of the filter, found ')'"),
    ("metrics.acc > 1 metrics.loss < 2",
     "column 17: expected 'and', 'or' or the end of the filter, found 'metrics'"),
    ("not (metrics.acc > 1", "column 21: expected ')', found end of filter"),
    ("metrics.acc > 1 and (params.lr < 1 or)", f"column 38: {A_FIELD}, found ')'"),
    # fields and quoting
    ("metrics acc > 1", "column 9: expected '.' and a key after 'metrics', found 'acc'"),
    ("metrics. > 1", "column 10: expected a key after 'metrics.', found '>'"),
    ("metric.acc > 1", f"column 1: {A_FIELD}, found 'metric'"),
    ("tags.team = 'vision", "column 13: unexpected character \"'\""),
    ('tags.team = "vision', "column 13: unexpected character '\"'"),
    ("tags.team = vision", "column 13: expected a value after '=', found 'vision'"),
    ("metrics.`a.b > 1", "column 9: unexpected character '`'"),
    ("metrics.2 > 0", "column 8: quote a key that starts with a digit with backquotes: metrics.`2`"),
    ("metrics.acc > 'x' 'y'", "column 19: expected 'and', 'or' or the end of the filter, found \"'y'\""),
    ("metrics.acc > 1 ; drop table runs", "column 17: unexpected character ';'"),
])
def test_bad_filters_name_the_column_and_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(text)
    assert str(caught.value) == message


@pytest.mark.parametrize("text", ["metrics.acc like 'x%'", "metrics.acc = 'high'",
                                  "metrics.acc.count in (1, 'two')"])
def test_numeric_fields_refuse_text_when_compiled(text: str) -> None:
    with pytest.raises(FilterError, match=r"metrics\.acc.* is numeric: compare it with a number"):
        compile_filter(parse_filter(text))


def c(scope: str, key: str, op: str, value: Any, aggregate: str = "latest") -> Compare:
    return Compare(Field(scope, key, aggregate), op, value)


A, B, C, D = (c("params", k, "=", 1) for k in "abcd")


@pytest.mark.parametrize(("text", "tree"), [
    ("params.a = 1 or params.b = 1 and params.c = 1", BoolOp("or", (A, BoolOp("and", (B, C))))),
    ("params.a = 1 and params.b = 1 or params.c = 1 and params.d = 1",
     BoolOp("or", (BoolOp("and", (A, B)), BoolOp("and", (C, D))))),
    ("not params.a = 1 and params.b = 1", BoolOp("and", (Not(A), B))),
    ("not (params.a = 1 or params.b = 1)", Not(BoolOp("or", (A, B)))),
    ("not not params.a = 1", Not(Not(A))),
    ("(params.a = 1 or params.b = 1) and params.c = 1", BoolOp("and", (BoolOp("or", (A, B)), C))),
    ("params.a = 1 OR params.b = 1 AnD params.c = 1", BoolOp("or", (A, BoolOp("and", (B, C))))),
    ("((params.a = 1))", A),
    ("params.a = 1 and params.b = 1 and params.c = 1", BoolOp("and", (A, B, C))),
])
def test_precedence_not_binds_tighter_than_and_than_or(text: str, tree: Node) -> None:
    assert parse_filter(text) == tree


@pytest.mark.parametrize(("text", "tree"), [
    ("tags.t = 'it''s'", c("tags", "t", "=", "it's")),
    ('tags.t = "say \\"hi\\""', c("tags", "t", "=", 'say "hi"')),
    ("tags.t = 'a\\'b'", c("tags", "t", "=", "a'b")),
    ("tags.t = ''", c("tags", "t", "=", "")),
    ("tags.t = 'and or not'", c("tags", "t", "=", "and or not")),
    ("params.`lr rate` >= .5", c("params", "lr rate", ">=", 0.5)),
    ("metrics.`val.acc`.max < 1e-3", c("metrics", "val.acc", "<", 0.001, "max")),
    ("params.lr <> -2", c("params", "lr", "!=", -2)),
    ("params.lr != +3", c("params", "lr", "!=", 3)),
    ("params.n = 10", c("params", "n", "=", 10)),
    ("params.n = 10.0", c("params", "n", "=", 10.0)),
    ("tags.t not in ('a', \"b\")", c("tags", "t", "notin", ("a", "b"))),
    ("tags.t NOT ILIKE 'V%'", c("tags", "t", "notilike", "V%")),
    ("params.x is not null", c("params", "x", "notnull", None)),
    ("metrics.`2` > 0", c("metrics", "2", ">", 0)),
])
def test_quoting_and_literals(text: str, tree: Node) -> None:
    assert parse_filter(text) == tree


# -- the property test -------------------------------------------------------------------------

NUMBERS = [0, 1, 2, -1, 0.5, 0.01, 0.1, 3.0, 1e-05]
WORDS = ["adam", "sgd", "vision", "nlp", "true"]
# Texts around the indexed prefix's length (read_model.PREFIX): equal prefixes, different
# values, so the prefix alone must not decide (letterless: LIKE ranges apply to them).
LONG = "9-" * (PREFIX // 2)
LONG_TEXTS = [LONG[:-1], LONG, LONG + "1", LONG + "2"]
PARAM_VALUES = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(WORDS),
                         st.sampled_from(["0.01", "3", "1e-05", *LONG_TEXTS]), st.booleans())
PARAM_KEYS, METRIC_KEYS, TAG_KEYS = ["lr", "opt", "a.b"], ["acc", "loss"], ["team", "env"]
TAG_VALUES = ["vision", "nlp", "it's", "speech", "v", *LONG_TEXTS]
STATUSES = ["FINISHED", "FAILED", "KILLED", None]  # None: still running, no end time


@dataclass
class PyRun:
    id: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    parent: str | None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


_worlds = itertools.count()


@st.composite
def worlds(draw: st.DrawFn) -> tuple[str, list[PyRun]]:
    project = f"prop{next(_worlds)}"
    runs: list[PyRun] = []
    for i in range(draw(st.integers(1, 7))):
        status = draw(st.sampled_from(STATUSES))
        start = int((T0 + timedelta(minutes=i)).timestamp() * 1000)
        runs.append(PyRun(
            id=f"{project}-r{i}", name=f"r{i}", status=status or "RUNNING", start_time=start,
            end_time=start + 300_000 if status else None,
            parent=draw(st.sampled_from([None, *(r.id for r in runs)])),
            params=draw(st.dictionaries(st.sampled_from(PARAM_KEYS), PARAM_VALUES)),
            metrics=draw(st.dictionaries(st.sampled_from(METRIC_KEYS), st.lists(
                st.sampled_from(NUMBERS).map(float), min_size=1, max_size=4))),
            tags=draw(st.dictionaries(st.sampled_from(TAG_KEYS), st.sampled_from(TAG_VALUES)))))
    return project, runs


def number_lists(pool: list[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(st.sampled_from(pool), min_size=1, max_size=3).map(tuple)


PATTERNS = ["v%", "%o%", "_lp", "%", "adam", "s_d", "%'s", "9-%", "0.0%", LONG + "%", LONG[:-1] + "%",
            LONG + "_"]


@st.composite
def comparisons(draw: st.DrawFn, run_ids: list[str]) -> Compare:
    scope = draw(st.sampled_from(["metrics", "params", "tags", "attributes"]))
    if scope == "metrics":
        f = Field("metrics", draw(st.sampled_from(METRIC_KEYS)),
                  draw(st.sampled_from(["latest", "min", "max", "first", "count"])))
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "in", "notin", "isnull", "notnull"]))
        pool: list[Any] = NUMBERS
    elif scope == "params":
        f = Field("params", draw(st.sampled_from(PARAM_KEYS)))
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "in", "notin", "like", "ilike",
                                   "notlike", "isnull", "notnull"]))
        # Text order only between plain lowercase words: collations agree on those.
        pool = NUMBERS + (["adam", "sgd", "true"] if op in ("<", "<=", ">", ">=") else
                          [*WORDS, "0.01", "3.0", *LONG_TEXTS])
    elif scope == "tags":
        f = Field("tags", draw(st.sampled_from(TAG_KEYS)))
        op = draw(st.sampled_from(["=", "!=", "in", "notin", "like", "ilike", "notlike", "notilike",
                                   "isnull", "notnull"]))
        pool = TAG_VALUES
    else:
        key = draw(st.sampled_from(["name", "status", "start_time", "end_time", "parent", "run_id"]))
        f = Field("attributes", key)
        if key in ("start_time", "end_time"):
            base = int(T0.timestamp() * 1000)
            pool = [base + m * 60_000 for m in range(-1, 9)] + [base + 300_000 + 60_000]
            op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "in", "isnull", "notnull"]))
        elif key == "status":
            pool = ["finished", "FAILED", "Running", "killed"]
            op = draw(st.sampled_from(["=", "!=", "in", "notin"]))
        elif key in ("parent", "run_id"):
            pool = [*run_ids, "nobody"]
            op = draw(st.sampled_from(["=", "!=", "in", "notin", "isnull", "notnull"]))
        else:
            pool, op = ["r0", "r1", "r5", "x"], draw(st.sampled_from(["=", "!=", "in", "like", "notlike"]))
    if op in ("isnull", "notnull"):
        return Compare(f, op, None)
    if op in ("like", "ilike", "notlike", "notilike"):
        pattern = draw(st.sampled_from(PATTERNS))
        return Compare(f, op, pattern.upper() if op.endswith("ilike") and draw(st.booleans()) else pattern)
    if op in ("in", "notin"):
        return Compare(f, op, draw(number_lists(pool)))
    return Compare(f, op, draw(st.sampled_from(pool)))


def filters(run_ids: list[str]) -> st.SearchStrategy[Node]:
    return st.recursive(
        comparisons(run_ids),
        lambda inner: st.one_of(
            inner.map(Not),
            st.tuples(st.sampled_from(["and", "or"]), st.lists(inner, min_size=2, max_size=3))
            .map(lambda t: BoolOp(t[0], tuple(t[1])))),  # type: ignore[arg-type]
        max_leaves=6)


# Rendering: the fewest parentheses precedence allows, so parsing it back tests precedence too.

def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z_][\w\-/:]*", key) else f"`{key}`"


def render(node: Node) -> str:
    if isinstance(node, Not):
        inner = node.item
        return "not " + (f"({render(inner)})" if isinstance(inner, BoolOp) else render(inner))
    if isinstance(node, BoolOp):
        parts = []
        for item in node.items:
            grouped = isinstance(item, BoolOp) and (item.op == node.op or item.op == "or")
            parts.append(f"({render(item)})" if grouped else render(item))
        return f" {node.op.upper() if len(parts) == 3 else node.op} ".join(parts)
    f = node.field
    agg = f".{f.aggregate}" if f.aggregate != "latest" else ""
    name = f"{f.scope}.{_key(f.key)}{agg}"
    if node.op == "isnull":
        return f"{name} is null"
    if node.op == "notnull":
        return f"{name} IS NOT NULL"
    if node.op in ("in", "notin"):
        values = ", ".join(_literal(v) for v in node.value)  # type: ignore[union-attr]
        return f"{name} {'not in' if node.op == 'notin' else 'in'} ({values})"
    if node.op.startswith("not"):
        return f"{name} not {node.op[3:]} {_literal(node.value)}"
    return f"{name} {node.op} {_literal(node.value)}"


# The reference: SQL's three-valued logic over plain Python values (None is SQL's NULL).

def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_text(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _like(text: str, pattern: str, fold: bool) -> bool:
    if fold:
        text, pattern = text.lower(), pattern.lower()
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, text, re.DOTALL) is not None


def _op(x: Any, op: str, value: Any) -> bool | None:
    if x is None:
        return None
    if op in ("in", "notin"):
        found = x in value
        return found if op == "in" else not found
    if op in ("like", "notlike", "ilike", "notilike"):
        matched = _like(x, value, "ilike" in op)
        return not matched if op.startswith("not") else matched
    return {"=": x == value, "!=": x != value, "<": x < value, "<=": x <= value, ">": x > value,
            ">=": x >= value}[op]


def _values(c: Compare, convert: Any) -> Any:
    if isinstance(c.value, tuple):
        return tuple(convert(v) for v in c.value)
    return convert(c.value)


def evaluate(node: Node, run: PyRun) -> bool | None:
    if isinstance(node, Not):
        inner = evaluate(node.item, run)
        return None if inner is None else not inner
    if isinstance(node, BoolOp):
        results = [evaluate(item, run) for item in node.items]
        decisive = node.op == "or"  # True decides an or, False an and
        if decisive in results:
            return decisive
        return None if None in results else not decisive
    return _compare(node, run)


def _compare(c: Compare, run: PyRun) -> bool | None:
    f = c.field
    if f.scope == "attributes":
        return _attribute(c, run)
    present = {"metrics": run.metrics, "params": run.params, "tags": run.tags}[f.scope]
    if c.op in ("isnull", "notnull"):
        return (f.key in present) == (c.op == "notnull")
    if f.key not in present:
        return False  # EXISTS over no row
    if f.scope == "metrics":
        points = run.metrics[f.key]
        x = {"latest": points[-1], "min": min(points), "max": max(points), "first": points[0],
             "count": len(points)}[f.aggregate]
        return bool(_op(x, c.op, _values(c, float)))
    if f.scope == "tags" or c.op in ("like", "ilike", "notlike", "notilike"):
        return bool(_op(as_text(present[f.key]), c.op, _values(c, _as_text)))
    raw = present[f.key]
    literals = c.value if isinstance(c.value, tuple) else (c.value,)
    if any(_number(v) is None for v in literals):
        return bool(_op(as_text(raw), c.op, _values(c, _as_text)))
    numeric = bool(_op(as_number(raw), c.op, _values(c, _number)))
    if c.op in ("=", "in"):  # equality also accepts the exact text
        return numeric or as_text(raw) in {_as_text(v) for v in literals}
    return numeric


def _attribute(c: Compare, run: PyRun) -> bool | None:
    key = c.field.key
    x = {"name": run.name, "status": run.status, "start_time": run.start_time,
         "end_time": run.end_time, "parent": run.parent, "run_id": run.id}[key]
    if c.op in ("isnull", "notnull"):
        return (x is None) == (c.op == "isnull")
    if key in ("start_time", "end_time"):
        if "like" in c.op:
            return False
        return _op(x, c.op, _values(c, int))
    return _op(x, c.op, _values(c, lambda v: str(v).upper() if key == "status" else _as_text(v)))


def events_of(project: str, runs: list[PyRun]) -> list[Any]:
    events = []
    for r in runs:
        events += run_events(r.id, project=project, name=r.name, params=r.params or None,
                             metrics=r.metrics or None, tags=r.tags or None, parent=r.parent,
                             status=None if r.status == "RUNNING" else r.status,
                             start=T0 + timedelta(milliseconds=r.start_time - int(T0.timestamp() * 1000)))
    return events


async def _check(system: System, world: tuple[str, list[PyRun]], trees: list[Node]) -> None:
    project, runs = world
    await system.writer.ingest(wire(events_of(project, runs)), "prop")
    await system.catch_up(["sql"])
    queries = RunQueries(system.engine)
    for tree in trees:
        text = render(tree)
        assert parse_filter(text) == tree, text  # the grammar reads back what it printed
        page = await queries.search(text, first=100, project=project)
        selected = {row.id for row in page.rows}
        expected = {r.id for r in runs if evaluate(tree, r) is True}
        assert selected == expected, (text, runs)
        assert page.total == len(expected)
        uncounted = await queries.search(text, first=100, project=project, count=False)
        assert [r.id for r in uncounted.rows] == [r.id for r in page.rows], text  # estimated shape


def _property_test(settings: Settings, examples: int) -> None:
    with asyncio.Runner() as runner:
        system = runner.run(System.open(settings))
        try:
            @hsettings(max_examples=examples, deadline=None, database=None, derandomize=False,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
            @given(data=st.data())
            def check(data: st.DataObject) -> None:
                world = data.draw(worlds(), label="runs")
                trees = data.draw(st.lists(filters([r.id for r in world[1]]), min_size=1, max_size=6),
                                  label="filters")
                runner.run(_check(system, world, trees))

            check()
        finally:
            runner.run(system.close())


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_sql_filters_select_what_a_python_evaluator_selects(stack: str, settings: Settings) -> None:
    _property_test(settings, examples=60)


@pytest.mark.parametrize("stack", [pytest.param("engines", marks=pytest.mark.engines)], indirect=True)
def test_sql_filters_select_the_same_on_postgresql(stack: str, settings: Settings) -> None:
    _property_test(settings, examples=15)


def test_the_python_evaluator_uses_three_valued_logic() -> None:
    run = PyRun(id="x", name="n", status="RUNNING", start_time=0, end_time=None, parent=None)
    unknown = parse_filter("attributes.end_time > 5")
    assert evaluate(unknown, run) is None  # NULL > 5
    assert evaluate(Not(unknown), run) is None  # not NULL is still NULL: not selected
    assert evaluate(parse_filter("attributes.end_time > 5 or attributes.name = 'n'"), run) is True
