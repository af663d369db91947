"""Run Python code with a terminal of its own, as an operator's shell runs a command.

A process started by the test run has no controlling terminal (or shares the run's), so
whatever would ask a person something on the terminal (OpenSSL asking for a key's password)
cannot be seen. Here the code runs in a session of its own whose controlling terminal is a
pseudo-terminal the test holds: what it writes there is read back, and a process still
waiting at the deadline is killed and reported as such.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from dataclasses import dataclass

#: Run first in the child: a session leader that opens a terminal makes it its controlling one.
_TAKE_THE_TERMINAL = "import os; os.close(os.open(os.ttyname(0), os.O_RDWR))\n"


@dataclass(frozen=True)
class TerminalRun:
    """How a run on a terminal ended: its exit status (None: still running at the deadline)."""

    returncode: int | None
    #: Everything written to the terminal, its line ends as the terminal wrote them.
    output: str


def run_on_own_terminal(code: str, *, timeout: float, **settings: str) -> TerminalRun:
    """Run Python `code` on a terminal of its own, with only these SIGNING_GATEWAY_* variables.

    Its stdin, stdout and stderr are the terminal. After `timeout` seconds a process still
    running is killed: `returncode` is then None.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_GATEWAY_")}
    env.update({f"SIGNING_GATEWAY_{name}": value for name, value in settings.items()})
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter, the test's code
            [sys.executable, "-c", _TAKE_THE_TERMINAL + code],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=env,
            start_new_session=True,
        )
    finally:
        os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout
    returncode: int | None = None
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            if select.select([controller], [], [], remaining)[0]:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: nothing holds the terminal any more
                    break
                if not chunk:
                    break
                output += chunk
        returncode = process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass  # still running at the deadline
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
    return TerminalRun(returncode, output.decode(errors="replace"))
