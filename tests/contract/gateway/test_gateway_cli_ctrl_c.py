"""Ctrl-C while `signing-gateway` still imports what it needs: exit 130, no traceback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.support.processes import read_until
from tests.support.terminal import AS_A_TERMINAL_RUNS_IT, press_ctrl_c

pytestmark = pytest.mark.timeout(60)

#: The line `-X importtime` writes once httpx is imported: `signing_gateway.cli` is then
#: still importing the rest (the settings, pydantic, the domain), a few hundred ms at least.
_HTTPX_IMPORTED = re.compile(rb"\| +httpx\n")


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_ctrl_c_while_the_command_line_is_imported_ends_it_quietly(command: str) -> None:
    """Ctrl-C (SIGINT at its default, as in a terminal) during the imports: 130, quietly.

    Before, Python's own handler raised KeyboardInterrupt in the middle of an import: a
    traceback through `signing_gateway.cli`'s imports, and the process killed by SIGINT.
    """
    env = {name: value for name, value in os.environ.items() if "SIGNING_GATEWAY_" not in name}
    # `-X importtime` writes a line to stderr as each module is imported.
    program = [sys.executable, "-X", "importtime", "-m", "signing_gateway", command]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [*AS_A_TERMINAL_RUNS_IT, *program, "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        stderr = read_until(process.stderr, _HTTPX_IMPORTED.search, 30, "httpx imported")
        assert not re.search(rb"\| +signing_gateway\.cli\n", stderr)  # still importing
        press_ctrl_c(process)
        stderr += process.communicate(timeout=20)[1]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # its own group: the demo's fakes too
            process.communicate()
    errors = stderr.decode(errors="replace")
    assert (process.returncode, "Traceback" in errors) == (130, False), errors[-3000:]
