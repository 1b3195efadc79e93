"""Time travel: an entity as it was at a time, rebuilt from its own events (not from the
current row) by running them through the same sql projection into a scratch database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

from modeldb.event_schema import RecordedEvent
from modeldb.projectors.audit import AuditStore
from modeldb.projectors.sql_projection import SqlReadModel
from modeldb.query_api.loaders import Loaders
from modeldb.query_api.runs import RunQueries
from modeldb.writer.log import Batch

T = TypeVar("T")


async def run_as_of(
    audit: AuditStore, run_id: str, at: datetime, build: Callable[[Any, Loaders], T]
) -> T | None:
    events = await audit.readable_history(run_id, until=at)
    if not events:
        return None
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    scratch = SqlReadModel(engine)
    await scratch.setup()
    await scratch.apply(Batch([RecordedEvent(i + 1, raw) for i, raw in enumerate(events)],
                              {"position": len(events)}))
    loaders = Loaders(RunQueries(engine))
    row = await loaders.run.load(run_id)
    if row is None:
        return None
    result = build(row, loaders)
    # Nested fields resolve after we return; the scratch engine stays open until then and
    # is released with the request (StaticPool holds one in-memory connection).
    return result
