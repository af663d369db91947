"""SIGINT and SIGTERM as a request to stop, from the first line the process runs to its exit.

Until a handler is set, Python answers SIGINT with a KeyboardInterrupt traceback and SIGTERM
kills the process. The handler here is set before anything else (`fake_signer.__main__`, then
`cli.main`), before the modules that take most of the start are imported, and stays set: a
stop asked before serving begins is kept for `serve()`, which then stops the start at once,
and one asked once serving is over changes nothing. Only this module's imports are light.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

__all__ = ["on_stop", "take_stop_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stop:
    """Whether a stop signal came, and what to call for one (the running server's stop)."""

    asked = False
    callback: Callable[[], object] | None = None

    def note(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: note the stop, and pass it on if something serves."""
        del signum, frame
        self.asked = True
        if self.callback is not None:
            self.callback()


_STOP = _Stop()


def take_stop_signals() -> None:
    """Take SIGINT and SIGTERM as a request to stop from now on (again: no change)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _STOP.note)


def on_stop(callback: Callable[[], object] | None) -> bool:
    """Call `callback` for each stop signal from now on (None: no longer); whether one came.

    It runs in the signal handler: it must only hand the stop to the event loop
    (`loop.call_soon_threadsafe`), not act on it there. A stop asked already is the caller's
    to act on, at once (a signal in between may also call `callback`).
    """
    _STOP.callback = callback
    return _STOP.asked
