"""Start a process as a terminal starts its foreground job, so that Ctrl-C can be sent to it.

In a terminal SIGINT is at its default action, and Ctrl-C sends it to the whole foreground
process group at once (a command and every child it started). A shell's background job, which
a test run may be, has SIGINT ignored, and a child keeps that: a test that sends SIGINT to such
a child sees nothing a person pressing Ctrl-C would. So with SIGHUP, which closing the terminal
sends, under `nohup`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

_RESET_SIGNALS = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.signal(signal.SIGHUP, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"
)
#: Put before a command: runs it with SIGINT and SIGHUP at their default action.
AS_A_TERMINAL_RUNS_IT = (sys.executable, "-c", _RESET_SIGNALS)


def press_ctrl_c(process: subprocess.Popen[bytes]) -> None:
    """SIGINT to the process group `process` leads (started with `start_new_session=True`)."""
    assert os.getpgid(process.pid) == process.pid, "not the leader of its own process group"
    os.killpg(process.pid, signal.SIGINT)


def close_the_terminal(process: subprocess.Popen[bytes]) -> None:
    """SIGHUP to the process group `process` leads, as closing its terminal sends it."""
    assert os.getpgid(process.pid) == process.pid, "not the leader of its own process group"
    os.killpg(process.pid, signal.SIGHUP)
