"""Start-up failures whose message says it all: one error line instead of a traceback.

The gateway's start-up (the app's lifespan) can fail for reasons a traceback does not help
with: the signers would not give their keys, a trust file cannot be read. starlette answers
any failed start-up with the formatted traceback, which uvicorn logs as one multi-line error
before exiting with its start-up failure status (3). A `StartUpError` is logged as its message
alone instead, and a start-up the server cancelled (stopped by a signal) not at all; anything
else keeps its traceback (a bug needs one).
"""

from __future__ import annotations

import asyncio
import logging
import sys

from starlette.routing import Router
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger("signing_gateway.start_up")


class StartUpError(RuntimeError):
    """The gateway cannot start, for a reason its message gives in full (see the module)."""


def report_start_up_errors(router: Router) -> None:
    """Have `router`'s lifespan log a `StartUpError` as one line, without its traceback.

    Only the lifespan is wrapped (starlette's router dispatches it to `router.lifespan`): a
    request goes through nothing more.
    """
    lifespan = router.lifespan

    async def reported(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_reported(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                # Sent from starlette's `except` clause: the failure is the one being handled.
                failure = sys.exc_info()[1]
                if isinstance(failure, StartUpError):
                    logger.error("start-up failed: %s", failure)
                    message = {"type": message["type"], "message": ""}  # nothing more to log
                elif isinstance(failure, asyncio.CancelledError):
                    # The server stopped the start-up (a signal, `StartUpStoppingServer`),
                    # which said so: the cancellation's traceback tells nothing more.
                    message = {"type": message["type"], "message": ""}
            await send(message)

        await lifespan(scope, receive, send_reported)

    router.lifespan = reported  # type: ignore[method-assign]
