"""The run filter language: a tokenizer, a recursive-descent parser and an AST.

    filter     := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | comparison
    comparison := field op value
                | field ["not"] "in" "(" value ("," value)* ")"
                | field ["not"] ("like" | "ilike") string
                | field "is" ["not"] "null"
    field      := ("metrics" | "params" | "tags" | "attributes") "." key ["." aggregate]
                  (attributes: the run's own columns, RUN_ATTRIBUTES, or any custom attribute)
    key        := word | `back-quoted key with . or spaces`
    op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    value      := number | 'string' | "string"

Errors name the column (1-based) where the parser stopped, e.g.
`column 18: expected a value after '>', found end of filter`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

SCOPES = ("metrics", "params", "tags", "attributes")
METRIC_AGGREGATES = ("latest", "min", "max", "first", "count")
RUN_ATTRIBUTES = ("name", "status", "run_id", "id", "start_time", "end_time", "parent",
                  "experiment", "project")
OPS = ("=", "!=", "<>", "<=", ">=", "<", ">")


class FilterError(ValueError):
    def __init__(self, message: str, column: int):
        self.message, self.column = message, column
        super().__init__(f"column {column}: {message}")


@dataclass(frozen=True)
class Field:
    scope: str
    key: str
    aggregate: str = "latest"  # metrics only

    def __str__(self) -> str:
        agg = f".{self.aggregate}" if self.aggregate != "latest" else ""
        return f"{self.scope}.{self.key}{agg}"


Value = str | float | int | None


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str  # = != < <= > >= like ilike in notin isnull notnull notlike notilike
    value: Value | tuple[Value, ...]


@dataclass(frozen=True)
class BoolOp:
    op: Literal["and", "or"]
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Compare | BoolOp | Not


@dataclass(frozen=True)
class Token:
    kind: str  # word, string, number, op, lparen, rparen, comma, dot, end
    text: str
    column: int
    value: Value = None


_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))(?![\w.])
      | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
      | (?P<backquoted>`[^`]*`)
      | (?P<op>!=|<>|<=|>=|=|<|>)
      | (?P<lparen>\() | (?P<rparen>\)) | (?P<comma>,) | (?P<dot>\.)
      | (?P<word>[A-Za-z_][\w\-/:]*)
    """,
    re.VERBOSE,
)


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise FilterError(f"unexpected character {text[pos]!r}", pos + 1)
        kind, raw = match.lastgroup or "", match.group()
        column = pos + 1
        pos = match.end()
        if kind == "space":
            continue
        if kind == "number":
            number = float(raw)
            tokens.append(Token("number", raw, column, int(number) if number.is_integer()
                                and re.fullmatch(r"[-+]?\d+", raw) else number))
        elif kind == "string":
            body = raw[1:-1].replace("''", "'") if raw[0] == "'" else raw[1:-1]
            tokens.append(Token("string", raw, column, re.sub(r"\\(.)", r"\1", body)))
        elif kind == "backquoted":
            tokens.append(Token("key", raw, column, raw[1:-1]))
        else:
            tokens.append(Token(kind, raw, column))
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _describe(token: Token) -> str:
    return "end of filter" if token.kind == "end" else repr(token.text)


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def keyword(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.lower() in words

    def fail(self, expected: str) -> FilterError:
        return FilterError(f"expected {expected}, found {_describe(self.tok)}", self.tok.column)

    def parse(self) -> Node:
        node = self.or_expr()
        if self.tok.kind != "end":
            raise self.fail("'and', 'or' or the end of the filter")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.keyword("or"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.keyword("and"):
            self.take()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def not_expr(self) -> Node:
        if self.keyword("not"):
            self.take()
            return Not(self.not_expr())
        if self.tok.kind == "lparen":
            self.take()
            node = self.or_expr()
            if self.tok.kind != "rparen":
                raise self.fail("')'")
            self.take()
            return node
        return self.comparison()

    def field(self) -> Field:
        start = self.tok
        if start.kind != "word" or start.text.lower() not in SCOPES:
            raise FilterError(
                f"expected a field such as metrics.acc, params.lr, tags.team or "
                f"attributes.status, found {_describe(start)}", start.column)
        scope = self.take().text.lower()
        if self.tok.kind == "number" and self.tok.text.startswith("."):
            # "metrics.2" lexes as the word and the number .2
            raise FilterError(f"quote a key that starts with a digit with backquotes: "
                              f"{scope}.`{self.tok.text[1:]}`", self.tok.column)
        if self.tok.kind != "dot":
            raise self.fail(f"'.' and a key after {scope!r}")
        self.take()
        if self.tok.kind not in ("word", "key", "number"):
            raise self.fail(f"a key after '{scope}.'")
        key_token = self.take()
        key = str(key_token.value) if key_token.kind == "key" else key_token.text
        aggregate = "latest"
        if self.tok.kind == "dot" and scope == "metrics":
            self.take()
            if not (self.tok.kind == "word" and self.tok.text.lower() in METRIC_AGGREGATES):
                raise self.fail(f"one of {', '.join(METRIC_AGGREGATES)} after 'metrics.{key}.'"
                                " (quote keys containing dots with backquotes)")
            aggregate = self.take().text.lower()
        # attributes.<key> other than RUN_ATTRIBUTES: a custom run attribute (set by the
        # training code or derived by an enricher, e.g. attributes.anomaly).
        return Field(scope, key, aggregate)

    def value(self) -> Value:
        if self.tok.kind in ("string", "number"):
            return self.take().value
        if self.keyword("null"):
            raise FilterError("compare with null using 'is null' or 'is not null'",
                              self.tok.column)
        previous = self.tokens[self.i - 1].text
        raise FilterError(f"expected a value after {previous!r}, found {_describe(self.tok)}",
                          self.tok.column)

    def comparison(self) -> Compare:
        field = self.field()
        negate = False
        if self.keyword("is"):
            self.take()
            if self.keyword("not"):
                self.take()
                negate = True
            if not self.keyword("null"):
                raise self.fail("'null'")
            self.take()
            return Compare(field, "notnull" if negate else "isnull", None)
        if self.keyword("not"):
            self.take()
            negate = True
            if not self.keyword("in", "like", "ilike"):
                raise self.fail("'in', 'like' or 'ilike' after 'not'")
        if self.keyword("in"):
            self.take()
            return Compare(field, "notin" if negate else "in", self.value_list())
        if self.keyword("like", "ilike"):
            op = self.take().text.lower()
            if self.tok.kind != "string":
                raise self.fail(f"a quoted pattern after {op!r}")
            return Compare(field, f"not{op}" if negate else op, self.take().value)
        if self.tok.kind != "op":
            raise self.fail(f"a comparison operator after {str(field)!r}")
        op = self.take().text
        return Compare(field, "!=" if op == "<>" else op, self.value())

    def value_list(self) -> tuple[Value, ...]:
        if self.tok.kind != "lparen":
            raise self.fail("'(' after 'in'")
        self.take()
        values = [self.value()]
        while self.tok.kind == "comma":
            self.take()
            values.append(self.value())
        if self.tok.kind != "rparen":
            raise self.fail("',' or ')'")
        self.take()
        return tuple(values)


def parse_filter(text: str | None) -> Node | None:
    """The AST of a filter string; None for an empty filter."""
    if text is None or not text.strip():
        return None
    return _Parser(text).parse()


@dataclass(frozen=True)
class OrderKey:
    field: Field
    descending: bool


def parse_order_by(items: list[str] | None) -> list[OrderKey]:
    """`["metrics.acc DESC", "params.lr"]` → order keys (ascending by default)."""
    keys = []
    for item in items or []:
        parser = _Parser(item)
        field = parser.field()
        descending = False
        if parser.keyword("asc", "desc"):
            descending = parser.take().text.lower() == "desc"
        if parser.tok.kind != "end":
            raise parser.fail("'ASC', 'DESC' or the end of the order key")
        keys.append(OrderKey(field, descending))
    return keys
