"""`bench.instructions` reads callgrind's files: each instruction charged once, to its function."""

from __future__ import annotations

import argparse
import collections
import http.server
import os
import select
import shutil
import socket
import subprocess
import threading
import time

import pytest

from bench import auth as bench_auth
from bench import instructions
from bench.instructions import (
    PYTHON,
    Clients,
    Costs,
    Held,
    Version,
    _counts,
    _report,
    _server,
    _shape,
    raw_request,
    read_dump,
)
from bench.run import ROOT

# Two objects and three functions, names compressed as callgrind writes them: `(n) name` the
# first time, `(n)` after. `main` calls `work` (the line after `calls=` is work's inclusive
# cost, 30, which must not count for main) and `cob=`/`cfn=` define names used later by `ob=`
# and `fn=` alone.
DUMP = """\
version: 1
creator: callgrind-3.19.0
positions: instr line
events: Ir
summary: 45

ob=(1) /usr/lib/libexample.so
fl=(1) main.c
fn=(1) main
0x10 3 5
+2 4 2
cob=(2) /usr/lib/libpython3.11.so.1.0
cfi=(2) ceval.c
cfn=(2) work
calls=1 0x20 7
0x11 5 30
* * 3

ob=(2)
fl=(2)
fn=(2)
0x20 7 20
+1 8 10
cfn=(3) helper
calls=2 0x30 9
+1 9 0
fn=(3)
0x30 9 0
+4 10 5
"""


def test_each_instruction_counts_once_for_the_function_executing_it(tmp_path):
    """Compressed names resolve, and a call's inclusive cost is not charged to the caller."""
    dump = tmp_path / "callgrind.1.1"
    dump.write_text(DUMP)

    costs = read_dump(dump)

    assert costs.total == 45
    assert dict(costs.by_function) == {"main": 10, "work": 30, "helper": 5}
    assert dict(costs.by_object) == {
        "/usr/lib/libexample.so": 10,
        "/usr/lib/libpython3.11.so.1.0": 35,
    }


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
@pytest.mark.parametrize("positions", [[], ["--dump-instr=yes"]], ids=["line", "instr-line"])
def test_the_functions_costs_add_up_to_callgrinds_own_total(tmp_path, positions):
    """On a real callgrind file, with one position column or two."""
    out = tmp_path / "callgrind.out"
    subprocess.run(  # noqa: S603 - a fixed command
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *positions, "true"],  # noqa: S607
        check=True,
        capture_output=True,
        timeout=60,
    )
    text = out.read_text()
    assert "calls=" in text  # the file has inclusive call costs that must be skipped

    costs = read_dump(out)

    summary = int(
        next(line for line in text.splitlines() if line.startswith("summary:")).split()[1]
    )
    assert costs.total == summary
    assert sum(costs.by_function.values()) == summary
    assert sum(costs.by_object.values()) == summary
    assert any("libc" in name for name in costs.by_object)


def test_the_report_compares_with_the_first_version_measured(tmp_path):
    """A version that could not be measured gets its row; the ratios start from the next one."""
    costs = Costs(1000, collections.Counter({"/lib/libpython3.11.so": 1000}),
                  collections.Counter({"_PyEval_EvalFrameDefault": 1000}))  # fmt: skip
    old = Version("old", tmp_path, failed="process for http://127.0.0.1:1 exited with 2")
    base = Version("base", tmp_path, windows=[110.0, 112.0], net=[100.0, 102.0], costs=costs)
    mid = Version("mid", tmp_path, windows=[111.0], net=[101.0], costs=costs)
    head = Version("head", tmp_path, windows=[120.0, 122.0], net=[110.0, 112.0], costs=costs)
    args = argparse.Namespace(shown=["--rev", "old"], windows=2, requests=10, concurrency=4,
                              functions=3, cache_sim=False)  # fmt: skip

    report = _report([old, base, mid, head], args)

    rows = [line for line in report.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| old | not measured: process for")
    assert rows[2].endswith("| 101 | 1.000 |")
    assert rows[4].endswith("| 111 | 1.099 |")
    breakdowns = [line for line in report.splitlines() if line.startswith("Where ")]
    assert [line.split("'")[0] for line in breakdowns] == ["Where base", "Where head"]
    assert "| the Python interpreter (libpython) | 100 | 100.0 % |" in report


def test_the_report_gives_the_figures_after_a_hold_and_the_cache_misses(tmp_path):
    """With `--hold` and `--cache-sim`: a row after the hold, and a table of misses."""
    costs = Costs(1000, events={"Ir": 1000, "D1mr": 50, "DLmr": 2})
    miss = {"D1mr": 5.0, "D1mw": 1.0, "DLmr": 0.2}
    after = Version("v, after 1,000 held", tmp_path, windows=[101.0], net=[101.0],
                    misses=[{"D1mr": 6.0, "D1mw": 1.0, "DLmr": 3.0}], costs=costs)  # fmt: skip
    v = Version("v", tmp_path, windows=[100.0], net=[100.0], misses=[miss], costs=costs,
                after_hold=after)  # fmt: skip
    args = argparse.Namespace(shown=["--hold", "1000"], windows=1, requests=10, concurrency=4,
                              functions=3, cache_sim=True)  # fmt: skip

    report = _report([v], args)

    assert "| v, after 1,000 held | 101 | 101 (0/s) | 101 | 1.010 |" in report
    assert "| v | 5 | 1 | 0 |" in report
    assert "| v, after 1,000 held | 6 | 1 | 3 |" in report


def test_the_report_gives_s3s_ratios_beside_the_proxy_and_the_httpx_transport(tmp_path):
    """`--proxy` and `--httpx`: each gateway's ratios, from the median net per request."""
    costs = Costs(1000)
    gateway = Version("head", tmp_path, windows=[1.0], net=[500.0, 520.0, 600.0], costs=costs)
    on_httpx = Version("head on httpx's transport", tmp_path, server="httpx", windows=[1.0],
                       net=[1500.0], costs=costs)  # fmt: skip
    proxy = Version("pass-through proxy", tmp_path, server="proxy", windows=[1.0], net=[130.0],
                    costs=costs)  # fmt: skip
    args = argparse.Namespace(shown=["--proxy", "--httpx"], windows=3, requests=10,
                              concurrency=4, functions=3, cache_sim=False)  # fmt: skip

    report = _report([gateway, on_httpx, proxy], args)

    assert "- head: the pass-through proxy's 130 over its 520 = 0.250 " in report
    assert "- head: the httpx-transport gateway's 1,500 over its 520 = 2.88x " in report
    assert "head on httpx's transport: the" not in report  # the comparisons get no ratios
    assert "S3's ratios" not in _report([gateway], args)
    older = Version("old", tmp_path / "old", windows=[1.0], net=[260.0], costs=costs)
    mixed = _report([older, gateway, on_httpx, proxy], args)
    assert "- old: the pass-through proxy's 130 over its 260 = 0.500 " in mixed
    assert "- old: the httpx-transport" not in mixed  # another version's full path: not compared


def test_each_version_runs_its_own_trees_code_whatever_the_working_directory(tmp_path):
    """A version's tree is the code its server runs, even when run from this checkout's root.

    `python -m` puts the working directory ahead of `PYTHONPATH`: every version measured from
    there was this checkout's code until `PYTHON` kept it out.
    """
    tree = tmp_path / "tree"
    (tree / "signing_gateway").mkdir(parents=True)
    (tree / "signing_gateway" / "__init__.py").write_text("")
    (tree / "signing_gateway" / "__main__.py").write_text("print(__file__)\n")
    version = Version("other", tree)
    args = argparse.Namespace(hold=0, during=[], shape=[])
    server, env = _server(version, args, 1, bench_auth.make(tmp_path), "http://127.0.0.1:1")

    done = subprocess.run(  # noqa: S603 - a fixed command
        [*PYTHON, *server[:2]],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip

    assert done.stdout.strip() == str(tree / "signing_gateway" / "__main__.py")


def test_the_report_gives_the_figures_while_requests_are_held(tmp_path):
    """`--during`: a row per count held, its net less its own idle rate, beside the first."""
    costs = Costs(1000)
    held = [
        Version("v, 250 in flight", tmp_path, windows=[130.0], net=[104.0], idle_rate=2600.0),
        Version(
            "v, 1,000 in flight",
            tmp_path,
            windows=[150.0],
            net=[110.0],
            idle_rate=4000.0,
            costs=costs,
        ),
    ]
    v = Version("v", tmp_path, windows=[120.0], net=[100.0], idle_rate=2000.0, costs=costs,
                loaded=held)  # fmt: skip
    args = argparse.Namespace(shown=["--during", "250,1000"], windows=1, requests=10,
                              concurrency=4, functions=3, cache_sim=False)  # fmt: skip

    report = _report([v], args)

    rows = [line for line in report.splitlines() if line.startswith(("| v |", "| v, "))]
    assert rows == [
        "| v | 120 | 100 (2,000/s) | 100 | 1.000 |",
        "| v, 250 in flight | 130 | 104 (2,600/s) | 104 | 1.040 |",
        "| v, 1,000 in flight | 150 | 110 (4,000/s) | 110 | 1.100 |",
    ]
    breakdowns = [line for line in report.splitlines() if line.startswith("Where ")]
    assert [line.split("'s instructions")[0] for line in breakdowns] == [
        "Where v",
        "Where v, 1,000 in flight",
    ]


def test_the_counts_held_must_grow():
    """Each count adds to the requests already held, so they come in increasing order."""
    assert _counts("250,1000") == [250, 1000]
    for wrong in ("1000,250", "250,250", "0,10"):
        with pytest.raises(argparse.ArgumentTypeError):
            _counts(wrong)


class _Slow:
    """A loopback server that reads whole requests and answers none until told."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
            data.split(b"Content-Length: ")[1].split(b"\r\n")[0]
        ):
            data += connection.recv(4096)
        with self.lock:
            self.requests.append(data)
            self.connections.append(connection)

    def arrived(self) -> int:
        with self.lock:
            return len(self.requests)

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


def test_held_requests_arrive_whole_and_stay_unanswered(monkeypatch):
    """`Held` sends each request on its own connection, a batch at a time, reads nothing.

    And says so when one is answered after all.
    """
    monkeypatch.setattr(instructions, "HELD_BATCH", 40)
    server = _Slow()
    body = b'{"credentialAttributes": {}}'
    request = raw_request("/v1/domestic/static", server.port, {"X-Test": "1"}, body)
    sent_when_waiting: list[int] = []

    def waiting() -> int:
        sent_when_waiting.append(len(held.sockets))
        return server.arrived()

    held = Held(server.port, request, waiting)
    try:
        held.grow(50)
        held.grow(100)

        assert server.arrived() == 100
        assert all(r == request for r in server.requests)
        assert request.startswith(b"POST /v1/domestic/static HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"\r\nX-Test: 1\r\nContent-Length: 28\r\n\r\n" + body in request
        # Each batch waited for before the next is sent: never more than 40 ahead.
        assert sorted(set(sent_when_waiting)) == [40, 50, 90, 100]
        held.check()  # none answered

        server.connections[7].sendall(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
        poll = select.poll()
        for held_socket in held.sockets:
            poll.register(held_socket, select.POLLIN)
        assert poll.poll(5000), "the answer did not cross the loopback"
        with pytest.raises(RuntimeError, match=r"answered: HTTP/1\.1 503 Service Unavailable"):
            held.check()
    finally:
        held.close()
        server.close()


def test_the_shapes_clients_and_latency_are_read_whole():
    """`--shape CLIENTS:MS`: both given, within the fake signer's bounds."""
    assert _shape("160:5000") == (160, 5000.0)
    for wrong in ("160", "0:5000", "160:-1", "160:600001", "x:5000"):
        with pytest.raises(argparse.ArgumentTypeError):
            _shape(wrong)


class _Counting(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the server's status after 20 ms, noting the client's port.

    (The latency keeps each client busy long enough for the others to take requests too.)
    """

    protocol_version = "HTTP/1.1"  # keep-alive

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.02)
        server = self.server
        with server.lock:  # type: ignore[attr-defined]
            server.ports.append(self.client_address[1])  # type: ignore[attr-defined]
        self.send_response(server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def test_clients_keep_their_connections_across_windows_and_want_200s():
    """`Clients` sends over the same connections call after call; a non-200 fails the call.

    `_send` opened new ones for each window: at `--shape`'s 160 clients, a connection's setup
    for every two requests measured.
    """
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    server.daemon_threads = True
    server.ports, server.lock, server.status = [], threading.Lock(), 200  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    clients = Clients(f"http://127.0.0.1:{server.server_address[1]}/", b"{}", {}, 3)
    try:
        clients.send(12)
        clients.send(6)

        assert len(server.ports) == 18  # type: ignore[attr-defined]
        assert len(set(server.ports)) == 3  # type: ignore[attr-defined]  # none reopened

        server.status = 503  # type: ignore[attr-defined]
        with pytest.raises(RuntimeError, match=r"answers other than 200: \{200: 18, 503: 1\}"):
            clients.send(1)
    finally:
        clients.close()
        server.shutdown()
        server.server_close()
