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
#: The smallest pipe Linux makes (a page): `-X importtime` writes some 25 KB of lines between
#: httpx's and `signing_gateway.cli`'s, so with stderr unread the imports stop well before
#: their end, however long this process takes to press Ctrl-C once it has read httpx's line.
_PIPE_BYTES = 4096


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
        # Held back on a busy machine after reading httpx's line, this process pressed Ctrl-C
        # once the imports had ended (a 0.3 s pause there does it every time): `serve` was
        # then past them, or had exited 2 (no settings), when the signal came.
        pipesize=_PIPE_BYTES,
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


#: Runs `signing_gateway.__main__.main` with a command line whose start is interrupted where
#: Python drops exceptions: Ctrl-C in a weakref callback, as an import lock's (the CI failure
#: this pins printed `Exception ignored in: <function _get_module_lock.<locals>.cb ...>`).
_CTRL_C_IN_A_WEAKREF_CALLBACK = """
import signal, sys, types, weakref

def start_interrupted():
    class Held:
        pass

    def released(_ref):
        signal.raise_signal(signal.SIGINT)  # as Ctrl-C pressed while the callback runs
        for _ in range(1000):  # the loop's checks run the handler here, if not at once
            pass

    held = Held()
    ref = weakref.ref(held, released)
    del held
    print("the start went on", flush=True)
    return 0

cli = types.ModuleType("signing_gateway.cli")
cli.main = start_interrupted
sys.modules["signing_gateway.cli"] = cli
from signing_gateway.__main__ import main
sys.exit(main())
"""


def test_ctrl_c_dropped_by_python_during_the_start_still_ends_it_quietly() -> None:
    """A Ctrl-C whose exit Python dropped (raised in a weakref callback) still ends it: 130.

    Before, Python printed the exit as an ignored exception, with a traceback, and the start
    went on: the demo then served until killed, the Ctrl-C lost.
    """
    assert _started_as_a_terminal_runs_it(_CTRL_C_IN_A_WEAKREF_CALLBACK) == (130, "")


def _started_as_a_terminal_runs_it(code: str) -> tuple[int, str]:
    """Run Python `code` as a terminal runs a command: its exit status, and all it printed."""
    completed = subprocess.run(  # noqa: S603 - our own interpreter and code
        [*AS_A_TERMINAL_RUNS_IT, sys.executable, "-c", code],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return completed.returncode, (completed.stdout + completed.stderr).decode(errors="replace")


#: Runs `signing_gateway.__main__.main` with a `signing_gateway.cli` whose import is interrupted
#: inside code that keeps the exit from propagating as it came: `{taken}` is what that code does
#: with it (pydantic's schema builder once turned it into a `SchemaError`).
_CTRL_C_IN_CODE_THAT_TAKES_THE_EXIT = """
import importlib.abc, importlib.util, signal, sys

class InterruptedImport(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        try:
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C pressed while a library calls back
            for _ in range(1000):  # the loop's checks run the handler here, if not at once
                pass
        except BaseException as exc:
            {taken}
        module.main = lambda: print("the start went on", flush=True) or 0

class Finder:
    def find_spec(self, name, path, target=None):
        if name == "signing_gateway.cli":
            return importlib.util.spec_from_loader(name, InterruptedImport())
        return None

sys.meta_path.insert(0, Finder())
from signing_gateway.__main__ import main
sys.exit(main())
"""


@pytest.mark.parametrize(
    "taken",
    ['raise RuntimeError("Error building validator") from exc', "pass"],
    ids=["turned-into-another-error", "swallowed"],
)
def test_ctrl_c_whose_exit_other_code_took_still_ends_the_start_quietly(taken: str) -> None:
    """A Ctrl-C whose exit became another error, or none, on its way out still ends it: 130.

    Before, an exit turned into another error ended the start with that error's traceback and
    status 1 (seen in 1 of 400 Ctrl-Cs during the imports: pydantic's `SchemaError` wrapping
    it); one swallowed let the start go on.
    """
    code = _CTRL_C_IN_CODE_THAT_TAKES_THE_EXIT.replace("{taken}", taken)
    assert _started_as_a_terminal_runs_it(code) == (130, "")
