"""`modeldb search TEXT`: full-text search over projects, experiments, runs, datasets and
registered models (the GraphQL `search` field), on a server (`--url`) or the embedded home."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from modeldb.infra.browse import _emit, _guarded, graphql, table

QUERY = """query($t: String!, $k: [String!], $n: Int!) {
  search(text: $t, kinds: $k, first: $n) { kind id name snippet score } }"""


def search(args: argparse.Namespace) -> int:
    hits = graphql(args, QUERY, t=" ".join(args.text), k=args.kind or None, n=args.limit)["search"]
    return _emit(args, hits, lambda rows: table(rows, [
        ("kind", "kind"), ("id", "id"), ("name", "name"), ("match", "snippet")])
        + f"\n{len(rows)} hit(s)")


def add_parser(sub: Any, data_dir: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("search", help="full-text search: names, descriptions, tags, params")
    p.add_argument("text", nargs="+", help="words to find (the last one also as a prefix)")
    p.add_argument("--kind", action="append",
                   help="only this kind (repeatable): Project, Experiment, Run, Dataset, "
                   "RegisteredModel, ModelVersion")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--url", default=None,
                   help="a ModelDB server (default $MODELDB_URL, else the embedded home)")
    data_dir(p)
    p.set_defaults(fn=_guarded(search))
