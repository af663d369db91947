"""`signing-gateway serve` with invalid settings: a short report and exit status 2."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from signing_gateway.app import create_app
from signing_gateway.cli import _own_port_problems, _parser, flag_variables
from signing_gateway.demo import DemoSetup, demo_setup
from signing_gateway.security.settings import AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from signing_gateway.settings import Settings, SignerSettings
from signing_gateway.settings_doc import setting_variables
from signing_gateway.settings_env import (
    FLAG_VARIABLES,
    InvalidSettingsError,
    unknown_variables,
    unparsed_json,
)
from signing_gateway.trust_files import NO_TRUST
from tests.contract.gateway.gateway_process import free_port
from tests.support.credentials import make_domestic_signer, make_dsc
from tests.support.processes import run_python
from tests.unit.gateway.test_session_store_settings import SENTINEL_NO_PATH, SENTINEL_NO_QUERY

TIMEOUT_S = 60
HEADER = "signing-gateway: invalid settings (SIGNING_GATEWAY_*, see docs/operations.md):"


def _serve_code(*flags: str) -> str:
    """`serve` with these flags as a Python statement; the port comes from SIGNING_GATEWAY_PORT."""
    argv = ["serve", "--host", "127.0.0.1", *flags]
    return f"from signing_gateway.cli import main; raise SystemExit(main({argv!r}))"


def _run(code: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run Python `code` with only these SIGNING_GATEWAY_* variables set."""
    return run_python(code, timeout=TIMEOUT_S, **settings)


def _serve(**settings: str) -> subprocess.CompletedProcess[str]:
    """Run `signing-gateway serve` on a free port, with only these SIGNING_GATEWAY_* variables."""
    return _run(_serve_code(), **{"PORT": "0", **settings})


def _serve_refused(**settings: str) -> list[str]:
    """The lines of `serve`'s report on these variables, once it has exited 2 before starting."""
    done = _serve(**settings)
    assert done.returncode == 2, done.stderr
    return done.stderr.splitlines()


#: Production's signers, named as production must name them (nothing is called: serve refuses).
PRODUCTION_SIGNERS = {
    "EU_SIGNER__URL": "https://eu-signer.internal",
    "DOMESTIC_SIGNER__URL": "https://domestic-signer.internal",
}
#: Caller authentication as production needs it (nothing is fetched: serve refuses first).
PRODUCTION_AUTH = {
    "AUTH__JWKS_URL": "https://idp.internal/jwks",
    "AUTH__AUDIENCE": "signing-gateway",
    "AUTH__ISSUER": "https://idp.internal/",
}
UNSET_SIGNER = "required when environment=production (the default is a local fake signer's address)"
#: Trust for a development gateway whose other settings are wrong (nothing is fetched: serve
#: refuses first); without any, the missing trust would be reported too.
DEV_TRUST = {"TRUST__FETCH_FROM_SIGNERS": "true"}


def test_serve_reports_missing_auth_without_a_traceback() -> None:
    """Production without caller authentication exits 2 with one line saying what to set."""
    done = _serve(ENVIRONMENT="production", **PRODUCTION_SIGNERS)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        HEADER,
        (
            "  settings: caller authentication is not configured: set auth.jwks_file or "
            "auth.jwks_url, auth.audience, auth.issuer (or auth.mode=disabled for local use)"
        ),
    ]


@pytest.mark.parametrize(
    ("argv", "settings"),
    [
        (["serve", "--host", "127.0.0.1"], {"ENVIRONMENT": "production", **PRODUCTION_SIGNERS}),
        (["demo", "--smoke"], {"EU_SIGNER__TIMOUT_SECONDS": "5"}),
    ],
    ids=["serve", "demo"],
)
def test_a_refused_start_loads_neither_the_app_nor_the_signer_clients(
    argv: list[str], settings: dict[str, str]
) -> None:
    """Pin that checking the settings imports no more than the check needs.

    The app, FastAPI, the signer clients and the server are imported only once the settings
    passed (`serving`, `demo.run_demo`): a refusal, and every test of it here, took over a
    second of CPU importing them.
    """
    heavy = ("fastapi", "aiohttp", "signing_gateway.app", "signing_gateway.signers.http")
    code = (
        "import sys; from signing_gateway.cli import main\n"
        f"status = main({argv!r})\n"
        f"print(sorted(name for name in {heavy!r} if name in sys.modules))\n"
        "raise SystemExit(status)"
    )
    done = _run(code, PORT="0", **settings)
    assert done.returncode == 2, done.stderr
    assert done.stdout.splitlines() == ["[]"]


def test_serve_names_the_variable_and_never_echoes_its_value() -> None:
    """A bad nested setting is reported under its variable name; the value given is not shown."""
    done = _serve(AUTH__MODE="disabled", EU_SIGNER__URL="ftp://s3cret@eu-signer")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "\n  SIGNING_GATEWAY_EU_SIGNER: " in done.stderr
    assert "s3cret" not in done.stderr


USER_INFO = (
    "  SIGNING_GATEWAY_EU_SIGNER: signer url must not hold a user name or password (the "
    "signers take no HTTP authentication, and a URL reaches the logs): use client_cert and "
    "client_key for mutual TLS"
)


def test_serve_refuses_a_signer_url_with_user_info_in_one_line() -> None:
    """User and password in a signer URL: one line naming the variable, exit 2, no password.

    They passed the settings check, and the aiohttp transport then ended the start-up in a
    traceback ("Cannot combine AUTHORIZATION header ...").
    """
    done = _serve(
        AUTH__MODE="disabled", EU_SIGNER__URL="http://user:s3cret@127.0.0.1:9", **DEV_TRUST
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [HEADER, USER_INFO]


@pytest.mark.parametrize(
    "url",
    [
        "https://user:s3cret@eu-signer.internal",
        "https://s3cret@eu-signer.internal:8443",
        "http://:s3cret@127.0.0.1:9081",
        "http://@127.0.0.1:9081",
    ],
)
def test_a_signer_url_holds_no_user_info(url: str) -> None:
    """Any user name or password part, even an empty one, is refused without echoing it."""
    with pytest.raises(ValidationError) as refused:
        SignerSettings(url=url)
    [message] = [error["msg"] for error in refused.value.errors()]
    assert "user name or password" in message
    assert "s3cret" not in message


def test_serve_refuses_a_domestic_validity_window_past_ten_years() -> None:
    """A validFrom window beyond ten years is a settings error at start-up, not a 500 later."""
    done = _serve(AUTH__MODE="disabled", DOMESTIC__MAX_VALID_FROM_FUTURE_HOURS="100000000")
    assert done.returncode == 2
    assert done.stderr.splitlines()[1:] == [
        (
            "  SIGNING_GATEWAY_DOMESTIC__MAX_VALID_FROM_FUTURE_HOURS: "
            "Input should be less than or equal to 87600"
        )
    ]


def test_serve_with_tracing_but_without_the_otel_extra_exits_2() -> None:
    """Tracing switched on where the OpenTelemetry SDK is missing: one line, exit 2, no serving."""
    # As in the container image: opentelemetry-api (a FastAPI dependency) but not the SDK.
    without_sdk = "import sys; sys.modules['opentelemetry.sdk'] = None; " + _serve_code()
    done = _run(
        without_sdk,
        PORT="0",
        AUTH__MODE="disabled",
        OBSERVABILITY__TRACING_ENABLED="true",
        **DEV_TRUST,
    )
    assert done.returncode == 2
    header, problem = done.stderr.splitlines()
    assert header == HEADER
    assert problem.startswith(
        "  SIGNING_GATEWAY_OBSERVABILITY__TRACING_ENABLED: tracing needs the otel extra "
        "(opentelemetry.sdk"
    )
    assert problem.endswith("is not installed): pip install 'signing-gateway[otel]'")


#: A bad value in each variable that stands in for a flag, and the flag's rule it breaks.
BAD_FLAG_VARIABLES = {
    "PORT=80x": "must be a whole number from 0 to 65535",
    "PROBE_PORT=8081x": "must be a whole number from 1 to 65535",
    "PROBE_PORT=0": "must be a whole number from 1 to 65535",
    "EVENTS_PER_PASS=-1": "must be a whole number, at least 0",
    "LOOP=uvlop": "must be one of asyncio, uvloop, auto",
}


@pytest.mark.parametrize("assignment", BAD_FLAG_VARIABLES)
def test_serve_checks_a_flag_given_by_its_variable_as_the_flag(assignment: str) -> None:
    """A bad value in a flag's variable is refused as the flag's: one line naming it, exit 2."""
    name, value = assignment.split("=")
    done = _serve(AUTH__MODE="disabled", **DEV_TRUST, **{name: value})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        HEADER,
        f"  SIGNING_GATEWAY_{name}: {BAD_FLAG_VARIABLES[assignment]}",
    ]


def test_serve_reports_bad_variables_and_settings_together() -> None:
    """Flags' variables and settings are checked in one pass: every problem, a line each."""
    done = _serve(
        ENVIRONMENT="production", LOOP="uvlop", EVENTS_PER_PASS="many", **PRODUCTION_SIGNERS
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[:3] == [
        HEADER,
        "  SIGNING_GATEWAY_EVENTS_PER_PASS: must be a whole number, at least 0",
        "  SIGNING_GATEWAY_LOOP: must be one of asyncio, uvloop, auto",
    ]
    assert done.stderr.splitlines()[3].startswith("  settings: caller authentication")


def test_a_flag_given_leaves_its_variable_unread() -> None:
    """The command line wins: a flag given makes its variable irrelevant, even a bad one."""
    done = _run(_serve_code("--loop", "asyncio"), PORT="0", ENVIRONMENT="production", LOOP="uvlop")
    assert done.returncode == 2
    assert "SIGNING_GATEWAY_LOOP" not in done.stderr


def test_a_bad_probe_port_variable_with_workers_is_reported_as_itself() -> None:
    """With --workers 2, an unusable probe-port variable is named, not taken for a set port."""
    done = _run(
        _serve_code("--workers", "2"),
        PORT="0",
        AUTH__MODE="disabled",
        PROBE_PORT="8081x",
        **DEV_TRUST,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        HEADER,
        "  SIGNING_GATEWAY_PROBE_PORT: must be a whole number from 1 to 65535",
    ]


def test_demo_checks_the_loop_variable_as_serve_does() -> None:
    """`demo` reads SIGNING_GATEWAY_LOOP as `serve` does: a bad one is a line and exit 2.

    Before, the demo handed the value to uvicorn unchecked, which logged an import error and
    exited 0 without serving.
    """
    code = "from signing_gateway.cli import main; raise SystemExit(main(['demo', '--smoke']))"
    done = _run(code, LOOP="uvlop")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        HEADER,
        "  SIGNING_GATEWAY_LOOP: must be one of asyncio, uvloop, auto",
    ]


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--port", "-1"], "argument --port: must be a whole number from 0 to 65535"),
        (
            ["--signer-latency-ms", "-5"],
            "argument --signer-latency-ms: must be a number, at least 0",
        ),
        (
            ["--signer-latency-ms", "nan"],
            "argument --signer-latency-ms: must be a number, at least 0",
        ),
        (["--loop", "uvlop"], "argument --loop: must be one of asyncio, uvloop, auto"),
    ],
)
def test_demo_refuses_a_bad_flag_before_starting_anything(flags: list[str], problem: str) -> None:
    """A bad demo flag is argparse's usage error (exit 2), not a fake signer's traceback."""
    code = f"from signing_gateway.cli import main; raise SystemExit(main({['demo', *flags]!r}))"
    done = _run(code)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == f"signing-gateway demo: error: {problem}"


def test_serve_refuses_fewer_than_one_worker() -> None:
    """`--workers 0` is refused, not taken for one worker."""
    done = _run(_serve_code("--workers", "0"))
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "signing-gateway serve: error: argument --workers: must be a whole number, at least 1"
    )


@pytest.mark.parametrize("given", sorted(PRODUCTION_SIGNERS))
def test_production_names_both_signers(given: str) -> None:
    """Production never falls back to a signer's default URL: the one not given is named.

    Before, a forgotten SIGNING_GATEWAY_EU_SIGNER__URL in the image pointed the gateway at its
    own probe port: readiness said the signer was up and every signing call failed.
    """
    done = _serve(ENVIRONMENT="production", **PRODUCTION_AUTH, **{given: PRODUCTION_SIGNERS[given]})
    (missing,) = set(PRODUCTION_SIGNERS) - {given}
    assert done.returncode == 2
    assert done.stderr.splitlines() == [HEADER, f"  SIGNING_GATEWAY_{missing}: {UNSET_SIGNER}"]


def test_production_reports_unset_signers_with_its_other_problems() -> None:
    """Both signers unset and no authentication: a line each, in one report."""
    with pytest.raises(ValidationError) as raised:
        Settings(environment="production", auth=AuthSettings(mode="disabled"))
    assert [(e["loc"], e["msg"]) for e in raised.value.errors()] == [
        (("eu_signer", "url"), UNSET_SIGNER),
        (("domestic_signer", "url"), UNSET_SIGNER),
        ((), "auth.mode=disabled is for local use; production needs auth.mode=jwt"),
    ]


def test_development_keeps_the_default_signers_off_the_documented_ports() -> None:
    """The development defaults (local fakes) are neither the API port nor the probe port.

    8080 and 8081 are what the image, the README and docs/operations.md give `serve`.
    """
    defaults = Settings(auth=AuthSettings(mode="disabled"))
    ports = {defaults.eu_signer.loopback_port(), defaults.domestic_signer.loopback_port()}
    assert len(ports) == 2
    assert ports.isdisjoint({8080, 8081})


@pytest.mark.parametrize(("flag", "variable"), [("--port", "PORT"), ("--probe-port", "PROBE_PORT")])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_serve_refuses_a_signer_on_its_own_port(flag: str, variable: str, host: str) -> None:
    """A loopback signer URL on the gateway's own port or probe port is refused at start."""
    own = free_port()
    done = _serve(
        AUTH__MODE="disabled",
        DOMESTIC_SIGNER__URL=f"http://{host}:{own}",
        **DEV_TRUST,
        **{variable: str(own)},
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        HEADER,
        (
            f"  SIGNING_GATEWAY_DOMESTIC_SIGNER__URL: is this gateway's own {flag} {own}; "
            "give the signer's address"
        ),
    ]


@pytest.mark.parametrize(
    ("listen", "signer_host", "is_own"),
    [
        ("0.0.0.0", "127.0.0.3", True),  # noqa: S104 - a --host value, not bound here
        ("::", "[::1]", True),
        ("", "localhost", True),
        ("127.0.0.2", "127.0.0.2", True),
        ("127.0.0.1", "[::ffff:127.0.0.1]", True),
        ("localhost", "127.0.0.1", True),
        ("::1", "LOCALHOST", True),
        ("LOCALHOST", "127.0.0.1", True),  # the host looked up as given, in any case
        ("127.0.0.1", "127.0.0.2", False),
        ("127.0.0.2", "127.0.0.1", False),
        ("10.1.2.3", "127.0.0.1", False),
    ],
)
def test_a_signer_is_the_gateway_itself_where_the_gateway_listens(
    listen: str, signer_host: str, is_own: bool
) -> None:
    """Pin which loopback signer URLs on the gateway's port reach the gateway itself.

    Before, only `127.0.0.1`, `localhost` and `::1` counted as loopback on either side: a
    gateway on 0.0.0.0 took a signer at 127.0.0.3 on its own port, and one listening on
    127.0.0.2 never looked.
    """
    port = free_port()
    settings = Settings(
        auth=AuthSettings(mode="disabled"),
        eu_signer=SignerSettings(url=f"http://{signer_host}:{port}"),
    )
    args = _parser().parse_args(["serve", "--port", str(port)])
    args.host = listen  # as `serve` holds it once checked: 10.1.2.3 is no address of this one
    own = f"SIGNING_GATEWAY_EU_SIGNER__URL: is this gateway's own --port {port}; "
    expected = [own + "give the signer's address"]
    assert _own_port_problems(settings, args) == (expected if is_own else [])


def test_only_a_loopback_signer_can_be_the_gateway_itself() -> None:
    """A signer on another host has no port on this one; a bare loopback URL has its scheme's."""
    remote = SignerSettings(url="https://eu-signer.internal:8081")
    assert remote.loopback_port() is None
    assert SignerSettings(url="https://127.0.0.1").loopback_port() == 443
    assert SignerSettings(url="http://localhost").loopback_port() == 80


def test_serve_names_each_variable_that_must_be_json() -> None:
    """A list or a whole group that is not JSON: a line per variable, never its value, exit 2.

    Before, `serve` printed pydantic-settings' traceback, naming only the group, and exited 1.
    """
    report = _serve_refused(
        AUTH__MODE="disabled",
        TRUST__EU_CERTIFICATES="/keys/s3cret-dsc.pem",
        AUTH__ALGORITHMS="ES256",
        EU_SIGNER__RESILIENCE="max_in_flight=8",
    )
    assert report == [
        HEADER,
        '  SIGNING_GATEWAY_EU_SIGNER__RESILIENCE: must be JSON, e.g. {"setting": "value"}',
        '  SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: must be JSON, e.g. ["/path/to/file.pem"]',
        '  SIGNING_GATEWAY_AUTH__ALGORITHMS: must be JSON, e.g. ["ES256", "ES384"]',
    ]
    assert not any("s3cret" in line for line in report)


def test_json_that_parses_is_not_reported() -> None:
    """JSON values, empty values and plain settings pass the check, whatever the name's case."""
    environ = {
        "SIGNING_GATEWAY_TRUST__EU_CERTIFICATES": '["/keys/dsc.pem"]',
        "signing_gateway_auth__algorithms": '["ES256"]',
        "SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS": "",
        "SIGNING_GATEWAY_LOG_LEVEL": "DEBUG",
    }
    assert unparsed_json(environ) == []
    environ["signing_gateway_auth__algorithms"] = "ES256"
    assert unparsed_json(environ) == [
        'SIGNING_GATEWAY_AUTH__ALGORITHMS: must be JSON, e.g. ["ES256", "ES384"]'
    ]


#: Misspelled settings (as given, any case) and the setting `serve` suggests for each.
MISSPELLED = {
    "AUDIT__FAIL_CLOSE": "AUDIT__FAIL_CLOSED",
    "EU_SIGNER__RESILIENCE__MAX_INFLIGHT": "EU_SIGNER__RESILIENCE__MAX_IN_FLIGHT",
    "REQUEST_DEADLINE": "REQUEST_DEADLINE_SECONDS",
    "limits__max_body": "LIMITS__MAX_BODY_BYTES",
}


def test_serve_reports_each_unknown_variable_with_the_other_problems() -> None:
    """A misspelled variable is a line naming it (and the likely setting), not a silent default.

    Before, each was ignored and its setting kept the default (audit failing closed, a 20 s
    deadline, a bulkhead of 64, a 192 KiB body bound) with nothing said.
    """
    done = _serve(
        ENVIRONMENT="production",
        **PRODUCTION_SIGNERS,
        **dict.fromkeys(MISSPELLED, "5"),
        WHATEVER="s3cret",
    )
    unknown = [
        f"  SIGNING_GATEWAY_{given}: unknown setting; did you mean SIGNING_GATEWAY_{meant}?"
        for given, meant in MISSPELLED.items()
    ]
    unknown.append("  SIGNING_GATEWAY_WHATEVER: unknown setting (docs/operations.md lists them)")
    assert done.returncode == 2
    assert done.stderr.splitlines()[:-1] == [HEADER, *sorted(unknown)]
    assert done.stderr.splitlines()[-1].startswith("  settings: caller authentication")
    assert "s3cret" not in done.stderr


def test_settings_groups_and_flag_variables_are_known_in_any_case() -> None:
    """Every setting, a group given whole, and the flags' variables pass; so does lower case."""
    environ = {variable.env_var: "x" for variable in setting_variables()}
    environ |= dict.fromkeys(flag_variables(_parser()), "x")
    environ |= {"signing_gateway_log_level": "DEBUG", "SIGNING_GATEWAYS": "x", "PATH": "/bin"}
    assert unknown_variables(environ, flag_variables(_parser())) == []
    assert flag_variables(_parser()) == {
        "SIGNING_GATEWAY_HOST",
        "SIGNING_GATEWAY_PORT",
        "SIGNING_GATEWAY_PROBE_PORT",
        "SIGNING_GATEWAY_EVENTS_PER_PASS",
        "SIGNING_GATEWAY_LOOP",
    }
    assert flag_variables(_parser()) == FLAG_VARIABLES  # what the app factory passes over


#: Where variables are set or documented: the image, `make`, the docs and the manifests, the
#: bench and the tests.
_SETTERS = [
    *["Dockerfile", "Makefile", "README.md", "docs/*.md", "docs/deploy/**/*.yaml"],
    *["bench/**/*.py", "tests/**/*.py"],
]
#: The misspelling the operations guide shows being reported.
_MISSPELLED_ON_PURPOSE = {"SIGNING_GATEWAY_AUDIT__FAIL_CLOSE"}


def test_the_repository_sets_and_documents_only_known_variables() -> None:
    """No SIGNING_GATEWAY_* name in the image, docs, bench or tests is one `serve` refuses."""
    root = Path(__file__).resolve().parents[3]
    used = {
        name
        for pattern in _SETTERS
        for path in root.glob(pattern)
        if path != Path(__file__).resolve()
        for name in re.findall(r"SIGNING_GATEWAY_[A-Z0-9_]*[A-Z0-9]", path.read_text("utf-8"))
    }
    assert "SIGNING_GATEWAY_PROBE_PORT" in used  # the scan reads what it should
    environ = dict.fromkeys(used - _MISSPELLED_ON_PURPOSE, "x")
    assert unknown_variables(environ, flag_variables(_parser())) == []


def test_serve_without_any_trust_says_so_before_starting() -> None:
    """No trust files and no fetching: one line and exit 2, as for any setting.

    Before, `serve` started, and its start-up failed with a traceback inside a JSON log line
    ("TrustUnavailableError: no signer keys configured") and exit status 3.
    """
    done = _serve(AUTH__MODE="disabled")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [HEADER, f"  {NO_TRUST}"]


def test_serve_names_each_trust_file_it_cannot_use(tmp_path: Path) -> None:
    """Missing, a directory, not a certificate, a certificate for a key: a line each, exit 2.

    The files are named by their place in the list, never by the path given. Before, the first
    such file failed the start-up with a traceback and exit status 3.
    """
    good_dsc, garbage, dsc_as_key, domestic = (
        tmp_path / name for name in ("dsc.pem", "garbage.pem", "dsc-as-key.pem", "domestic.pem")
    )
    good_dsc.write_bytes(make_dsc(["test"]).pem)
    dsc_as_key.write_bytes(make_dsc(["test"]).pem)
    garbage.write_bytes(b"not a certificate")
    domestic.write_bytes(make_domestic_signer().public_pem)
    eu = [tmp_path / "missing.pem", tmp_path, garbage, good_dsc]
    domestic_keys = [domestic, dsc_as_key]
    done = _serve(
        AUTH__MODE="disabled",
        TRUST__EU_CERTIFICATES=orjson.dumps([str(p) for p in eu]).decode(),
        TRUST__DOMESTIC_KEYS=orjson.dumps([str(p) for p in domestic_keys]).decode(),
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        HEADER,
        "  SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 1 of 4: no such file",
        "  SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 2 of 4: is a directory, not a file",
        "  SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 3 of 4: not a usable X.509 certificate",
        "  SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS: file 2 of 2: not a PEM public key",
    ]
    assert str(tmp_path) not in done.stderr


def test_serve_names_each_signer_tls_file_it_cannot_use(tmp_path: Path) -> None:
    """A signer's CA bundle or client key that will not load is a line each, exit 2.

    Before, neither was checked: the start-up ended in the SSL module's traceback (the CA
    bundle's FileNotFoundError), exit status 3, and only the first one was ever seen.
    """
    client, other = make_dsc(), make_dsc()
    (tmp_path / "client.pem").write_bytes(client.pem)
    (tmp_path / "other.key").write_bytes(other.key_pem())
    done = _serve(
        **DEV_TRUST,
        AUTH__MODE="disabled",
        EU_SIGNER__URL="https://127.0.0.1:9",
        EU_SIGNER__CA_BUNDLE=str(tmp_path / "missing-ca.pem"),
        DOMESTIC_SIGNER__URL="https://127.0.0.1:9",
        DOMESTIC_SIGNER__CLIENT_CERT=str(tmp_path / "client.pem"),
        DOMESTIC_SIGNER__CLIENT_KEY=str(tmp_path / "other.key"),
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        HEADER,
        "  SIGNING_GATEWAY_EU_SIGNER__CA_BUNDLE: no such file",
        (
            "  SIGNING_GATEWAY_DOMESTIC_SIGNER__CLIENT_KEY: is not the key of "
            "SIGNING_GATEWAY_DOMESTIC_SIGNER__CLIENT_CERT"
        ),
    ]
    assert str(tmp_path) not in done.stderr


#: How each file the factory checked goes wrong before the lifespan reads it, in a Python
#: statement (`{path}`: the file, or the audit file's directory), and the line that says so.
GONE_WRONG_SINCE_THE_CHECK = [
    (
        "trust",
        "pathlib.Path({path!r}).unlink()",
        "SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 1 of 1: no such file",
    ),
    (
        "jwks",
        "pathlib.Path({path!r}).write_bytes(b'not json')",
        "SIGNING_GATEWAY_AUTH__JWKS_FILE: the JWKS is not JSON",
    ),
    (
        "audit",
        "pathlib.Path({path!r}).rmdir()",
        "SIGNING_GATEWAY_AUDIT__FILE: its directory does not exist",
    ),
    (
        "ca",
        "pathlib.Path({path!r}).write_bytes(b'not PEM')",
        "SIGNING_GATEWAY_EU_SIGNER__CA_BUNDLE: holds no PEM CA certificate",
    ),
]


@pytest.mark.parametrize(("file", "break_it", "line"), GONE_WRONG_SINCE_THE_CHECK)
def test_a_file_gone_wrong_since_the_check_fails_the_start_up_in_one_line(
    tmp_path: Path, file: str, break_it: str, line: str
) -> None:
    """What only starting finds (a file changed after the factory's check): one line, exit 3.

    uvicorn's exit status for a failed start-up (3) stays, and the line is the check's. Before,
    the trust file's log line held the whole traceback, and a JWKS or an audit file's still
    did (its exception's, with the path).
    """
    paths = {"trust": tmp_path / "dsc.pem", "jwks": tmp_path / "jwks.json", "audit": tmp_path}
    paths["trust"].write_bytes(make_dsc(["test"]).pem)
    paths["ca"] = tmp_path / "ca.pem"
    paths["ca"].write_bytes(make_dsc().pem)
    issuer = LocalTokenIssuer(issuer="https://idp.internal/", audience="signing-gateway")
    paths["jwks"].write_bytes(orjson.dumps(issuer.jwks()))
    paths["audit"] = tmp_path / "audit"
    paths["audit"].mkdir()
    # The factory checks the files, then one goes wrong: the lifespan is the first to find it.
    gone_wrong_after_the_check = (
        "import pathlib, uvicorn; from signing_gateway.app import create_served_app\n"
        "def factory():\n"
        "    app = create_served_app()\n"
        f"    {break_it.format(path=str(paths[file]))}\n"
        "    return app\n"
        f"uvicorn.run(factory, factory=True, host='127.0.0.1', port={free_port()})"
    )
    done = _run(
        gone_wrong_after_the_check,
        AUTH__MODE="jwt",
        AUTH__JWKS_FILE=str(paths["jwks"]),
        AUTH__AUDIENCE=issuer.audience,
        AUTH__ISSUER=issuer.issuer,
        AUDIT__FILE=str(paths["audit"] / "audit.jsonl"),
        TRUST__EU_CERTIFICATES=orjson.dumps([str(paths["trust"])]).decode(),
        EU_SIGNER__URL="https://127.0.0.1:9",
        EU_SIGNER__CA_BUNDLE=str(paths["ca"]),
    )
    assert done.returncode == 3
    failed = [
        orjson.loads(line)
        for line in done.stderr.splitlines()
        if line.startswith("{") and orjson.loads(line)["level"] == "error"
    ]
    assert [(r["logger"], r["event"]) for r in failed] == [
        ("signing_gateway.start_up", f"start-up failed: {line}"),
        ("uvicorn.error", "Application startup failed. Exiting."),
    ]
    assert "Traceback" not in done.stderr + done.stdout
    assert str(tmp_path) not in done.stderr + done.stdout


#: What Kubernetes puts into every pod of a namespace holding Services named `signing-gateway`
#: and `signing-gateway-probe` (service links).
SERVICE_LINKS = {
    "SERVICE_HOST": "10.96.0.5",
    "SERVICE_PORT": "8080",
    "SERVICE_PORT_HTTP": "8080",
    "PORT": "tcp://10.96.0.5:8080",
    "PORT_8080_TCP": "tcp://10.96.0.5:8080",
    "PORT_8080_TCP_PROTO": "tcp",
    "PORT_8080_TCP_PORT": "8080",
    "PORT_8080_TCP_ADDR": "10.96.0.5",
    "PROBE_SERVICE_HOST": "10.96.0.6",
    "PROBE_PORT": "tcp://10.96.0.6:8081",
    "PROBE_PORT_8081_TCP_ADDR": "10.96.0.6",
}


def test_kubernetes_service_links_are_neither_settings_nor_ports() -> None:
    """A Service named like the gateway does not stop it: its link variables are passed over.

    Before, SIGNING_GATEWAY_PORT=tcp://... was refused as a port, and the unknown-variable
    check refused the others; the one problem left here is the one set on purpose.
    """
    done = _run(_serve_code(), ENVIRONMENT="production", **PRODUCTION_SIGNERS, **SERVICE_LINKS)
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines()[1:] if "SIGNING_GATEWAY_" in line] == []
    assert done.stderr.splitlines()[1].startswith("  settings: caller authentication")


def test_a_port_variable_that_is_no_service_link_is_still_checked() -> None:
    """Only Kubernetes' own form is passed over: any other bad port is refused as before."""
    done = _run(_serve_code(), AUTH__MODE="disabled", PORT="http://10.96.0.5:8080")
    assert done.returncode == 2
    assert "  SIGNING_GATEWAY_PORT: must be a whole number from 0 to 65535" in done.stderr


#: A misspelled variable, and how every entry point that reads the environment reports it.
TYPO = {"AUDIT__FAIL_CLOSE": "true"}
TYPO_LINE = (
    "  SIGNING_GATEWAY_AUDIT__FAIL_CLOSE: unknown setting; "
    "did you mean SIGNING_GATEWAY_AUDIT__FAIL_CLOSED?"
)


def test_demo_refuses_an_unknown_variable_before_starting_anything() -> None:
    """`demo` reads the settings' variables too: a misspelled one is a line and exit 2.

    The variables of its own flags and Kubernetes' service links pass, as for `serve`. Before,
    the demo started its fake signers and a gateway with the setting at its default, without a
    word.
    """
    code = "from signing_gateway.cli import main; raise SystemExit(main(['demo', '--smoke']))"
    done = _run(code, LOOP="asyncio", **SERVICE_LINKS, **TYPO)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [HEADER, TYPO_LINE]


#: The variables of `serve`'s flags that `demo` has no flag for, and the flag each stands in for.
SERVE_ONLY = {
    "EVENTS_PER_PASS": ("8", "--events-per-pass"),
    "HOST": ("0.0.0.0", "--host"),  # noqa: S104 - a value reported, never bound
    "PROBE_PORT": ("8081", "--probe-port"),
}


@pytest.mark.parametrize("name", sorted(SERVE_ONLY))
def test_demo_reports_a_variable_of_a_serve_only_flag(name: str) -> None:
    """A variable of a flag `demo` does not take is a line of the report, named, not its value.

    Before, it counted as known (`serve` reads it) and the demo passed it over: a demo asked
    for on every address, or with a probe port, ran on loopback without either, without a word.
    The unknown variable beside it shows that the report is the same one, and that nothing
    starts even on the old code.
    """
    value, flag = SERVE_ONLY[name]
    code = "from signing_gateway.cli import main; raise SystemExit(main(['demo', '--smoke']))"
    done = _run(code, **{name.lower(): value}, **TYPO)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        HEADER,
        (
            f"  SIGNING_GATEWAY_{name}: stands in for `serve {flag}`, which `demo` does not "
            "take; unset it for `demo`"
        ),
        TYPO_LINE,
    ]
    assert value not in done.stderr
    assert done.stdout == ""


def test_demo_passes_over_empty_serve_only_variables_and_service_links() -> None:
    """Empty, or Kubernetes' link for a Service named `signing-gateway-probe`: as `serve` reads.

    `serve` takes neither for a value (no probe port, every ready socket), so neither is one
    `demo` would have to refuse.
    """
    code = "from signing_gateway.cli import main; raise SystemExit(main(['demo', '--smoke']))"
    done = _run(code, HOST="", EVENTS_PER_PASS="", PROBE_PORT="tcp://10.96.0.6:8081", **TYPO)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [HEADER, TYPO_LINE]


def test_the_uvicorn_factory_refuses_an_unknown_variable() -> None:
    """`uvicorn --factory ...:create_served_app` reports it as `serve` does: exit 2, no traceback.

    Before, the factory built the app with the setting at its default, without a word.
    """
    uvicorn = (
        "import sys; from uvicorn.main import main; "
        "sys.argv = ['uvicorn', '--factory', 'signing_gateway.app:create_served_app', "
        "'--host', '127.0.0.1', '--port', '0']; main()"
    )
    done = _run(uvicorn, AUTH__MODE="disabled", PORT="8080", **DEV_TRUST, **TYPO)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [HEADER, TYPO_LINE]


#: A setting given a value it cannot take, and how every entry point reports it.
INVALID = {"LIMITS__MAX_BODY_BYTES": "abc"}
INVALID_LINE = (
    "  SIGNING_GATEWAY_LIMITS__MAX_BODY_BYTES: "
    "Input should be a valid integer, unable to parse string as an integer"
)
#: A variable that takes JSON given something else, and its line.
NOT_JSON = {"AUTH__ALGORITHMS": "ES256"}
NOT_JSON_LINE = '  SIGNING_GATEWAY_AUTH__ALGORITHMS: must be JSON, e.g. ["ES256", "ES384"]'


@pytest.mark.parametrize(
    ("settings", "lines"),
    [
        (INVALID, [INVALID_LINE]),
        (
            {"LOOP": "uvlop", **TYPO, **INVALID},
            [
                "  SIGNING_GATEWAY_LOOP: must be one of asyncio, uvloop, auto",
                TYPO_LINE,
                INVALID_LINE,
            ],
        ),
    ],
)
def test_demo_refuses_an_invalid_value_before_starting_anything(
    settings: dict[str, str], lines: list[str]
) -> None:
    """A setting the demo's gateway cannot take is a line and exit 2, with the demo's others.

    A bad flag variable, an unknown variable and the invalid value come in one report, and
    nothing else is written: no fake signer started (each would log its start-up). Before, the
    demo started its fake signers, then ended with pydantic's traceback.
    """
    code = "from signing_gateway.cli import main; raise SystemExit(main(['demo', '--smoke']))"
    done = _run(code, **settings)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [HEADER, *lines]
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        (
            {"AUDIT__FAIL_CLOSED": "maybe"},
            (
                "  SIGNING_GATEWAY_AUDIT__FAIL_CLOSED: "
                "Input should be a valid boolean, unable to interpret input"
            ),
        ),
        (
            {"EU_SIGNER__RESILIENCE__MAX_ATTEMPTS": "abc"},
            (
                "  SIGNING_GATEWAY_EU_SIGNER__RESILIENCE__MAX_ATTEMPTS: "
                "Input should be a valid integer, unable to parse string as an integer"
            ),
        ),
    ],
)
def test_demo_checks_the_settings_of_the_groups_it_sets(
    settings: dict[str, str], line: str
) -> None:
    """A bad value in a group the demo sets part of (audit, a signer) is reported too.

    Before, the demo gave those groups whole, so their other variables were never read: a
    value they could not take passed without a word.
    """
    code = "from signing_gateway.cli import main; raise SystemExit(main(['demo', '--smoke']))"
    done = _run(code, **settings)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [HEADER, line]


@contextmanager
def _demo_setup_with(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> Iterator[DemoSetup]:
    """The demo's setup, these the only SIGNING_GATEWAY_* variables, found without a problem."""
    for name in [k for k in os.environ if k.startswith("SIGNING_GATEWAY_")]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with demo_setup(FLAG_VARIABLES) as (setup, problems):
        assert problems == []
        assert setup is not None
        yield setup


def test_demo_reads_the_other_settings_of_the_groups_it_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The demo sets its own audit file, signers, trust and issuer; reads the groups' others."""
    variables = {
        "SIGNING_GATEWAY_AUDIT__FAIL_CLOSED": "false",
        "SIGNING_GATEWAY_EU_SIGNER__RESILIENCE__MAX_ATTEMPTS": "1",
        "SIGNING_GATEWAY_AUTH__MAX_TOKEN_BYTES": "4096",
    }
    with _demo_setup_with(monkeypatch, variables) as setup:
        settings = setup.settings
        assert settings.audit.fail_closed is False
        assert settings.audit.file == setup.directory / "audit.jsonl"
        assert settings.eu_signer.resilience.max_attempts == 1
        assert settings.eu_signer.url == f"http://127.0.0.1:{setup.signer_ports['eu']}"
        assert settings.domestic_signer.url == (
            f"http://127.0.0.1:{setup.signer_ports['domestic']}"
        )
        assert settings.trust.fetch_from_signers is True
        assert (settings.auth.mode, settings.auth.max_token_bytes) == ("jwt", 4096)
        assert settings.auth.jwks_file == setup.directory / "jwks.json"
        assert (settings.log_format, settings.readiness_probe_interval_seconds) == ("console", 1.0)


def test_demo_reads_the_log_and_readiness_settings_it_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The demo's console log and 1 s readiness probe are defaults: a variable that sets one wins.

    Before, the demo passed its own values over the environment's, so
    SIGNING_GATEWAY_LOG_FORMAT=json (to try docs/operations.md's jq queries on the demo) and
    SIGNING_GATEWAY_READINESS_PROBE_INTERVAL_SECONDS were dropped without a word.
    """
    # The interval's variable in lower case: read in any case, as every setting's is.
    given = {"LOG_FORMAT": "json", "LOG_LEVEL": "WARNING"}
    variables = {f"SIGNING_GATEWAY_{name}": value for name, value in given.items()}
    variables["signing_gateway_readiness_probe_interval_seconds"] = "3"
    with _demo_setup_with(monkeypatch, variables) as setup:
        read = setup.settings
    assert (read.log_format, read.log_level, read.readiness_probe_interval_seconds) == (
        "json",
        "WARNING",
        3.0,
    )
    assert read.trust.fetch_from_signers is True


def test_the_demo_logs_in_the_format_its_settings_name() -> None:
    """With SIGNING_GATEWAY_LOG_FORMAT=json every line the demo's gateway writes is JSON.

    Before, the demo set up its log as console text whatever the settings said, so the
    runbook's `jq` queries could not be tried on it. (The fake signers, processes of their
    own, log in their own format.)
    """
    code = "from signing_gateway.cli import main; raise SystemExit(main(['demo', '--smoke']))"
    done = _run(code, PORT="0", LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("INFO:fake_signer:")]
    records = [orjson.loads(line) for line in lines]
    assert {"signing_gateway.access", "uvicorn.error"} <= {r["logger"] for r in records}


def test_a_refused_value_leaves_the_files_to_the_next_report_as_the_guide_says() -> None:
    """The trust and the files are looked at once the values validate; the guide says so.

    Which files to open is known only from settings that validate, so a start with a log level
    no setting takes and a CA bundle that does not exist names the level alone. The guide said
    a refused value and an unusable file "come in one report", and the trust was "checked in
    the same pass": an operator fixing the line reported expected to start, and met the next.
    """
    report = _serve_refused(
        AUTH__MODE="disabled",
        LOG_LEVEL="LOUD",
        EU_SIGNER__URL="http://127.0.0.1:9081",
        EU_SIGNER__CA_BUNDLE="/nonexistent/ca.pem",
    )
    assert report == [
        HEADER,
        "  SIGNING_GATEWAY_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'",
    ]
    guide = " ".join(
        (Path(__file__).resolve().parents[3] / "docs/operations.md").read_text().split()
    )
    assert (
        "Tracing without the `otel` extra, the trust and these files are looked at once the "
        "settings themselves validate"
    ) in guide
    assert "the last two once the values are valid) come in one report" in guide


def test_serve_refuses_trust_files_with_fetched_keys() -> None:
    """Both ways of trust given: a line naming the group, exit 2, before anything starts.

    Before, `serve` fetched the keys and never read the files, without a word; the misspelled
    variable beside it is reported either way, so nothing starts on the old code either.
    """
    done = _serve(
        AUTH__MODE="disabled",
        TRUST__EU_CERTIFICATES='["/etc/signing-gateway/dsc.pem"]',
        **DEV_TRUST,
        **TYPO,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        HEADER,
        TYPO_LINE,
        (
            "  SIGNING_GATEWAY_TRUST: eu_certificates would be ignored: fetch_from_signers "
            "takes the keys from the signers instead; give trust files or fetch_from_signers, "
            "not both"
        ),
    ]


def test_demo_replaces_trust_files_with_the_fakes_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's trust is the fakes' keys: trust files in the environment take no part in it.

    As its signer URLs replace the environment's, so its trust does: the files are not merged
    with its fetching into a combination the settings refuse.
    """
    for name in [k for k in os.environ if k.startswith("SIGNING_GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNING_GATEWAY_TRUST__EU_CERTIFICATES", '["/etc/dsc.pem"]')
    monkeypatch.setenv("SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS", '["/etc/domestic.pem"]')
    with demo_setup(FLAG_VARIABLES) as (setup, problems):
        assert problems == []
        assert setup is not None
        trust = setup.settings.trust
        assert (trust.fetch_from_signers, trust.eu_certificates, trust.domestic_keys) == (
            True,
            [],
            [],
        )


def test_demo_names_a_variable_that_must_be_json() -> None:
    """A JSON variable holding something else is named as `serve` names it; nothing starts."""
    code = "from signing_gateway.cli import main; raise SystemExit(main(['demo', '--smoke']))"
    done = _run(code, **NOT_JSON)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [HEADER, NOT_JSON_LINE]


def test_demo_names_a_signer_tls_file_it_cannot_use_before_starting_anything(
    tmp_path: Path,
) -> None:
    """As for `serve`: a TLS file the demo's gateway would load is checked, a line and exit 2.

    Before, only tracing was checked besides the settings' values: the demo started its fake
    signers, and its gateway's start-up then failed on the file, status 3.
    """
    code = "from signing_gateway.cli import main; raise SystemExit(main(['demo', '--smoke']))"
    done = _run(code, EU_SIGNER__CA_BUNDLE=str(tmp_path / "missing-ca.pem"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        HEADER,
        "  SIGNING_GATEWAY_EU_SIGNER__CA_BUNDLE: no such file",
    ]
    assert done.stdout == ""


def test_demo_with_tracing_but_without_the_otel_extra_exits_2() -> None:
    """As for `serve`: one line and exit 2, before any fake signer starts.

    Before, the demo started its fake signers, then ended with the app's traceback.
    """
    without_sdk = (
        "import sys; sys.modules['opentelemetry.sdk'] = None; "
        "from signing_gateway.cli import main; raise SystemExit(main(['demo', '--smoke']))"
    )
    done = _run(without_sdk, OBSERVABILITY__TRACING_ENABLED="true")
    assert done.returncode == 2
    header, problem = done.stderr.splitlines()
    assert header == HEADER
    assert problem.startswith("  SIGNING_GATEWAY_OBSERVABILITY__TRACING_ENABLED: tracing needs")
    assert done.stdout == ""


#: Settings an entry point reading the environment refuses, and the report's lines for them.
REFUSED_FROM_THE_ENVIRONMENT = [
    (INVALID, [INVALID_LINE]),
    (NOT_JSON, [NOT_JSON_LINE]),
    ({**TYPO, **INVALID}, [TYPO_LINE, INVALID_LINE]),
]


def _uvicorn_factory_code() -> str:
    """`uvicorn --factory ...:create_served_app` on a free loopback port, as a Python statement."""
    argv = [
        "uvicorn", "--factory", "signing_gateway.app:create_served_app",
        "--host", "127.0.0.1", "--port", str(free_port()),
    ]  # fmt: skip
    return f"import sys; from uvicorn.main import main; sys.argv = {argv!r}; main()"


@pytest.mark.parametrize(("settings", "lines"), REFUSED_FROM_THE_ENVIRONMENT)
def test_the_uvicorn_factory_reports_an_invalid_value_as_serve_does(
    settings: dict[str, str], lines: list[str]
) -> None:
    """An invalid value under `uvicorn --factory`: the report's lines and exit 2, no traceback.

    Before, uvicorn printed pydantic's (or pydantic-settings') traceback and exited 1.
    """
    done = _run(_uvicorn_factory_code(), AUTH__MODE="disabled", **DEV_TRUST, **settings)
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    assert done.stderr.splitlines() == [HEADER, *lines]


def test_an_app_built_from_the_environment_refuses_an_unknown_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`create_app()` raises an error naming the variable; given settings, nothing is checked."""
    monkeypatch.setenv("SIGNING_GATEWAY_AUTH__MODE", "disabled")
    monkeypatch.setenv("SIGNING_GATEWAY_AUDIT__FAIL_CLOSE", "true")
    with pytest.raises(ValueError, match=re.escape(TYPO_LINE.strip())) as refused:
        create_app()
    assert str(refused.value) == TYPO_LINE.strip()
    create_app(Settings(auth=AuthSettings(mode="disabled")))


def test_serve_names_a_jwks_file_and_an_audit_file_it_cannot_use(tmp_path: Path) -> None:
    """A JWKS file or an audit file that cannot be used is a line each, exit 2.

    A JWKS file missing or not JSON, an audit file whose directory is missing; the paths are
    not repeated. Before, each failed the start-up with a traceback and exit status 3.
    """
    cases = {
        str(tmp_path / "missing.json"): "no such file",
        str(tmp_path / "garbage.json"): "the JWKS is not JSON",
    }
    (tmp_path / "garbage.json").write_bytes(b"not json")
    for jwks, problem in cases.items():
        done = _serve(
            **DEV_TRUST,
            AUTH__MODE="jwt",
            AUTH__JWKS_FILE=jwks,
            AUTH__AUDIENCE="signing-gateway",
            AUTH__ISSUER="https://idp.internal/",
            AUDIT__FILE=str(tmp_path / "no-such-dir" / "audit.jsonl"),
        )
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            HEADER,
            f"  SIGNING_GATEWAY_AUTH__JWKS_FILE: {problem}",
            "  SIGNING_GATEWAY_AUDIT__FILE: its directory does not exist",
        ]
        assert str(tmp_path) not in done.stderr


def test_the_uvicorn_factory_checks_the_files_the_settings_name_as_serve_does(
    tmp_path: Path,
) -> None:
    """Trust files, a JWKS file, an audit file: `serve`'s lines, exit 2, before anything serves.

    Before, uvicorn started serving, and the first file its lifespan tripped on failed the
    start-up with exit status 3: the trust file as one JSON log line, a JWKS or an audit file
    with the whole traceback, and never more than one of them.
    """
    (tmp_path / "garbage.json").write_bytes(b"not json")
    settings = {
        "AUTH__MODE": "jwt",
        "AUTH__JWKS_FILE": str(tmp_path / "garbage.json"),
        "AUTH__AUDIENCE": "signing-gateway",
        "AUTH__ISSUER": "https://idp.internal/",
        "AUDIT__FILE": str(tmp_path / "no-such-dir" / "audit.jsonl"),
        "TRUST__EU_CERTIFICATES": orjson.dumps(
            [str(tmp_path / "missing.pem"), str(tmp_path)]
        ).decode(),
    }
    lines = [
        HEADER,
        "  SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 1 of 2: no such file",
        "  SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 2 of 2: is a directory, not a file",
        "  SIGNING_GATEWAY_AUTH__JWKS_FILE: the JWKS is not JSON",
        "  SIGNING_GATEWAY_AUDIT__FILE: its directory does not exist",
    ]
    for done in (_serve(**settings), _run(_uvicorn_factory_code(), **settings)):
        assert done.returncode == 2
        assert done.stderr.splitlines() == lines
        assert done.stdout == ""


def test_the_uvicorn_factory_without_any_trust_says_so_before_serving() -> None:
    """No trust files and no fetching: `serve`'s line and exit 2 (before: exit 3 at start-up)."""
    done = _run(_uvicorn_factory_code(), AUTH__MODE="disabled")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [HEADER, f"  {NO_TRUST}"]


def test_the_uvicorn_factory_with_tracing_but_without_the_otel_extra_exits_2() -> None:
    """As for `serve`: one line and exit 2. Before, uvicorn printed the traceback and exited 1."""
    without_sdk = "import sys; sys.modules['opentelemetry.sdk'] = None; " + _uvicorn_factory_code()
    done = _run(
        without_sdk, AUTH__MODE="disabled", OBSERVABILITY__TRACING_ENABLED="true", **DEV_TRUST
    )
    assert done.returncode == 2
    header, problem = done.stderr.splitlines()
    assert header == HEADER
    assert problem.startswith("  SIGNING_GATEWAY_OBSERVABILITY__TRACING_ENABLED: tracing needs")


@pytest.mark.parametrize(("settings", "lines"), REFUSED_FROM_THE_ENVIRONMENT)
def test_an_app_built_from_the_environment_refuses_an_invalid_value_by_its_variable(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], lines: list[str]
) -> None:
    """`create_app()` raises `InvalidSettingsError`, its message the report's lines.

    Before, it raised pydantic's ValidationError (or pydantic-settings' SettingsError), which
    names the group rather than the variable and repeats the value given.
    """
    for name in [k for k in os.environ if k.startswith("SIGNING_GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNING_GATEWAY_AUTH__MODE", "disabled")
    for name, value in settings.items():
        monkeypatch.setenv(f"SIGNING_GATEWAY_{name}", value)
    with pytest.raises(InvalidSettingsError) as refused:
        create_app()
    assert refused.value.problems == [line.strip() for line in lines]
    assert str(refused.value) == "\n".join(line.strip() for line in lines)
    assert isinstance(refused.value, ValueError)
    assert not isinstance(refused.value, ValidationError)


def test_serve_refuses_an_infinite_cancel_grace_in_one_line() -> None:
    """`inf` is no timeout: one line naming the variable and exit 2, before anything serves.

    Before, the settings took it and `serve` then ended in an OverflowError traceback (exit 1)
    while it built uvicorn's shutdown backstop from the cancel grace.
    """
    done = _serve(AUTH__MODE="disabled", SHUTDOWN__CANCEL_GRACE_SECONDS="inf", **DEV_TRUST)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        HEADER,
        "  SIGNING_GATEWAY_SHUTDOWN__CANCEL_GRACE_SECONDS: Input should be a finite number",
    ]


@pytest.mark.parametrize(
    "name",
    [
        "AUDIT__FILE",
        "AUTH__JWKS_FILE",
        "AUTH__JWKS_CA_BUNDLE",
        "EU_SIGNER__CA_BUNDLE",
        "DOMESTIC_SIGNER__CLIENT_CERT",
        "DOMESTIC_SIGNER__CLIENT_KEY",
    ],
)
@pytest.mark.parametrize("value", ["", "  "], ids=["empty", "blank"])
def test_a_file_setting_left_empty_says_so(name: str, value: str) -> None:
    """Pin that an empty file setting is named as empty, not as the directory `.` it reads as.

    `SIGNING_GATEWAY_AUDIT__FILE=` was refused as "not a regular file" (or a directory),
    naming a directory the operator never gave.
    """
    done = _serve(**DEV_TRUST, **{name: value})
    assert done.returncode == 2
    assert f"  SIGNING_GATEWAY_{name}: must name a file; leave the setting unset for none" in (
        done.stderr.splitlines()
    ), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("rediss://s:26379/abc", SENTINEL_NO_PATH),
        ("rediss://s:26379?x=1", SENTINEL_NO_QUERY),
        ("rediss://s:26379#f", SENTINEL_NO_QUERY),
    ],
    ids=["path", "query", "fragment"],
)
def test_serve_refuses_a_sentinel_url_under_its_own_name(url: str, problem: str) -> None:
    """Pin that the start-up report blames `sentinels`, not a `redis_url` that is not set.

    Before, a sentinel's path, query or fragment was reported as redis_url's ("redis_url's
    path must be a database number, e.g. /0").
    """
    lines = _serve_refused(
        AUTH__MODE="disabled",
        SESSION_STORE__KIND="redis",
        SESSION_STORE__SENTINELS=orjson.dumps([url]).decode(),
        SESSION_STORE__SENTINEL_SERVICE="sessions",
        **DEV_TRUST,
    )
    assert lines == [HEADER, f"  SIGNING_GATEWAY_SESSION_STORE: {problem}"]
