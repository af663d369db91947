"""`python -m signing_gateway` and the `signing-gateway` console script.

Ctrl-C ends the process with status 130 from the first line that runs here, until a command
takes SIGINT itself (`serve`'s server and supervisor, the demo). Left to Python's own handler,
Ctrl-C while `signing_gateway.cli` and what it needs were imported, or while `serve` built its
app, ended in a KeyboardInterrupt traceback. Only this module's imports are light.

The handler raises `SystemExit`, which unwinds the imports. Python drops an exception raised
where it cannot propagate (a weakref callback such as an import lock's, a `__del__`) and
reports it to `sys.unraisablehook`: the Ctrl-C would be lost, and the start would go on to
serve. So the hook set here ends the process with that status when it sees the dropped exit.
Nothing of a command's runs yet while the handler is set: no child process, no socket.

Code that calls back into Python may also turn the exit into an error of its own: pydantic's
schema builder, while the settings' model was built, raised a `SchemaError` that wrapped it
(a traceback and status 1 for a Ctrl-C); or it may swallow it. So the status a Ctrl-C asked
for is kept too, and once it came, the start ends with it whatever became of its exception.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType


class _CtrlC(SystemExit):
    """The exit a Ctrl-C asked for, while Python's SIGINT handler is not yet a command's."""


#: The status each Ctrl-C taken here asked for, kept whatever becomes of its exception. (No
#: `typing` here: until the handler is set, every import is time a Ctrl-C ends in a traceback.)
_asked: list[int] = []


def _exit_on_ctrl_c(signum: int, _frame: FrameType | None) -> None:
    _asked.append(128 + signum)
    raise _CtrlC(128 + signum)


def _end_if_ctrl_c_was_taken() -> None:
    """Raise the exit a Ctrl-C asked for, if one came (its own exception may be lost)."""
    if _asked:
        raise _CtrlC(_asked[0])


def _exit_if_ctrl_c_was_dropped(unraisable: sys.UnraisableHookArgs) -> None:
    """End the process if the exception Python dropped is a Ctrl-C's exit; else report it."""
    if isinstance(unraisable.exc_value, _CtrlC):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError, AttributeError):  # closed, or none
                stream.flush()
        os._exit(unraisable.exc_value.code)  # type: ignore[arg-type]  # always an int here
    _REPORT_DROPPED(unraisable)


_REPORT_DROPPED = sys.unraisablehook


def take_ctrl_c() -> None:
    """Make Ctrl-C an exit with status 130 from now on, unless SIGINT is not Python's own."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_on_ctrl_c)
        sys.unraisablehook = _exit_if_ctrl_c_was_dropped


def main() -> int:
    """Take Ctrl-C as an exit with status 130 (unless ignored), then run the command line."""
    take_ctrl_c()
    try:
        from signing_gateway import cli  # noqa: PLC0415 - only once Ctrl-C ends the process quietly

        _end_if_ctrl_c_was_taken()  # its exit swallowed where it landed
        return cli.main()
    except BaseException:
        _end_if_ctrl_c_was_taken()  # its exit turned into another error on the way out
        raise


if __name__ == "__main__":
    sys.exit(main())
