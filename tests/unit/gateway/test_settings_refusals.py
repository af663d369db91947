"""What the settings refuse, and in which words: signer URLs, pools, timeouts, production.

`serve` reports each refusal as a line naming its variable (tests/unit/gateway/
test_cli_settings.py runs it); here the settings are built in-process, so each rule and its
message are pinned without starting a process.
"""

from __future__ import annotations

import functools
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from signing_gateway.domain.dcc import KeyUsage
from signing_gateway.domain.domestic import DomesticPolicy
from signing_gateway.security.settings import AuthSettings
from signing_gateway.settings import (
    DEV_DOMESTIC_SIGNER_URL,
    DEV_EU_SIGNER_URL,
    HEAD_ROOM_BYTES,
    MAX_VALIDITY_DAYS,
    DomesticPolicySettings,
    EuPolicySettings,
    ResilienceSettings,
    Settings,
    SignerSettings,
    TrustSettings,
)
from signing_gateway.settings_doc import setting_docs
from signing_gateway.settings_env import (
    FLAG_VARIABLES,
    is_service_link,
    read_settings,
    unknown_variables,
)

REMOTE = "https://eu-signer.internal"
UNSET_SIGNER = "required when environment=production (the default is a local fake signer's address)"
#: Production settings that pass every check but the one a test breaks.
PRODUCTION = {
    "environment": "production",
    "eu_signer": SignerSettings(url="https://eu-signer.internal"),
    "domestic_signer": SignerSettings(url="https://domestic-signer.internal"),
    "auth": AuthSettings(
        jwks_url="https://idp.internal/jwks",
        audience="signing-gateway",
        issuer="https://idp.internal/",
    ),
}


def _refusals(**values: object) -> list[tuple[tuple[str | int, ...], str]]:
    """The (location, message) of each error building `Settings(**values)` raises."""
    with pytest.raises(ValidationError) as refused:
        Settings(**values)
    return [(e["loc"], e["msg"]) for e in refused.value.errors()]


def _signer_refusal(**values: object) -> str:
    """The one message building `SignerSettings(**values)` fails with."""
    with pytest.raises(ValidationError) as refused:
        SignerSettings(**values)
    [error] = refused.value.errors()
    return str(error["msg"]).removeprefix("Value error, ")


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "https://eu-signer.internal:https"])
def test_a_signer_url_with_a_port_that_is_no_port_is_refused(url: str) -> None:
    """A port out of range or not a number is named, not left for the first call to trip on."""
    assert _signer_refusal(url=url) == "signer url has a port that is not a number from 0 to 65535"


@pytest.mark.parametrize(
    "url",
    ["eu-signer.internal:8443", "ftp://eu-signer.internal", "wss://eu-signer.internal", "https://"],
)
def test_a_signer_url_must_be_absolute_http_or_https(url: str) -> None:
    """No scheme, another scheme or no host: one message saying what a signer URL is."""
    assert _signer_refusal(url=url) == "signer url must be an absolute http(s) URL"


def test_plain_http_to_another_host_needs_allow_plain_http() -> None:
    """http:// off the host is refused unless allowed; on loopback it needs nothing."""
    assert _signer_refusal(url="http://eu-signer.internal") == (
        "plain http to a non-loopback signer needs allow_plain_http=true; use https"
    )
    assert SignerSettings(url="http://eu-signer.internal", allow_plain_http=True)
    for host in ("127.0.0.1", "localhost", "[::1]", "127.0.0.2", "[::ffff:127.0.0.1]"):
        assert not SignerSettings(url=f"http://{host}:9081").plain_http_off_host()
    assert SignerSettings(url="http://[::ffff:10.0.0.1]:9081", allow_plain_http=True)
    assert _signer_refusal(url="http://[::ffff:10.0.0.1]:9081") == (
        "plain http to a non-loopback signer needs allow_plain_http=true; use https"
    )


def test_a_signer_url_the_client_cannot_call_is_refused_with_the_settings() -> None:
    """Pin that the URL is read as httpx reads it, not as `urlsplit` does.

    `urlsplit` took `[::1].signer.test` as the loopback host ::1, so plain http passed the
    check, and httpx then refused the URL when the gateway built its signer clients.
    """
    assert _signer_refusal(url="http://[::1].signer.test:9081") == (
        "signer url must be an absolute http(s) URL"
    )


@pytest.mark.parametrize("given", ["client_cert", "client_key"])
def test_a_client_certificate_and_its_key_go_together(given: str) -> None:
    """Either one alone is refused: mutual TLS needs both."""
    assert _signer_refusal(url=REMOTE, **{given: Path("tls.pem")}) == (
        "client_cert and client_key go together"
    )
    both = SignerSettings(url=REMOTE, client_cert=Path("c.pem"), client_key=Path("k.pem"))
    assert (both.client_cert, both.client_key) == (Path("c.pem"), Path("k.pem"))


def test_a_pool_no_larger_than_the_bulkhead_is_refused_with_both_figures() -> None:
    """The message gives both numbers, so the operator sees which to raise."""
    assert _signer_refusal(
        url=REMOTE, max_connections=32, resilience=ResilienceSettings(max_in_flight=40)
    ) == ("max_connections must exceed resilience.max_in_flight (32 <= 40)")


def test_a_pool_as_large_as_the_bulkhead_is_refused_and_one_more_is_taken() -> None:
    """Pin the one spare connection: it keeps the readiness probe's call out of the queue."""
    assert _signer_refusal(
        url=REMOTE, max_connections=40, resilience=ResilienceSettings(max_in_flight=40)
    ) == ("max_connections must exceed resilience.max_in_flight (40 <= 40)")
    resilience = ResilienceSettings(max_in_flight=40)
    assert SignerSettings(url=REMOTE, max_connections=41, resilience=resilience)


def _jwt_auth(max_token_bytes: int, mode: str = "jwt") -> AuthSettings:
    return AuthSettings(
        mode=mode,  # type: ignore[arg-type]
        jwks_file=Path("jwks.json"),
        audience="gateway",
        issuer="https://idp.test/",
        max_token_bytes=max_token_bytes,
    )


def test_the_head_limit_fits_the_largest_token_exactly() -> None:
    """A head limit of the token bound plus the head room is enough; a byte less is refused."""
    token = 16 * 1024
    fits = {"max_header_bytes": token + HEAD_ROOM_BYTES}
    assert Settings(auth=_jwt_auth(token), limits=fits).limits.max_header_bytes == token + 2048
    assert _refusals(auth=_jwt_auth(token), limits={"max_header_bytes": token + 2047}) == [
        (
            (),
            (
                "Value error, limits.max_header_bytes must be at least auth.max_token_bytes + "
                f"2048 ({token + 2048}), so that a bearer token of the largest size accepted "
                "fits in a request head"
            ),
        )
    ]


def test_without_token_checks_the_head_limit_need_not_fit_a_token() -> None:
    """auth.mode=disabled reads no token: its size bound does not constrain the head limit."""
    settings = Settings(auth=_jwt_auth(8192, mode="disabled"), limits={"max_header_bytes": 4096})
    assert settings.limits.max_header_bytes < settings.auth.max_token_bytes


def test_production_refuses_fetched_signer_keys() -> None:
    """Keys fetched from the signers are for the fakes; development may fetch them."""
    fetched = TrustSettings(fetch_from_signers=True)
    assert _refusals(**PRODUCTION, trust=fetched) == [
        ((), "production must pin signer keys in files; fetch_from_signers is for the fakes")
    ]
    assert Settings(**{**PRODUCTION, "environment": "dev"}, trust=fetched)


#: The line for trust files given with fetch_from_signers, by the lists given.
IGNORED_FILES = (
    "{} would be ignored: fetch_from_signers takes the keys from the signers instead; "
    "give trust files or fetch_from_signers, not both"
)


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({"eu_certificates": [Path("dsc.pem")]}, "eu_certificates"),
        ({"domestic_keys": [Path("domestic.pem")]}, "domestic_keys"),
        (
            {"eu_certificates": [Path("dsc.pem")], "domestic_keys": [Path("domestic.pem")]},
            "eu_certificates and domestic_keys",
        ),
    ],
)
def test_trust_files_with_fetched_keys_are_refused(files: dict[str, object], named: str) -> None:
    """Fetching the signers' keys never reads the trust files: both given is a line, not a guess.

    Before, development took the combination and fetched, the files unread without a word, as
    a file pinned for the real signers would have been.
    """
    trust = TrustSettings(fetch_from_signers=True, **files)
    assert _refusals(auth=AuthSettings(mode="disabled"), trust=trust) == [
        (("trust",), IGNORED_FILES.format(named))
    ]
    assert Settings(auth=AuthSettings(mode="disabled"), trust=TrustSettings(**files))


def test_trust_files_with_fetched_keys_are_reported_with_the_other_problems() -> None:
    """In production the combination is a line of its own beside production's refusal of it.

    Checked with the others, not by the group alone, which would have hidden them.
    """
    trust = TrustSettings(fetch_from_signers=True, eu_certificates=[Path("dsc.pem")])
    disabled = AuthSettings(mode="disabled")
    assert _refusals(**{**PRODUCTION, "auth": disabled}, trust=trust) == [
        ((), "production must pin signer keys in files; fetch_from_signers is for the fakes"),
        ((), "auth.mode=disabled is for local use; production needs auth.mode=jwt"),
        (("trust",), IGNORED_FILES.format("eu_certificates")),
    ]


def test_production_names_each_signer_reached_over_plain_http() -> None:
    """allow_plain_http does not hold in production: each such signer's URL is named."""
    plain = {
        "eu_signer": SignerSettings(url="http://eu-signer.internal", allow_plain_http=True),
        "domestic_signer": SignerSettings(url="http://domestic.internal", allow_plain_http=True),
    }
    assert _refusals(**{**PRODUCTION, **plain}) == [
        (
            (),
            (
                "production sends personal data to its signers only over https: eu_signer.url, "
                "domestic_signer.url is plain http to another host (allow_plain_http is not "
                "for production)"
            ),
        )
    ]
    loopback = SignerSettings(url="http://127.0.0.1:9081")
    assert Settings(**{**PRODUCTION, "eu_signer": loopback}).eu_signer.url == loopback.url


def test_production_refuses_one_signer_reached_over_plain_http() -> None:
    """One such signer is enough: it is named alone, the https one is not."""
    plain = SignerSettings(url="http://domestic.internal", allow_plain_http=True)
    assert _refusals(**{**PRODUCTION, "domestic_signer": plain}) == [
        (
            (),
            (
                "production sends personal data to its signers only over https: "
                "domestic_signer.url is plain http to another host (allow_plain_http is not "
                "for production)"
            ),
        )
    ]


def test_production_reports_every_problem_at_once() -> None:
    """An unset signer, fetched keys and disabled auth: a line each, the signer by its URL."""
    assert _refusals(
        environment="production",
        eu_signer=PRODUCTION["eu_signer"],
        trust=TrustSettings(fetch_from_signers=True),
        auth=AuthSettings(mode="disabled"),
    ) == [
        (("domestic_signer", "url"), UNSET_SIGNER),
        ((), "production must pin signer keys in files; fetch_from_signers is for the fakes"),
        ((), "auth.mode=disabled is for local use; production needs auth.mode=jwt"),
    ]


def test_an_unknown_keyword_is_refused() -> None:
    """Settings(...) refuses a name it does not have, as the environment check does."""
    assert _refusals(auth=AuthSettings(mode="disabled"), request_deadline=5) == [
        (("request_deadline",), "Extra inputs are not permitted")
    ]


def test_default_validities_are_ten_years_at_most_in_days_and_hours() -> None:
    """The documented bounds hold exactly; the defaults map each key usage to its unit."""
    limit = {"vaccination_validity_days": MAX_VALIDITY_DAYS, "test_validity_hours": 87600}
    assert EuPolicySettings(**limit).test_validity_hours == 87600
    for name, value in limit.items():
        with pytest.raises(ValidationError):
            EuPolicySettings(**{name: value + 1})
    assert EuPolicySettings(recovery_validity_days=MAX_VALIDITY_DAYS)
    with pytest.raises(ValidationError):
        EuPolicySettings(recovery_validity_days=MAX_VALIDITY_DAYS + 1)
    assert EuPolicySettings().default_validity() == {
        KeyUsage.VACCINATION: timedelta(days=365),
        KeyUsage.TEST: timedelta(hours=72),
        KeyUsage.RECOVERY: timedelta(days=180),
    }


def test_the_domestic_policy_takes_each_window_from_its_own_setting() -> None:
    """Pin which setting bounds which side of validFrom, and the validity, in hours."""
    settings = DomesticPolicySettings(
        max_valid_from_past_hours=5, max_valid_from_future_hours=7, max_valid_for_hours=9
    )
    assert settings.policy() == DomesticPolicy(
        max_valid_from_past=timedelta(hours=5),
        max_valid_from_future=timedelta(hours=7),
        max_valid_for_hours=9,
    )


#: Each bounded setting: its group, its name, the values at its edges that it takes and those
#: just past them that it refuses.
BOUNDED_SETTINGS = [
    (ResilienceSettings, "max_attempts", [1, 10], [0, 11]),
    (ResilienceSettings, "retry_budget_ratio", [0.0, 1.0], [-0.01, 1.01]),
    (ResilienceSettings, "breaker_failure_rate", [0.01, 1.0], [0.0, 1.01]),
    (EuPolicySettings, "max_clock_skew_seconds", [1, 3600], [0, 3601]),
    (DomesticPolicySettings, "max_valid_from_past_hours", [1, 87600], [0, 87601]),
    (DomesticPolicySettings, "max_valid_from_future_hours", [1, 87600], [0, 87601]),
    (DomesticPolicySettings, "credential_amount", [1, 100], [0, 101]),
    # No more than a validForHours can be written with (six digits).
    (DomesticPolicySettings, "max_valid_for_hours", [1, 999_999], [0, 1_000_000]),
]


@pytest.mark.parametrize(
    ("group", "name", "taken", "refused"),
    BOUNDED_SETTINGS,
    ids=[name for _, name, _, _ in BOUNDED_SETTINGS],
)
def test_a_bounded_setting_takes_its_edges_and_nothing_past_them(
    group: type[BaseModel], name: str, taken: list[float], refused: list[float]
) -> None:
    """Pin each bound: validFrom within ten years of now, a share at most 1, and so on."""
    for value in taken:
        assert getattr(group(**{name: value}), name) == value
    for value in refused:
        with pytest.raises(ValidationError) as error:
            group(**{name: value})
        assert [e["loc"] for e in error.value.errors()] == [(name,)]


def _number_variables() -> list[str]:
    """Every variable of the reference that takes a number with a fraction (seconds, ratios)."""
    return [d.env_var for d in setting_docs() if d.type_name.split(", ")[0] == "float"]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SIGNING_GATEWAY_* variable but development's auth.mode=disabled."""
    for name in [k for k in os.environ if k.upper().startswith("SIGNING_GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNING_GATEWAY_AUTH__MODE", "disabled")
    return monkeypatch


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
def test_no_number_setting_takes_infinity_or_nan(
    clean_environment: pytest.MonkeyPatch, value: str
) -> None:
    """Every timeout, interval and ratio must be a finite number: each is named, none passes.

    Before, `inf` passed: SIGNING_GATEWAY_SHUTDOWN__CANCEL_GRACE_SECONDS=inf ended `serve` in
    an OverflowError traceback (exit 1) after the settings check said nothing, and an infinite
    drain or signer timeout waited for ever.
    """
    variables = _number_variables()
    assert "SIGNING_GATEWAY_SHUTDOWN__DRAIN_TIMEOUT_SECONDS" in variables
    assert "SIGNING_GATEWAY_EU_SIGNER__RESILIENCE__RETRY_BUDGET_RATIO" in variables
    for name in variables:
        clean_environment.setenv(name, value)
    # A signer's other variables set, its URL must be given too (docs/operations.md).
    clean_environment.setenv("SIGNING_GATEWAY_EU_SIGNER__URL", DEV_EU_SIGNER_URL)
    clean_environment.setenv("SIGNING_GATEWAY_DOMESTIC_SIGNER__URL", DEV_DOMESTIC_SIGNER_URL)
    settings, problems = read_settings(FLAG_VARIABLES)
    assert settings is None
    assert sorted(line.split(": ", 1)[0] for line in problems) == sorted(variables)


def test_a_finite_number_is_still_taken(clean_environment: pytest.MonkeyPatch) -> None:
    """Refusing infinity leaves every finite value as it was, a large one included."""
    clean_environment.setenv("SIGNING_GATEWAY_SHUTDOWN__CANCEL_GRACE_SECONDS", "1e6")
    settings, problems = read_settings(FLAG_VARIABLES)
    assert problems == []
    assert settings is not None
    assert settings.shutdown.cancel_grace_seconds == 1e6


#: The lowest value each number setting takes and the value just below it, refused, by the
#: setting's name (a name in several groups, each signer's timeouts say, has one rule), or by
#: group and name for a setting whose rule is not its namesakes'. A zero pool or timeout would
#: refuse or time out everything; a negative wait or count means nothing.
LOWEST_TAKEN = {
    "CONNECT_TIMEOUT": (0.001, 0),
    "READ_TIMEOUT": (0.001, 0),
    "WRITE_TIMEOUT": (0.001, 0),
    "POOL_TIMEOUT": (0.001, 0),
    "MAX_CONNECTIONS": (2, 0),  # above max_in_flight, 1 at the least
    "SESSION_STORE__MAX_CONNECTIONS": (1, 0),  # no bulkhead in front of Redis
    "MAX_IN_FLIGHT": (1, 0),
    "MAX_PENDING": (0, -1),
    "MAX_WAIT_SECONDS": (0, -0.001),
    "ATTEMPT_TIMEOUT_SECONDS": (0.001, 0),
    "MAX_ATTEMPTS": (1, 0),
    "MAX_RETRY_AFTER_SECONDS": (0, -0.001),
    "BACKOFF_BASE_SECONDS": (0.001, 0),
    "BACKOFF_MAX_SECONDS": (0.001, 0),
    "RETRY_BUDGET_RATIO": (0, -0.001),
    "RETRY_BUDGET_MIN_PER_SECOND": (0, -0.001),
    "RETRY_BUDGET_WINDOW_SECONDS": (0.001, 0),
    "BREAKER_CONSECUTIVE_FAILURES": (1, 0),
    "BREAKER_FAILURE_RATE": (0.001, 0),
    "BREAKER_MIN_CALLS": (1, 0),
    "BREAKER_WINDOW_SECONDS": (0.001, 0),
    "BREAKER_OPEN_SECONDS": (0.001, 0),
    "BREAKER_TRIAL_CALLS": (1, 0),
    "VACCINATION_VALIDITY_DAYS": (1, 0),
    "TEST_VALIDITY_HOURS": (1, 0),
    "RECOVERY_VALIDITY_DAYS": (1, 0),
    "MAX_CLOCK_SKEW_SECONDS": (1, 0),
    "MAX_VALID_FROM_PAST_HOURS": (1, 0),
    "MAX_VALID_FROM_FUTURE_HOURS": (1, 0),
    "MAX_VALID_FOR_HOURS": (1, 0),
    "CREDENTIAL_AMOUNT": (1, 0),
    "STOKEN_TTL_SECONDS": (1, 0),
    "MAX_OPEN_STOKENS": (1, 0),
    "CHECK_WORKERS": (1, 0),
    "MAX_CHECKS_IN_FLIGHT": (1, 0),
    "REQUEST_DEADLINE_SECONDS": (0.001, 0),
    "DRAIN_TIMEOUT_SECONDS": (0.001, 0),
    "CANCEL_GRACE_SECONDS": (0.001, 0),
    "INTERVAL_SECONDS": (0.001, 0),
    "WARN_THRESHOLD_SECONDS": (0.001, 0),
    "WARN_EVERY_SECONDS": (0.001, 0),
    "CPU_PERMITS": (1, 0),
    "CPU_NEW_EVERY": (1, 0),
    "CPU_QUEUE_TIMEOUT_SECONDS": (0.001, 0),
    "CPU_QUEUE_MAX": (1, 0),
    "GC_YOUNG_INTERVAL_SECONDS": (0.001, 0),
    "GC_MIDDLE_EVERY": (1, 0),
    "GC_FULL_INTERVAL_SECONDS": (0.05, 0),  # the young interval's default, at the least
    "GC_FULL_QUIET_IN_FLIGHT": (0, -1),
    "GC_THRESHOLD0": (1, 0),
    "READINESS_PROBE_INTERVAL_SECONDS": (0.001, 0),
    "READINESS_PROBE_TIMEOUT_SECONDS": (0.001, 0),
    "LEEWAY_SECONDS": (0, -1),
    "MAX_TOKEN_BYTES": (1, 0),
    "TOKEN_CACHE_SIZE": (0, -1),
    "JWKS_REFRESH_INTERVAL_SECONDS": (0.001, 0),
    "JWKS_MIN_REFRESH_INTERVAL_SECONDS": (0.001, 0),
    "JWKS_FETCH_TIMEOUT_SECONDS": (0.001, 0),
    "MAX_HEADER_BYTES": (4096, 4095),
    "MAX_HEADER_FIELDS": (32, 31),
    "HEADER_TIMEOUT_SECONDS": (0.001, 0),
    "KEEP_ALIVE_SECONDS": (0.001, 0),
    "MAX_BODY_BYTES": (1, 0),
    "MAX_JSON_DEPTH": (1, 0),
    "MAX_JSON_STRING_CHARS": (1, 0),
    "BODY_READ_TIMEOUT_SECONDS": (0.001, 0),
    "MAX_PENDING_WRITES": (1, 0),
    "WRITE_TIMEOUT_SECONDS": (0.001, 0),
    "TIMEOUT_SECONDS": (0.001, 0),
    "CONNECT_TIMEOUT_SECONDS": (0.001, 0),
    "SENTINEL_CHECK_SECONDS": (0.001, 0),
}


def _number_settings() -> list[str]:
    """Every variable of the reference that takes a number (a count, seconds, a ratio)."""
    return [d.env_var for d in setting_docs() if re.search(r"\b(int|float)\b", d.type_name)]


def _rule(variable: str) -> str:
    """The row of `variable` in `LOWEST_TAKEN`: its group's and name's, else its name's."""
    qualified = variable.removeprefix("SIGNING_GATEWAY_")
    return qualified if qualified in LOWEST_TAKEN else qualified.rsplit("__", 1)[-1]


def _lowest(variable: str) -> tuple[float, float]:
    return LOWEST_TAKEN[_rule(variable)]


@pytest.fixture
def signers_given(clean_environment: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """`clean_environment` with both signers' URLs, so that their other variables may be set."""
    clean_environment.setenv("SIGNING_GATEWAY_EU_SIGNER__URL", DEV_EU_SIGNER_URL)
    clean_environment.setenv("SIGNING_GATEWAY_DOMESTIC_SIGNER__URL", DEV_DOMESTIC_SIGNER_URL)
    return clean_environment


def test_every_number_setting_refuses_a_value_below_its_lowest(
    signers_given: pytest.MonkeyPatch,
) -> None:
    """Pin the lower bound of each number setting, each named in the one report.

    A bound that was dropped or loosened (a pool, timeout or count of 0 taken, a negative wait)
    went unnoticed: the table gives the type alone, and few bounds had a test of their own.
    Every number setting has a bound here, so a new one must be given its own.
    """
    variables = _number_settings()
    assert {_rule(v) for v in variables} == set(LOWEST_TAKEN)
    for name in variables:
        signers_given.setenv(name, str(_lowest(name)[1]))
    settings, problems = read_settings(FLAG_VARIABLES)
    assert settings is None
    reported = [line.split(": ", 1)[0] for line in problems]
    assert sorted(set(variables) - set(reported)) == []  # each one taken below its bound
    assert sorted(reported) == sorted(variables)


def test_every_number_setting_takes_its_lowest_value(signers_given: pytest.MonkeyPatch) -> None:
    """Each at its lowest, alone, is read as given (a wait of 0, a pool one above the bulkhead)."""
    for name in _number_settings():
        taken = _lowest(name)[0]
        given = {name: str(taken)}
        if name.endswith("_SIGNER__MAX_CONNECTIONS"):  # one above the bulkhead: the pool's rule
            given[name.replace("MAX_CONNECTIONS", "RESILIENCE__MAX_IN_FLIGHT")] = "1"
        for variable, value in given.items():
            signers_given.setenv(variable, value)
        settings, problems = read_settings(FLAG_VARIABLES)
        assert (settings is not None, problems) == (True, []), name
        path = name.removeprefix("SIGNING_GATEWAY_").lower().split("__")
        assert functools.reduce(getattr, path, settings) == taken, name
        for variable in given:
            signers_given.delenv(variable)


def test_an_unknown_variable_in_lower_case_is_named() -> None:
    """Pin that the check reads names in any case, as the settings do.

    pydantic-settings reads `signing_gateway_audit__fail_closed` as the setting, so a
    misspelling in lower case is as silent as one in upper case unless it is named.
    """
    assert unknown_variables({"signing_gateway_audit__fail_close": "false"}, ()) == [
        (
            "signing_gateway_audit__fail_close: unknown setting; "
            "did you mean SIGNING_GATEWAY_AUDIT__FAIL_CLOSED?"
        )
    ]


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("SIGNING_GATEWAY_AUTH__SCOPE_CLAIM", "", "String should have at least 1 character"),
        ("SIGNING_GATEWAY_AUTH__SCOPE_CLAIM", "scope ", "must not begin or end with white space"),
        ("SIGNING_GATEWAY_AUTH__AUDIENCE", " gateway", "must not begin or end with white space"),
        (
            "SIGNING_GATEWAY_AUTH__ISSUER",
            "https://idp/\n",
            "must not begin or end with white space",
        ),
        ("SIGNING_GATEWAY_EU_SIGNER__HEALTH_PATH", "", "String should have at least 1 character"),
        (
            "SIGNING_GATEWAY_EU_SIGNER__HEALTH_PATH",
            " /healthz",
            "must not begin or end with white space",
        ),
    ],
)
def test_a_name_left_empty_or_with_white_space_around_it_is_refused(
    clean_environment: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    """Pin that a name compared as given is refused empty or with white space around it.

    Before, each was taken: an empty scope claim or a token audience with a space a template
    left before it refused every caller (403, 401), an empty or padded health path failed
    every readiness probe, all while the gateway started as if nothing were wrong.
    """
    clean_environment.setenv("SIGNING_GATEWAY_EU_SIGNER__URL", DEV_EU_SIGNER_URL)
    clean_environment.setenv(variable, value)
    settings, problems = read_settings(FLAG_VARIABLES)
    assert settings is None
    assert problems == [f"{variable}: {problem}"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('["at+jwt", ""]', "item 2: must not be empty; leave auth.token_types empty for no check"),
        (
            '["at +jwt"]',
            (
                "item 1: must be a media type such as at+jwt: ASCII without white space, "
                "at most one '/' and a name on each side of it"
            ),
        ),
    ],
)
def test_a_token_type_left_empty_or_with_white_space_is_refused_at_start(
    clean_environment: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    """Pin that `auth.token_types` refuses an empty type or one with a space, named by place.

    Either would refuse every caller (401 `wrong-type`) once the gateway had started.
    """
    clean_environment.setenv("SIGNING_GATEWAY_EU_SIGNER__URL", DEV_EU_SIGNER_URL)
    clean_environment.setenv("SIGNING_GATEWAY_AUTH__TOKEN_TYPES", value)
    settings, problems = read_settings(FLAG_VARIABLES)
    assert settings is None
    assert problems == [f"SIGNING_GATEWAY_AUTH__TOKEN_TYPES: {problem}"]


def test_token_types_are_read_as_a_json_list(clean_environment: pytest.MonkeyPatch) -> None:
    """Pin the variable's form: `SIGNING_GATEWAY_AUTH__TOKEN_TYPES='["at+jwt"]'`."""
    clean_environment.setenv("SIGNING_GATEWAY_EU_SIGNER__URL", DEV_EU_SIGNER_URL)
    clean_environment.setenv("SIGNING_GATEWAY_AUTH__TOKEN_TYPES", '["at+jwt", "JWT"]')
    settings, problems = read_settings(FLAG_VARIABLES)
    assert problems == []
    assert settings is not None
    assert settings.auth.token_types == ["at+jwt", "JWT"]


def test_a_key_no_setting_has_in_a_group_given_as_json_is_named(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    """Pin that a key of a group given whole as JSON must be a setting of that group.

    Before, the key was dropped without a word: `{"fail_close": false}` left the audit failing
    closed, `{"drain_timeout": 5}` the drain at 20 s. The line names the variable and the key
    (its path in the JSON), with the closest setting; a variable of its own is named once.
    """
    clean_environment.setenv("SIGNING_GATEWAY_AUDIT", '{"fail_close": false}')
    clean_environment.setenv("SIGNING_GATEWAY_SHUTDOWN", '{"DRAIN_TIMEOUT": 5, "zzz": 1}')
    clean_environment.setenv(
        "SIGNING_GATEWAY_EU_SIGNER",
        f'{{"url": "{DEV_EU_SIGNER_URL}", "resilience": {{"max_inflight": 8}}}}',
    )
    clean_environment.setenv("SIGNING_GATEWAY_DOMESTIC_SIGNER__RESILIENCE", '{"max_pendin": 8}')
    clean_environment.setenv("SIGNING_GATEWAY_DOMESTIC_SIGNER__URL", DEV_DOMESTIC_SIGNER_URL)
    clean_environment.setenv("SIGNING_GATEWAY_LIMITS" + "__MAX_BODY", "5")
    _, problems = read_settings(FLAG_VARIABLES)
    assert sorted(problems) == [
        "SIGNING_GATEWAY_AUDIT: fail_close: unknown setting; did you mean fail_closed?",
        (
            "SIGNING_GATEWAY_DOMESTIC_SIGNER__RESILIENCE: max_pendin: unknown setting; "
            "did you mean max_pending?"
        ),
        (
            "SIGNING_GATEWAY_EU_SIGNER: resilience.max_inflight: unknown setting; "
            "did you mean resilience.max_in_flight?"
        ),
        (
            "SIGNING_GATEWAY_LIMITS" + "__MAX_BODY: unknown setting; did you mean "
            "SIGNING_GATEWAY_LIMITS__MAX_BODY_BYTES?"
        ),
        (
            "SIGNING_GATEWAY_SHUTDOWN: DRAIN_TIMEOUT: unknown setting; "
            "did you mean drain_timeout_seconds?"
        ),
        "SIGNING_GATEWAY_SHUTDOWN: zzz: unknown setting (docs/operations.md lists them)",
    ]


def test_a_group_given_as_json_with_its_own_keys_is_taken(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    """Keys that are settings, in any case, are read as before."""
    clean_environment.setenv("SIGNING_GATEWAY_SHUTDOWN", '{"DRAIN_TIMEOUT_SECONDS": 5}')
    clean_environment.setenv("SIGNING_GATEWAY_AUDIT", '{"fail_closed": false}')
    settings, problems = read_settings(FLAG_VARIABLES)
    assert problems == []
    assert settings is not None
    assert settings.shutdown.drain_timeout_seconds == 5
    assert settings.audit.fail_closed is False


@pytest.mark.parametrize(
    ("name", "value", "link"),
    [
        ("SIGNING_GATEWAY_PORT", "tcp://10.96.0.5:8080", True),
        ("SIGNING_GATEWAY_PROBE_PORT", "TCP://10.96.0.6:8081", True),
        ("SIGNING_GATEWAY_SERVICE_HOST", "10.96.0.5", True),
        # A name Kubernetes never makes, however it begins: a misspelled setting to report.
        ("SIGNING_GATEWAY_SERVICE_HOST" + "NAME", "10.96.0.5", False),
        # In a group: named as a Service's link variable would be, but a misspelled setting.
        ("SIGNING_GATEWAY_AUDIT" + "__SERVICE_HOST", "10.96.0.5", False),
        ("SIGNING_GATEWAY_AUDIT" + "__PORT_8080_TCP", "tcp://10.96.0.5:8080", False),
        ("SIGNING_GATEWAY_LOG_LEVEL", "tcp://10.96.0.5:8080", False),
        ("SIGNING_GATEWAY_PORT", "8080", False),
        # More than Kubernetes writes: a port to check (and refuse), not a link to pass over.
        ("SIGNING_GATEWAY_PORT", "tcp://10.96.0.5:8080/x", False),
    ],
)
def test_only_kubernetes_own_service_link_variables_are_passed_over(
    name: str, value: str, link: bool
) -> None:
    """A `_PORT` holding an address, or a name Kubernetes makes, is a service link.

    A name with a group's `__` never is one: a misspelled setting must still be reported.
    """
    assert is_service_link(name, value) is link


def test_a_bad_item_of_a_list_is_named_by_its_variable_and_place(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    """The line names the variable to fix and the item, never a variable that does not exist.

    Before, the item's index was appended as a group's name would be (the algorithms'
    variable with `__1` after it), which no setting has and the unknown-variable check refuses.
    """
    clean_environment.setenv("SIGNING_GATEWAY_AUTH__ALGORITHMS", '["ES256", "HS256"]')
    clean_environment.setenv("SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS", '["/keys/k.pem", 5]')
    settings, problems = read_settings(FLAG_VARIABLES)
    assert settings is None
    assert problems == [
        ("SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS: item 2: Input is not a file path"),
        (
            "SIGNING_GATEWAY_AUTH__ALGORITHMS: item 2: Input should be 'ES256', 'ES384', "
            "'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512' or 'EdDSA'"
        ),
    ]
