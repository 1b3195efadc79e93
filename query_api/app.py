"""The read side's HTTP surface: /graphql, and the web UI at /."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.requests import HTTPConnection
from fastapi.responses import FileResponse
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)

from modeldb.projectors.audit import AuditStore
from modeldb.projectors.lineage import GraphStore
from modeldb.query_api.analysis import AnalysisQuery
from modeldb.query_api.encoding import OrjsonGraphQLRouter
from modeldb.query_api.live import Subscription
from modeldb.query_api.loaders import Loaders, ReleaseLoaded
from modeldb.query_api.registry import Mutation, RegistryQuery
from modeldb.query_api.registry_queries import RegistryLoaders, RegistryQueries
from modeldb.query_api.runs import RunQueries
from modeldb.query_api.schema import Query
from modeldb.query_api.search import SearchQuery
from modeldb.query_api.timeout import TimedSchema, query_timeout

STATIC = Path(__file__).parent / "static"
UI_FILE = re.compile(r"[a-z0-9_-]+\.(js|css|svg)")
UI_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}


SCHEMA_FILE = Path(__file__).parent / "schema.graphql"
# The depth and alias limits as validation rules made once: each limiter extension makes a
# new rule class when constructed, so one per request would make every request's rules
# differ and the validation cache (keyed by the rules) never hit (~2 ms per query).
GUARD_RULES = [*QueryDepthLimiter(max_depth=12).validation_rules,
               *MaxAliasesLimiter(max_alias_count=30).validation_rules]


def build_schema() -> Any:
    """The GraphQL schema with its guards; `query_api/schema.graphql` is its printed form."""
    from strawberry.tools import merge_types

    from modeldb.query_api.authz import AccessControl, SecurityMutation, SecurityQuery
    from modeldb.query_api.plain_objects import PlainObjectExecutor

    return TimedSchema(
        timeout=query_timeout(),  # query_api/timeout.py
        execution_context_class=PlainObjectExecutor,  # lists of plain objects, fast
        query=merge_types("Query", (Query, RegistryQuery, SearchQuery, SecurityQuery,
                                          AnalysisQuery)),
        mutation=merge_types("Mutation", (Mutation, SecurityMutation)),
        subscription=Subscription,
        extensions=[AccessControl,  # query_api/authz.py: the rule of every root field
                    lambda: AddValidationRules(GUARD_RULES),
                    lambda: MaxTokensLimiter(max_token_count=5000),
                    # Dashboards send the same few queries again and again: parse and
                    # validate each text once (profiled: ~11% of a busy server's time).
                    lambda: ParserCache(maxsize=512),
                    lambda: ValidationCache(maxsize=512),
                    ReleaseLoaded],
    )


def graphql_context(queries: RunQueries, graph: GraphStore, audit: AuditStore, *,
                    principal: Any = None, commands: Any = None) -> dict[str, Any]:
    """A fresh context per request: dataloaders must not cache across requests.

    `principal`: who asks (a `modeldb.writer.registry.Principal`; None reads as a caller
    without roles). `commands`: what runs registry mutations and waits for their effect
    (`execute(...)`, `settle()`: the System); None turns mutations off.
    """
    access = getattr(principal, "access", None)  # authenticated callers see what they may read
    if access is not None:
        queries = queries.restricted(access.readable("project"))
    return {"loaders": Loaders(queries), "registry": RegistryLoaders(RegistryQueries(queries.engine)),
            "graph": graph, "audit": audit, "principal": principal, "commands": commands}


def query_router(
    get_parts: Callable[[], tuple[RunQueries, GraphStore, AuditStore]],
    principal_of: Callable[[Request], Any] | None = None,
    get_commands: Callable[[], Any] | None = None,
    extra_context: Callable[[], dict[str, Any]] | None = None,
) -> APIRouter:
    # An HTTPConnection, not a Request: subscriptions arrive as websockets (whose handshake
    # carries the same headers).
    async def context(request: HTTPConnection) -> dict[str, Any]:
        made = graphql_context(
            *get_parts(), principal=principal_of(request) if principal_of else None,  # type: ignore[arg-type]
            commands=get_commands() if get_commands else None)
        return {**made, **(extra_context() if extra_context else {})}

    router = APIRouter()
    # orjson: big answers (a whole metricSeries) serialize in one fast pass
    router.include_router(OrjsonGraphQLRouter(build_schema(), context_getter=context), prefix="/graphql")

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @router.get("/ui/{name}", include_in_schema=False)
    async def ui_file(name: str) -> FileResponse:
        # Only the UI's own flat files (ES modules, CSS): no paths, no other extensions.
        if not UI_FILE.fullmatch(name) or not (STATIC / name).is_file():
            raise HTTPException(404, f"no UI file {name!r}")
        return FileResponse(STATIC / name, media_type=UI_TYPES[name.rsplit(".", 1)[1]],
                            headers={"cache-control": "no-cache"})

    return router


def export_schema() -> str:
    """The SDL of the schema, as committed in query_api/schema.graphql."""
    return build_schema().as_str() + "\n"


if __name__ == "__main__":  # python -m modeldb.query_api.app > query_api/schema.graphql
    print(export_schema(), end="")
