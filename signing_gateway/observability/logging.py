"""Structured logs: JSON lines in production, readable console lines in development.

Every record, from our code or from libraries, goes through one stdlib handler whose
structlog formatter adds the time, level, logger name, `extra` fields and the request id.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from signing_gateway.observability.context import current_request_id


def _add_request_id(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    request_id = current_request_id()
    if request_id != "-":
        event.setdefault("request_id", request_id)
    return event


def build_formatter(fmt: Literal["json", "console"]) -> logging.Formatter:
    """The formatter every record goes through: structured fields plus the request id."""
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def configure_logging(*, level: str, fmt: Literal["json", "console"]) -> None:
    """Route every logger through one structured handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(build_formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn installs its own handlers; let its records flow through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
