"""Start-up settings of the fake signer: the default port of each role."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from fake_signer.cli import main, parse_settings
from signing_gateway.settings import DEV_DOMESTIC_SIGNER_URL, DEV_EU_SIGNER_URL


@pytest.fixture(autouse=True)
def no_port_or_role_variables(monkeypatch):
    """The defaults are under test: no FAKE_SIGNER_PORT or FAKE_SIGNER_ROLE from outside."""
    monkeypatch.delenv("FAKE_SIGNER_PORT", raising=False)
    monkeypatch.delenv("FAKE_SIGNER_ROLE", raising=False)


@pytest.mark.parametrize(
    ("role", "url"), [("eu", DEV_EU_SIGNER_URL), ("domestic", DEV_DOMESTIC_SIGNER_URL)]
)
def test_default_port_is_where_a_development_gateway_looks(role, url):
    """`fake-signer --role R` listens where a gateway's default URL for signer R points."""
    assert parse_settings(["--role", role]).port == urlsplit(url).port


def test_default_port_of_all_roles_is_the_eu_signers():
    """`fake-signer` (role all) takes the EU signer's port, not the gateway's 8080."""
    assert parse_settings([]).port == urlsplit(DEV_EU_SIGNER_URL).port


def test_default_port_follows_the_role_variable(monkeypatch):
    """FAKE_SIGNER_ROLE=domestic picks the domestic signer's port too."""
    monkeypatch.setenv("FAKE_SIGNER_ROLE", "domestic")
    assert parse_settings([]).port == urlsplit(DEV_DOMESTIC_SIGNER_URL).port


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--role", "domestic", "--port", "7001"], {}), (["--role", "domestic"], {"PORT": "7001"})],
)
def test_a_port_given_wins_over_the_role_default(monkeypatch, args, env):
    """--port or FAKE_SIGNER_PORT, when given, is the port whatever the role."""
    for name, value in env.items():
        monkeypatch.setenv(f"FAKE_SIGNER_{name}", value)
    assert parse_settings(args).port == 7001


def test_defaults_are_the_documented_ones(monkeypatch):
    """Without options or variables: the defaults docs/fake-signer.md lists."""
    for name in os.environ:
        if name.startswith("FAKE_SIGNER_"):
            monkeypatch.delenv(name)
    settings = parse_settings([])
    assert settings.model_dump(mode="json") == {
        "role": "all",
        "host": "127.0.0.1",
        "port": 9081,
        "latency_ms": 0.0,
        "jitter_ms": 0.0,
        "latency_distribution": "uniform",
        "seed": None,
        "capacity": None,
        "overflow": "queue",
        "error_rate": 0.0,
        "country": "NL",
        "keys_dir": None,
        "backlog": 8192,
        "shutdown_timeout": 2.0,
        "log_level": "info",
        "parent_pid": None,
        "domestic_scheme": "simulation",
    }


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--port", "65536"], "port"),
        (["--port", "-1"], "port"),
        (["--latency-ms", "-1"], "latency_ms"),
        (["--jitter-ms", "-0.5"], "jitter_ms"),
        (["--latency-ms", "600000.5"], "latency_ms"),
        (["--latency-ms", "1e300"], "latency_ms"),
        (["--jitter-ms", "600001"], "jitter_ms"),
        (["--capacity", "0"], "capacity"),
        (["--error-rate", "-0.1"], "error_rate"),
        (["--error-rate", "1.01"], "error_rate"),
        (["--country", "NLD"], "country"),
        (["--country", "nl"], "country"),
        (["--backlog", "0"], "backlog"),
        (["--shutdown-timeout", "-1"], "shutdown_timeout"),
        (["--shutdown-timeout", "inf"], "shutdown_timeout"),
        (["--shutdown-timeout", "600.001"], "shutdown_timeout"),
        (["--shutdown-timeout", "1e300"], "shutdown_timeout"),
        (["--log-level", "verbose"], "log_level"),
        (["--parent-pid", "0"], "parent_pid"),
    ],
)
def test_out_of_range_options_are_refused(args, field):
    """Each option outside its documented range is a settings error naming it."""
    with pytest.raises(ValidationError) as refused:
        parse_settings(args)
    assert [error["loc"] for error in refused.value.errors()] == [(field,)]


def test_options_at_the_ends_of_their_ranges_are_taken():
    """The last valid value of each bounded option is taken as given."""
    settings = parse_settings(
        [
            *("--port", "65535", "--capacity", "1", "--error-rate", "1", "--backlog", "1"),
            *("--shutdown-timeout", "0", "--latency-ms", "0", "--country", "BE"),
            *("--log-level", "WARNING", "--jitter-ms", "600000"),
        ]
    )
    assert settings.jitter_ms == 600000
    assert (settings.port, settings.capacity, settings.error_rate) == (65535, 1, 1)
    assert (settings.backlog, settings.shutdown_timeout, settings.country) == (1, 0, "BE")
    assert settings.log_level == "warning"


@pytest.mark.parametrize("case", [str.upper, str.lower], ids=["upper", "lower"])
def test_a_variable_that_names_no_setting_stops_the_start(monkeypatch, capsys, case):
    """A misspelt FAKE_SIGNER_* variable is refused by name: ignored, it would test nothing.

    Settings variables are read in any case, so one misspelt in lower case is refused too.
    """
    misspelt = case("FAKE_SIGNER_" + "latency_ms".upper().removesuffix("_MS"))
    monkeypatch.setenv(misspelt, "200")
    with pytest.raises(ValueError, match=misspelt):
        parse_settings([])
    assert main(["--port", "0"]) == 2
    assert capsys.readouterr().err.startswith(
        f"fake-signer: invalid settings\nunknown environment variable {misspelt}: "
    )


def test_a_variable_of_a_setting_is_known_in_any_case(monkeypatch):
    """Settings variables are read in any case, so none of them is an unknown one."""
    monkeypatch.setenv("fake_signer_latency_ms", "20")
    assert parse_settings([]).latency_ms == 20


def test_domestic_scheme_is_read_from_the_option_and_the_environment(monkeypatch):
    """`--domestic-scheme idemix` and FAKE_SIGNER_DOMESTIC_SCHEME=idemix both pick Idemix."""
    monkeypatch.delenv("FAKE_SIGNER_DOMESTIC_SCHEME", raising=False)
    assert parse_settings(["--domestic-scheme", "idemix"]).domestic_scheme == "idemix"
    monkeypatch.setenv("FAKE_SIGNER_DOMESTIC_SCHEME", "idemix")
    assert parse_settings([]).domestic_scheme == "idemix"
    assert parse_settings(["--domestic-scheme", "simulation"]).domestic_scheme == "simulation"


def test_unknown_domestic_scheme_stops_the_start(monkeypatch, capsys):
    """A scheme that is neither simulation nor idemix is refused with status 2."""
    monkeypatch.setenv("FAKE_SIGNER_DOMESTIC_SCHEME", "rsa")
    assert main([]) == 2
    assert "domestic_scheme" in capsys.readouterr().err
