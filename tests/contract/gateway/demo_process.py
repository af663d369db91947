"""Run `python -m signing_gateway demo` as a real process; read its ready line and examples."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.processes import read_until
from tests.support.terminal import AS_A_TERMINAL_RUNS_IT, close_the_terminal, press_ctrl_c

READY_LINE = b"signing-gateway demo is up at"
#: The end of the last example the demo prints (its `GET /readyz`).
LAST_EXAMPLE = b"/readyz\n"
#: Runs the demo's printed lines in a shell, where `curl` writes its argument count and arguments.
_CURL_RECORDER = 'curl() { printf \'%s\\0\' "$#" "$@"; }\n'


def wait_for_line(process: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
    """Read the process's output until `needle` appears; return what was read."""
    assert process.stdout is not None
    return read_until(process.stdout, lambda seen: needle in seen, timeout, "demo ready")


def printed_requests(output: bytes) -> list[httpx.Request]:
    """The requests of the demo's printed `TOKEN=` line and curl commands, pasted into a shell.

    The shell reads the quoting and expands `$TOKEN`, as a person's would; each curl command's
    arguments are then taken as curl takes them: `-X`, `-H`, `-d` (with `-d`, a form's content
    type unless a header gives one) and the URL.
    """
    lines = [line for line in output.decode().splitlines() if line.startswith(("TOKEN=", "curl "))]
    shell = subprocess.run(  # noqa: S603 - the demo's own lines, curl only recorded
        ["/bin/sh", "-c", _CURL_RECORDER + "\n".join(lines)],
        capture_output=True,
        check=True,
        timeout=10,
    )
    words = shell.stdout.decode().split("\0")[:-1]
    requests = []
    while words:
        count, words = int(words[0]), words[1:]
        requests.append(_curl_request(words[:count]))
        words = words[count:]
    return requests


def _curl_request(arguments: list[str]) -> httpx.Request:
    """The request curl sends for `arguments` (the options the demo prints, and only those)."""
    method, url, data = None, None, None
    headers: dict[str, str] = {}
    given = iter(arguments)
    for argument in given:
        if argument == "-s":
            continue
        if argument == "-X":
            method = next(given)
        elif argument == "-H":
            name, separator, value = next(given).partition(":")
            assert separator, f"not a header: {name!r}"
            assert name.strip() == name, f"not a header: {name!r}"
            headers[name] = value.strip()
        elif argument == "-d":
            data = next(given)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        else:
            assert not argument.startswith("-"), f"an option curl is not shown: {argument}"
            assert url is None, f"a second URL: {argument}"
            url = argument
    assert url is not None, f"no URL in curl {arguments}"
    method = method or ("POST" if data is not None else "GET")
    return httpx.Request(method, url, headers=headers, content=data)


@dataclass
class Demo:
    """A running `signing-gateway demo` process, its stderr file and its fake-signer children."""

    process: subprocess.Popen[bytes]
    stderr: Path
    #: The demo's TMPDIR, empty but for the directory the demo makes there.
    tmpdir: Path
    children: list[psutil.Process] = field(default_factory=list)

    def find_fake_signers(self) -> None:
        """Record the demo's child processes (the fake signers) once both are running."""
        deadline = time.monotonic() + 30
        while len(self.children) < 2:  # the gateway starts once both fake signers answer
            assert time.monotonic() < deadline, "the fake signers did not start"
            assert self.process.poll() is None, "the demo exited early"
            self.children = psutil.Process(self.process.pid).children(recursive=True)
            time.sleep(0.01)
        assert len(self.children) == 2  # the EU and the domestic fake signer, nothing else

    def fake_signer(self, role: str) -> psutil.Process:
        """The fake signer of `role` (`eu`, `domestic`) among those `find_fake_signers` found.

        The demo starts the domestic one only once the EU one answers, and the domestic one
        may still run the demo's own command line (until its exec) when both are found: so
        `eu` is there at once, and `domestic` only once it has started too.
        """
        for child in self.children:
            command = child.cmdline()
            if "--role" in command and command[command.index("--role") + 1] == role:
                return child
        raise AssertionError(f"no {role} fake signer among {self.children}")

    def stop_with(self, signum: signal.Signals = signal.SIGTERM) -> None:
        """`signum` to the demo alone: it exits as `wait_stopped_by` says."""
        self.process.send_signal(signum)
        self.wait_stopped_by(signum)

    def press_ctrl_c(self) -> None:
        """SIGINT to the demo's process group, as a terminal sends Ctrl-C.

        The fake signers run in process groups of their own: the demo alone gets it.
        """
        press_ctrl_c(self.process)

    def close_the_terminal(self) -> None:
        """SIGHUP to the demo's process group, as closing its terminal sends it."""
        close_the_terminal(self.process)

    def wait_stopped_by(self, signum: signal.Signals) -> None:
        """The demo exits in 20 s with 128 + `signum`, no fake signer left, its directory gone.

        Nothing on stderr (the demo's and its fake signers') says Traceback, Exception or Error.
        """
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            # faulthandler writes every thread's stack to stderr on SIGUSR1.
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(1)
            stacks = self.stderr.read_text(errors="replace")[-6000:]
            pytest.fail(f"demo still running 20 s after {signum.name}:\n{stacks}")
        errors = self.stderr.read_text(errors="replace")
        assert self.process.returncode == 128 + signum, (self.process.returncode, errors[-3000:])
        _, alive = psutil.wait_procs(self.children, timeout=10)
        assert alive == []
        noise = [word for word in ("Traceback", "Exception", "Error") if word in errors]
        assert noise == [], errors[-3000:]
        assert list(self.tmpdir.iterdir()) == []  # its directory removed

    def kill(self) -> None:
        """Kill whatever of the demo and its fake signers is still running."""
        children = list(self.children)
        if self.process.poll() is None:
            # Its fake signers too, found now: a test need not have looked for them, and
            # killing the demo first would leave them running with no parent.
            with contextlib.suppress(psutil.NoSuchProcess):
                children += psutil.Process(self.process.pid).children(recursive=True)
            self.process.kill()
            self.process.wait()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(children, timeout=10)

    def listening_addresses(self) -> set[str]:
        """The addresses the demo and its fake signers listen on."""
        return {
            connection.laddr.ip
            for process in (psutil.Process(self.process.pid), *self.children)
            for connection in process.net_connections("inet")
            if connection.status == psutil.CONN_LISTEN
        }


@contextmanager
def running_demo(
    tmp_path: Path, *, stdout: int, settings: Mapping[str, str] | None = None, port: int = 0
) -> Iterator[Demo]:
    """Start the demo on `port` (0: a free one); afterwards kill whatever of it is still running.

    `settings`: `SIGNING_GATEWAY_*` variables to set (by the name after the prefix); none of
    this process's own is passed on, nor PYTHONUNBUFFERED.
    """
    # Its stdout a pipe, buffered as a person's `make run | tee` has it, whatever this one has.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("SIGNING_GATEWAY_") and name != "PYTHONUNBUFFERED"
    }
    env.update({f"SIGNING_GATEWAY_{name}": value for name, value in (settings or {}).items()})
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env["TMPDIR"] = str(tmpdir)
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as sink:
        command = [sys.executable, "-m", "signing_gateway", "demo", "--port", str(port)]
        process = subprocess.Popen(  # noqa: S603 - our own module, a port number
            [*AS_A_TERMINAL_RUNS_IT, *command],
            stdout=stdout,
            stderr=sink,
            env=env,
            # Its own process group, as a terminal's foreground job: Ctrl-C is sent to it.
            start_new_session=True,
        )
    demo = Demo(process, stderr, tmpdir)
    try:
        yield demo
    finally:
        demo.kill()
        if process.stdout is not None:
            process.stdout.close()
