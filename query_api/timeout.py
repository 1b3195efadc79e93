"""The per-query time limit: a GraphQL query running longer than `MODELDB_QUERY_TIMEOUT`
seconds (default 30; 0 turns the limit off) is cancelled and answers a GraphQL error with
code TIMEOUT (HTTP 200, like every GraphQL error), instead of holding a worker and the
caller indefinitely. Cancelling the task stops the PostgreSQL statement (asyncpg sends a
cancel request); on SQLite the statement runs to its end in its worker thread, unanswered.

Mutations are not cut short: a registry command may already be in the log when the limit
strikes, and answering "cancelled" then would be a lie; they have their own bounded wait.
"""

from __future__ import annotations

import asyncio
import os
from functools import lru_cache
from typing import Any

import strawberry
from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from graphql.error import GraphQLSyntaxError
from strawberry.types import ExecutionResult

DEFAULT_QUERY_TIMEOUT = 30.0


def query_timeout() -> float | None:
    """Seconds from MODELDB_QUERY_TIMEOUT; None when the limit is off."""
    raw = os.environ.get("MODELDB_QUERY_TIMEOUT", "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_QUERY_TIMEOUT
    except ValueError:
        raise ValueError(f"MODELDB_QUERY_TIMEOUT must be a number of seconds, not {raw!r}") from None
    return seconds if seconds > 0 else None


@lru_cache(maxsize=512)  # clients send the same few texts again and again (see app.py)
def _is_mutation(query: str | None, operation_name: str | None) -> bool:
    try:
        document = parse(query or "")
    except GraphQLSyntaxError:
        return False  # execution reports the syntax error itself
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
                operation_name is None or (definition.name and definition.name.value == operation_name)):
            return definition.operation == OperationType.MUTATION
    return False


class TimedSchema(strawberry.Schema):
    """A strawberry schema whose queries stop after `timeout` seconds."""

    def __init__(self, *args: Any, timeout: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.timeout = timeout

    async def execute(self, query: str | None, *args: Any, **kwargs: Any) -> ExecutionResult:
        run = super().execute(query, *args, **kwargs)
        operation_name = kwargs.get("operation_name") or (args[3] if len(args) > 3 else None)
        if self.timeout is None or _is_mutation(query, operation_name):
            return await run
        try:
            return await asyncio.wait_for(run, self.timeout)
        except TimeoutError:
            return ExecutionResult(data=None, errors=[GraphQLError(
                f"query cancelled: it ran longer than the {self.timeout:g} s limit "
                "(MODELDB_QUERY_TIMEOUT)", extensions={"code": "TIMEOUT"})])
