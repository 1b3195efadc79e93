"""The SQL of `runs(filter, orderBy, first, after)`: a count and a page, shaped so the
database reads little at 100k+ runs (the results are those of the plain form: the
filter, then ORDER BY the keys with nulls last and the run id, LIMIT first + 1).

- The count tests key-value conditions as `runs.id IN (SELECT run_id …)`: one pass over
  each key's index instead of one probe per run (query_api/sql_filters.py). It is read
  only when asked for (totalCount), on a connection of its own, while the page is read.
- The page depends on how many runs match. A common match ("lazy") is read in the order
  of an index and stops after `first + 1` runs, testing the filter per run (EXISTS): about
  (first + 1) * runs / matches tests. A rare one is found with IN first (one lookup per
  match), then sorted. So a match is common when matches² ≥ (first + 1) * runs: 1,421 of
  20,000 runs for a page of 100.
- Ordered by a key-value field first (metrics.x, params.x, tags.x), a common match is read
  in segments, each in the order of the key's index: the runs whose sort value is a number
  (params) or any non-null value, then those with a text value (params), then those
  without one (nulls last), with the usual LEFT JOIN. Each segment runs only if the ones
  before it did not fill the page, so the last, unindexed, one rarely does.
- The matches are estimated, not counted, for the page's shape: each key-value condition
  counted in its key's index (independent conditions multiply), against the runs of the
  whole table. An estimate picks only the page's shape, never its rows: a wrong one costs
  time, as the other shape would, not correctness.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, literal_column, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.selectable import Join

from modeldb.projectors import read_model as rm
from modeldb.projectors.db import fetch_rows, is_postgres
from modeldb.query_api.filters import BoolOp, Compare, FilterError, Node, Not, OrderKey
from modeldb.query_api.sql_filters import (
    _METRIC_COLUMNS,
    _RUN_COLUMNS,
    Unindexed,
    compile_filter,
    indexed_prefix,
    value_test,
)


class _Driving(Join):
    """A join whose left side SQLite must read first (CROSS JOIN, its documented way to
    fix the loop order): the key's index, in page order. Elsewhere a plain join."""

    inherit_cache = True


@compiles(_Driving, "sqlite")
def _sqlite_driving(join: _Driving, compiler: Any, **kw: Any) -> str:
    # The left side is one aliased table, so the first " JOIN " is this join's.
    return compiler.visit_join(join, **kw).replace(" JOIN ", " CROSS JOIN ", 1)

# A page is read in an index's order, testing each run ("lazy"), when LAZY times its tests
# cost no more than finding the matches first (_lazy).
LAZY = 1.0


# The share of runs a condition the estimate cannot count in an index is taken to match.
UNCOUNTED = 0.25


@dataclass
class Searched:
    total: int | None  # None: not counted
    rows: list[Row[Any]]  # first + 1 at most: the runs columns, then the sort keys


@dataclass
class _Sort:
    """One order key: the expressions it sorts on and the join it needs."""

    key: OrderKey
    table: Any | None  # the key-value alias, None for a runs column
    columns: list[Any]


def _sorts(keys: Sequence[OrderKey]) -> list[_Sort]:
    sorts = []
    for i, key in enumerate(keys):
        f = key.field
        if f.scope == "attributes":
            if f.key not in _RUN_COLUMNS:
                raise FilterError(f"cannot order by the custom attribute {f.key!r}; order by one of "
                                  f"{', '.join(_RUN_COLUMNS)}", 1)
            sorts.append(_Sort(key, None, [rm.runs.c[_RUN_COLUMNS[f.key]]]))
            continue
        table = {"metrics": rm.latest_metrics, "params": rm.params, "tags": rm.tags}[f.scope]
        alias = table.alias(f"sort{i}")
        if f.scope == "metrics":
            columns = [alias.c[_METRIC_COLUMNS[f.aggregate]]]
        elif f.scope == "params":
            columns = [alias.c.value_num, alias.c.value]  # numbers first, then text
        else:
            columns = [alias.c.value]
        sorts.append(_Sort(key, alias, columns))
    return sorts


def _after(columns: list[tuple[Any, bool]], values: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after the cursor row in (col1, col2, …) order with nulls last."""
    terms = []
    for i, ((column, descending), value) in enumerate(zip(columns, values, strict=True)):
        equal_before = [(c.is_(None) if v is None else c == v)
                        for (c, _), v in zip(columns[:i], values[:i], strict=True)]
        if value is None:
            beyond: ColumnElement[bool] = false()  # nothing sorts after null (nulls last)
        else:
            beyond = or_(column < value if descending else column > value, column.is_(None))
        terms.append(and_(*equal_before, beyond))
    return or_(*terms)


@dataclass
class _Segment:
    """Part of the page's order: rows passing `where`, the first sort joined `inner`ly,
    ordered by `order` (expressions an index can serve)."""

    where: list[ColumnElement[bool]]
    inner: bool
    order: list[Any]


def _segments(first_sort: _Sort, columns: list[tuple[Any, bool]], binary_text: bool) -> list[_Segment]:
    """The segments of an order whose first key is a key-value field, in page order; the
    union of their rows, each ordered, is the nulls-last order of `columns`.
    `binary_text`: text compares bytewise (SQLite), so a prefix index can order it."""
    alias, f = first_sort.table, first_sort.key.field
    desc = first_sort.key.descending
    rest = [(c.desc() if d else c.asc()).nulls_last() for c, d in columns[len(first_sort.columns):-1]]
    # The id tie-breaker as the key-value row's run_id (equal under the inner join), which
    # the key's index holds in order.
    tie = alias.c.run_id.desc() if columns[-1][1] else alias.c.run_id.asc()

    def way(column: Any) -> Any:
        return column.desc() if desc else column.asc()

    def text_order(column: Any) -> list[Any]:
        if not binary_text:  # a collation need not order by prefixes first
            return [way(column)]
        # Bytewise, the indexed prefix decides unless two prefixes are equal, then the
        # full text: the same order as the text's.
        return [way(indexed_prefix(column)), way(column)]

    if f.scope == "metrics":
        value = first_sort.columns[0]
        return [_Segment([value.is_not(None)], True, [way(value), *rest, tie]),
                _Segment([value.is_(None)], False, [])]
    if f.scope == "params":
        number, text = first_sort.columns
        return [_Segment([number.is_not(None)], True, [way(number), *text_order(text), *rest, tie]),
                # Ordered by the text's index, not found by the number's.
                _Segment([Unindexed(number).is_(None)], True, [*text_order(text), *rest, tie]),
                _Segment([text.is_(None)], False, [])]
    value = first_sort.columns[0]
    return [_Segment([], True, [*text_order(value), *rest, tie]),
            _Segment([value.is_(None)], False, [])]


async def search(engine: AsyncEngine, node: Node | None, scope: list[ColumnElement[bool]],
                 keys: Sequence[OrderKey], first: int, after: list[Any] | None,
                 decode: Any, count: bool = True) -> Searched:
    """`scope`: conditions on runs (not deleted, visible, project, experiment); `decode`:
    (cursor width) → the cursor's values, called when `after` is given; `count`: whether
    to count the matches (else `total` is None). The count runs on a connection of its
    own, beside the page: with two cores, a counted query takes the longer of the two, not
    their sum (a count reads every match, often most of the query's time)."""
    sorts = _sorts(keys)
    columns: list[tuple[Any, bool]] = [(c, s.key.descending) for s in sorts for c in s.columns]
    columns.append((rm.runs.c.id, keys[-1].descending))  # unique tie-breaker
    cursor = decode(len(columns)) if after is not None else None
    counting = asyncio.create_task(_count(engine, node, scope)) if count else None
    try:
        async with engine.connect() as conn:
            rows = await _page(conn, node, scope, sorts, columns, cursor, first)
    except BaseException:
        if counting is not None:
            counting.cancel()
            await asyncio.gather(counting, return_exceptions=True)  # the page's error is raised
        raise
    return Searched(await counting if counting is not None else None, rows)


async def _count(engine: AsyncEngine, node: Node | None, scope: list[ColumnElement[bool]]) -> int:
    counted = select(func.count()).select_from(rm.runs).where(compile_filter(node, "in"), *scope)
    async with engine.connect() as conn:
        return await conn.scalar(counted) or 0


async def _page(conn: AsyncConnection, node: Node | None, scope: list[ColumnElement[bool]],
                sorts: list[_Sort], columns: list[tuple[Any, bool]], cursor: list[Any] | None,
                first: int) -> list[Row[Any]]:
    """The first + 1 matches after `cursor`, in the order of `columns`, read in the shape
    the estimated number of matches calls for."""
    if node is None:
        lazy = True  # the scope's own index order
    else:
        runs = await _runs_in_table(conn)
        estimate = await _estimate(conn, node, runs)
        # Found first: each condition's index listed in full (IN), then the matches.
        lazy = _lazy((first + 1) * runs / max(1.0, estimate.share * runs),
                     estimate.listed + estimate.share * runs)
    where = [compile_filter(node, "exists" if lazy else "in"), *scope]
    if cursor is not None:
        where.append(_after(columns, cursor))
    labels = [c.label(f"_k{i}") for i, (c, _) in enumerate(columns)]
    if lazy and sorts[0].table is not None:
        rows: list[Row[Any]] = []
        segments = _segments(sorts[0], columns, not is_postgres(conn))
        # A cursor in a later segment: the earlier ones hold nothing after it (and would
        # be walked whole to find that out).
        for segment in segments[_segment_of(sorts[0], cursor):]:
            if len(rows) > first:
                break
            order = segment.order or [(c.desc() if d else c.asc()).nulls_last() for c, d in columns]
            page = (select(rm.runs, *labels).select_from(_joined(sorts, segment.inner))
                    .where(*where, *segment.where))
            rows += await fetch_rows(conn, page.order_by(*order).limit(first + 1 - len(rows)))
        return rows
    order = [(c.desc() if d else c.asc()).nulls_last() for c, d in columns]
    page = select(rm.runs, *labels).select_from(_joined(sorts, False)).where(*where)
    return await fetch_rows(conn, page.order_by(*order).limit(first + 1))


async def _runs_in_table(conn: AsyncConnection) -> int:
    """About how many runs the table holds, deleted or in any scope: an upper bound of a
    scope's runs (then the per-run tests of a lazy page stop at the scope's end)."""
    if is_postgres(conn):
        return await conn.scalar(select(func.count()).select_from(rm.runs)) or 0
    # The largest rowid: one index probe, where counting reads every run.
    return await conn.scalar(select(func.max(literal_column("rowid"))).select_from(rm.runs)) or 0


def _lazy(tests: float, lookups: float) -> bool:
    """Read in an index's order, testing about `tests` runs, rather than find the matches
    first at the cost of `lookups` index entries?"""
    return LAZY * tests <= lookups


@dataclass
class _Estimate:
    share: float  # of the table's runs, matching
    listed: float  # index entries an IN form of the filter lists


async def _estimate(conn: AsyncConnection, node: Node, runs: int) -> _Estimate:
    """The estimated matches of `node` among the table's `runs`."""
    if isinstance(node, Not):
        inner = await _estimate(conn, node.item, runs)
        return _Estimate(1 - inner.share, inner.listed)
    if isinstance(node, BoolOp):
        parts = [await _estimate(conn, item, runs) for item in node.items]
        shares = [p.share for p in parts]
        share = math.prod(shares) if node.op == "and" else 1 - math.prod(1 - x for x in shares)
        return _Estimate(share, sum(p.listed for p in parts))
    if node.field.scope == "attributes" or runs == 0:
        return _Estimate(UNCOUNTED, 0)  # a runs column (or a custom attribute's few rows)
    table = _counted_table(node)
    if table is None:
        return _Estimate(UNCOUNTED, runs)  # listed by reading every row of the key
    counted = (select(literal_column("1")).select_from(table)
               .where(table.c.key == node.field.key, value_test(node.field, table, node))
               .limit(runs).subquery())
    found = await conn.scalar(select(func.count()).select_from(counted)) or 0
    return _Estimate(min(1.0, found / runs), found)


def _counted_table(c: Compare) -> Any | None:
    """The key-value table whose key index counts `c`'s matches alone, if one does."""
    f = c.field
    if f.scope == "metrics" and f.aggregate == "latest" and c.op in ("=", "<", "<=", ">", ">=", "in"):
        return rm.latest_metrics
    if f.scope in ("params", "tags") and c.op in ("=", "in"):
        return rm.params if f.scope == "params" else rm.tags
    return None


def _segment_of(first_sort: _Sort, cursor: list[Any] | None) -> int:
    """The segment (of `_segments`) the cursor row is in: 0 without a cursor."""
    if cursor is None:
        return 0
    if first_sort.key.field.scope == "params":  # (number, text): both null = no param
        number, text = cursor[0], cursor[1]
        return 0 if number is not None else 1 if text is not None else 2
    return 0 if cursor[0] is not None else 1


def _joined(sorts: list[_Sort], inner_first: bool) -> Any:
    """runs joined to each key-value sort (LEFT), or, `inner_first`, driven by the first
    sort's rows (inner: the runs that have that key), read before the runs."""
    query: Any = rm.runs
    for i, s in enumerate(sorts):
        if s.table is None:
            continue
        on = and_(s.table.c.run_id == rm.runs.c.id, s.table.c.key == s.key.field.key)
        query = _Driving(s.table, rm.runs, on) if inner_first and i == 0 else query.outerjoin(s.table, on)
    return query
