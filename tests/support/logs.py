"""Captured log records as the gateway writes them: through its JSON formatter, parsed back."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson

from signing_gateway.observability.logging import build_formatter


def as_written(records: Iterable[logging.LogRecord]) -> list[dict[str, Any]]:
    """Each of `records` as the JSON object of its log line."""
    formatter = build_formatter("json")
    return [orjson.loads(formatter.format(record)) for record in records]
