"""GraphQL responses serialized with orjson (several times faster than json.dumps, and it
matters for big answers such as `metricSeries`: a million-point series is one JSON value).

orjson writes NaN and ±inf as null — GraphQL answers carry no non-finite floats anyway
(Float refuses them; JSON values are built without them). What orjson cannot serialize
(an integer beyond 64 bits inside a JSON value) falls back to json.dumps.

A value may be an `orjson.Fragment`: JSON text written beforehand, copied as it is."""

from __future__ import annotations

import json

import orjson
from strawberry.fastapi import GraphQLRouter


def encode(data: object) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(data, separators=(",", ":"), default=_plain).encode()


def _plain(value: object) -> object:
    if isinstance(value, orjson.Fragment):  # pre-encoded JSON (query_api/series.py)
        return orjson.loads(orjson.dumps(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class OrjsonGraphQLRouter(GraphQLRouter):
    def encode_json(self, data: object) -> bytes:
        return encode(data)
