"""Completing plain objects without graphql-core's per-field machinery.

A page of 100 runs with their params, metrics and tags is ~3,100 small objects (KeyValue,
Metric) whose fields are attributes read with strawberry's default resolver. graphql-core
completes each such field with a resolve-info object, a path entry, the middleware chain
and a leaf coercion: profiled, most of the time of a search was spent there.

`PlainObjectExecutor` completes an object in one loop when every selected field is such a
"basic" field of a leaf type (no resolver, no arguments, no directive-deferred parts) and
the object type has no `is_type_of` check: attribute, then the scalar's own
`coerce_output_value`, exactly what the full path computes. Anything else — a null in a
non-null field, a value the scalar refuses, a field with a resolver, `__typename` — falls
back to the full path for that object, so errors and their paths are unchanged.

Middleware (strawberry schema extensions with a `resolve` hook) is skipped on these leaf
fields only when every such extension declares `root_fields_only = True` (it acts on root
fields only, like query_api/authz.py's AccessControl); otherwise nothing is fast-pathed.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLList, GraphQLObjectType, is_leaf_type, is_non_null_type, is_object_type
from graphql.pyutils import Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_ROOTS = ("Query", "Mutation", "Subscription")
# (response name, python attribute, leaf type, non-null) of each selected field
Plan = tuple[tuple[str, str, Any, bool], ...]


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
            node = details[0].node
            field_def = return_type.fields.get(node.name.value)
            if field_def is None or field_def.args or node.arguments or node.selection_set:
                return None
            if not getattr(field_def.resolve, "_is_default", False):
                return None
            definition = (field_def.extensions or {}).get("strawberry-definition")
            if definition is None or definition.base_resolver is not None:
                return None
            non_null = is_non_null_type(field_def.type)
            leaf = field_def.type.of_type if non_null else field_def.type
            if not is_leaf_type(leaf):
                return None
            plan.append((response_name, definition.python_name, leaf, non_null))
        return tuple(plan)


def _complete(plan: Plan, source: Any) -> dict[str, Any] | None:
    """The completed object, or None when the full path must handle it (it then raises or
    nulls exactly as graphql-core would)."""
    out: dict[str, Any] = {}
    try:
        for name, attribute, leaf, non_null in plan:
            value = getattr(source, attribute)
            if value is None or value is Undefined:
                if non_null:
                    return None
                out[name] = None
                continue
            coerced = leaf.coerce_output_value(value)
            if coerced is None or coerced is Undefined:
                return None
            out[name] = coerced
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
