"""What `signing-gateway serve` hands uvicorn for its flags, without starting a server.

The server and the supervisor are replaced by recorders: each test sees the configuration
`serve` built from its command line and settings (tests/contract/gateway runs the real ones).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.importer import import_from_string
from uvicorn.supervisors import multiprocess

from signing_gateway import app as app_module
from signing_gateway import cli, demo, serving
from signing_gateway.resilience import shutdown
from signing_gateway.runtime import worker_signals
from signing_gateway.runtime.event_loop import BoundedEpollSelector
from signing_gateway.runtime.http_protocol import GatewayHttpProtocol
from signing_gateway.security.settings import AuthSettings
from signing_gateway.settings import Settings
from signing_gateway.settings_env import PROBLEMS_HEADER

ROOT = Path(__file__).resolve().parents[3]


def _text(path: str) -> str:
    """A document of the repository, its line breaks and runs of spaces as single spaces."""
    return re.sub(r"\s+", " ", (ROOT / path).read_text("utf-8"))


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `serve` passed to the server (or the supervisor); development settings, fetched keys.

    Nothing listens, no logging or signal handler of the test process is changed.
    """
    for name in [k for k in os.environ if k.upper().startswith("SIGNING_GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNING_GATEWAY_AUTH__MODE", "disabled")
    monkeypatch.setenv("SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS", "true")
    seen: dict[str, Any] = {}

    def register(*args: Any, **kwargs: Any) -> None:
        seen["stack_dump"] = args, kwargs

    monkeypatch.setattr(cli.faulthandler, "register", register)
    monkeypatch.setattr(app_module, "configure_logging", lambda **_kwargs: None)
    monkeypatch.setattr(serving.SupervisedConfig, "configure_logging", lambda _self: None)

    class RecordingServer:
        def __init__(self, config: Any, **options: Any) -> None:
            seen["config"], seen["options"] = config, options

        def run(self) -> None:
            seen["ran"] = True

    def run_workers(supervised: serving.SupervisedConfig) -> int:
        seen["supervised"] = supervised
        return 0

    monkeypatch.setattr(shutdown, "GracefulServer", RecordingServer)
    monkeypatch.setattr(serving, "run_workers", run_workers)
    return seen


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` run by a fresh interpreter of the test's own; its output captured."""
    return subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def _serve(*flags: str) -> int:
    return cli.main(["serve", "--host", "127.0.0.1", "--port", "0", *flags])


def test_serve_accepts_in_batches_from_a_full_kernel_queue(served: dict[str, Any]) -> None:
    """Asyncio takes `--accept-batch` per pass; the kernel still queues `--backlog`."""
    assert _serve() == 0
    config, options = served["config"], served["options"]
    assert served["ran"] is True
    assert (config.host, config.port) == ("127.0.0.1", 0)
    assert config.backlog == 64
    assert options["listen_backlog"] == 4096
    assert options["probe_port"] is None


def test_an_accept_batch_over_the_backlog_is_cut_to_it(served: dict[str, Any]) -> None:
    """More per pass than the kernel queues makes no sense: the batch is the backlog then."""
    assert _serve("--accept-batch", "100", "--backlog", "50") == 0
    assert served["config"].backlog == 50
    assert served["options"]["listen_backlog"] == 50


def test_serve_bounds_request_heads_and_skips_the_forwarded_rewrite(
    served: dict[str, Any],
) -> None:
    """The head-bounding protocol, no uvicorn access log, no X-Forwarded-* rewrite."""
    assert _serve() == 0
    config = served["config"]
    assert config.http is GatewayHttpProtocol
    assert config.access_log is False
    assert config.proxy_headers is False
    assert config.loop == "asyncio"


@pytest.mark.parametrize(("grace", "backstop"), [("2", 3), ("2.5", 4), ("0.1", 2)])
def test_uvicorns_backstop_comes_a_second_after_the_cancel_grace(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch, grace: str, backstop: int
) -> None:
    """The backstop cancels only once the drain's cancel grace is over, in whole seconds."""
    monkeypatch.setenv("SIGNING_GATEWAY_SHUTDOWN__CANCEL_GRACE_SECONDS", grace)
    assert _serve() == 0
    assert served["config"].timeout_graceful_shutdown == backstop


@pytest.mark.parametrize(
    ("flags", "bounded", "loop"),
    [
        ([], True, "asyncio"),
        (["--events-per-pass", "0"], False, "asyncio"),
        (["--loop", "uvloop"], False, "uvloop"),
        (["--loop", "auto"], False, "auto"),
    ],
)
def test_events_per_pass_bounds_only_the_asyncio_loop(
    served: dict[str, Any], flags: list[str], bounded: bool, loop: str
) -> None:
    """A bound on asyncio makes the bounded loop; no bound, or another loop, uvicorn's own."""
    assert _serve(*flags) == 0
    assert (served["options"]["loop_factory"] is not None) is bounded
    assert served["config"].loop == loop


def test_the_probe_port_goes_to_the_server(served: dict[str, Any]) -> None:
    """`--probe-port` opens the second listener of the one server process."""
    assert _serve("--probe-port", "18081") == 0
    assert served["options"]["probe_port"] == 18081


def test_workers_run_under_uvicorns_supervisor_with_the_same_options(
    served: dict[str, Any],
) -> None:
    """Each worker builds the app from the environment; the options are those of one process."""
    assert _serve("--workers", "2", "--backlog", "1000") == 0
    supervised = served["supervised"]
    assert "ran" not in served
    assert (supervised.app, supervised.factory) == ("signing_gateway.app:create_served_app", True)
    assert (supervised.workers, supervised.backlog) == (2, 1000)
    assert (supervised.host, supervised.port) == ("127.0.0.1", 0)
    assert import_from_string(supervised.http) is GatewayHttpProtocol
    assert (supervised.access_log, supervised.proxy_headers) == (False, False)
    assert (supervised.gateway_log_level, supervised.gateway_log_format) == ("INFO", "json")
    # Each worker drains as one process does: uvicorn's backstop a second after the grace.
    assert supervised.timeout_graceful_shutdown == 3


def test_workers_log_in_the_format_and_at_the_level_the_settings_name(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor and each worker log as the settings say, not in the defaults."""
    monkeypatch.setenv("SIGNING_GATEWAY_LOG_FORMAT", "console")
    monkeypatch.setenv("SIGNING_GATEWAY_LOG_LEVEL", "WARNING")
    assert _serve("--workers", "2") == 0
    supervised = served["supervised"]
    assert (supervised.gateway_log_level, supervised.gateway_log_format) == ("WARNING", "console")


def test_sigterm_sends_the_spans_writes_the_log_then_ends_as_the_signal_does() -> None:
    """Pin the supervised processes' SIGTERM handler: spans, then log lines, then the signal.

    Without the spans' flush a worker's last spans were lost with tracing on; without the
    signal raised again the process would not end by it.
    """
    code = (
        "import signal\n"
        "from signing_gateway import serving\n"
        "serving.flush_telemetry = lambda: print('spans', flush=True)\n"
        "serving.flush_logging = lambda: print('log lines', flush=True)\n"
        "signal.signal(signal.SIGTERM, serving._write_logs_then_end)\n"
        "signal.raise_signal(signal.SIGTERM)\n"
        "print('still running', flush=True)\n"
    )
    done = _run_python(code)
    assert (done.returncode, done.stdout) == (-signal.SIGTERM, "spans\nlog lines\n"), done.stderr


def test_each_supervised_process_logs_as_the_settings_say_and_writes_out_on_sigterm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pin the gateway's logging in the supervisor and its workers, and SIGTERM's handler.

    Without the handler a worker's last lines stayed queued when the signal ended it.
    """
    configured: list[dict[str, str]] = []
    monkeypatch.setattr(serving, "configure_logging", lambda **kwargs: configured.append(kwargs))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        serving.SupervisedConfig(
            "signing_gateway.app:create_served_app",
            gateway_log_level="WARNING",
            gateway_log_format="console",
            factory=True,
            log_config=None,
        )
        assert signal.getsignal(signal.SIGTERM) is serving._write_logs_then_end
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert configured == [{"level": "WARNING", "fmt": "console"}]


def test_a_worker_can_answer_the_supervisor_before_it_imports_the_app(
    served: dict[str, Any], tmp_path: Path
) -> None:
    """Pin that what a worker unpickles first imports neither the app nor the HTTP protocol.

    A worker answers the supervisor's health checks only once it has unpickled its
    configuration, and the supervisor kills a worker that has not answered within 5 s as
    hung. Unpickling imported the app with it: six workers starting on one CPU saw one killed
    and started again ("Child process [...] died").
    """
    assert _serve("--workers", "2") == 0
    pickled = tmp_path / "config.pickle"
    pickled.write_bytes(pickle.dumps(served["supervised"]))
    heavy = (
        "fastapi",
        "aiohttp",
        "signing_gateway.app",
        "signing_gateway.runtime.http_protocol",
        "signing_gateway.resilience.shutdown",  # the worker's server: imported as it serves
    )
    code = (
        f"import pickle, sys; pickle.loads(open({str(pickled)!r}, 'rb').read())\n"
        f"print(sorted(name for name in {heavy!r} if name in sys.modules))"
    )
    done = _run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]"]


class _DeadWorker:
    """A worker of uvicorn's supervisor that has died (neither started nor stopped here)."""

    pid, exitcode = 4321, 1

    def is_alive(self, **_health_check: object) -> bool:
        return False

    def kill(self) -> None:
        pass

    def join(self) -> None:
        pass

    def terminate(self) -> None:
        pass


def _start_a_worker_by_each_method(
    monkeypatch: pytest.MonkeyPatch,
    supervised: serving.SupervisedConfig,
    start: Callable[[multiprocess.Process], None],
) -> list[multiprocess.Process]:
    """The workers `serving._Supervisor` builds by each of its methods that starts one.

    The first workers, one for a worker that died, a SIGHUP's replacement and SIGTTIN's added
    one. `start` stands for the start of uvicorn's worker, the process (not started).
    """
    monkeypatch.setattr(multiprocess.Process, "start", start)
    monkeypatch.setattr(serving._GatewayProcess, "wait_until_ready", lambda *_a, **_k: True)
    # uvicorn's own constructor takes over this process's signals: not run here.
    supervisor = object.__new__(serving._Supervisor)
    supervisor.config, supervisor.sockets = supervised, []
    supervisor.processes_num, supervisor.processes = 1, []
    supervisor.should_exit = threading.Event()
    supervisor.init_processes()
    supervisor.processes = [_DeadWorker()]  # type: ignore[list-item]
    supervisor.keep_subprocess_alive()
    supervisor.processes = [_DeadWorker()]  # type: ignore[list-item]
    supervisor.restart_all()
    supervisor.handle_ttin()
    for process in supervisor.processes:
        process.parent_conn.close()
        process.child_conn.close()
    return supervisor.processes


def test_every_worker_the_supervisor_starts_is_the_gateways(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin that each method of uvicorn's supervisor that starts a worker starts a drain-aware one.

    uvicorn builds each by the name `Process`. A plain `Process` runs uvicorn's own server: no
    drain on the SIGTERM that stops it. uvicorn's module keeps its own `Process`.
    """
    assert _serve("--workers", "2") == 0
    started: list[tuple[type, bool]] = []

    def start(process: multiprocess.Process) -> None:
        # Started with Ctrl-C blocked, which the process keeps, so a worker still importing
        # is not ended by it (`_signals_held_from_started_processes`).
        blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        started.append((type(process), blocked))

    processes = _start_a_worker_by_each_method(monkeypatch, served["supervised"], start)
    assert started == [(serving._GatewayProcess, True)] * 4
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert all(isinstance(process, serving._GatewayProcess) for process in processes)
    assert multiprocess.Process is not serving._GatewayProcess


def test_a_ctrl_c_while_a_worker_starts_reaches_the_supervisor(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGINT to the supervisor while it starts a worker reaches its handler: none is lost.

    The kernel hands a signal sent to the process to a thread that does not block it: the
    supervisor's log writer, while the thread starting a worker blocks SIGINT. Before, SIGINT
    was ignored too while a worker started (and while the workers' health was checked, every
    0.5 s): the log writer dropped a Ctrl-C then, and the supervisor never stopped.
    """
    assert _serve("--workers", "2") == 0
    taken: list[int] = []
    seen: list[tuple[bool, list[int]]] = []

    def start(_process: multiprocess.Process) -> None:
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)  # to the process, as a terminal's Ctrl-C
        deadline = time.monotonic() + 2
        while not taken and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append((ignored, taken[:]))
        taken.clear()

    log_writer = threading.Event()
    other_thread = threading.Thread(target=log_writer.wait)  # SIGINT not blocked there
    other_thread.start()
    handler = signal.signal(signal.SIGINT, lambda signum, _frame: taken.append(signum))
    try:
        _start_a_worker_by_each_method(monkeypatch, served["supervised"], start)
    finally:
        signal.signal(signal.SIGINT, handler)
        log_writer.set()
        other_thread.join()
    assert seen == [(False, [signal.SIGINT])] * 4


def test_a_worker_process_starts_with_ctrl_c_blocked_even_the_first_one() -> None:
    """A worker process is started with SIGINT blocked, also the first one started.

    The first process multiprocessing spawns starts its resource tracker too, which unblocks
    SIGINT in the starting thread on its way: the first worker was started with SIGINT
    unblocked, and a Ctrl-C while it imported ended in a KeyboardInterrupt traceback. Run in a
    fresh interpreter (no tracker yet); the worker's process raises SIGINT at once, which only
    a blocked SIGINT leaves without a KeyboardInterrupt (exit status 0).
    """
    code = (
        "import multiprocessing, signal, uvicorn\n"
        "from signing_gateway import serving\n"
        "config = uvicorn.Config('signing_gateway.app:create_served_app', factory=True)\n"
        "worker = serving._GatewayProcess(config, [])\n"
        "worker.process = multiprocessing.get_context('spawn').Process(\n"
        "    target=signal.raise_signal, args=(signal.SIGINT,))\n"
        "worker.start()\n"
        "worker.process.join()\n"
        "print(worker.exitcode)\n"
    )
    done = _run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["0"], done.stderr


def test_a_worker_process_holds_its_supervisors_signals_until_its_server_takes_them() -> None:
    """A worker still starting is not ended by its supervisor's drain or stop now: held.

    Their default action ends a process; blocked from its start, each waits for the worker's
    server, which drains or stops on it. The worker's process raises each at once, which
    only a blocked signal leaves without ending it (exit status 0).
    """
    code = (
        "import multiprocessing, signal, uvicorn\n"
        "from signing_gateway import serving\n"
        "from signing_gateway.runtime import worker_signals\n"
        "config = uvicorn.Config('signing_gateway.app:create_served_app', factory=True)\n"
        "for signum in sorted(worker_signals.SUPERVISOR_SIGNALS):\n"
        "    worker = serving._GatewayProcess(config, [])\n"
        "    worker.process = multiprocessing.get_context('spawn').Process(\n"
        "        target=signal.raise_signal, args=(signum,))\n"
        "    worker.start()\n"
        "    worker.process.join()\n"
        "    print(worker.exitcode)\n"
    )
    done = _run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["0", "0"], done.stderr


def test_a_workers_server_is_the_drain_aware_one_and_built_once() -> None:
    """The server a worker runs and the one its health-check thread asks about are one."""
    config = uvicorn.Config("signing_gateway.app:create_served_app", factory=True)
    process = serving._GatewayProcess(config, [])
    try:
        server = process.server
        assert type(server) is shutdown.WorkerServer
        assert process.server is server
    finally:
        process.parent_conn.close()
        process.child_conn.close()


def test_a_workers_server_is_built_holding_the_lock_its_health_check_thread_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The health-check thread and the worker ask for the server at once: it is built once.

    Built outside the lock, each could build its own, and the health check would ask a
    server that never serves whether it is started.
    """
    built_holding_the_lock: list[bool] = []

    class Built:
        def __init__(self, _config: uvicorn.Config) -> None:
            built_holding_the_lock.append(serving._WORKER_SERVER_LOCK.locked())

    monkeypatch.setattr(shutdown, "WorkerServer", Built)
    process = serving._GatewayProcess(uvicorn.Config("signing_gateway.app:create_served_app"), [])
    try:
        assert isinstance(process.server, Built)
    finally:
        process.parent_conn.close()
        process.child_conn.close()
    assert built_holding_the_lock == [True]


def _assert_serves_usage_error(error: str, problem: str) -> None:
    """`error` (stderr) is `serve`'s usage error saying `problem`, with `serve`'s usage.

    Before, the refusals of `--workers` > 1 gave the command line's usage, `usage:
    signing-gateway [-h] {serve,demo} ...`, which shows none of the flags they name.
    """
    lines = error.splitlines()
    assert lines[0].startswith("usage: signing-gateway serve [-h] [--host HOST]"), error
    assert "[--accept-batch ACCEPT_BATCH]" in error
    assert lines[-1] == f"signing-gateway serve: error: {problem}"


def test_workers_refuse_a_probe_port(
    served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The supervisor hands its workers one socket: `serve`'s usage error, exit 2."""
    with pytest.raises(SystemExit) as ended:
        _serve("--workers", "2", "--probe-port", "18081")
    assert ended.value.code == 2
    _assert_serves_usage_error(
        capsys.readouterr().err, "--probe-port (SIGNING_GATEWAY_PROBE_PORT) needs --workers 1"
    )
    assert served == {}
    assert _serve("--workers", "1", "--probe-port", "18081") == 0


def test_workers_are_refused_where_the_platform_has_no_real_time_signals(
    served: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin that `--workers` > 1 is `serve`'s usage error, exit 2, where it cannot signal.

    One process needs none of the supervisor's signals and is still served.
    """
    monkeypatch.setattr(worker_signals, "AVAILABLE", False)
    with pytest.raises(SystemExit) as ended:
        _serve("--workers", "2")
    assert ended.value.code == 2
    _assert_serves_usage_error(
        capsys.readouterr().err, "--workers > 1 needs real-time signals, which this platform lacks"
    )
    assert served == {}
    assert _serve("--workers", "1") == 0


def test_the_supervisors_signals_import_where_the_platform_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pin that the gateway's modules import without `signal.SIGRTMIN` (macOS has none).

    `resilience.shutdown` imports `worker_signals` for every `serve`, one process too: a
    missing attribute there ended every start on such a platform.
    """
    monkeypatch.delattr(signal, "SIGRTMIN")
    try:
        importlib.reload(worker_signals)
        assert worker_signals.AVAILABLE is False
        assert not worker_signals.SUPERVISOR_SIGNALS
    finally:
        monkeypatch.undo()
        importlib.reload(worker_signals)
    assert worker_signals.AVAILABLE is True
    assert worker_signals.DRAIN == signal.SIGRTMIN


@pytest.mark.parametrize(("flags", "bound"), [([], 64), (["--events-per-pass", "8"], 8)])
def test_each_worker_bounds_its_loop_as_one_process_does(
    served: dict[str, Any], flags: list[str], bound: int
) -> None:
    """Pin that `--events-per-pass` reaches every worker's asyncio loop.

    Each worker made the loop `--loop` names, so the bound (its variable's too) was dropped
    without a word under `--workers` > 1.
    """
    assert _serve("--workers", "2", *flags) == 0
    loop = served["supervised"].get_loop_factory()()
    try:
        assert isinstance(loop._selector, BoundedEpollSelector)  # type: ignore[attr-defined]
        assert loop._selector.max_events == bound  # type: ignore[attr-defined]
    finally:
        loop.close()


@pytest.mark.parametrize("flags", [["--events-per-pass", "0"], ["--loop", "uvloop"]])
def test_workers_without_a_bound_make_the_loop_uvicorn_would(
    served: dict[str, Any], flags: list[str]
) -> None:
    """No bound, or another loop than asyncio: the worker's loop is uvicorn's own."""
    assert _serve("--workers", "2", *flags) == 0
    supervised = served["supervised"]
    assert supervised.get_loop_factory() is uvicorn.Config.get_loop_factory(supervised)


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--accept-batch", "64"], "--accept-batch needs --workers 1"),
        (
            ["--accept-batch", "8", "--probe-port", "18081"],
            "--probe-port (SIGNING_GATEWAY_PROBE_PORT) and --accept-batch need --workers 1",
        ),
    ],
)
def test_workers_refuse_an_accept_batch(
    served: dict[str, Any], capsys: pytest.CaptureFixture[str], flags: list[str], problem: str
) -> None:
    """Pin that `--accept-batch` given with `--workers` > 1 is `serve`'s usage error, exit 2.

    uvicorn's workers set the shared socket's queue to the batch as each starts, so it cannot
    be honoured there; it was dropped without a word. Left at its default, it is no problem.
    """
    with pytest.raises(SystemExit) as ended:
        _serve("--workers", "2", *flags)
    assert ended.value.code == 2
    _assert_serves_usage_error(capsys.readouterr().err, problem)
    assert "supervised" not in served
    assert _serve("--workers", "2") == 0
    assert _serve("--workers", "1", *flags) == 0


def test_serve_writes_every_threads_stack_on_sigusr1(served: dict[str, Any]) -> None:
    """Pin that `kill -USR1` dumps every thread's stack (docs/operations.md), not only one."""
    assert _serve() == 0
    assert served["stack_dump"] == ((signal.SIGUSR1,), {"all_threads": True})


def test_serve_and_demo_defaults_are_the_documented_ones() -> None:
    """Without flags or variables: what docs/operations.md and the README give."""
    serve = cli._parser().parse_args(["serve"])
    defaults = {
        name: value.fallback if isinstance(value, cli.FromEnvironment) else value
        for name, value in vars(serve).items()
    }
    assert defaults == {
        "command": "serve",
        "host": "127.0.0.1",
        "port": 8080,
        "probe_port": None,
        "workers": 1,
        "backlog": 4096,
        "accept_batch": 64,
        "events_per_pass": 64,
        "loop": "asyncio",
    }
    guide = _text("docs/operations.md")
    assert "`serve --backlog` (4096)" in guide
    assert "`--accept-batch` (64)" in guide
    assert "`SIGNING_GATEWAY_LOOP`: `asyncio`, the default" in guide
    demo = cli._parser().parse_args(["demo"])
    assert (demo.port.fallback, demo.signer_latency_ms, demo.smoke) == (8080, 200.0, False)
    assert demo.loop.fallback == "asyncio"
    assert "127.0.0.1:8080" in _text("README.md")


def test_demo_listens_where_the_port_variable_says_as_serve_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pin that `demo` reads `SIGNING_GATEWAY_PORT` for `--port`, checked by the flag's rule.

    The variable counted as known for the demo, so it was not refused, but was never read:
    the demo listened on 8080 without a word.
    """
    for name in [k for k in os.environ if k.upper().startswith("SIGNING_GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(cli.faulthandler, "register", lambda *_args, **_kwargs: None)
    ports: list[int] = []

    def run_demo(_setup: object, *, port: int, **_options: object) -> int:
        ports.append(port)
        return 0

    monkeypatch.setattr(demo, "run_demo", run_demo)
    monkeypatch.setenv("SIGNING_GATEWAY_PORT", "18080")
    assert cli.main(["demo"]) == 0
    assert cli.main(["demo", "--port", "18090"]) == 0
    assert ports == [18080, 18090]
    monkeypatch.setenv("SIGNING_GATEWAY_PORT", "80800")
    assert cli.main(["demo"]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  SIGNING_GATEWAY_PORT: must be a whole number from 0 to 65535"
    ]
    assert ports == [18080, 18090]  # nothing run


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_each_options_help_gives_its_default_and_variable(command: str) -> None:
    """Pin that `--help` says what an option is without it, and which variable stands in.

    `serve --help` showed neither for --host (which reads SIGNING_GATEWAY_HOST), --workers,
    --backlog or --accept-batch, unlike the other options.
    """
    parser = cli._parser()
    [subcommands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    options = [a for a in subcommands.choices[command]._actions if a.dest not in {"help", "smoke"}]
    assert options
    for option in options:
        default = option.default
        if isinstance(default, cli.FromEnvironment):
            fallback = "none" if default.fallback is None else f"{default.fallback}"
            expected = f"(default: {default.variable}, else {fallback}"
        else:
            expected = (
                f"(default: {default:g})"
                if isinstance(default, float)
                else (f"(default: {default})")
            )
        assert expected in " ".join((option.help or "").split()), option.dest


@pytest.mark.parametrize(
    ("flags", "accepted"),
    [
        (["serve", "--port", "65535"], True),
        (["serve", "--port", "65536"], False),
        (["serve", "--probe-port", "1"], True),
        (["serve", "--probe-port", "65536"], False),
        (["serve", "--backlog", "1"], True),
        (["serve", "--backlog", "0"], False),
        (["demo", "--signer-latency-ms", "0"], True),
        (["demo", "--signer-latency-ms", "inf"], False),
    ],
)
def test_whole_number_and_latency_flags_take_their_edges(
    flags: list[str], accepted: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bound is inclusive; past it, argparse's usage error (exit 2)."""
    if accepted:
        cli._parser().parse_args(flags)
        return
    with pytest.raises(SystemExit) as refused:
        cli._parser().parse_args(flags)
    assert refused.value.code == 2
    assert "error: argument" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["8_080", "+8080", " 8080 ", "8080\n", "-0", "\u0668\u0660"])
def test_a_port_or_a_count_is_plain_decimal_digits(
    text: str,
    served: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Pin that a sign, `_`, white space or other digits are refused, from a flag or a variable.

    `int()` took them all: `--port 8_080` listened on 8080, and `--workers +2` ran two.
    """
    for flags in (["--port", text], ["--workers", text], ["--events-per-pass", text]):
        with pytest.raises(SystemExit) as refused:
            cli._parser().parse_args(["serve", *flags])
        assert refused.value.code == 2
        assert "must be a whole number" in capsys.readouterr().err
    monkeypatch.setenv("SIGNING_GATEWAY_PORT", text)
    assert cli.main(["serve", "--host", "127.0.0.1"]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  SIGNING_GATEWAY_PORT: must be a whole number from 0 to 65535"
    ]
    assert "config" not in served
    monkeypatch.setenv("SIGNING_GATEWAY_PORT", "08080")
    assert cli.main(["serve", "--host", "127.0.0.1"]) == 0
    assert served["config"].port == 8080


def _own_ports(host: str, eu_url: str) -> list[str]:
    settings = Settings(auth=AuthSettings(mode="disabled"), eu_signer={"url": eu_url})
    args = argparse.Namespace(host=host, port=18080, probe_port=18081)
    return cli._own_port_problems(settings, args)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "localhost"])  # noqa: S104 - not bound
def test_a_gateway_listening_on_every_address_is_on_loopback_too(host: str) -> None:
    """Listening on all addresses, the gateway answers a loopback signer URL at its own port."""
    assert _own_ports(host, "http://127.0.0.1:18081") == [
        (
            "SIGNING_GATEWAY_EU_SIGNER__URL: is this gateway's own --probe-port 18081; "
            "give the signer's address"
        )
    ]
    assert _own_ports(host, "http://127.0.0.1:9081") == []


def test_a_gateway_on_another_address_cannot_be_its_loopback_signer() -> None:
    """Bound to one non-loopback address, loopback's port is someone else's."""
    assert _own_ports("10.0.0.5", "http://127.0.0.1:18080") == []


def test_the_app_drains_as_its_settings_say() -> None:
    """The drain's windows are the settings' own, in their places."""
    settings = Settings(
        auth=AuthSettings(mode="disabled"),
        shutdown={"drain_timeout_seconds": 7.0, "cancel_grace_seconds": 1.5},
    )
    state = app_module.create_app(settings).state
    assert (state.drain.drain_timeout, state.drain.cancel_grace) == (7.0, 1.5)
    assert state.drain.draining is False


def test_a_flags_variable_is_read_in_any_case(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the settings' variables are: accepted as known in any case, so read in any case.

    Before, `signing_gateway_port` passed the unknown-variable check but was never read:
    `serve` listened on 8080 without a word.
    """
    monkeypatch.setenv("signing_gateway_port", "18080")
    monkeypatch.setenv("Signing_Gateway_Probe_Port", "18081")
    monkeypatch.setenv("signing_gateway_events_per_pass", "7x")
    assert cli.main(["serve", "--host", "127.0.0.1"]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  SIGNING_GATEWAY_EVENTS_PER_PASS: must be a whole number, at least 0"
    ]
    monkeypatch.setenv("signing_gateway_events_per_pass", "7")
    assert cli.main(["serve", "--host", "127.0.0.1"]) == 0
    assert served["config"].port == 18080
    assert served["options"]["probe_port"] == 18081


def test_the_exact_name_wins_over_another_case(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`SIGNING_GATEWAY_PORT` is read before `signing_gateway_port`, whichever came first."""
    monkeypatch.setenv("signing_gateway_port", "18082")
    monkeypatch.setenv("SIGNING_GATEWAY_PORT", "18083")
    assert cli.main(["serve", "--host", "127.0.0.1"]) == 0
    assert served["config"].port == 18083


NOT_FOUND = "must be an address of this machine or a name of one; not found"
CANNOT_LISTEN = "must be an address of this machine or a name of one; cannot listen"


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("no-such-host.invalid", NOT_FOUND + " (name or service not known)"),
        (" 0.0.0.0", NOT_FOUND + " (name or service not known)"),
        ("999.1.1.1", NOT_FOUND + " (name or service not known)"),
        ("[127.0.0.1]", NOT_FOUND + " (name or service not known)"),  # brackets: IPv6 only
        ("a" * 64 + ".example", NOT_FOUND + " (not an address or a host name)"),
        ("192.0.2.1", CANNOT_LISTEN + " (cannot assign requested address)"),  # TEST-NET-1
    ],
)
def test_a_host_nothing_here_can_listen_on_is_refused_before_the_start_up(
    served: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    host: str,
    problem: str,
) -> None:
    """A line of the report named by the variable or the flag, exit 2, nothing served.

    Before, uvicorn looked the host up only when it bound, after the start-up (up to 30 s of
    fetching keys), and ended the process with exit 3 in its own words:
    `[Errno -2] Name or service not known`, naming neither the flag nor the variable. And the
    flag's refusal then was argparse's, `serve`'s usage and `argument --host: ...`, not the
    report's line its variable's was.
    """
    monkeypatch.setenv("SIGNING_GATEWAY_HOST", host)
    assert cli.main(["serve", "--port", "0"]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [f"  SIGNING_GATEWAY_HOST: {problem}"]
    assert cli.main(["serve", "--host", host, "--port", "0"]) == 2  # the flag wins, as read
    assert capsys.readouterr().err.splitlines() == [PROBLEMS_HEADER, f"  --host: {problem}"]
    assert "ran" not in served


def test_a_refused_host_flag_is_one_report_with_the_other_problems(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--host` refused, a variable refused and a signer on the gateway's port: one report.

    The host that was refused is not compared with a loopback signer's URL (as for the
    variable); the other problems come in the same report, as with the variable.
    """
    monkeypatch.setenv("SIGNING_GATEWAY_PROBE_PORT", "0")
    monkeypatch.setenv("SIGNING_GATEWAY_EU_SIGNER__URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("SIGNING_GATEWAY_EU_SIGNER__ALLOW_PLAIN_HTTP", "true")
    assert cli.main(["serve", "--host", "no-such-host.invalid", "--port", "8080"]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [
        f"  --host: {NOT_FOUND} (name or service not known)",
        "  SIGNING_GATEWAY_PROBE_PORT: must be a whole number from 1 to 65535",
    ]
    assert "ran" not in served


def test_a_refused_host_variable_beside_a_signer_on_the_gateways_port_is_one_report(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The host its variable could not give is not compared with a loopback signer's URL.

    Before, the own-port check read the variable's unparsed stand-in as the host and ended
    `serve` in a traceback (`'FromEnvironment' object has no attribute 'strip'`).
    """
    monkeypatch.setenv("SIGNING_GATEWAY_HOST", "no-such-host.invalid")
    monkeypatch.setenv("SIGNING_GATEWAY_EU_SIGNER__URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("SIGNING_GATEWAY_EU_SIGNER__ALLOW_PLAIN_HTTP", "true")
    assert cli.main(["serve", "--port", "8080"]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [
        f"  SIGNING_GATEWAY_HOST: {NOT_FOUND} (name or service not known)"
    ]
    assert "ran" not in served


def _binds(address: str) -> bool:
    try:
        with socket.create_server((address, 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2", "0.0.0.0", ""])  # noqa: S104
def test_hosts_this_machine_listens_on_pass_as_given(served: dict[str, Any], host: str) -> None:
    """Names, loopback addresses and every address ("" as asyncio reads it) reach uvicorn."""
    assert cli.main(["serve", "--host", host, "--port", "0"]) == 0
    assert served["config"].host == host


@pytest.mark.skipif(not _binds("::1"), reason="no IPv6 loopback on this machine")
def test_an_ipv6_host_in_brackets_is_taken_without_them(served: dict[str, Any]) -> None:
    """`[::1]`, as a URL writes it: uvicorn would look the brackets up and fail after start-up."""
    assert cli.main(["serve", "--host", "[::1]", "--port", "0"]) == 0
    assert served["config"].host == "::1"
