"""Search (recall): the vocabulary shared by the manager, the HTTP API, the client and the
adapters. What the search does is in ``memstore.memory.search``; which text and vectors it
compares comes from ``memstore.embeddings``.

Modes:

* ``filter``: entities whose JSON matches ``filter`` (every hit scores 1.0);
* ``keyword``: full text over the indexed fields, ranked by BM25;
* ``semantic``: cosine similarity between the query's embedding and each item's;
* ``hybrid``: keyword and semantic rankings fused by reciprocal rank;
* ``auto``: ``hybrid`` when there is a query and an embedder, ``keyword`` when there is a
  query and no embedder, ``filter`` without a query.

A ``filter`` (modes other than ``filter`` take one too, applied before ranking) maps a
field path (dots walk nested objects: ``"author.name"``) to a value (equality) or to an
object of operators, as LangGraph's ``SearchOp.filter`` does.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from memstore.core.errors import InvalidInputError
from memstore.core.validation import TYPE_RE, check_limit, check_name, name_problem

SearchMode = Literal["auto", "filter", "keyword", "semantic", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = ("auto", "filter", "keyword", "semantic", "hybrid")
#: Messages and tool usage have no filter mode.
TEXT_SEARCH_MODES: tuple[SearchMode, ...] = ("auto", "keyword", "semantic", "hybrid")

#: The longest query accepted (characters): a question, not a document.
MAX_QUERY_LENGTH = 4096

# Comparison operators a filter accepts; a field's value without one means $eq.
FILTER_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")

# -- argument checks ---------------------------------------------------------------------
# Run by the manager (in process) and the client alike, so a mistake gets the same
# InvalidInputError, naming the field, wherever it is made; nothing is searched or written.


@dataclass(frozen=True, slots=True)
class EntitySearch:
    """A checked ``search_entities`` request (``mode`` resolved from ``auto``)."""

    query: str | None
    types: tuple[str, ...] | None
    filter: dict[str, Any] | None
    mode: SearchMode
    limit: int


@dataclass(frozen=True, slots=True)
class TextSearch:
    """A checked ``search_messages`` / ``search_tool_usage`` request."""

    query: str
    scope: str | None  # the conversation id or the tool name
    mode: SearchMode
    limit: int


def _check_mode(
    mode: object, query: str | None, *, has_embedder: Callable[[], bool], kinds: tuple[str, ...]
) -> SearchMode:
    if not isinstance(mode, str) or mode not in kinds:
        raise InvalidInputError(f"mode must be one of {', '.join(kinds)}", field="mode")
    if mode == "auto":
        if query is None:
            return "filter"
        return "hybrid" if has_embedder() else "keyword"
    if mode == "filter":
        if query is not None:
            raise InvalidInputError(
                "mode filter takes no query (use keyword, semantic or hybrid)", field="query"
            )
        return "filter"
    if query is None:
        raise InvalidInputError(f"mode {mode} needs a query", field="query")
    if mode in ("semantic", "hybrid") and not has_embedder():
        raise InvalidInputError(
            f"mode {mode} needs an embedder and this service has none (MEMSTORE_EMBEDDER=none):"
            " use keyword or filter",
            field="mode",
        )
    return mode  # type: ignore[return-value]


def _check_query(query: object, *, required: bool) -> str | None:
    if query is None and not required:
        return None
    if not isinstance(query, str):
        raise InvalidInputError("query must be a string", field="query")
    if not query.strip():
        raise InvalidInputError("query must not be empty", field="query")
    if len(query) > MAX_QUERY_LENGTH:
        raise InvalidInputError(
            f"query is longer than {MAX_QUERY_LENGTH} characters", field="query"
        )
    return query


def check_entity_search(
    query: object,
    types: object,
    filter: object,
    mode: object,
    limit: object,
    *,
    max_limit: int,
    default_limit: int,
    has_embedder: Callable[[], bool],
) -> EntitySearch:
    """``search_entities``' arguments, or ``InvalidInputError`` naming the field.
    ``has_embedder`` is asked only when the mode needs to know."""
    checked_query = _check_query(query, required=False)
    checked_types: tuple[str, ...] | None = None
    if types is not None:
        if not isinstance(types, list | tuple) or not types:
            raise InvalidInputError("types must be a non-empty list of entity types", field="types")
        for t in types:
            if not isinstance(t, str) or TYPE_RE.fullmatch(t) is None:
                raise InvalidInputError(name_problem("entity_type", t), field="types")
        checked_types = tuple(types)
    checked_filter: dict[str, Any] | None = None
    if filter is not None:
        if not isinstance(filter, dict):
            raise InvalidInputError("filter must be a JSON object", field="filter")
        check_filter(filter)
        checked_filter = filter or None
    checked_mode = _check_mode(mode, checked_query, has_embedder=has_embedder, kinds=SEARCH_MODES)
    return EntitySearch(
        checked_query,
        checked_types,
        checked_filter,
        checked_mode,
        check_limit(limit, max_limit, default=default_limit),  # type: ignore[arg-type]
    )


def check_text_search(
    query: object,
    scope_field: str,
    scope: object,
    mode: object,
    limit: object,
    *,
    max_limit: int,
    default_limit: int,
    has_embedder: Callable[[], bool],
) -> TextSearch:
    """``search_messages`` (``scope_field`` ``conversation_id``) and ``search_tool_usage``
    (``tool_name``): a query is required, there is no filter mode."""
    checked_query = _check_query(query, required=True)
    assert checked_query is not None
    if scope is not None:
        check_name(scope_field, scope)
    checked_mode = _check_mode(
        mode, checked_query, has_embedder=has_embedder, kinds=TEXT_SEARCH_MODES
    )
    return TextSearch(
        checked_query,
        scope if isinstance(scope, str) else None,
        checked_mode,
        check_limit(limit, max_limit, default=default_limit),  # type: ignore[arg-type]
    )


# -- filters -----------------------------------------------------------------------------


def check_filter(filter: dict[str, Any], prefix: str = "filter") -> None:
    """Every operator known, every operator's value of the right type; the error names the
    path, e.g. ``filter.stars.$foo``."""
    for key, value in filter.items():
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise InvalidInputError(
                f"{prefix}: {key!r} is not a field path (names joined by dots)", field=prefix
            )
        path = f"{prefix}.{key}"
        if key.startswith("$"):
            raise InvalidInputError(
                f'{path}: an operator needs a field before it (e.g. {{"stars": {{"$gt": 3}}}})',
                field=path,
            )
        if isinstance(value, dict):
            _check_condition(value, path)


def _check_condition(condition: dict[str, Any], path: str) -> None:
    operators = [k for k in condition if isinstance(k, str) and k.startswith("$")]
    if not operators:
        check_filter(condition, path)  # an object: its fields are matched one by one
        return
    if len(operators) != len(condition):
        raise InvalidInputError(
            f"{path}: an object of operators holds only operators ($eq, $gt, ...)", field=path
        )
    for op, value in condition.items():
        where = f"{path}.{op}"
        if op not in FILTER_OPERATORS:
            raise InvalidInputError(
                f"{where}: unknown operator; use one of {', '.join(FILTER_OPERATORS)}",
                field=where,
            )
        if op in ("$in", "$nin"):
            if not isinstance(value, list):
                raise InvalidInputError(f"{where} takes a list of values", field=where)
        elif op in ("$gt", "$gte", "$lt", "$lte") and not _orderable(value):
            raise InvalidInputError(f"{where} takes a number or a string", field=where)


def _orderable(value: object) -> bool:
    return isinstance(value, int | float | str) and not isinstance(value, bool)


#: What :func:`field_value` answers for a field that is not there.
MISSING: Any = object()


def field_value(data: Any, path: str) -> Any:
    """The value at ``path`` (dots walk nested objects), or :data:`MISSING`."""
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return MISSING
        data = data[part]
    return data


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: ``1 == 1.0``, but ``true`` is no number and ``"1"`` no ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _compare(op: str, value: Any, operand: Any) -> bool:
    # Numbers compare with numbers, strings with strings; anything else never matches.
    if not (_orderable(value) and _orderable(operand)) or isinstance(value, str) != isinstance(
        operand, str
    ):
        return False
    if op == "$gt":
        return bool(value > operand)
    if op == "$gte":
        return bool(value >= operand)
    if op == "$lt":
        return bool(value < operand)
    return bool(value <= operand)


def _apply(op: str, value: Any, operand: Any) -> bool:
    if value is MISSING:
        return op in ("$ne", "$nin")
    if op == "$eq":
        return json_equal(value, operand)
    if op == "$ne":
        return not json_equal(value, operand)
    if op == "$in":
        return any(json_equal(value, o) for o in operand)
    if op == "$nin":
        return not any(json_equal(value, o) for o in operand)
    return _compare(op, value, operand)


def matches_filter(data: Any, filter: dict[str, Any]) -> bool:
    """Whether the JSON object ``data`` matches a checked ``filter`` (``check_filter``):
    every field's condition holds. A condition is a value (equality), an object of
    operators (all hold), or an object of fields (the field's object matches them)."""
    return compile_filter(filter)(data)


Predicate = Callable[[Any], bool]


def compile_filter(filter: dict[str, Any]) -> Predicate:
    """:func:`matches_filter` for one checked ``filter``, as a predicate over ``data``: the
    paths are split and the operators chosen once, not once per item a search tests."""
    tests = [_field_test(path, condition) for path, condition in filter.items()]
    if len(tests) == 1:
        return tests[0]

    def matches(data: Any) -> bool:
        return all(test(data) for test in tests)

    return matches


def _getter(path: str) -> Callable[[Any], Any]:
    """``field_value(data, path)`` with the path split once."""
    parts = path.split(".")
    if len(parts) == 1:
        name = parts[0]
        return lambda data: data[name] if isinstance(data, dict) and name in data else MISSING
    return lambda data: field_value_parts(data, parts)


def field_value_parts(data: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return MISSING
        data = data[part]
    return data


def _field_test(path: str, condition: Any) -> Predicate:
    get = _getter(path)
    if isinstance(condition, dict):
        if condition and all(k.startswith("$") for k in condition):
            ops = [_operator_test(op, operand) for op, operand in condition.items()]
            if len(ops) == 1:
                only = ops[0]
                return lambda data: only(get(data))

            def all_hold(data: Any) -> bool:
                value = get(data)
                return all(op(value) for op in ops)

            return all_hold
        nested = compile_filter(condition)

        def object_matches(data: Any) -> bool:
            value = get(data)
            return isinstance(value, dict) and nested(value)

        return object_matches
    equal = _equal_to(condition)

    def equals(data: Any) -> bool:
        value = get(data)
        return value is not MISSING and equal(value)

    return equals


def _equal_to(operand: Any) -> Predicate:
    """``json_equal(value, operand)`` for one ``operand``, its type's branch chosen once."""
    if isinstance(operand, bool):
        return lambda value: isinstance(value, bool) and value == operand
    if isinstance(operand, int | float):
        return lambda value: (
            not isinstance(value, bool) and isinstance(value, int | float) and value == operand
        )
    if isinstance(operand, dict | list):
        return lambda value: json_equal(value, operand)
    kind = type(operand)
    return lambda value: type(value) is kind and value == operand


def _operator_test(op: str, operand: Any) -> Predicate:
    """``_apply(op, value, operand)`` for one ``op`` and ``operand``."""
    if op in ("$eq", "$ne"):
        equal = _equal_to(operand)
        if op == "$eq":
            return lambda value: value is not MISSING and equal(value)
        return lambda value: value is MISSING or not equal(value)
    if op in ("$in", "$nin"):
        if all(type(o) is str for o in operand):
            strings = frozenset(operand)
            found: Predicate = lambda value: type(value) is str and value in strings  # noqa: E731
        else:
            equals = [_equal_to(o) for o in operand]
            found = lambda value: any(e(value) for e in equals)  # noqa: E731
        if op == "$in":
            return lambda value: value is not MISSING and found(value)
        return lambda value: value is MISSING or not found(value)
    compare = _COMPARISONS[op]
    if not _orderable(operand):
        return lambda value: False
    if isinstance(operand, str):
        return lambda value: isinstance(value, str) and compare(value, operand)
    return lambda value: (
        isinstance(value, int | float) and not isinstance(value, bool) and compare(value, operand)
    )


_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
