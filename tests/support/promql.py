"""Reading the PromQL of the alerting rules: which series each expression selects, and how.

A small reader for the part of PromQL the gateway's alerts and runbook use: numbers, series
selectors with matchers and a range, function calls, aggregations with `by`/`without` (before or
after their argument), parentheses and binary operators. Anything else (`on`, `ignoring`,
`group_left`, `offset`, subqueries, `label_replace`) is refused with `PromqlNotRead`, so a check
built on it cannot pass an expression it did not read.

For each selector it reports the labels the enclosing aggregations group by, the functions it
lies under (a gauge must not be under `rate`), and whether it lies under `histogram_quantile`
with which groupings in between (they must keep `le`). For each `/` it reports the outermost
grouping of either side (`divisions_of`): a ratio whose sides group differently matches no
series, or divides one pod's share by the sum of all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Aggregation operators: `name by (labels) (expr)` or `name (expr) by (labels)`.
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk"}
)
#: Binary operators between two expressions (`bool` after a comparison is read and skipped).
_BINARY = frozenset({"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<="})
_SET_OPERATORS = frozenset({"and", "or", "unless"})
_REFUSED = frozenset(
    {"on", "ignoring", "group_left", "group_right", "offset", "label_replace", "label_join"}
)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<duration>\d+(?:ms|[smhdwy]))
      | (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<op>=~|!~|==|!=|>=|<=|[-+*/%^<>=(){}\[\],:])
    )""",
    re.VERBOSE,
)


class PromqlNotRead(ValueError):
    """Raised when an expression holds PromQL this reader does not read (or is not PromQL)."""


@dataclass(frozen=True)
class Grouping:
    """An aggregation's `by (...)` or `without (...)` clause (`by ()` when it has none)."""

    kind: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Selector:
    """One series selector: its metric, its matchers, and what encloses it.

    `groupings`: the clauses of the aggregations around it, outermost first. `quantile_groupings`:
    those between an enclosing `histogram_quantile` and it (None when it is not under one).
    `functions`: the names of the function calls around it, outermost first.
    """

    metric: str
    matchers: tuple[tuple[str, str, str], ...]
    groupings: tuple[Grouping, ...]
    quantile_groupings: tuple[Grouping, ...] | None
    functions: tuple[str, ...] = ()

    @property
    def labels_named(self) -> set[str]:
        """Every label it filters on or an enclosing aggregation groups by."""
        named = {name for name, _, _ in self.matchers}
        return named | {label for grouping in self.groupings for label in grouping.labels}

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether a sample with `labels` is selected (a missing label reads as "")."""
        for name, op, value in self.matchers:
            actual = labels.get(name, "")
            full = re.fullmatch(value, actual) is not None
            if {"=": actual == value, "!=": actual != value, "=~": full, "!~": not full}[op]:
                continue
            return False
        return True


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens = []
    position = 0
    text = expression.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise PromqlNotRead(f"cannot read {text[position:]!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    return tokens


class _Reader:
    """Recursive descent over the tokens of one expression, collecting its selectors."""

    def __init__(self, expression: str) -> None:
        self.tokens = _tokens(expression)
        self.position = 0
        self.selectors: list[Selector] = []
        self.groupings: list[Grouping] = []
        self.quantile_from: int | None = None
        self.functions: list[str] = []
        self.divisions: list[tuple[Grouping | None, Grouping | None]] = []

    def peek(self) -> str | None:
        if self.position < len(self.tokens):
            return self.tokens[self.position][1]
        return None

    def take(self, expected: str | None = None, kind: str | None = None) -> str:
        if self.position >= len(self.tokens):
            raise PromqlNotRead(f"expression ends where {expected or kind} was due")
        token_kind, value = self.tokens[self.position]
        unexpected = expected is not None and value != expected
        if unexpected or (kind is not None and token_kind != kind):
            raise PromqlNotRead(f"{value!r} where {expected or kind} was due")
        if value in _REFUSED:
            raise PromqlNotRead(f"{value!r} is not read here: extend tests/support/promql.py")
        self.position += 1
        return value

    def expression(self) -> None:
        left = self.operand()
        while (token := self.peek()) in _BINARY or token in _SET_OPERATORS:
            operator = self.take()
            if self.peek() == "bool":
                self.take()
            right = self.operand()
            # Read without precedence: the operands of `/` are the unary expressions beside it.
            if operator == "/" and left and right:
                self.divisions.append((self.outer_grouping(left), self.outer_grouping(right)))
            left = right

    def operand(self) -> list[Selector]:
        """Read a unary expression; its selectors (none for a number)."""
        start = len(self.selectors)
        self.unary()
        return self.selectors[start:]

    def outer_grouping(self, selectors: list[Selector]) -> Grouping | None:
        """The grouping of the outermost aggregation of an operand here (None: no aggregation)."""
        depth = len(self.groupings)
        groupings = selectors[0].groupings
        return groupings[depth] if len(groupings) > depth else None

    def unary(self) -> None:
        if self.peek() in {"-", "+"}:
            self.take()
        self.primary()

    def primary(self) -> None:
        kind, value = self.tokens[self.position] if self.peek() is not None else ("", "")
        if kind == "number":
            self.take()
        elif value == "(":
            self.take("(")
            self.expression()
            self.take(")")
        elif kind == "ident" and value in AGGREGATIONS:
            self.aggregation()
        elif kind == "ident" and self._next_is("("):
            self.call()
        elif kind == "ident":
            self.selector()
        else:
            raise PromqlNotRead(f"{value!r} where an expression was due")

    def _next_is(self, value: str) -> bool:
        following = self.position + 1
        return following < len(self.tokens) and self.tokens[following][1] == value

    def grouping(self) -> Grouping:
        kind = self.take()
        if kind not in {"by", "without"}:
            raise PromqlNotRead(f"{kind!r} where by or without was due")
        self.take("(")
        labels = []
        while self.peek() != ")":
            labels.append(self.take(kind="ident"))
            if self.peek() == ",":
                self.take(",")
        self.take(")")
        return Grouping(kind, tuple(labels))

    def aggregation(self) -> None:
        self.take(kind="ident")
        grouping = self.grouping() if self.peek() in {"by", "without"} else None
        start = len(self.selectors)
        self.take("(")
        # Its selectors are read with the clause known only afterwards in `sum(...) by (...)`.
        self.groupings.append(grouping or Grouping("by", ()))
        self.arguments()
        self.take(")")
        if grouping is None and self.peek() in {"by", "without"}:
            after = self.grouping()
            index = len(self.groupings) - 1
            self.selectors[start:] = [_regrouped(s, index, after) for s in self.selectors[start:]]
        self.groupings.pop()

    def call(self) -> None:
        name = self.take(kind="ident")
        outer = self.quantile_from
        if name == "histogram_quantile":
            self.quantile_from = len(self.groupings)
        self.functions.append(name)
        self.take("(")
        self.arguments()
        self.take(")")
        self.functions.pop()
        self.quantile_from = outer

    def arguments(self) -> None:
        self.expression()
        while self.peek() == ",":
            self.take(",")
            self.expression()

    def selector(self) -> None:
        metric = self.take(kind="ident")
        matchers = []
        if self.peek() == "{":
            self.take("{")
            while self.peek() != "}":
                label = self.take(kind="ident")
                operator = self.take()
                if operator not in {"=", "!=", "=~", "!~"}:
                    raise PromqlNotRead(f"{operator!r} is no matcher")
                matchers.append((label, operator, _unquoted(self.take(kind="string"))))
                if self.peek() == ",":
                    self.take(",")
            self.take("}")
        if self.peek() == "[":
            self.take("[")
            self.take(kind="duration")
            self.take("]")
        quantile = None if self.quantile_from is None else self.groupings[self.quantile_from :]
        self.selectors.append(
            Selector(
                metric,
                tuple(matchers),
                tuple(self.groupings),
                None if quantile is None else tuple(quantile),
                tuple(self.functions),
            )
        )


def _unquoted(string: str) -> str:
    return re.sub(r"\\(.)", r"\1", string[1:-1])


def _regrouped(selector: Selector, index: int, grouping: Grouping) -> Selector:
    """`selector` with the aggregation clause at `index` (outermost first) set to `grouping`."""
    groupings = list(selector.groupings)
    groupings[index] = grouping
    quantile = selector.quantile_groupings
    if quantile is not None:
        offset = len(groupings) - len(quantile)
        quantile = tuple(groupings[offset:])
    return Selector(
        selector.metric, selector.matchers, tuple(groupings), quantile, selector.functions
    )


def _read(expression: str) -> _Reader:
    reader = _Reader(expression)
    reader.expression()
    if reader.peek() is not None:
        raise PromqlNotRead(f"{reader.peek()!r} after a whole expression")
    return reader


def selectors_of(expression: str) -> list[Selector]:
    """Every series selector of `expression`, in order; `PromqlNotRead` if it cannot be read."""
    return _read(expression).selectors


def divisions_of(expression: str) -> list[tuple[Grouping | None, Grouping | None]]:
    """The outermost grouping of either side of each `/` between series (None: no aggregation).

    In order; `PromqlNotRead` if it cannot be read.
    """
    return _read(expression).divisions
