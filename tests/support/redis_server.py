"""A real `redis-server` for tests: on a free 127.0.0.1 port, in a directory of its own.

Started with no configuration file and nothing kept on disk (`--save "" --appendonly no`),
syncing a new replica at once; ready once it answers PING, checked with a bare RESP exchange
(not the client library the gateway uses). A test can take it away mid-test, as an outage does::

    with running_redis_server() as redis:
        redis.pause()  # SIGSTOP: connections stay open, nothing answers
        redis.resume()
        redis.stop()  # gone: connections refused
        redis.start()  # back, on the same port (empty)

With `tls` it listens for TLS only (`rediss://`), with certificates of `tls_files`.

Without `redis-server` on PATH the test is skipped, unless `TEST_REQUIRE_REDIS=1` is set (as
CI does once it has installed one): then it fails, so a server CI installed cannot go missing
unnoticed. Where CI could not install one, `.ci/run` says so and these tests are skipped.
The variable is not a `SIGNING_GATEWAY_*` one: every gateway a test starts inherits the
environment, and refuses a variable under its prefix that is no setting.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from tests.support.processes import free_port, read_log, stop_process
from tests.support.tls_pki import issue_certificate, write_pem

#: Set to 1 where a missing redis-server must fail the tests that need one, not skip them.
REQUIRE_VARIABLE = "TEST_REQUIRE_REDIS"
READY_TIMEOUT = 10.0


class RedisStartError(RuntimeError):
    """redis-server exited, or did not answer PING before the deadline."""


def redis_server_program() -> str:
    """The path of `redis-server`; skips the test (fails it, if required) when there is none."""
    program = shutil.which("redis-server")
    if program is None:
        reason = "redis-server is not on PATH (Debian, Ubuntu: apt-get install redis-server)"
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{reason}; {REQUIRE_VARIABLE}=1 requires it")
        pytest.skip(reason)
    return program


@dataclass(frozen=True)
class RedisTls:
    """PEM files of a TLS listener: its certificate and key, and the CA that issued them.

    `client_cert` and `client_key` were issued by the same CA; with `mutual` the server
    refuses a client that presents no certificate of that CA.
    """

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    mutual: bool


def tls_files(directory: Path, *, mutual: bool) -> RedisTls:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, in PEM."""
    ca, ca_key = issue_certificate("Test Redis CA", None)
    server, server_key = issue_certificate("redis", ("Test Redis CA", ca_key), server=True)
    client, client_key = issue_certificate(
        "signing-gateway", ("Test Redis CA", ca_key), client=True
    )
    server_pem, client_pem = directory / "redis.pem", directory / "redis-client.pem"
    files = RedisTls(
        ca=directory / "redis-ca.pem",
        cert=server_pem,
        key=server_pem.with_suffix(".key"),  # where write_pem puts it
        client_cert=client_pem,
        client_key=client_pem.with_suffix(".key"),
        mutual=mutual,
    )
    write_pem(files.ca, ca)
    write_pem(server_pem, server, server_key)
    write_pem(client_pem, client, client_key)
    return files


@dataclass
class RedisServer:
    """A `redis-server` process on `port` of 127.0.0.1, started and stopped at will."""

    program: str
    directory: Path
    port: int = field(default_factory=free_port)
    tls: RedisTls | None = None
    #: A configuration file (first on the command line), and more options after the others.
    config: Path | None = None
    options: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The `redis_url` of the gateway's session store: database 0 of this server."""
        scheme = "redis" if self.tls is None else "rediss"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def _listener(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert),
            "--tls-key-file", str(self.tls.key),
            "--tls-ca-cert-file", str(self.tls.ca),
            "--tls-auth-clients", "yes" if self.tls.mutual else "no",
            # A replica, or a sentinel, reaches its primary over TLS too.
            "--tls-replication", "yes",
        ]  # fmt: skip

    def start(self) -> None:
        """Start the server (again, on the same port, empty) and return once it answers PING.

        Raises:
            RedisStartError: it exited or did not answer in time; with its log.
        """
        assert self.process is None or self.process.poll() is not None, "already running"
        if self.log_file is not None:
            self.log_file.close()
        self.log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by close()
            prefix="redis-", suffix=".log", dir=self.directory
        )
        options = [
            "--bind", "127.0.0.1",
            *self._listener(),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            # A primary starts a replica's first sync at once, not after the default 5 s it
            # waits for more replicas to share it: that wait took half of a test's 10 s for
            # replication to come up, and five seconds of every test that replicates.
            "--repl-diskless-sync-delay", "0",
            *self.options,
        ]  # fmt: skip
        config = [] if self.config is None else [str(self.config)]
        self.process = subprocess.Popen(  # noqa: S603 - the redis-server found on PATH
            [self.program, *config, *options], stdout=self.log_file, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.answers_ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RedisStartError(f"redis-server did not start:\n{self.log()}")
            # Polling interval of a readiness check, not a wait for a fixed time.
            time.sleep(0.02)

    def answers_ping(self, timeout: float = 1.0) -> bool:
        """Whether the server answers PING within `timeout` seconds (over TLS if it listens so)."""
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as raw,
                self._wrapped(raw) as connection,
            ):
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:  # refused, timed out, TLS refused
            return False

    def command(self, *commands: list[str], timeout: float = 5.0) -> list[bytes]:
        """Run `commands` on one fresh connection, as the default user; their replies' lines.

        A bare RESP exchange, as `answers_ping`'s, so what the test sets up does not depend on
        the client library under test. Each reply is read whole only where it is one line (a
        status or an error), which is what setting up a server needs.
        """
        replies = []
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as raw,
            self._wrapped(raw) as connection,
            connection.makefile("rb") as reader,
        ):
            for words in commands:
                encoded = [f"${len(w.encode())}\r\n{w}\r\n" for w in words]
                connection.sendall(f"*{len(words)}\r\n{''.join(encoded)}".encode())
                replies.append(reader.readline().rstrip(b"\r\n"))
        return replies

    def _wrapped(self, raw: socket.socket) -> contextlib.AbstractContextManager[socket.socket]:
        if self.tls is None:
            return contextlib.nullcontext(raw)
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return context.wrap_socket(raw, server_hostname="127.0.0.1")

    def pause(self) -> None:
        """SIGSTOP the server: its connections stay open, and nothing on them is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the server: it answers again, what waited first."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (also when paused): SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.process is not None and self.process.poll() is None:
            self.resume()  # a stopped process takes its SIGTERM only once continued
            stop_process(self.process, timeout)

    def log(self) -> str:
        """What the server wrote since its last start."""
        return "" if self.log_file is None else read_log(self.log_file)

    def close(self) -> None:
        """Stop the server and close its log."""
        self.stop()
        if self.log_file is not None:
            self.log_file.close()


@contextlib.contextmanager
def running_redis_server(tls: RedisTls | None = None) -> Iterator[RedisServer]:
    """A `redis-server` answering PING for the block, in a temporary directory; always stopped.

    Skips the test when there is no `redis-server` (see the module).
    """
    program = redis_server_program()
    with tempfile.TemporaryDirectory(prefix="redis-") as directory:
        server = RedisServer(program, Path(directory), tls=tls)
        try:
            server.start()
            yield server
        finally:
            server.close()


@contextlib.contextmanager
def running_redis_sentinel(primary: RedisServer, service: str) -> Iterator[RedisServer]:
    """A `redis-server --sentinel` watching `primary` as `service`, quorum 1; always stopped.

    Over TLS when `primary` is, with its certificates. It takes a server down after 1 s
    without answers. The configuration file is the sentinel's own: it rewrites it.
    """
    program = redis_server_program()
    with tempfile.TemporaryDirectory(prefix="redis-sentinel-") as directory:
        config = Path(directory) / "sentinel.conf"
        config.write_text(
            f"sentinel monitor {service} 127.0.0.1 {primary.port} 1\n"
            f"sentinel down-after-milliseconds {service} 1000\n"
            f"sentinel failover-timeout {service} 10000\n"
        )
        sentinel = RedisServer(
            program, Path(directory), tls=primary.tls, config=config, options=("--sentinel",)
        )
        try:
            sentinel.start()
            yield sentinel
        finally:
            sentinel.close()
