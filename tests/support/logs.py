"""Captured log records as the gateway writes them: through its JSON formatter, parsed back."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from signing_gateway.observability.logging import build_formatter


def as_written(records: Iterable[logging.LogRecord]) -> list[dict[str, Any]]:
    """Each of `records` as the JSON object of its log line."""
    formatter = build_formatter("json")
    return [orjson.loads(formatter.format(record)) for record in records]


@contextlib.contextmanager
def logged_as_written() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every record logged meanwhile (root at INFO), as the JSON object of its log line.

    Formatted as it is logged, as the gateway's handler does: the fields a record takes from
    the logging task's context (the request id, the span's ids) are those of that moment.
    """
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(build_formatter("json"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
