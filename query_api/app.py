"""The read side's HTTP surface: /graphql, and the web UI at /."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.fastapi import GraphQLRouter

from modeldb.projectors.audit import AuditStore
from modeldb.projectors.lineage import GraphStore
from modeldb.query_api.loaders import Loaders
from modeldb.query_api.registry import Mutation, RegistryQuery
from modeldb.query_api.registry_queries import RegistryLoaders, RegistryQueries
from modeldb.query_api.runs import RunQueries
from modeldb.query_api.schema import Query

STATIC = Path(__file__).parent / "static"


SCHEMA_FILE = Path(__file__).parent / "schema.graphql"


def build_schema() -> Any:
    """The GraphQL schema with its guards; `query_api/schema.graphql` is its printed form."""
    import strawberry
    from strawberry.tools import merge_types

    return strawberry.Schema(
        query=merge_types("Query", (Query, RegistryQuery)),
        mutation=Mutation,
        extensions=[lambda: QueryDepthLimiter(max_depth=12),
                    lambda: MaxTokensLimiter(max_token_count=5000),
                    lambda: MaxAliasesLimiter(max_alias_count=30)],
    )


def graphql_context(queries: RunQueries, graph: GraphStore, audit: AuditStore, *,
                    principal: Any = None, commands: Any = None) -> dict[str, Any]:
    """A fresh context per request: dataloaders must not cache across requests.

    `principal`: who asks (a `modeldb.writer.registry.Principal`; None reads as a caller
    without roles). `commands`: what runs registry mutations and waits for their effect
    (`execute(...)`, `settle()`: the System); None turns mutations off.
    """
    return {"loaders": Loaders(queries), "registry": RegistryLoaders(RegistryQueries(queries.engine)),
            "graph": graph, "audit": audit, "principal": principal, "commands": commands}


def query_router(
    get_parts: Callable[[], tuple[RunQueries, GraphStore, AuditStore]],
    principal_of: Callable[[Request], Any] | None = None,
    get_commands: Callable[[], Any] | None = None,
) -> APIRouter:
    async def context(request: Request) -> dict[str, Any]:
        return graphql_context(
            *get_parts(), principal=principal_of(request) if principal_of else None,
            commands=get_commands() if get_commands else None)

    router = APIRouter()
    router.include_router(GraphQLRouter(build_schema(), context_getter=context), prefix="/graphql")

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return router


def export_schema() -> str:
    """The SDL of the schema, as committed in query_api/schema.graphql."""
    return build_schema().as_str() + "\n"


if __name__ == "__main__":  # python -m modeldb.query_api.app > query_api/schema.graphql
    print(export_schema(), end="")
