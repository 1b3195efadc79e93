"""The lineage graph held in memory, built from a sequence of events through the same
`graph_changes` as the stored graphs, with the same traversal semantics as `SqlGraph` and
`Neo4jGraph`: the start node and every node within `depth` hops over edges of the chosen
kinds, with the edges of those kinds between them.

Used to answer lineage as it was at a time (the events recorded up to then, from the audit
store: `modeldb audit ID --at T`), and as an independent reference the stores are tested
against.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from modeldb.event_schema import Event
from modeldb.projectors.lineage import (
    Direction,
    Edge,
    GraphStore,
    LineageGraph,
    Node,
    check_lineage_args,
    graph_changes,
)

# The event types `graph_changes` draws nodes or edges from (checked against it by
# tests/test_audit_report.py): a rebuild reads only these from the audit store.
LINEAGE_EVENT_TYPES = (
    "ProjectCreated", "ExperimentCreated", "RunStarted", "ArtifactLogged", "CodeVersionRecorded",
    "RunInputLogged", "RunOutputLogged", "DatasetCreated", "DatasetVersionCreated",
    "RegisteredModelCreated", "ModelVersionCreated", "EnvironmentRegistered", "DeploymentRecorded",
)


class MemoryGraph(GraphStore):
    def __init__(self, nodes: dict[str, Node], edges: set[Edge]):
        self.nodes = nodes
        self.edges = edges
        self._out: dict[str, list[Edge]] = defaultdict(list)
        self._in: dict[str, list[Edge]] = defaultdict(list)
        for edge in edges:
            self._out[edge.source].append(edge)
            self._in[edge.target].append(edge)

    @classmethod
    def of_events(cls, events: Iterable[Event]) -> MemoryGraph:
        changes = graph_changes(events)
        # As in the stores: a definition wins over a reference; the first reference stays.
        nodes = {**{n.id: n for n in changes.refs.values()}, **changes.nodes}
        return cls(nodes, set(changes.edges))

    async def lineage(
        self,
        start: str,
        direction: Direction = "UPSTREAM",
        depth: int = 5,
        edge_kinds: Sequence[str] | None = None,
    ) -> LineageGraph:
        check_lineage_args(direction, depth)
        if start not in self.nodes:
            return LineageGraph()
        kinds = set(edge_kinds or ())
        links = self._out if direction == "UPSTREAM" else self._in
        reached, frontier = {start}, [start]
        for _ in range(depth):  # breadth first: a node is in when some path is short enough
            following = []
            for node in frontier:
                for edge in links.get(node, ()):
                    far = edge.target if direction == "UPSTREAM" else edge.source
                    if (not kinds or edge.kind in kinds) and far not in reached:
                        reached.add(far)
                        following.append(far)
            frontier = following
        nodes = sorted((self.nodes[n] for n in reached if n in self.nodes), key=lambda n: n.id)
        edges = sorted((e for n in reached for e in self._out.get(n, ())
                        if e.target in reached and (not kinds or e.kind in kinds)),
                       key=lambda e: (e.source, e.target, e.kind))
        return LineageGraph(nodes, edges)
