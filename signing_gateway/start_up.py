"""Start-up failures whose message says it all: one error line instead of a traceback.

The gateway's start-up (the app's lifespan) can fail for reasons a traceback does not help
with: the signers would not give their keys, a trust file cannot be read. starlette answers
any failed start-up with the formatted traceback, which uvicorn logs as one multi-line error
before exiting with its start-up failure status (3). A `StartUpError` is logged as its message
alone instead, and a start-up the server cancelled (stopped by a signal) not at all; anything
else keeps its traceback (a bug needs one).

A start-up stopped as it completed is cancelled once started: the server had stopped waiting
for it, and the loop's end cancels the lifespan waiting for its shutdown. starlette answers
that as a failed shutdown, with the cancellation's traceback, which uvicorn logged as an error
(once in 250 Ctrl-Cs during `serve`'s start). It is not reported either.
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
            # Sent from starlette's `except` clause: the failure is the one being handled.
            failure = sys.exc_info()[1]
            if message["type"] == "lifespan.startup.failed":
                if isinstance(failure, StartUpError):
                    logger.error("start-up failed: %s", failure)
                    message = {"type": message["type"], "message": ""}  # nothing more to log
                elif isinstance(failure, asyncio.CancelledError):
                    # The server stopped the start-up (a signal, `StartUpStoppingServer`),
                    # which said so: the cancellation's traceback tells nothing more.
                    message = {"type": message["type"], "message": ""}
            elif message["type"] == "lifespan.shutdown.failed" and isinstance(
                failure, asyncio.CancelledError
            ):
                # Cancelled by the loop's end before its shutdown was asked: a start-up the
                # server stopped as it completed (see the module).
                message = {"type": message["type"], "message": ""}
            await send(message)

        await lifespan(scope, receive, send_reported)

    router.lifespan = reported  # type: ignore[method-assign]
