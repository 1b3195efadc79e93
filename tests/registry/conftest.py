"""Helpers for the registry tests: commands and GraphQL on a System, as given users."""

from __future__ import annotations

from typing import Any

import pytest

from modeldb.event_schema import uuid7
from modeldb.infra.system import System
from modeldb.query_api.app import build_schema, graphql_context
from modeldb.query_api.runs import RunQueries
from modeldb.writer.commands import CommandResult
from modeldb.writer.registry import ADMIN_ROLE, Principal
from tests.helpers import DIGEST_B, run_events, wire

ALICE = Principal("alice")
BOB = Principal("bob")
ADMIN = Principal("root", frozenset({ADMIN_ROLE}))


class Registry:
    """A System driven the way the API drives it."""

    def __init__(self, system: System):
        self.system = system
        system.self_projecting = True  # no projector tasks run in these tests: catch up here

    async def run(self, command: str, who: Principal = ALICE, expected: int | None = None,
                  **args: Any) -> CommandResult:
        return await self.system.execute(command, args, who, expected_revision=expected)

    async def trained_run(self) -> str:
        run = uuid7()
        events = run_events(run)
        from modeldb.event_schema import new_event

        events.insert(1, new_event("ArtifactLogged", run, {
            "name": "model.pkl", "digest": DIGEST_B, "size": 42,
            "uri": f"modeldb://artifacts/{DIGEST_B}", "kind": "model"}))
        await self.system.writer.ingest(wire(events), "alice")
        return run

    async def gql(self, query: str, who: Principal | None = ALICE, **variables: Any) -> Any:
        await self.system.catch_up()
        result = await build_schema().execute(
            query, variable_values=variables,
            context_value=graphql_context(RunQueries(self.system.engine), self.system.graph,
                                          self.system.audit, principal=who,
                                          commands=self.system))
        return result


@pytest.fixture
def registry(system: System) -> Registry:
    return Registry(system)
