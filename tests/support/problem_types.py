"""The problem `type`s the gateway's source can answer with, read from the source itself.

A type is named where an answer is made: a `GatewayError`'s `slug`, a middleware's `slug=` or
`PROBLEM_BASE + ...`, a body limit's `BodyRefused(status, slug, ...)`, a handler's `type_=`.
Named by a constant (`SHUTTING_DOWN`, `ABOUT_BLANK`), the constant's value is the type.
"""

from __future__ import annotations

import re
from pathlib import Path

import signing_gateway

SOURCE = Path(signing_gateway.__file__).parent

_NAMED_AT = (
    r"\bslug\s*=\s*",
    r"\btype_\s*=\s*",
    r"\bPROBLEM_BASE \+ ",
    r"\bBodyRefused\(\s*\d{3},\s*",
)
_LITERAL = re.compile(rf'(?:{"|".join(_NAMED_AT)})"([a-z:-]+)"')
# Not `PROBLEM_BASE + slug`: there the name follows, in a variable or a literal.
_CONSTANT = re.compile(rf"(?:{'|'.join(_NAMED_AT)})([A-Z][A-Z_]+)\b(?! \+)")
_ASSIGNED = re.compile(r'^([A-Z][A-Z_]+) = "([a-z:-]+)"$', re.MULTILINE)


def answered_problem_types() -> set[str]:
    """Every problem type the source names where it answers, as named under `PROBLEM_BASE`."""
    sources = [path.read_text(encoding="utf-8") for path in sorted(SOURCE.rglob("*.py"))]
    constants = {name: value for text in sources for name, value in _ASSIGNED.findall(text)}
    names: set[str] = set()
    for text in sources:
        names.update(_LITERAL.findall(text))
        names.update(constants[name] for name in _CONSTANT.findall(text))
    return names


_WITH_STATUS = re.compile(
    r'BodyRefused\(\s*(\d{3}),\s*"([a-z-]+)"'
    r'|status=(\d{3}),\s*(?:slug|type_)=(?:PROBLEM_BASE \+ )?"([a-z-]+)"'
)


def answered_with_status() -> set[tuple[str, int]]:
    """The (type, status) pairs the source names together where it answers with a literal."""
    pairs: set[tuple[str, int]] = set()
    for path in sorted(SOURCE.rglob("*.py")):
        for match in _WITH_STATUS.finditer(path.read_text(encoding="utf-8")):
            status, name = match.group(1) or match.group(3), match.group(2) or match.group(4)
            pairs.add((name, int(status)))
    return pairs
