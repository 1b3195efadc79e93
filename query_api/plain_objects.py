"""Completing plain objects without graphql-core's per-field machinery.

A page of 100 runs with their params, metrics and tags is ~3,400 small objects whose fields
are attributes read with strawberry's default resolver. graphql-core completes each such
field with a resolve-info object, a path entry, the middleware chain and a leaf coercion,
and each run's `params` with an awaited dataloader call: profiled, that machinery was three
quarters of a search's time.

`PlainObjectExecutor` completes an object in one loop when every selected field is plain:
- a leaf read as an attribute (no resolver, no arguments): attribute, then the scalar's own
  `coerce_output_value`, exactly what the full path computes;
- an object or a list of objects read as an attribute, whose own selection is plain
  (completed the same way, recursively);
- a resolver marked `@prefetched(name)`, when the object carries that answer already in its
  `_prefetched` dict (a page's parent loaded it for every run at once, see
  `Query.runs`); without it, the object takes the full path and the resolver runs.
The object type must have no `is_type_of` check and nothing may be deferred. Anything else —
a null in a non-null field, a value the scalar refuses, any other resolver, `__typename` —
falls back to the full path for that object, so errors and their paths are unchanged.

Middleware (strawberry schema extensions with a `resolve` hook) is skipped on these fields
only when every such extension declares `root_fields_only = True` (it acts on root fields
only, like query_api/authz.py's AccessControl); otherwise nothing is fast-pathed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from graphql import (
    GraphQLList,
    GraphQLObjectType,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.pyutils import Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_ROOTS = ("Query", "Mutation", "Subscription")
_MISSING = object()
F = TypeVar("F", bound=Callable[..., Any])


def prefetched(name: str) -> Callable[[F], F]:
    """Mark a resolver whose answer a parent may have fetched already, for many objects at
    once, into the object's `_prefetched[name]` (exactly what the resolver would return):
    the plain path then reads that instead of running the resolver per object."""

    def mark(resolver: F) -> F:
        resolver._prefetched = name  # type: ignore[attr-defined]
        return resolver

    return mark


class Field(NamedTuple):
    """How one selected field of a plain object is completed."""

    response_name: str
    attribute: str  # the python attribute, or the `_prefetched` key of a marked resolver
    from_prefetched: bool
    non_null: bool
    leaf: Any  # the leaf type, or None for an object (list) completed by `plan`
    plan: Plan | None = None
    is_list: bool = False
    item_non_null: bool = False


Plan = tuple[Field, ...]


class PlainObjectExecutor(StrawberryGraphQLCoreExecutionContext):
    _plans: dict[tuple[Any, int], tuple[Any, Plan | None]]

    def complete_object_value(self, return_type: GraphQLObjectType, field_details_list: Any,
                              info: Any, path: Any, result: Any, position_context: Any) -> Any:
        plan = self._plan(return_type, field_details_list)
        if plan is not None:
            completed = _complete(plan, result)
            if completed is not None:
                return completed
        return super().complete_object_value(return_type, field_details_list, info, path, result,
                                             position_context)

    def complete_list_value(self, return_type: GraphQLList[Any], field_details_list: Any, info: Any,
                            path: Any, result: Any, position_context: Any) -> Any:
        """A list of plain objects in one loop (no per-item path, dispatch or plan lookup)."""
        item_type = return_type.of_type
        non_null = is_non_null_type(item_type)
        inner = item_type.of_type if non_null else item_type
        if isinstance(result, list) and is_object_type(inner):
            plan = self._plan(inner, field_details_list)
            if plan is not None:
                completed = _complete_list(plan, result, non_null)
                if completed is not None:
                    return completed
        return super().complete_list_value(return_type, field_details_list, info, path, result,
                                           position_context)

    def _plan(self, return_type: GraphQLObjectType, field_details_list: Any) -> Plan | None:
        """The fast plan for this selection of this type (None: not plain), computed once
        per selection like graphql-core memoizes collected subfields (same identity key,
        the list kept alive with the cached value)."""
        plans = self.__dict__.setdefault("_plans", {})
        key = (return_type, id(field_details_list))
        cached = plans.get(key)
        if cached is None:
            plans[key] = (field_details_list, None)  # a type reached again inside itself: not plain
            cached = (field_details_list, self._make_plan(return_type, field_details_list))
            plans[key] = cached
        return cached[1]

    def _make_plan(self, return_type: GraphQLObjectType, field_details_list: Any) -> Plan | None:
        if return_type.is_type_of is not None or return_type.name in _ROOTS:
            return None
        manager = self.middleware_manager
        if manager is not None and not all(getattr(m, "root_fields_only", False)
                                           for m in manager.middlewares):
            return None
        grouped, new_defer_usages, _forbidden = self.collect_subfields(return_type, field_details_list)
        if new_defer_usages:
            return None
        plan = []
        for response_name, details in grouped.items():
            field = self._plan_field(return_type, response_name, details)
            if field is None:
                return None
            plan.append(field)
        return tuple(plan)

    def _plan_field(self, parent: GraphQLObjectType, response_name: str, details: Any) -> Field | None:
        node = details[0].node
        field_def = parent.fields.get(node.name.value)
        if field_def is None or field_def.args or node.arguments:
            return None
        definition = (field_def.extensions or {}).get("strawberry-definition")
        if definition is None:
            return None
        if definition.base_resolver is None:
            if not getattr(field_def.resolve, "_is_default", False):
                return None
            attribute, from_prefetched = definition.python_name, False
        else:
            attribute = getattr(definition.base_resolver.wrapped_func, "_prefetched", None)
            if attribute is None or definition.extensions:
                return None
            from_prefetched = True
        non_null = is_non_null_type(field_def.type)
        kind = field_def.type.of_type if non_null else field_def.type
        if is_leaf_type(kind):
            return None if node.selection_set else Field(response_name, attribute, from_prefetched,
                                                         non_null, kind)
        is_list = is_list_type(kind)
        item_non_null = False
        if is_list:
            kind = kind.of_type
            item_non_null = is_non_null_type(kind)
            kind = kind.of_type if item_non_null else kind
        if not is_object_type(kind):  # a list of lists, an interface, a union: not plain
            return None
        plan = self._plan(kind, details)
        if plan is None:
            return None
        return Field(response_name, attribute, from_prefetched, non_null, None, plan, is_list,
                     item_non_null)


def _complete(plan: Plan, source: Any) -> dict[str, Any] | None:
    """The completed object, or None when the full path must handle it (it then raises or
    nulls exactly as graphql-core would)."""
    out: dict[str, Any] = {}
    try:
        for field in plan:
            if field.from_prefetched:
                value = (getattr(source, "_prefetched", None) or {}).get(field.attribute, _MISSING)
                if value is _MISSING:
                    return None
            else:
                value = getattr(source, field.attribute)
            if value is None or value is Undefined:
                if field.non_null:
                    return None
                out[field.response_name] = None
                continue
            if field.leaf is not None:
                value = field.leaf.coerce_output_value(value)
                if value is None or value is Undefined:
                    return None
            elif field.is_list:
                if not isinstance(value, list):
                    return None
                value = _complete_list(field.plan, value, field.item_non_null)  # type: ignore[arg-type]
            else:
                value = _complete(field.plan, value)  # type: ignore[arg-type]
            if value is None:
                return None
            out[field.response_name] = value
    except Exception:  # the full path reports it, located, as usual
        return None
    return out


def _complete_list(plan: Plan, items: list[Any], non_null: bool) -> list[Any] | None:
    """Every item completed, or None when any item needs the full path (which then
    completes the whole list as graphql-core does)."""
    out: list[Any] = []
    for item in items:
        if item is None:
            if non_null:
                return None
            out.append(None)
            continue
        completed = _complete(plan, item)
        if completed is None:
            return None
        out.append(completed)
    return out
