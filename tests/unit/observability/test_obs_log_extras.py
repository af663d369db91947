"""No log call passes `event` in `extra`: structlog keeps a record's message under that key."""

from __future__ import annotations

import ast
from pathlib import Path

import signing_gateway

#: Keys the log formatter itself fills (`observability/logging.py`): an `extra` with one of
#: them replaces what the formatter wrote, the message first of all.
_RESERVED = frozenset({"event", "level", "logger", "timestamp"})


def _extra_keys(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                found.extend(
                    (node.lineno, key.value)
                    for key in keyword.value.keys
                    if isinstance(key, ast.Constant) and isinstance(key.value, str)
                )
    return found


def test_no_log_call_overwrites_a_key_the_formatter_fills() -> None:
    """Every `extra={...}` literal in the gateway leaves event, level, logger and timestamp."""
    package = Path(signing_gateway.__file__).parent
    clashes = [
        f"{path.relative_to(package)}:{line}: extra key {key!r}"
        for path in sorted(package.rglob("*.py"))
        for line, key in _extra_keys(ast.parse(path.read_text(encoding="utf-8")))
        if key in _RESERVED
    ]
    assert clashes == []


def test_the_check_finds_such_a_call() -> None:
    """The scan sees a reserved key in an `extra` literal (so the test above can fail)."""
    source = 'log.info("caller refused", extra={"event": "auth-failed", "reason": "x"})'
    assert _extra_keys(ast.parse(source)) == [(1, "event"), (1, "reason")]
