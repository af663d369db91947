"""`python -m signing_gateway` and the `signing-gateway` console script.

Ctrl-C ends the process with status 130 from the first line that runs here, until a command
takes SIGINT itself (`serve`'s server and supervisor, the demo). Left to Python's own handler,
Ctrl-C while `signing_gateway.cli` and what it needs were imported, or while `serve` built its
app, ended in a KeyboardInterrupt traceback. Only this module's imports are light.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _exit_on_ctrl_c(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    """Take Ctrl-C as an exit with status 130 (unless ignored), then run the command line."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_on_ctrl_c)
    from signing_gateway import cli  # noqa: PLC0415 - only once Ctrl-C ends the process quietly

    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
