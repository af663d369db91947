"""How large a parsed JSON value is, and whether an object in its text repeats a key.

The checks a request body passes before any route reads it (`security.limits`), and that a
domestic issue commitment passes once decoded (`issuance.commitment`): `check_json_shape`
(nesting, string and key lengths, members of an object, lone surrogates) and `repeats_a_key`
(a key named twice within one object, I-JSON). Neither takes a Python step per value of a
large input: 192 KiB of JSON holds 65,000 of them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import is_, lt, ne
from typing import Any, Final

import orjson

#: A parser joins every escaped surrogate pair into one character: any surrogate left is lone.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def too_deep(max_depth: int) -> str:
    """The reason given for JSON that nests deeper than `max_depth` levels."""
    return f"the JSON nests deeper than {max_depth} levels"


def _string_problem(kind: str, text: str, max_chars: int) -> str:
    """Which limit a string or key (`kind`) that `check_json_shape` refused broke."""
    if len(text) > max_chars:
        return _too_long(kind, max_chars)
    return _lone_surrogate(kind)


def _too_long(kind: str, max_chars: int) -> str:
    return f"a {kind} is longer than {max_chars} characters"


def _lone_surrogate(kind: str) -> str:
    return f"a {kind} holds a lone UTF-16 surrogate escape"


def check_json_shape(
    value: object,
    *,
    max_depth: int,
    max_string_chars: int,
    unicode_text: bool = False,
    max_members: int | None = None,
) -> str | None:
    r"""Why `value` (parsed JSON) is too deep or has too long a string; None when it is fine.

    With `unicode_text`, also why a string or key is not Unicode text: a lone UTF-16 surrogate,
    which only a `\u` escape makes, and which orjson refuses but the standard library's parser
    lets through. With `max_members`, also why an object has too many members. Iterative, so
    the check itself cannot recurse too deep.

    A value breaking limits in more than one way is named by the first break a depth-first
    walk meets, taking the members of an object (and a list's items) from the last
    (`_first_break`). That walk takes a Python step per value: a 192 KiB body of 65,000 empty
    objects cost 23 ms. So once its containers hold more than `_WALKED_NODES` values, the
    breaks are found level by level instead (`_breaks_by_level`), without a step per value,
    and only when they are of two kinds or more is the walk asked which one it meets first.
    """
    limits = _ShapeLimits(max_depth, max_string_chars, unicode_text, max_members)
    try:
        return _first_break(value, limits, values=_WALKED_NODES)
    except _ManyValues:
        pass
    reasons = _breaks_by_level(value, limits)
    if reasons is not None and len(reasons) <= 1:
        return next(iter(reasons), None)
    return _first_break(value, limits)


#: The values `check_json_shape` walks one by one before it looks at them level by level,
#: which costs more for a small value (13.5 µs for the 357-byte `/v1/dcc` example, walked in
#: 3.4 µs) and far less for a large one.
_WALKED_NODES: Final = 200


class _ManyValues(Exception):
    """Raised by `_first_break` when the containers it meets hold more values than it was given."""


@dataclass(frozen=True, slots=True)
class _ShapeLimits:
    """The bounds `check_json_shape` holds a parsed value to."""

    max_depth: int
    max_string_chars: int
    unicode_text: bool
    max_members: int | None


def _first_break(value: object, limits: _ShapeLimits, *, values: float = math.inf) -> str | None:
    """`check_json_shape`'s reason by a depth-first walk: the first break it meets, or None.

    Raises _ManyValues once the containers it met hold more than `values` values.
    """
    max_depth, max_string_chars = limits.max_depth, limits.max_string_chars
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if len(node) > max_string_chars or (
                limits.unicode_text and _LONE_SURROGATE.search(node)
            ):
                return _string_problem("string", node, max_string_chars)
        elif isinstance(node, dict | list):
            if depth >= max_depth:
                return too_deep(max_depth)
            values -= len(node)
            if values < 0:
                raise _ManyValues
            if isinstance(node, list):
                stack.extend((item, depth + 1) for item in node)
            elif reason := _object_break(node, depth, limits, stack):
                return reason
    return None


def _object_break(
    node: dict[str, object], depth: int, limits: _ShapeLimits, stack: list[tuple[object, int]]
) -> str | None:
    """`_first_break` at an object: its own break, else its values pushed onto `stack`."""
    if limits.max_members is not None and len(node) > limits.max_members:
        return f"an object has more than {limits.max_members} members"
    for key, item in node.items():
        if len(key) > limits.max_string_chars or (
            limits.unicode_text and _LONE_SURROGATE.search(key)
        ):
            return _string_problem("key", key, limits.max_string_chars)
        stack.append((item, depth + 1))
    return None


#: The types JSON parsing makes: what `_breaks_by_level` sorts a level's values into.
_PARSED_TYPES: Final = frozenset({dict, list, str, int, float, bool, type(None)})


def _breaks_by_level(value: object, limits: _ShapeLimits) -> set[str] | None:
    """Every reason `_first_break` could give for `value`, found a level at a time.

    A level's values are sorted by type, and their strings' lengths, their objects' sizes and
    keys read, with builtins over whole lists rather than a Python step per value. The same
    values as the walk's are looked at: none below a container that nests too deep. Each
    reason whose condition holds somewhere is in the set, so when it has one reason, the walk
    would give that one. None when `value` holds a type other than JSON parsing makes (the walk
    reads those by `isinstance`).
    """
    reasons: set[str] = set()
    level = [value]
    depth = 0
    while level:
        types = list(map(type, level))
        kinds = set(types)
        if not kinds <= _PARSED_TYPES:
            return None
        if str in kinds:
            reasons |= _string_breaks("string", _of_type(str, level, types, kinds), limits)
        if dict not in kinds and list not in kinds:
            break
        if depth >= limits.max_depth:
            reasons.add(too_deep(limits.max_depth))
            break
        objects = _of_type(dict, level, types, kinds)
        sizes = list(map(len, objects))
        if limits.max_members is not None and max(sizes, default=0) > limits.max_members:
            reasons.add(f"an object has more than {limits.max_members} members")
        if not any(sizes):  # no key, no value to look at
            objects = []
        reasons |= _string_breaks("key", [*chain.from_iterable(objects)], limits)
        level = [
            *chain.from_iterable(_of_type(list, level, types, kinds)),
            *chain.from_iterable(map(dict.values, objects)),
        ]
        depth += 1
    return reasons


def _of_type(kind: type, level: list[Any], types: list[type], kinds: set[type]) -> list[Any]:
    """The values of `level` (whose types are `types`, `kinds` as a set) of exactly `kind`."""
    if kind not in kinds:
        return []
    if len(kinds) == 1:
        return level
    return list(compress(level, map(is_, types, repeat(kind))))


def _string_breaks(kind: str, texts: list[str], limits: _ShapeLimits) -> set[str]:
    """The reasons `_string_problem` could give for any of `texts`, strings or keys (`kind`)."""
    reasons: set[str] = set()
    if texts and max(map(len, texts)) > limits.max_string_chars:
        reasons.add(_too_long(kind, limits.max_string_chars))
    if limits.unicode_text and any(map(_LONE_SURROGATE.search, texts)):
        reasons.add(_lone_surrogate(kind))
    return reasons


#: Why a body or commitment that names a key twice within one object is refused.
REPEATED_KEY = "an object repeats a key"


class RepeatedKeyError(Exception):
    """Raised by `unique_keys` from inside the parser: an object names a key twice.

    Not a ValueError, so that no caller mistakes it for text that is not JSON.
    """


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    r"""An `object_pairs_hook` for `json`: the object, or RepeatedKeyError if it repeats a key.

    Keys are compared as the parser decoded them: `"a"` and `"\u0061"` are the same key.
    """
    obj = dict(pairs)
    if len(obj) < len(pairs):
        raise RepeatedKeyError
    return obj


#: An escaped colon (or, conservatively, an escaped backslash before the text `u003a`).
_ESCAPED_COLON = re.compile(rb"\\u003[aA]")

#: A number hook of `json.loads`: see `repeats_a_key`.
NumberHook = Callable[[str], object]


def repeats_a_key(
    body: bytes,
    parsed: object,
    *,
    parse_int: NumberHook | None = None,
    parse_float: NumberHook | None = None,
    parse_constant: NumberHook | None = None,
) -> bool:
    r"""Whether an object in the JSON `body`, whose value is `parsed`, names a key twice.

    Keys compare as decoded (`"a"` and `"\u0061"` are one key). `parsed` is the value a
    parser made of `body`, keeping a key given twice once (orjson and Python's parser both
    keep the last). Written out again by orjson, it has as many colons as `body` when no
    object repeats a key, and fewer when one does: outside strings a colon ends a key, and
    in them orjson writes each as the character it is, which `body` did too unless it
    escaped one (`\u003a`); an object's repeated members, gone from `parsed`, take their
    colons with them. Two counts in C instead of a parse with a Python step per object: the
    `unique_keys` hook cost 13 ms for a 192 KiB body of 65,000 objects. A body that escapes a
    colon, or a value orjson cannot write (nested past its 255 levels, a lone surrogate), is
    parsed again by Python's parser (with the number hooks given, as `json.loads` takes them)
    and its objects' members counted as written.
    """
    if not _ESCAPED_COLON.search(body):
        try:
            return body.count(b":") != orjson.dumps(parsed).count(b":")
        except orjson.JSONEncodeError:
            pass
    written: list[list[tuple[str, Any]]] = []
    decoder = json.JSONDecoder(
        object_pairs_hook=written.append,
        parse_int=parse_int,
        parse_float=parse_float,
        parse_constant=parse_constant,
    )
    decoder.decode(body.decode("utf-8"))
    several = [*compress(written, map(lt, repeat(1), map(len, written)))]
    return any(map(ne, map(len, several), map(len, map(dict, several))))
