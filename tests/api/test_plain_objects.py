"""query_api/plain_objects.py: the fast completion of plain objects answers exactly what
graphql-core's full path answers, errors and their paths included."""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from modeldb.query_api.plain_objects import PlainObjectExecutor, prefetched


@strawberry.enum
class Colour(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Item:
    key: str
    value: float | None
    count: int
    colour: Colour

    @strawberry.field
    def twice(self) -> int:  # a resolver: not plain
        return self.count * 2


@strawberry.type
class Box:
    """Nested plain objects, and a list resolver a parent may have prefetched."""

    label: str
    first: Item | None
    _items: strawberry.Private[list[Item]]
    _prefetched: strawberry.Private[dict[str, Any] | None] = None

    @strawberry.field
    @prefetched("contents")
    def contents(self) -> list[Item]:
        Box.resolved += 1
        return self._items

    resolved = 0


def _items(n: int) -> list[Item]:
    return [Item(key=f"k{i}", value=i / 4, count=i, colour=Colour.RED) for i in range(n)]


@strawberry.type
class Query:
    @strawberry.field
    def boxes(self, prefetch: bool = True) -> list[Box]:
        made = []
        for i in range(5):
            items = _items(i)
            made.append(Box(label=f"b{i}", first=items[0] if items else None, _items=items,
                            _prefetched={"contents": items} if prefetch else None))
        return made

    @strawberry.field
    def items(self) -> list[Item]:
        return [Item(key=f"k{i}", value=None if i % 3 == 0 else i / 4, count=i,
                     colour=Colour.RED if i % 2 else Colour.BLUE) for i in range(50)]

    @strawberry.field
    def broken(self) -> list[Item]:
        # A null in a non-null field and a value Int refuses: both must error as usual.
        return [Item(key="ok", value=1.0, count=1, colour=Colour.RED),
                Item(key=None, value=1.0, count=2, colour=Colour.RED),  # type: ignore[arg-type]
                Item(key="big", value=1.0, count=2**40, colour=Colour.BLUE)]


class Counting(SchemaExtension):
    """A resolve hook that acts on every field: its presence turns the fast path off."""

    calls = 0

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        Counting.calls += 1
        return _next(root, info, *args, **kwargs)


QUERIES = [
    "{ items { key value count colour } }",
    "{ items { key twice value } }",
    "{ items { __typename key k2: key } }",
    "query($skip: Boolean!) { items { key value @skip(if: $skip) count @include(if: $skip) } }",
    "{ broken { key count } }",
    "{ items { ...F } } fragment F on Item { colour count }",
    "{ boxes { label first { key count } contents { key value colour } } }",
    "{ boxes(prefetch: false) { label contents { key } } }",
    "{ boxes { label contents { key twice } } }",
]


def _result(executor: type, query: str, extensions: list[Any]) -> Any:
    schema = strawberry.Schema(query=Query, execution_context_class=executor,
                               extensions=extensions)
    result = schema.execute_sync(query, variable_values={"skip": True})
    errors = [(e.message, e.path) for e in result.errors or []]
    return result.data, errors


@pytest.mark.parametrize("query", QUERIES)
def test_the_fast_path_answers_what_the_full_path_answers(query: str) -> None:
    fast = _result(PlainObjectExecutor, query, [])
    assert fast == _result(StrawberryGraphQLCoreExecutionContext, query, [])
    assert fast[0] is not None or fast[1]


def test_null_and_refused_values_error_with_their_paths() -> None:
    data, errors = _result(PlainObjectExecutor, "{ broken { key count } }", [])
    assert data is None
    assert [path for _, path in errors] == [["broken", 1, "key"]]
    _, errors = _result(PlainObjectExecutor, "{ broken { count } }", [])
    assert errors[0][1] == ["broken", 2, "count"] and "Int cannot represent" in errors[0][0]


def test_a_resolve_hook_on_every_field_still_sees_every_field() -> None:
    Counting.calls = 0
    data, _ = _result(PlainObjectExecutor, "{ items { key count } }", [Counting])
    assert Counting.calls == 1 + 50 * 2  # the root field and each item's two fields
    assert data == _result(StrawberryGraphQLCoreExecutionContext, "{ items { key count } }", [])[0]


class CountingExecutor(PlainObjectExecutor):
    fields = 0

    def execute_field(self, *args: Any, **kwargs: Any) -> Any:
        CountingExecutor.fields += 1
        return super().execute_field(*args, **kwargs)


def test_plain_items_skip_the_per_field_machinery() -> None:
    CountingExecutor.fields = 0
    data, _ = _result(CountingExecutor, "{ items { key value count colour } }", [])
    assert len(data["items"]) == 50
    assert CountingExecutor.fields == 1  # only the root field went through execute_field
    CountingExecutor.fields = 0
    _result(CountingExecutor, "{ items { key twice } }", [])
    assert CountingExecutor.fields == 1 + 50 * 2  # a resolver field: the full path


def test_prefetched_lists_and_nested_objects_complete_in_one_plain_pass() -> None:
    query = "{ boxes { label first { key } contents { key count } } }"
    CountingExecutor.fields, Box.resolved = 0, 0
    data, errors = _result(CountingExecutor, query, [])
    assert not errors and [len(b["contents"]) for b in data["boxes"]] == [0, 1, 2, 3, 4]
    assert data["boxes"][2]["first"] == {"key": "k0"}
    assert (CountingExecutor.fields, Box.resolved) == (1, 0)  # no resolver ran, no field machinery
    # Not prefetched: the resolver runs for every box, through the full path.
    CountingExecutor.fields = 0
    data, _ = _result(CountingExecutor, "{ boxes(prefetch: false) { label contents { key } } }", [])
    assert Box.resolved == 5 and [len(b["contents"]) for b in data["boxes"]] == [0, 1, 2, 3, 4]
