"""In-process queries over an embedded ModelDB home, for the SDK when no server runs:
catch the projections up with the log, then answer GraphQL directly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from modeldb.infra.server import local_principal
from modeldb.infra.settings import Settings
from modeldb.infra.system import System
from modeldb.query_api.app import build_schema, graphql_context
from modeldb.query_api.runs import RunQueries


async def execute_graphql_async(home: Path, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    system = await System.open(Settings.load(home))
    system.self_projecting = True  # nobody else applies this home's log: mutations catch up here
    try:
        await system.catch_up()
        result = await build_schema().execute(
            query, variable_values=variables,
            context_value=graphql_context(RunQueries(system.engine), system.graph, system.audit,
                                          principal=local_principal(), commands=system),
        )
    finally:
        await system.close()
    if result.errors:
        raise ValueError("; ".join(str(e.message) for e in result.errors))
    return result.data or {}


def execute_graphql(home: Path, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """Synchronous entry point for the SDK (runs its own event loop in this thread)."""
    return asyncio.run(execute_graphql_async(Path(home), query, variables))
