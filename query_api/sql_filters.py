"""Compiling the filter AST to SQL over the read model: every comparison becomes an
indexed membership test (or a runs column), so the database, not Python, selects the runs.

Two equivalent forms of "the run has a key-value row that passes": a correlated
`EXISTS (… WHERE run_id = runs.id …)`, evaluated per run and only for the runs a query
reaches (best when an index order stops the scan early: a first page of a common match),
and `runs.id IN (SELECT run_id … )`, one pass over the key's index (best when every run
must be tested: counts, rare matches). Both select the same runs: run_id is never null, so
neither form can be unknown, and NOT of either is the same."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    and_,
    exists,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles

from modeldb.projectors import read_model as rm
from modeldb.projectors.enrichment import derived_attributes
from modeldb.query_api.filters import BoolOp, Compare, Field, FilterError, Node, Not, Value

_METRIC_COLUMNS = {"latest": "value", "min": "min_value", "max": "max_value",
                   "first": "first_value", "count": "count"}
_RUN_COLUMNS = {"name": "name", "status": "status", "run_id": "id", "id": "id",
                "start_time": "start_time", "end_time": "end_time", "parent": "parent_id",
                "experiment": "experiment", "project": "project"}
_TIME_ATTRIBUTES = ("start_time", "end_time")


def compile_filter(node: Node | None, membership: str = "exists") -> ColumnElement[bool]:
    """`membership`: "exists" or "in", the form of key-value tests (see above)."""
    if node is None:
        return true()
    if isinstance(node, BoolOp):
        parts = [compile_filter(item, membership) for item in node.items]
        return and_(*parts) if node.op == "and" else or_(*parts)
    if isinstance(node, Not):
        return not_(compile_filter(node.item, membership))
    return _compare(node, membership)


def _has(table: Any, key: str, tests: list[ColumnElement[bool]], membership: str) -> ColumnElement[bool]:
    """The run has a row of `table` under `key` passing `tests`."""
    if membership == "in":
        return rm.runs.c.id.in_(select(table.c.run_id).where(table.c.key == key, *tests))
    return exists(select(1).where(table.c.run_id == rm.runs.c.id, table.c.key == key, *tests))


def number_of(value: Value) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _apply(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == ">":
        return column > value
    if op == ">=":
        return column >= value
    if op in ("in", "notin"):
        clause = column.in_(list(value))
        return clause if op == "in" else not_(clause)
    if op in ("like", "notlike"):
        clause = column.like(value)
        return clause if op == "like" else not_(clause)
    if op in ("ilike", "notilike"):
        clause = func.lower(column).like(str(value).lower())
        return clause if op == "ilike" else not_(clause)
    raise ValueError(op)  # pragma: no cover - the parser makes only the ops above


def _compare(c: Compare, membership: str) -> ColumnElement[bool]:
    f = c.field
    if f.scope == "attributes":
        return _attribute(c, membership)
    table = {"metrics": rm.latest_metrics, "params": rm.params, "tags": rm.tags}[f.scope]
    if c.op in ("isnull", "notnull"):
        present = _has(table, f.key, [], membership)
        return not_(present) if c.op == "isnull" else present
    return _has(table, f.key, [value_test(f, table, c)], membership)


def value_test(f: Field, table: Any, c: Compare) -> ColumnElement[bool]:
    """The test of `c` on one row of its key-value `table` (the key aside)."""
    values = c.value if isinstance(c.value, tuple) else (c.value,)
    if f.scope == "metrics":
        numbers = [number_of(v) for v in values]
        if c.op in ("like", "ilike", "notlike", "notilike") or None in numbers:
            raise FilterError(f"{f} is numeric: compare it with a number", 1)
        column = table.c[_METRIC_COLUMNS[f.aggregate]]
        return _apply(column, c.op, tuple(numbers) if isinstance(c.value, tuple) else numbers[0])
    texts = tuple(_text(v) for v in values)
    if f.scope == "tags" or c.op in ("like", "ilike", "notlike", "notilike"):
        return _text_test(table, c.op, texts, isinstance(c.value, tuple))
    # params: compare as numbers when the literal reads as one, so lr < 0.1 means what it
    # says for a value logged as 0.01; equality also accepts the exact text.
    numbers = [number_of(v) for v in values]
    if None in numbers:
        return _text_test(table, c.op, texts, isinstance(c.value, tuple))
    numeric = _apply(table.c.value_num, c.op,
                     tuple(numbers) if isinstance(c.value, tuple) else numbers[0])
    if c.op in ("=", "in"):
        return or_(numeric, _text_test(table, "in", texts, True))
    return numeric


def _text_test(table: Any, op: str, texts: tuple[str, ...], many: bool) -> ColumnElement[bool]:
    if op in ("=", "in"):
        # Equality on the indexed prefix (see read_model.PREFIX), which the key's index
        # answers alone (it holds the run ids). A literal shorter than the prefix equals a
        # value's prefix only if it is the whole value; a longer one is compared in full.
        # One value as `=`: SQLite uses an expression index for `=`, not for `IN (x)`.
        prefix = indexed_prefix(table.c.value)
        prefixes = list(dict.fromkeys(t[: rm.PREFIX] for t in texts))
        on_prefix = prefix == prefixes[0] if len(prefixes) == 1 else prefix.in_(prefixes)
        if all(_whole_in_prefix(t) for t in texts):
            return on_prefix
        return and_(on_prefix, _apply(Unindexed(table.c.value), op, texts if many else texts[0]))
    test = _apply(table.c.value, op, texts if many else texts[0])
    if op == "like" and table.name in ("params", "tags"):
        return _PrefixLike(table.c.value, texts[0], test)
    return test


def _whole_in_prefix(text: str) -> bool:
    # NUL: SQLite's text functions may stop at one, so such a value is compared in full.
    return len(text) < rm.PREFIX and "\x00" not in text


class _PrefixLike(ColumnElement[bool]):
    """`column LIKE pattern` on SQLite led by a range of the indexed prefix holding every
    value the pattern matches, so the key's index, not a scan of the key, finds them: for
    a pattern that is a fixed head then `%`, the range alone (it holds exactly the values
    starting with the head), else the range and the LIKE. Only for a head without ASCII
    letters: SQLite's LIKE folds their case, which a range cannot. Elsewhere (a collation
    need not order text by its prefixes) the LIKE alone."""

    inherit_cache = False  # the pattern is no part of a cache key: never cached
    _is_implicitly_boolean = True

    def __init__(self, column: Any, pattern: str, like: ColumnElement[bool]):
        self.prefix, self.like = indexed_prefix(column), like
        head = re.split(r"[%_]", pattern, maxsplit=1)[0][: rm.PREFIX]
        usable = bool(head) and not re.search(r"[A-Za-z]", head) and ord(head[-1]) < 0x10FFFF
        self.range = (head, head[:-1] + chr(ord(head[-1]) + 1)) if usable else None
        self.exact = usable and pattern == head + "%" and _whole_in_prefix(head)
        self.type = Boolean()


@compiles(_PrefixLike)
def _prefix_like(element: _PrefixLike, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.like, **kw)


@compiles(_PrefixLike, "sqlite")
def _prefix_like_sqlite(element: _PrefixLike, compiler: Any, **kw: Any) -> str:
    if element.range is None:
        return compiler.process(element.like, **kw)
    lo, hi = element.range
    in_range = and_(element.prefix >= lo, element.prefix < hi)
    return compiler.process(in_range if element.exact else and_(in_range, element.like), **kw)


class Unindexed(ColumnElement[Any]):
    """A column SQLite must not use an index for, nor substitute a constant into (its
    documented unary +): `value = 'x'` would turn `substr(value, 1, N) = 'x'` into a
    constant and lose the prefix index. The plain column elsewhere."""

    inherit_cache = True

    def __init__(self, column: Any):
        self.column = column
        self.type = column.type


@compiles(Unindexed)
def _unindexed(element: Unindexed, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(Unindexed, "sqlite")
def _unindexed_sqlite(element: Unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + compiler.process(element.column, **kw)


def indexed_prefix(column: Any) -> ColumnElement[str]:
    """`substr(column, 1, PREFIX)` exactly as the expression indexes spell it: with the
    numbers inline, since a bound parameter makes another expression and no index
    (read_model.PREFIX) matches it."""
    return func.substr(column, literal_column("1"), literal_column(str(rm.PREFIX)))


def _text(value: Value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _custom_attribute(c: Compare, membership: str) -> ColumnElement[bool]:
    """A custom attribute: set by the training code (`attributes`) or derived by an enricher
    (`derived_attributes`); compared as text, or as a number when the literal is one."""
    tests = []
    for table in (rm.attributes, derived_attributes):
        if c.op in ("isnull", "notnull"):
            tests.append(_has(table, c.field.key, [], membership))
            continue
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        numbers = [number_of(v) for v in values]
        many = isinstance(c.value, tuple)
        texts = tuple(_text(v) for v in values)
        if None in numbers or c.op in ("like", "ilike", "notlike", "notilike", "=", "in",
                                       "!=", "notin"):
            test = _text_test(table, c.op, texts, many)
        else:
            test = _apply(table.c.value_num, c.op, tuple(numbers) if many else numbers[0])
        tests.append(_has(table, c.field.key, [test], membership))
    present = or_(*tests)
    return not_(present) if c.op == "isnull" else present


def _attribute(c: Compare, membership: str) -> ColumnElement[bool]:
    key = c.field.key
    if key not in _RUN_COLUMNS:
        return _custom_attribute(c, membership)
    column = rm.runs.c[_RUN_COLUMNS[key]]
    if c.op == "isnull":
        return column.is_(None)
    if c.op == "notnull":
        return column.is_not(None)
    values = c.value if isinstance(c.value, tuple) else (c.value,)
    if key in _TIME_ATTRIBUTES:
        converted = tuple(_epoch_ms(v) for v in values)
    elif key == "status":
        converted = tuple(str(v).upper() for v in values)
    else:
        converted = tuple(_text(v) for v in values)
    if c.op in ("like", "ilike", "notlike", "notilike") and key in _TIME_ATTRIBUTES:
        return false()
    return _apply(column, c.op, converted if isinstance(c.value, tuple) else converted[0])


def _epoch_ms(value: Value) -> int:
    """Times in filters: epoch milliseconds, or an ISO 8601 string."""
    if isinstance(value, int | float):
        return int(value)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise FilterError(f"{value!r} is not a time (epoch ms or ISO 8601)", 1) from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)
