"""A run's custom attributes for `ExperimentRun.attributes`: those the training code set
(`AttributesSet`, the sql projection's `attributes`) and those enrichers derived
(`derived_attributes`), for a page of runs in one query per table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from modeldb.projectors import read_model as rm
from modeldb.projectors.enrichment import derived_attributes


async def run_attributes(engine: AsyncEngine, ids: Sequence[str]) -> list[list[tuple[str, str]]]:
    """(key, value) pairs of each run, sorted by key; a key the training code set wins over
    the same key derived by an enricher."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    unique = list(dict.fromkeys(ids))
    async with engine.connect() as conn:
        for table in (derived_attributes, rm.attributes):  # the second overwrites the first
            for start in range(0, len(unique), 500):
                rows = await conn.execute(
                    select(table.c.run_id, table.c.key, table.c.value)
                    .where(table.c.run_id.in_(unique[start : start + 500]))
                    .order_by(table.c.run_id, table.c.key))
                for row in rows:
                    if row.value is not None:
                        found[row.run_id][row.key] = row.value
    return [sorted(found.get(i, {}).items()) for i in ids]
