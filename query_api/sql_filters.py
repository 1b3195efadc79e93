"""Compiling the filter AST to SQL over the read model: every comparison becomes an
indexed EXISTS (or a runs column), so the database, not Python, selects the runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, not_, or_, select, true

from modeldb.projectors import read_model as rm
from modeldb.projectors.enrichment import derived_attributes
from modeldb.query_api.filters import BoolOp, Compare, Field, FilterError, Node, Not, Value

_METRIC_COLUMNS = {"latest": "value", "min": "min_value", "max": "max_value",
                   "first": "first_value", "count": "count"}
_RUN_COLUMNS = {"name": "name", "status": "status", "run_id": "id", "id": "id",
                "start_time": "start_time", "end_time": "end_time", "parent": "parent_id",
                "experiment": "experiment", "project": "project"}
_TIME_ATTRIBUTES = ("start_time", "end_time")


def compile_filter(node: Node | None) -> ColumnElement[bool]:
    if node is None:
        return true()
    if isinstance(node, BoolOp):
        parts = [compile_filter(item) for item in node.items]
        return and_(*parts) if node.op == "and" else or_(*parts)
    if isinstance(node, Not):
        return not_(compile_filter(node.item))
    return _compare(node)


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


def _compare(c: Compare) -> ColumnElement[bool]:
    f = c.field
    if f.scope == "attributes":
        return _attribute(c)
    table = {"metrics": rm.latest_metrics, "params": rm.params, "tags": rm.tags}[f.scope]
    keyed = and_(table.c.run_id == rm.runs.c.id, table.c.key == f.key)
    if c.op in ("isnull", "notnull"):
        present = exists(select(1).where(keyed))
        return not_(present) if c.op == "isnull" else present
    return exists(select(1).where(keyed, _value_test(f, table, c)))


def _value_test(f: Field, table: Any, c: Compare) -> ColumnElement[bool]:
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
    test = _apply(table.c.value, op, texts if many else texts[0])
    if op in ("=", "in"):
        # Equality first on the indexed prefix (see read_model.PREFIX), then in full.
        prefix = func.substr(table.c.value, 1, rm.PREFIX)
        return and_(prefix.in_([t[: rm.PREFIX] for t in texts]), test)
    return test


def _text(value: Value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _custom_attribute(c: Compare) -> ColumnElement[bool]:
    """A custom attribute: set by the training code (`attributes`) or derived by an enricher
    (`derived_attributes`); compared as text, or as a number when the literal is one."""
    tests = []
    for table in (rm.attributes, derived_attributes):
        keyed = and_(table.c.run_id == rm.runs.c.id, table.c.key == c.field.key)
        if c.op in ("isnull", "notnull"):
            tests.append(exists(select(1).where(keyed)))
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
        tests.append(exists(select(1).where(keyed, test)))
    present = or_(*tests)
    return not_(present) if c.op == "isnull" else present


def _attribute(c: Compare) -> ColumnElement[bool]:
    key = c.field.key
    if key not in _RUN_COLUMNS:
        return _custom_attribute(c)
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
