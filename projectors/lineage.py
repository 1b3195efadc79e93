"""Lineage as a graph: which nodes and edges an event implies, and the traversal port.

Both graph stores (SQL tables, Neo4j) take their nodes and edges from `graph_changes`, so
they cannot disagree about what the events mean. Every edge points from effect to cause
(W3C PROV): upstream is "follow outgoing edges", downstream is "follow incoming edges".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from modeldb.event_schema import Event, RecordedEvent
from modeldb.event_schema import types as t
from modeldb.event_schema.nodes import node_id

Direction = Literal["UPSTREAM", "DOWNSTREAM"]


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    name: str


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str


@dataclass
class LineageGraph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    truncated: bool = False  # the node limit cut the walk short: more nodes lie within reach


@dataclass
class GraphChanges:
    """Nodes an event defines (real), nodes it only refers to (placeholders), and edges."""

    nodes: dict[str, Node] = field(default_factory=dict)
    refs: dict[str, Node] = field(default_factory=dict)
    edges: set[Edge] = field(default_factory=set)

    def node(self, kind: str, entity_id: str, name: str | None = None) -> str:
        nid = node_id(kind, entity_id)
        self.nodes[nid] = Node(nid, kind, name or entity_id)
        return nid

    def ref(self, kind: str, entity_id: str, name: str | None = None) -> str:
        nid = node_id(kind, entity_id)
        if nid not in self.refs:
            self.refs[nid] = Node(nid, kind, name or entity_id)
        return nid

    def edge(self, source: str, target: str, kind: str) -> None:
        self.edges.add(Edge(source, target, kind))


# The event types `graph_changes` draws nodes or edges from (checked against it by
# tests/test_audit_report.py): the others need not even be decoded.
LINEAGE_EVENT_TYPES = (
    "ProjectCreated", "ExperimentCreated", "RunStarted", "ArtifactLogged", "CodeVersionRecorded",
    "RunInputLogged", "RunOutputLogged", "DatasetCreated", "DatasetVersionCreated",
    "RegisteredModelCreated", "ModelVersionCreated", "EnvironmentRegistered", "DeploymentRecorded",
)
_LINEAGE_TYPES = frozenset(LINEAGE_EVENT_TYPES)


def lineage_events(events: Iterable[RecordedEvent]) -> Iterator[Event]:
    """The decoded events that can change the graph. Most of a log (params, metrics, tags)
    cannot, and decoding is most of a projector's cost, so those are skipped by their raw
    type (upcasting changes payloads, never types)."""
    return (e.event for e in events if e.raw["type"] in _LINEAGE_TYPES)


def graph_changes(events: Iterable[Event]) -> GraphChanges:
    changes = GraphChanges()
    for event in events:
        _add(changes, event)
    return changes


def _add(g: GraphChanges, e: Event) -> None:
    agg, p = e.aggregate.id, e.payload
    if isinstance(p, t.ProjectCreated):
        g.node("Project", agg, p.name)
    elif isinstance(p, t.ExperimentCreated):
        g.edge(g.node("Experiment", agg, p.name), g.ref("Project", p.project), "PART_OF")
    elif isinstance(p, t.RunStarted):
        run = g.node("Run", agg, p.name or agg)
        experiment = g.ref("Experiment", f"{p.project}/{p.experiment}", p.experiment)
        g.edge(run, experiment, "PART_OF")
        # The run also says where its experiment lives, whichever of them arrives first.
        g.edge(experiment, g.ref("Project", p.project), "PART_OF")
        if p.parent_run_id:
            g.edge(run, g.ref("Run", p.parent_run_id), "CHILD_OF")
    elif isinstance(p, t.ArtifactLogged):
        g.edge(g.ref("Artifact", p.digest, p.name), g.ref("Run", agg), "GENERATED_BY")
    elif isinstance(p, t.CodeVersionRecorded):
        commit = f"{p.commit}+dirty.{(p.diff_digest or 'unknown')[7:19]}" if p.dirty else p.commit
        g.edge(g.ref("Run", agg), g.ref("CodeVersion", commit, commit[:12]), "USED")
    elif isinstance(p, t.RunLinked):
        entity = g.ref(p.kind, p.id, p.name)
        if e.type == "RunInputLogged":
            g.edge(g.ref("Run", agg), entity, "USED")
        else:
            g.edge(entity, g.ref("Run", agg), "GENERATED_BY")
    elif isinstance(p, t.DatasetCreated):
        g.node("Dataset", agg, p.name)
    elif isinstance(p, t.DatasetVersionCreated):
        version = g.node("DatasetVersion", f"{agg}@{p.digest}", f"{agg}@{p.digest[7:19]}")
        g.edge(version, g.ref("Dataset", agg), "VERSION_OF")
        for source in p.derived_from:
            g.edge(version, g.ref("DatasetVersion", source), "DERIVED_FROM")
    elif isinstance(p, t.RegisteredModelCreated):
        g.node("RegisteredModel", agg, p.name)
    elif isinstance(p, t.ModelVersionCreated):
        version = g.node("ModelVersion", f"{agg}/{p.version}", f"{agg} v{p.version}")
        g.edge(version, g.ref("RegisteredModel", agg), "VERSION_OF")
        if p.run_id:
            g.edge(version, g.ref("Run", p.run_id), "GENERATED_BY")
        if p.artifact_digest:
            g.edge(version, g.ref("Artifact", p.artifact_digest, p.artifact_name), "DERIVED_FROM")
    elif isinstance(p, t.EnvironmentRegistered):
        g.node("Environment", agg, p.name)
    elif isinstance(p, t.DeploymentRecorded):
        deployment = g.node("Deployment", agg, f"{p.model} v{p.version} @ {p.environment}")
        g.edge(deployment, g.ref("ModelVersion", f"{p.model}/{p.version}",
                                 f"{p.model} v{p.version}"), "USED")
        g.edge(deployment, g.ref("Environment", p.environment), "PART_OF")


MAX_DEPTH = 50  # the API clamps to the same bound
DEFAULT_LIMIT = 1000  # nodes per answer the API returns unless asked for more
MAX_LIMIT = 100_000  # the API clamps to this bound


def check_lineage_args(direction: str, depth: int, limit: int | None = None) -> None:
    """Both stores refuse the same bad arguments with the same messages."""
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be an int from 0 to {MAX_DEPTH}, not {depth!r}")
    if direction not in ("UPSTREAM", "DOWNSTREAM"):
        raise ValueError(f"direction must be UPSTREAM or DOWNSTREAM, not {direction!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int (or None for no limit), not {limit!r}")


# `step(frontier, seen, want)`: the nodes one hop from `frontier`. With `want` set it may stop
# early but must include the `want` smallest ids not in `seen`; it may return seen nodes too.
Step = Callable[[list[str], set[str], "int | None"], Awaitable[Iterable[str]]]


async def bounded_walk(start: str, depth: int, limit: int | None, step: Step) -> tuple[list[str], bool]:
    """Breadth first from `start`, at most `limit` nodes (start included), nearest first and,
    within the level the limit cuts, smallest ids first; so every store picks the same nodes.

    Returns the nodes reached and whether the limit left reachable nodes out. Every level but
    the last is complete, so a node's level is its true distance. Each level asks `step` for
    at most one node more than still fits: the store never reads the whole closure."""
    reached, seen, frontier = [start], {start}, [start]
    for _ in range(depth):
        if not frontier:
            break
        room = None if limit is None else limit - len(reached)
        fresh = sorted({n for n in await step(frontier, seen, None if room is None else room + 1)
                        if n not in seen})
        if room is not None and len(fresh) > room:
            reached.extend(fresh[:room])
            return reached, True
        reached.extend(fresh)
        seen.update(fresh)
        frontier = fresh
    return reached, False


class GraphStore(ABC):
    """Traversal over a lineage graph, whatever holds it."""

    @abstractmethod
    async def lineage(
        self,
        start: str,
        direction: Direction = "UPSTREAM",
        depth: int = 5,
        edge_kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> LineageGraph:
        """The start node and every node within `depth` hops, with the edges between them.

        With `limit`, at most that many nodes, chosen as `bounded_walk` does, and
        `truncated` set when more were within reach."""
