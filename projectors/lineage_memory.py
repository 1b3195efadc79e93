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
    LINEAGE_EVENT_TYPES,
    Direction,
    Edge,
    GraphStore,
    LineageGraph,
    Node,
    bounded_walk,
    check_lineage_args,
    graph_changes,
)

__all__ = ["LINEAGE_EVENT_TYPES", "MemoryGraph"]  # the types' old home: report.py imports them here

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
        limit: int | None = None,
    ) -> LineageGraph:
        check_lineage_args(direction, depth, limit)
        if start not in self.nodes:
            return LineageGraph()
        kinds = set(edge_kinds or ())
        links = self._out if direction == "UPSTREAM" else self._in

        async def step(frontier: list[str], _seen: set[str], _want: int | None) -> list[str]:
            return [edge.target if direction == "UPSTREAM" else edge.source
                    for node in frontier for edge in links.get(node, ())
                    if not kinds or edge.kind in kinds]

        # Breadth first: a node is in when some path is short enough.
        walked, truncated = await bounded_walk(start, depth, limit, step)
        reached = set(walked)
        nodes = sorted((self.nodes[n] for n in reached if n in self.nodes), key=lambda n: n.id)
        edges = sorted((e for n in reached for e in self._out.get(n, ())
                        if e.target in reached and (not kinds or e.kind in kinds)),
                       key=lambda e: (e.source, e.target, e.kind))
        return LineageGraph(nodes, edges, truncated)
