"""One node-id grammar for lineage, shared by the SDK, the stores and the API.

`run:<uuid>`, `project:<name>`, `experiment:<project>/<name>`, `dataset:<name>`,
`datasetversion:<dataset>@sha256:<hex>`, `artifact:sha256:<hex>`,
`registeredmodel:<name>`, `modelversion:<name>/<version>`, `codeversion:<commit>`,
`environment:<name>`, `deployment:<id>`.
"""

from __future__ import annotations

NODE_KINDS = (
    "Project", "Experiment", "Run", "Dataset", "DatasetVersion", "Artifact",
    "RegisteredModel", "ModelVersion", "CodeVersion", "Environment", "Deployment",
)
EDGE_KINDS = ("USED", "GENERATED_BY", "DERIVED_FROM", "VERSION_OF", "CHILD_OF", "PART_OF")
_PREFIX = {kind: kind.lower() for kind in NODE_KINDS}
_KIND = {prefix: kind for kind, prefix in _PREFIX.items()}


def node_id(kind: str, entity_id: str) -> str:
    return f"{_PREFIX[kind]}:{entity_id}"


def parse_node_id(value: str) -> tuple[str, str]:
    """`run:abc` → ("Run", "abc"). A bare id is taken to be a run's, the common case."""
    prefix, sep, rest = value.partition(":")
    if sep and prefix in _KIND:
        return _KIND[prefix], rest
    return "Run", value


def aggregate_of(entity: str) -> str:
    """An entity id in any form the API hands out → the id of the aggregate holding it."""
    kind, ident = parse_node_id(entity)
    if kind == "DatasetVersion":
        return ident.split("@", 1)[0]
    if kind == "ModelVersion":
        return ident.rsplit("/", 1)[0]
    return ident
