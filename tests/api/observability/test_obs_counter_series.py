"""Event and traffic counters start at 0 with every label set they take: first events show.

A series born at its first increment has an `increase()` of 0 there: the documented page on
`increase(gateway_credential_verification_failures_total[10m]) > 0` missed the first
verification failure after every start, and the first 5xx of a route went unseen.
"""

from __future__ import annotations

from itertools import product

import httpx

from tests.api.bodies import domestic_attributes, eu_vaccination
from tests.api.observability.scrape import Scrape, scrape
from tests.api.signer_mocks import (
    Handler,
    MockedSigners,
    commitment,
    domestic_issuing,
    eu_signing,
)
from tests.support.gateway import SignerKeys

SIGNERS = ("eu", "domestic")
EU_FAILURES = (
    "decode-failed", "too-large", "bad-signature", "unsupported-alg", "unknown-kid",
    "alg-mismatch", "key-usage-mismatch", "certificate-not-valid", "iss-mismatch",
    "payload-mismatch", "exp-mismatch", "exp-beyond-certificate", "iat-out-of-range",
    "proof-identifier-mismatch",
)  # fmt: skip
DOMESTIC_FAILURES = (
    "decode-failed", "too-large", "bad-signature", "unknown-kid", "payload-mismatch",
    "proof-identifier-mismatch", "count-mismatch", "nonce-mismatch", "kid-mismatch",
)  # fmt: skip
#: As docs/security.md lists them.
AUTH_REASONS = (
    "missing", "malformed", "algorithm", "unknown-key", "bad-signature", "expired",
    "not-yet-valid", "wrong-audience", "wrong-issuer", "wrong-type", "missing-claim", "no-keys",
    "insufficient-scope", "invalid",
)  # fmt: skip
SIGNER_ENDPOINTS = (
    ("eu", "get_credential"),
    ("domestic", "issue_static"),
    ("domestic", "prepare_issue"),
    ("domestic", "issue"),
)
RETRY_REASONS = ("connect", "throttled", "timeout", "connection_lost")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> frozenset[tuple[str, str]]:
    return frozenset(zip(names, values, strict=True))


#: Each event counter and the label sets it starts with: exactly these, no other.
EVENT_SERIES: dict[str, set[frozenset[tuple[str, str]]]] = {
    "gateway_signer_shed_total": {_labels(("signer",), (s,)) for s in SIGNERS},
    "gateway_signer_retry_budget_exhausted_total": {_labels(("signer",), (s,)) for s in SIGNERS},
    "gateway_signer_breaker_transitions_total": {
        _labels(("signer", "to"), pair)
        for pair in product(SIGNERS, ("closed", "half-open", "open"))
    },
    "gateway_signer_retries_total": {
        _labels(("signer", "endpoint", "reason"), (*call, reason))
        for call, reason in product(SIGNER_ENDPOINTS, RETRY_REASONS)
    },
    "gateway_credential_verification_failures_total": {
        *(_labels(("signer", "reason"), ("eu", r)) for r in EU_FAILURES),
        *(_labels(("signer", "reason"), ("domestic", r)) for r in DOMESTIC_FAILURES),
    },
    "gateway_auth_failures_total": {_labels(("reason",), (r,)) for r in AUTH_REASONS},
    "gateway_connections_refused_total": {
        _labels(("reason",), (r,))
        for r in ("header-too-large", "header-timeout", "malformed", "idle")
    },
    "gateway_stoken_refusals_total": {
        _labels(("cause",), (c,)) for c in ("stoken-unknown", "stoken-not-owned")
    },
    "gateway_session_store_failures_total": {
        _labels(("operation",), (o,)) for o in ("open", "take", "put_back")
    },
}

#: The app's route templates, as docs/operations.md's metrics section names them, and
#: "unmatched".
ROUTES = (
    "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/v1/dcc",
    "/v1/domestic/static", "/v1/domestic/prepare-issue", "/v1/domestic/issue", "/v1/print",
    "/v1/credentials", "/v1/keys", "/healthz", "/readyz", "/metrics", "unmatched",
)  # fmt: skip
ENDINGS = ("2xx", "4xx", "5xx", "disconnected")
SIGNER_CALL_OUTCOMES = (
    "ok", "connect_error", "timeout", "connection_lost", "throttled", "rejected",
    "server_error", "malformed", "deadline", "cancelled", "error",
)  # fmt: skip

#: Each traffic counter started at 0 and the label sets it starts with: exactly these.
TRAFFIC_SERIES: dict[str, set[frozenset[tuple[str, str]]]] = {
    "gateway_responses_sent_total": {
        _labels(("route", "status_class"), pair) for pair in product(ROUTES, ENDINGS)
    },
    "gateway_signer_calls_total": {
        _labels(("signer", "endpoint", "outcome"), (*call, outcome))
        for call, outcome in product(SIGNER_ENDPOINTS, SIGNER_CALL_OUTCOMES)
    },
}

#: The labelled counter that gets a series at its first response of a status, not at start
#: (see observability/counter_series.py): `status` has no fixed set.
UNSTARTED_COUNTERS = {"gateway_responses_total"}


def _event_series(result: Scrape) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    return {name: result.series(name) for name in EVENT_SERIES}


async def test_a_fresh_gateway_has_every_event_series_at_zero(gateway: httpx.AsyncClient):
    """Before any event, each event counter shows every label set it can count, each at 0."""
    fresh = _event_series(await scrape(gateway))
    for name, expected in EVENT_SERIES.items():
        assert fresh[name] == dict.fromkeys(expected, 0.0), name


async def test_a_fresh_gateway_shows_no_signer_call_in_flight_for_each_signer(
    gateway: httpx.AsyncClient,
):
    """`gateway_signer_in_flight` is 0 for both signers before any call, not absent."""
    fresh = await scrape(gateway)
    assert fresh.series("gateway_signer_in_flight") == {
        _labels(("signer",), (signer,)): 0.0 for signer in SIGNERS
    }


async def test_a_fresh_gateway_has_every_traffic_series_at_zero(gateway: httpx.AsyncClient):
    """Every route with each ending, every signer endpoint with each outcome: 0, and no other."""
    fresh = await scrape(gateway)
    for name, expected in TRAFFIC_SERIES.items():
        assert fresh.series(name) == dict.fromkeys(expected, 0.0), name


async def test_first_traffic_after_start_moves_series_that_were_there_at_zero(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """A signer's 500 counts its first server_error and the route's first 5xx from 0 to 1."""
    fresh = await scrape(gateway)
    mocked.get_credential.mock(return_value=httpx.Response(500, text="down"))
    assert (await gateway.post("/v1/dcc", json=eu_vaccination())).status_code == 502
    after = await scrape(gateway)
    moved = {
        (name, labels, value)
        for name in TRAFFIC_SERIES
        for labels, value in after.series(name).items()
        if value != fresh.series(name).get(labels)
    }
    assert {
        (name, labels) for name, labels, _ in moved if labels not in fresh.series(name)
    } == set()
    assert moved == {
        (
            "gateway_responses_sent_total",
            _labels(("route", "status_class"), ("/v1/dcc", "5xx")),
            1.0,
        ),
        (
            "gateway_responses_sent_total",
            _labels(("route", "status_class"), ("/metrics", "2xx")),
            1.0,
        ),
        (
            "gateway_signer_calls_total",
            _labels(("signer", "endpoint", "outcome"), ("eu", "get_credential", "server_error")),
            1.0,
        ),
    }


async def test_every_labelled_counter_starts_with_series_or_is_named_here(
    gateway: httpx.AsyncClient,
):
    """A labelled counter added later must start its series too (or be named here)."""
    response = await gateway.get("/metrics")
    families = {
        line.split()[2]
        for line in response.text.splitlines()
        if line.startswith("# TYPE ") and line.endswith(" counter")
    }
    result = await scrape(gateway)
    unlabelled = {name for name in families if frozenset() in result.series(name)}
    assert families - unlabelled == {
        *EVENT_SERIES,
        *TRAFFIC_SERIES,
        *UNSTARTED_COUNTERS,
    }


async def test_first_events_after_start_move_series_that_were_there_at_zero(
    gateway: httpx.AsyncClient, mocked: MockedSigners, test_keys: SignerKeys
):
    """A retry on every signer endpoint and a withheld credential of each signer count 1.

    Each of them on a series the fresh gateway already showed at 0, and no event counter
    gains a series it did not start with.
    """
    fresh = _event_series(await scrape(gateway))
    busy_once = httpx.Response(503, text="busy", headers={"Retry-After": "0"})
    for route, then in (
        (mocked.get_credential, eu_signing(test_keys, tamper_signature=True)),
        (mocked.issue_static, mocked.issue_static.side_effect),
        (mocked.prepare_issue, mocked.prepare_issue.side_effect),
        (mocked.issue, _first_nonce_wrong(domestic_issuing(test_keys))),
    ):
        route.mock(side_effect=[busy_once, then])
    dcc = await gateway.post("/v1/dcc", json=eu_vaccination())
    static = await gateway.post(
        "/v1/domestic/static", json={"credentialAttributes": domestic_attributes()}
    )
    stoken = (await gateway.post("/v1/domestic/prepare-issue")).json()["stoken"]
    issue = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes()],
    }
    issued = await gateway.post("/v1/domestic/issue", json=issue)
    assert [dcc.status_code, static.status_code, issued.status_code] == [502, 200, 502]
    after = _event_series(await scrape(gateway))
    moved = {
        (name, labels)
        for name, series in after.items()
        for labels, value in series.items()
        if value != fresh[name].get(labels)
    }
    assert {(name, labels) for name, labels in moved if labels not in fresh[name]} == set()
    retried = {
        (
            "gateway_signer_retries_total",
            _labels(("signer", "endpoint", "reason"), (*c, "throttled")),
        )
        for c in SIGNER_ENDPOINTS
    }
    withheld = {
        ("gateway_credential_verification_failures_total", _labels(("signer", "reason"), pair))
        for pair in (("eu", "bad-signature"), ("domestic", "nonce-mismatch"))
    }
    assert moved == retried | withheld
    assert all(after[name][labels] == 1 for name, labels in moved)


def _first_nonce_wrong(issuing: Handler) -> Handler:
    """The domestic signer's /issue answer with its first item signed under another nonce."""

    def answer(request: httpx.Request) -> httpx.Response:
        items = issuing(request).json()
        items[0]["issueSignatureMessage"]["issuerNonce"] = "b3RoZXI="
        return httpx.Response(200, json=items)

    return answer
