"""Command line: `signing-gateway serve` (production) and `signing-gateway demo` (loopback).

`demo` starts the two bundled fake signers as child processes, points a gateway at them and
prints ready-to-paste example requests; `demo --smoke` sends them itself and exits.
"""

from __future__ import annotations

import argparse
import faulthandler
import math
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from signing_gateway.runtime import worker_signals
from signing_gateway.runtime.event_loop import DEFAULT_EVENTS_PER_PASS
from signing_gateway.security.settings import LOOPBACK, ip_of, is_loopback_host
from signing_gateway.settings import Settings
from signing_gateway.settings_env import is_service_link, problems_report
from signing_gateway.start_up_checks import checked_settings, start_up_problems

#: `--host` values under which the gateway listens on every address, loopback included. For
#: `::` that is ::1 only (asyncio binds it IPv6 only), but it counts here too: the check then
#: errs on the side of refusing a signer URL that might be the gateway's own port.
_EVERY_ADDRESS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - compared, not bound
#: Loopback hosts taken as one: `localhost` may resolve to either address.
_USUAL_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _loopback_key(host: str) -> str:
    """`host` (loopback) as one spelling: lower case, no brackets, IPv4 for a mapped address."""
    host = host.strip("[]").lower()
    address = ip_of(host)
    return host if address is None else str(address)


def _may_reach_gateway(listen: str, signer_url: str) -> bool:
    """Whether a call to `signer_url` (on loopback) may reach a gateway listening on `listen`.

    On every address, any loopback host does; on one loopback address, that address does, and
    127.0.0.1, ::1 and `localhost` count as one. Another address of 127.0.0.0/8 is a listener
    of its own.
    """
    if listen in _EVERY_ADDRESS:
        return True
    if not is_loopback_host(listen):  # `--host` is held without brackets (`_listen_host`)
        return False
    gateway, signer = _loopback_key(listen), _loopback_key(httpx.URL(signer_url).host)
    return gateway == signer or {gateway, signer} <= _USUAL_LOOPBACK


def _own_port_problems(settings: Settings, args: argparse.Namespace) -> list[str]:
    """The signers whose URL is the gateway's own port or probe port on this host, a line each.

    The gateway would call itself: its probe port answers the readiness probe (the signer looks
    up) and 404s every signing call, which counts as the signer's refusal, not its failure.
    """
    if not isinstance(args.host, str):
        return []  # no host: its flag or variable was refused, reported with the options
    own = {
        port: flag
        for port, flag in ((args.probe_port, "--probe-port"), (args.port, "--port"))
        if isinstance(port, int) and port
    }
    problems = []
    for name, signer in (
        ("EU_SIGNER", settings.eu_signer),
        ("DOMESTIC_SIGNER", settings.domestic_signer),
    ):
        port = signer.loopback_port()
        if port in own and _may_reach_gateway(args.host, signer.url):
            problems.append(
                f"SIGNING_GATEWAY_{name}__URL: is this gateway's own {own[port]} {port}; "
                "give the signer's address"
            )
    return problems


def _report_problems(problems: list[str]) -> int:
    """Write `problems` under the report's header to stderr; the exit status, 2."""
    print(problems_report(problems), file=sys.stderr)  # noqa: T201
    return 2


def _serve(
    args: argparse.Namespace, option_problems: list[str], flag_variables: frozenset[str]
) -> int:
    """Serve, once the options from the environment (`option_problems`) and settings check out.

    `flag_variables`: the variables of `serve`'s flags, which are not settings.
    """
    # Checked here, once, before any worker starts: a worker refused by the same check (in
    # create_served_app) would be started again by uvicorn's supervisor without end.
    settings, problems = checked_settings(flag_variables)
    if settings is not None:
        problems = _own_port_problems(settings, args)
    problems = option_problems + problems
    if settings is None or problems:
        return _report_problems(problems)
    from signing_gateway import serving  # noqa: PLC0415 - the server's modules, once checked

    if args.workers > 1:
        return serving.serve_workers(settings, args)
    return serving.serve_in_process(settings, args)


def _demo(
    args: argparse.Namespace, option_problems: list[str], flag_variables: frozenset[str]
) -> int:
    """Run the demo, once the options from the environment and the settings check out.

    The demo's gateway reads the settings' variables too, under its own (the signers, trust,
    authentication, audit file): they are checked as for `serve`, the files they name
    included, before any fake signer starts.
    """
    from signing_gateway.demo import demo_setup, run_demo  # noqa: PLC0415 - `demo` only

    with demo_setup(flag_variables) as (setup, settings_problems):
        problems = option_problems + settings_problems
        if setup is not None:
            problems += start_up_problems(setup.settings)
        if setup is None or problems:
            return _report_problems(problems)
        return run_demo(
            setup,
            port=args.port,
            signer_latency_ms=args.signer_latency_ms,
            smoke=args.smoke,
            loop=args.loop,
        )


def served_loop() -> str:
    """The event loop `SIGNING_GATEWAY_LOOP` names, checked as `--loop` is, for the bench.

    Raises:
        argparse.ArgumentTypeError: the variable names no loop `--loop` offers.
    """
    return str(_loop_from_environment().read())


#: The event loops `serve --loop` and `demo --loop` offer.
LOOPS = ("asyncio", "uvloop", "auto")


@dataclass(frozen=True, slots=True)
class FromEnvironment:
    """The default of a `serve` option: its variable's value, read as the option's flag is.

    argparse converts and checks what the command line gives, never a default that is not a
    string (and `choices` never at all): read with the flag's own `parse`, a wrong value in
    the variable is refused as the flag's would be, and reported under the variable's name.
    """

    variable: str
    parse: Callable[[str], object]
    fallback: object

    def read(self) -> object:
        """The variable's value, parsed; `fallback` when it is unset or empty.

        Raises:
            argparse.ArgumentTypeError: the value breaks the flag's rule.
        """
        text = _in_any_case(self.variable)
        if not text or is_service_link(self.variable, text):
            # Kubernetes sets SIGNING_GATEWAY_PORT=tcp://<ip>:<port> in every pod of a
            # namespace with a Service named signing-gateway: not the operator's port.
            return self.fallback
        return self.parse(text)


def _in_any_case(variable: str) -> str:
    """The value of `variable`, its name in any case ("" if unset), the exact name first.

    The settings' variables are read in any case, and the unknown-variable check takes the
    flags' in any case too: one in lower case that was known but never read would leave its
    option at the default without a word.
    """
    if variable in os.environ:
        return os.environ[variable]
    return next((value for name, value in os.environ.items() if name.upper() == variable), "")


def _variables_of(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """The variables that stand in for `command`'s flags (what their defaults read), by flag."""
    return {
        default.variable: "--" + dest.replace("_", "-")
        for dest, default in vars(parser.parse_args([command])).items()
        if isinstance(default, FromEnvironment)
    }


def flag_variables(parser: argparse.ArgumentParser) -> frozenset[str]:
    """The variables that stand in for the flags of `serve` and `demo`: what their defaults read.

    `settings_env.FLAG_VARIABLES` is the same list, for the app factory, which cannot import
    this module (this module imports the factory).
    """
    return frozenset(_variables_of(parser, "serve")) | frozenset(_variables_of(parser, "demo"))


def _serve_only_variables(parser: argparse.ArgumentParser) -> list[str]:
    """A line for each variable set of a `serve` flag that `demo` does not take.

    `demo` reads `_PORT` and `_LOOP` for its own `--port` and `--loop`; it has no `--host`
    (it listens on loopback only), no `--probe-port` and no `--events-per-pass`. Their
    variables, known to the settings' check as `serve`'s, would otherwise be passed over
    without a word. Set means as `serve` reads it: not empty, and no service link.
    """
    demo = _variables_of(parser, "demo")
    problems = []
    for variable, flag in sorted(_variables_of(parser, "serve").items()):
        text = _in_any_case(variable)
        if variable not in demo and text and not is_service_link(variable, text):
            problems.append(
                f"{variable}: stands in for `serve {flag}`, which `demo` does not take; "
                "unset it for `demo`"
            )
    return problems


@dataclass(frozen=True, slots=True)
class _RefusedOnThisMachine:
    """A flag's value refused for what this machine is, not for how it is written: why.

    `--host` is looked up and bound (`_listen_host`): an unknown name or another machine's
    address is a fault of the start-up, not of the command line. It is reported as its
    variable's is, a line of the start-up report (exit 2) naming the flag, rather than in
    argparse's usage error, whose usage says nothing about it.
    """

    flag: str
    problem: str


def _refused_on_this_machine(flag: str, parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse `type` for `flag`: what `parse` makes of the text, or why it refused it."""

    def parse_or_refuse(text: str) -> object:
        try:
            return parse(text)
        except argparse.ArgumentTypeError as exc:
            return _RefusedOnThisMachine(flag, str(exc))

    return parse_or_refuse


def _refused_flags(args: argparse.Namespace) -> list[str]:
    """A line for each flag given a value this machine cannot take, named by the flag."""
    return [
        f"{value.flag}: {value.problem}"
        for value in vars(args).values()
        if isinstance(value, _RefusedOnThisMachine)
    ]


def _options_from_environment(args: argparse.Namespace) -> list[str]:
    """Set each option its flag did not set from its variable; what is wrong, a line each.

    The lines name the variable and the rule, never the value, as for the settings.
    """
    problems = []
    for dest, value in list(vars(args).items()):
        if isinstance(value, FromEnvironment):
            try:
                setattr(args, dest, value.read())
            except argparse.ArgumentTypeError as exc:
                problems.append(f"{value.variable}: {exc}")
    return problems


def _whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse `type` accepting whole numbers from `minimum` (up to `maximum`, if given).

    Only decimal digits, as an operator writes a port or a count: `int()` alone would also take
    a sign, `_` between digits, white space around them and other scripts' digits
    (`+8080`, `8_080`, ` 8080 `), which no operator means as such.
    """
    if maximum is None:
        problem = f"must be a whole number, at least {minimum}"
    else:
        problem = f"must be a whole number from {minimum} to {maximum}"

    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()):
            raise argparse.ArgumentTypeError(problem)
        try:
            value = int(text)
        except ValueError:  # more digits than Python converts
            raise argparse.ArgumentTypeError(problem) from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def _non_negative_number(text: str) -> float:
    """An argparse `type` accepting a finite number, at least 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError("must be a number, at least 0")
    return value


def _listen_host(text: str) -> str:
    """An argparse `type` for `--host`: a name or address this machine can listen on.

    Looked up and bound (port 0, closed at once) as uvicorn will: an unknown name, a
    malformed address or another machine's address would otherwise end the process only
    once the start-up (keys fetched from the signers, up to 30 s) is over, in uvicorn's words
    and without the setting's. Empty is every address, as asyncio reads it; an IPv6 address
    in brackets, as a URL writes it, is taken without them (uvicorn would look the brackets up).

    Raises:
        argparse.ArgumentTypeError: nothing here can listen on `text`.
    """
    if not text:
        return text
    if text.startswith("[") and text.endswith("]") and ":" in text:
        text = text[1:-1]
    rule = "must be an address of this machine or a name of one"
    try:
        found = socket.getaddrinfo(text, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError) as exc:  # ValueError: a NUL in it
        reason = getattr(exc, "strerror", None) or "not an address or a host name"
        raise argparse.ArgumentTypeError(f"{rule}; not found ({reason.lower()})") from None
    for family, kind, protocol, _, address in found:
        try:
            with socket.socket(family, kind, protocol) as probe:
                probe.bind(address)
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            raise argparse.ArgumentTypeError(f"{rule}; cannot listen ({reason})") from None
    return text


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """An argparse `type` accepting one of `choices`."""

    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}")
        return text

    return parse


def _parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    return _parsers()[0]


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command line's parser, and `serve`'s own: a usage error of `serve` gives its usage."""
    parser = argparse.ArgumentParser(prog="signing-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway (settings from SIGNING_GATEWAY_*)")
    serve.add_argument(
        "--host",
        type=_refused_on_this_machine("--host", _listen_host),
        default=FromEnvironment("SIGNING_GATEWAY_HOST", _listen_host, LOOPBACK),
        help="address to listen on; 0.0.0.0 for every IPv4 address, :: for every IPv6 one "
        f"(IPv6 only) (default: SIGNING_GATEWAY_HOST, else {LOOPBACK})",
    )
    port, probe_port = _whole_number(0, 65535), _whole_number(1, 65535)
    serve.add_argument(
        "--port",
        type=port,
        default=FromEnvironment("SIGNING_GATEWAY_PORT", port, 8080),
        help="0 picks a free port (default: SIGNING_GATEWAY_PORT, else 8080)",
    )
    serve.add_argument(
        "--probe-port",
        type=probe_port,
        default=FromEnvironment("SIGNING_GATEWAY_PROBE_PORT", probe_port, None),
        help="a second port, on the same host, answering only /healthz, /readyz and /metrics: "
        "an orchestrator's fresh probe connections do not queue behind client connections "
        "(default: SIGNING_GATEWAY_PROBE_PORT, else none)",
    )
    serve.add_argument(
        "--workers",
        type=_whole_number(1),
        default=1,
        help="processes under uvicorn's supervisor, each with its own metrics and state; in a "
        "container run one and add replicas (default: 1)",
    )
    serve.add_argument(
        "--backlog",
        type=_whole_number(1),
        default=4096,
        help="kernel queue of connections not yet accepted (default: 4096)",
    )
    serve.add_argument(
        "--accept-batch",
        type=_whole_number(1),
        default=_Default(64),
        help="connections accepted per event-loop pass (asyncio): a burst of new connections "
        "is set up in slices, with other work in between (default: 64)",
    )
    events_per_pass = _whole_number(0)
    serve.add_argument(
        "--events-per-pass",
        type=events_per_pass,
        default=FromEnvironment(
            "SIGNING_GATEWAY_EVENTS_PER_PASS", events_per_pass, DEFAULT_EVENTS_PER_PASS
        ),
        help="ready sockets handled per event-loop pass (asyncio; 0: all of them): a wave of "
        "answers and new requests is handled in slices, with timers and /healthz in between "
        f"(default: SIGNING_GATEWAY_EVENTS_PER_PASS, else {DEFAULT_EVENTS_PER_PASS})",
    )
    _add_loop_option(serve)
    demo = commands.add_parser("demo", help="run the gateway with bundled fake signers")
    demo.add_argument(
        "--port",
        type=port,
        default=FromEnvironment("SIGNING_GATEWAY_PORT", port, 8080),
        help="0 picks a free port (default: SIGNING_GATEWAY_PORT, else 8080)",
    )
    demo.add_argument(
        "--signer-latency-ms",
        type=_non_negative_number,
        default=200.0,
        help="the fake signers' mean signing latency (default: 200)",
    )
    demo.add_argument("--smoke", action="store_true", help="send the examples, print, exit")
    _add_loop_option(demo)
    return parser, serve


def _loop_from_environment() -> FromEnvironment:
    return FromEnvironment("SIGNING_GATEWAY_LOOP", _one_of(LOOPS), "asyncio")


def _add_loop_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--loop",
        type=_one_of(LOOPS),
        metavar="{" + ",".join(LOOPS) + "}",
        default=_loop_from_environment(),
        help="event loop (default: SIGNING_GATEWAY_LOOP, else asyncio: see docs/operations.md "
        "on accepting under load)",
    )


class _Default(int):
    """An option's default number, told apart from the same number given on the command line."""


def _refuse_single_process_options(
    serve: argparse.ArgumentParser, args: argparse.Namespace
) -> None:
    """End with `serve`'s usage error (exit 2) naming what `--workers` > 1 cannot honour.

    uvicorn's supervisor hands its workers one socket: there is no second one for
    `--probe-port`, and a probe would reach one worker or another (during a SIGHUP's restart,
    one draining and one not), not the process. Each worker's server sets the socket's queue to
    `--backlog` as it starts; `--accept-batch` would shorten the queue all workers share at
    every start, and a burst then could be refused. A probe port given by an unusable variable
    is reported with the other option problems instead. And the supervisor tells its workers to
    drain and to stop now by real-time signals (`runtime.worker_signals`), which some
    platforms (macOS) lack.
    """
    given = [
        option
        for option, set_ in (
            ("--probe-port (SIGNING_GATEWAY_PROBE_PORT)", isinstance(args.probe_port, int)),
            ("--accept-batch", not isinstance(args.accept_batch, _Default)),
        )
        if set_
    ]
    if given:
        serve.error(f"{' and '.join(given)} {'need' if len(given) > 1 else 'needs'} --workers 1")
    if not worker_signals.AVAILABLE:
        serve.error("--workers > 1 needs real-time signals, which this platform lacks")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `signing-gateway` console script."""
    parser, serve = _parsers()
    args = parser.parse_args(argv)
    option_problems = _refused_flags(args) + _options_from_environment(args)
    if args.command == "serve" and args.workers > 1:
        _refuse_single_process_options(serve, args)
    # `kill -USR1 <pid>` writes every thread's stack to stderr: for a process that seems stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if args.command == "demo":
        option_problems += _serve_only_variables(parser)
        return _demo(args, option_problems, flag_variables(parser))
    return _serve(args, option_problems, flag_variables(parser))


if __name__ == "__main__":
    raise SystemExit(main())
