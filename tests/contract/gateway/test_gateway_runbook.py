"""What the alerts and docs/operations.md's runbook read is what a served gateway exposes and logs.

The on-call operator is paged by the rules of docs/alerts/signing-gateway.rules.yml and then
follows "When an alert fires". A metric or label renamed in the code, or a label value spelt
otherwise, leaves an alert reading nothing, and nothing fails. So this test reads the rules and
the runbook, serves the app over TCP (uvicorn with the gateway's own HTTP protocol, as `serve`
runs it) in front of two real fake signers, drives it through what each alert is about (a
signer fault, a rejected request, a credential that does not verify, a call cancelled beside a
failing one, a breaker opening and closing, a full bulkhead, the CPU queue timing out and
overflowing, a refused caller, a refused request head, a caller gone, an audit file that takes
nothing, a held event loop; on a second gateway in the idemix scheme, an app's proofs of U
refused; on a third, whose Redis session store does not answer, a session that cannot be
stored), and checks every series, label and value they name
against what /metrics then shows, every /readyz field against /readyz, and every log line
against the records the gateway wrote (or, for a condition not driven here, its source).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from signing_gateway.api import examples
from signing_gateway.app import create_app
from signing_gateway.issuance.store_settings import SessionStoreSettings
from signing_gateway.resilience.breaker import BreakerState
from signing_gateway.security.settings import (
    ALL_SCOPES,
    AuditSettings,
    AuthSettings,
    LimitsSettings,
)
from signing_gateway.security.tokens import LocalTokenIssuer
from signing_gateway.settings import (
    IdemixSettings,
    LoopLagSettings,
    ResilienceSettings,
    SignerSettings,
    TrustSettings,
)
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes
from tests.contract.gateway.conftest import DEFAULT_CONTROL, set_control
from tests.support.alert_rules import ROOT, alert_rules, guide_section, runbook_bullets
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.gateway import make_settings
from tests.support.gateway import served_gateway as served_app
from tests.support.idemix_issuer import TEST_KEY_FILE, issuer_nonce, make_holders
from tests.support.idemix_tampering import proved_for_another_nonce
from tests.support.logs import as_written
from tests.support.metric_series import SCRAPE_SERIES, TARGET_LABELS
from tests.support.polling import until, until_answered
from tests.support.promql import Selector, selectors_of

pytestmark = pytest.mark.timeout(60)

DEV_FULL = Path("/dev/full")
#: How the sections name an alert's series and a runbook query: a metric, its matchers.
#: A log line the runbook names: its level, then its message.
_LOG_LINE = re.compile(r"\b(INFO|WARNING|ERROR)\s+`([^`]+)`")
#: A field of /readyz the runbook names: the span after "`/readyz` ".
_READYZ_FIELD = re.compile(r"`/readyz` `([^`]+)`")
#: Runbook bullets whose label values it names, and the series and label they are values of.
LABEL_VALUES_OF = {
    "A signer failing": ("gateway_signer_calls_total", "outcome"),
    "Verification failures": ("gateway_credential_verification_failures_total", "reason"),
    "Authentication failures": ("gateway_auth_failures_total", "reason"),
    "Connections refused": ("gateway_connections_refused_total", "reason"),
}
AUDIENCE = "signing-gateway"
ISSUER = "https://idp.test/"
#: The EU breaker opens after this many failed calls in a row, and stays open this long.
BREAKER_FAILURES = 3
BREAKER_OPEN = 0.3
#: What a request head may hold.
MAX_HEADER_BYTES = LimitsSettings().max_header_bytes


def runbook_queries() -> list[str]:
    """The PromQL the runbook gives in code spans (a query, or a series named alone)."""
    runbook = guide_section("### When an alert fires", "## Logs")
    spans = re.findall(r"`([^`]*gateway_[^`]*)`", runbook)
    return [" ".join(span.split()) for span in spans]


class Scrape:
    """One /metrics answer: every sample, with its family's type."""

    def __init__(self, text: str) -> None:
        """Parse `text` as Prometheus does."""
        self.samples: list[tuple[str, dict[str, str], float, str]] = [
            (sample.name, sample.labels, sample.value, family.type)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def of(self, name: str) -> list[tuple[dict[str, str], float, str]]:
        """The samples named `name` (a histogram's `_bucket` ones by that name)."""
        return [(labels, value, kind) for n, labels, value, kind in self.samples if n == name]


class Records(logging.Handler):
    """Every record logged while installed on the root logger (at INFO)."""

    def __init__(self) -> None:
        """Nothing caught yet."""
        super().__init__(logging.INFO)
        self.caught: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep `record`."""
        self.caught.append(record)

    def written(self) -> list[dict[str, Any]]:
        """The records as the gateway's JSON log lines, parsed back."""
        return as_written(self.caught)


@pytest.fixture
def records() -> Iterator[Records]:
    """The log records of the test (the root logger at INFO meanwhile)."""
    handler = Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@dataclass
class Served:
    """The served gateway: its client, port, app state and token issuer."""

    client: httpx.AsyncClient
    port: int
    state: Any
    issuer: LocalTokenIssuer

    def bearer(self) -> dict[str, str]:
        """A header with a token holding every scope."""
        return {"Authorization": f"Bearer {self.issuer.mint(scopes=list(ALL_SCOPES))}"}

    async def dcc(self, patience: float | None = None) -> httpx.Response:
        """POST an EU vaccination certificate request with a valid token.

        `patience`: the client's timeout in seconds, shorter than the default 10.
        """
        return await self.client.post(
            "/v1/dcc",
            json=examples.EU_VACCINATION,
            headers=self.bearer(),
            timeout=patience or self.client.timeout,
        )

    async def static(self) -> httpx.Response:
        """POST a domestic static credential request with a valid token."""
        attributes = dict(examples.DOMESTIC_ATTRIBUTES, validFrom=_now())
        body = {"credentialAttributes": attributes}
        return await self.client.post("/v1/domestic/static", json=body, headers=self.bearer())

    async def scrape(self) -> Scrape:
        """GET /metrics."""
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        return Scrape(response.text)

    async def raw(self, data: bytes) -> bytes:
        """Send `data` on a connection of its own, close our side; what came back before EOF."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        await writer.wait_closed()
        return answer


@asynccontextmanager
async def served_gateway(
    eu: FakeSignerProcess, domestic: FakeSignerProcess, tmp_path: Path
) -> AsyncIterator[Served]:
    """The app under uvicorn on a free port, as `serve` runs it; stopped afterwards."""
    issuer = LocalTokenIssuer(issuer=ISSUER, audience=AUDIENCE)
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps(issuer.jwks()))
    quick = {"max_attempts": 1, "backoff_base_seconds": 0.01}
    settings = make_settings(
        auth=AuthSettings(mode="jwt", jwks_file=jwks, audience=AUDIENCE, issuer=ISSUER),
        # Every record fails (ENOSPC); failing open, the answers stay the signers'.
        audit=AuditSettings(file=DEV_FULL, fail_closed=False),
        eu_signer=SignerSettings(
            url=eu.base_url,
            resilience=ResilienceSettings(
                **quick,
                breaker_consecutive_failures=BREAKER_FAILURES,
                breaker_open_seconds=BREAKER_OPEN,
                breaker_trial_calls=1,
            ),
        ),
        domestic_signer=SignerSettings(
            url=domestic.base_url,
            resilience=ResilienceSettings(**quick, max_in_flight=1, max_pending=0),
        ),
        trust=TrustSettings(fetch_from_signers=True),
        loop_lag=LoopLagSettings(cpu_permits=1, cpu_queue_timeout_seconds=0.1, cpu_queue_max=1),
    )
    app = create_app(settings)
    async with (
        served_app(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        yield Served(client, port, app.state, issuer)


async def _cancel_a_sibling(
    gateway: Served, eu: FakeSignerProcess, domestic: FakeSignerProcess
) -> Scrape:
    """A /v1/print whose domestic part fails while the EU signer works: the EU call cancelled.

    Counted `cancelled`, which the signer-failing alert leaves out: no fault of the EU signer.
    """
    set_control(eu, latencyMs=2000)
    set_control(domestic, fault="status=500")
    body = dict(examples.PRINT, domestic=dict(examples.DOMESTIC_ATTRIBUTES, validFrom=_now()))
    failed = await gateway.client.post("/v1/print", json=body, headers=gateway.bearer())
    assert failed.status_code == 502, failed.text
    set_control(eu, latencyMs=0)
    scrape = await gateway.scrape()
    cancelled = {"signer": "eu", "endpoint": "get_credential", "outcome": "cancelled"}
    assert (
        sum(v for labels, v, _ in scrape.of("gateway_signer_calls_total") if labels == cancelled)
        == 1
    )
    return scrape


def _now() -> str:
    return str(int(time.time()))


async def _open_the_breaker(gateway: Served, eu: FakeSignerProcess) -> Scrape:
    """Fail the EU signer's calls until its breaker opens; the scrape while it is open."""
    set_control(eu, fault="status=500", faultCount=BREAKER_FAILURES)
    for _ in range(BREAKER_FAILURES):
        assert (await gateway.dcc()).status_code == 502
    refused = await gateway.dcc()
    assert refused.status_code == 503, refused.text
    assert refused.json()["type"].endswith("/signer-unavailable")
    scrape = await gateway.scrape()
    assert _answered(scrape, "/v1/dcc", "503") == 1  # the runbook's "503 on a /v1 route"
    return scrape


async def _shed_a_call(gateway: Served, domestic: FakeSignerProcess) -> Scrape:
    """Hold the domestic signer's one slot with a slow call; the next is shed.

    Returns the scrape taken while the slow call was in flight.
    """
    set_control(domestic, latencyMs=1000)
    slow = asyncio.create_task(gateway.static())
    in_flight = await until_answered(
        lambda: gateway.client.get("/readyz"),
        lambda r: r.json()["signers"]["domestic-signer"]["inFlight"] == 1,
    )
    assert in_flight.json()["signers"]["domestic-signer"]["pending"] == 0
    shed = await gateway.static()
    assert shed.status_code == 503, shed.text
    busy = await gateway.scrape()
    set_control(domestic, latencyMs=0)
    slow.cancel()
    await asyncio.gather(slow, return_exceptions=True)
    return busy


async def _refuse_at_the_cpu_gate(gateway: Served) -> None:
    """The one CPU permit held: a new request times out, one more overflows the queue of one.

    Both 503 overloaded, answered before routing: the runbook reads them as 503s on `unmatched`.
    """
    before = _answered(await gateway.scrape(), "unmatched", "503")
    gate = gateway.state.cpu_gate
    async with gate.request():
        parked = asyncio.create_task(gateway.dcc())
        await until(lambda: gate.admitting == 1)
        overflowed = await gateway.dcc()
        timed_out = await parked
    for refused in (overflowed, timed_out):
        assert refused.status_code == 503
        assert refused.json()["type"].endswith("/overloaded")
    assert _answered(await gateway.scrape(), "unmatched", "503") == before + 2


def _answered(scrape: Scrape, route: str, status: str) -> float:
    """gateway_responses_total of `route` and `status` (0 before the first)."""
    wanted = {"route": route, "status": status}
    return sum(v for labels, v, _ in scrape.of("gateway_responses_total") if labels == wanted)


async def _drive(
    gateway: Served, eu: FakeSignerProcess, domestic: FakeSignerProcess
) -> list[Scrape]:
    """Every condition an alert is about, once; the scrapes taken along the way."""
    assert (await gateway.client.get("/healthz")).status_code == 200  # the orchestrator's
    assert (await gateway.dcc()).status_code == 200
    assert (await gateway.client.post("/v1/dcc", json=examples.EU_VACCINATION)).status_code == 401
    set_control(eu, fault="status=500")
    assert (await gateway.dcc()).status_code == 502  # server_error, "signer call failed"
    set_control(eu, fault="status=400")
    assert (await gateway.dcc()).status_code == 502  # rejected, "signer rejected ..."
    set_control(eu, fault="bad-signature")
    unverified = await gateway.dcc()
    assert unverified.status_code == 502
    assert unverified.json()["type"].endswith("/credential-verification-failed")
    scrapes = [await _cancel_a_sibling(gateway, eu, domestic)]
    scrapes.append(await _open_the_breaker(gateway, eu))
    # The open period runs out (the gauge, read at each scrape, shows it), the trial call
    # succeeds: half-open, then closed.
    await until_answered(
        gateway.scrape, lambda s: _breaker(s, "eu") == BreakerState.HALF_OPEN.level
    )
    assert (await gateway.dcc()).status_code == 200
    scrapes.append(await _shed_a_call(gateway, domestic))
    await _refuse_at_the_cpu_gate(gateway)
    # A request head over the limit: 431 before the app sees it.
    head = b"GET /v1/keys HTTP/1.1\r\nHost: gateway\r\nX-Pad: " + b"p" * MAX_HEADER_BYTES
    assert (await gateway.raw(head + b"\r\n\r\n")).startswith(b"HTTP/1.1 431 ")
    # A caller that leaves while its body is still due.
    partial = b"POST /v1/dcc HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    await gateway.raw(partial + b"Content-Length: 100\r\n\r\n{")
    # The event loop held past the lag warning's threshold.
    time.sleep(0.25)  # noqa: ASYNC251 - holding the loop is the condition driven here
    scrapes.append(await gateway.scrape())
    return scrapes


def _breaker(scrape: Scrape, signer: str) -> float:
    [level] = [
        v
        for labels, v, _ in scrape.of("gateway_signer_breaker_state")
        if labels == {"signer": signer}
    ]
    return level


def _selected(selector: Selector, scrapes: list[Scrape]) -> list[tuple[dict[str, str], float, str]]:
    return [
        (labels, value, kind)
        for scrape in scrapes
        for name in (selector.metric, f"{selector.metric}_bucket")
        for labels, value, kind in scrape.of(name)
        if selector.matches(labels)
    ]


def _check_selector(expression: str, selector: Selector, scrapes: list[Scrape]) -> list[str]:
    """What is wrong with `selector` against the scrapes: an empty list when nothing is.

    Prometheus' own series of a target (`up`) are on no `/metrics`: test_obs_alert_rules.py
    holds their job matcher to the PodMonitor's job.
    """
    if selector.metric in SCRAPE_SERIES:
        return []
    everything = [sample for scrape in scrapes for sample in scrape.of(selector.metric)]
    if not everything:  # a histogram named alone: its buckets
        everything = [s for scrape in scrapes for s in scrape.of(f"{selector.metric}_bucket")]
    if not everything:
        return [f"{selector.metric} is not exposed (in {expression!r})"]
    label_names = {name for labels, _, _ in everything for name in labels}
    # `instance` is given by Prometheus as it scrapes, never shown on /metrics.
    problems = [
        f"{selector.metric} has no label {label!r}"
        for label in selector.labels_named - TARGET_LABELS
        if label not in label_names
    ]
    for label, op, value in selector.matchers:
        values = {labels.get(label) for labels, _, _ in everything}
        # A value given as is, or a regex listing values ("ok|cancelled"): each one is seen.
        named = [value] if op in {"=", "!="} else value.split("|")
        if all(name == re.escape(name) for name in named):
            problems.extend(
                f'{selector.metric} never has {label}="{name}" (only {values})'
                for name in named
                if name not in values
            )
    selected = _selected(selector, scrapes)
    if not selected:
        problems.append(f"no series of {selector.metric} matches {selector.matchers}")
    elif selected[0][2] in {"counter", "histogram"} and not any(v > 0 for _, v, _ in selected):
        problems.append(f"{selector.metric}{selector.matchers} stayed 0 through every condition")
    return problems


async def _refuse_proofs_of_u(eu: FakeSignerProcess, idemix_signer: FakeSignerProcess) -> Scrape:
    """A gateway in the idemix scheme refuses an app's proofs made for another session's nonce.

    The gateway `_drive` serves runs the simulation scheme, which checks no proofs of U; this
    one's scrape holds the refusal and the check that the commitment-proof alert divides.
    """
    settings = make_settings(
        eu_signer=SignerSettings(url=eu.base_url),
        domestic_signer=SignerSettings(url=idemix_signer.base_url),
        trust=TrustSettings(fetch_from_signers=True),
        domestic_scheme="idemix",
        idemix=IdemixSettings(keys={"VWS-TEST-0": TEST_KEY_FILE}, check_workers=1),
    )
    async with (
        served_app(create_app(settings)) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client,
    ):
        prepared = await client.post("/v1/domestic/prepare-issue")
        assert prepared.status_code == 200, prepared.text
        session = prepared.json()
        nonce = issuer_nonce(orjson.loads(base64.b64decode(session["prepareIssueMessage"])))
        commitment = proved_for_another_nonce(make_holders(1), nonce, nonce + 1)
        refused = await client.post(
            "/v1/domestic/issue",
            json={
                "stoken": session["stoken"],
                "issueCommitmentMessage": base64.b64encode(orjson.dumps(commitment)).decode(),
                "credentialsAttributes": [domestic_attributes(isPaperProof="0")],
            },
        )
        assert_problem(refused, 422, "commitment-proof-failed")
        return Scrape((await client.get("/metrics")).text)


async def _fail_the_session_store(eu: FakeSignerProcess, domestic: FakeSignerProcess) -> Scrape:
    """A gateway keeping its sessions in a Redis that refuses connections: 503 on prepare-issue.

    The gateway `_drive` serves keeps its sessions in memory, which never fails; this one's
    scrape holds the failed `open` the session-store alert reads, and its log the WARNING
    `session store failed`.
    """
    set_control(domestic, **DEFAULT_CONTROL)  # `_drive` left it failing
    with socket.socket() as nothing_listens:
        # Bound but not listening: a connection to its port is refused, and no other process
        # can take the port meanwhile.
        nothing_listens.bind(("127.0.0.1", 0))
        redis_url = f"redis://127.0.0.1:{nothing_listens.getsockname()[1]}/0"
        settings = make_settings(
            eu_signer=SignerSettings(url=eu.base_url),
            domestic_signer=SignerSettings(url=domestic.base_url),
            trust=TrustSettings(fetch_from_signers=True),
            session_store=SessionStoreSettings(kind="redis", redis_url=redis_url),
        )
        async with (
            served_app(create_app(settings)) as port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
        ):
            refused = await client.post("/v1/domestic/prepare-issue")
            assert_problem(refused, 503, "session-store-unavailable")
            assert refused.headers["Retry-After"] == "1"
            return Scrape((await client.get("/metrics")).text)


async def test_the_alerts_and_the_runbook_read_what_the_gateway_exposes(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess],
    idemix_signer: FakeSignerProcess,
    records: Records,
    tmp_path: Path,
):
    """Each alert's and runbook query's series, labels and values; /readyz fields; log lines."""
    eu, domestic = fakes
    rules = alert_rules()
    expressions = [rule.expr for rule in rules] + runbook_queries()
    assert len(rules) >= 18
    async with served_gateway(eu, domestic, tmp_path) as gateway:
        scrapes = await _drive(gateway, eu, domestic)
        readyz = (await gateway.client.get("/readyz")).json()
        await until(lambda: "event loop lag over threshold" in _events(records))
    refusals = await _refuse_proofs_of_u(eu, idemix_signer)
    store_failures = await _fail_the_session_store(eu, domestic)
    problems = [
        problem
        for expression in expressions
        for selector in selectors_of(expression)
        for problem in _check_selector(expression, selector, [*scrapes, refusals, store_failures])
    ]
    assert problems == []
    written = records.written()
    assert _breaker(scrapes[1], "eu") == BreakerState.OPEN.level  # the alert's "== 2"
    # The slow call and the scrape itself.
    assert scrapes[2].of("gateway_requests_in_progress")[0][1] >= 2
    assert _label_value_problems(scrapes[-1], written) == []
    assert _readyz_problems(readyz) == []
    assert _log_problems(written) == []
    assert _security_event_problems(written) == []
    assert _access_log_problems(written) == []
    # The cause the runbook reads off a failed audit write: /dev/full refuses with ENOSPC.
    [cause] = {r.get("errno") for r in written if r["event"] == "audit record not written"}
    assert cause == "ENOSPC"


def _events(records: Records) -> set[str]:
    return {record["event"] for record in records.written()}


def _label_value_problems(scrape: Scrape, written: list[dict[str, Any]]) -> list[str]:
    """Words in code spans of a bullet naming label values that are no value of its label.

    Other words such a bullet may name: the label itself, a field of a log record, a /readyz
    dependency (`domestic-signer`) and a problem type (after its status, "502 `...`").
    """
    fields = {key for record in written for key in record}
    bullets = runbook_bullets()
    problems = [f"no runbook bullet {title!r}" for title in LABEL_VALUES_OF if title not in bullets]
    for title, body in bullets.items():
        if title not in LABEL_VALUES_OF:
            continue
        metric, label = LABEL_VALUES_OF[title]
        values = {labels[label] for labels, _, _ in scrape.of(metric)}
        for match in re.finditer(r"`([a-z][a-z_-]*)`", body):
            word = match.group(1)
            after_status = re.search(r"\d{3}\s+$", body[: match.start()]) is not None
            other = word == label or word in fields or word.endswith("-signer") or after_status
            if word not in values and not other:
                problems.append(f"{title}: `{word}` is no {label} of {metric}")
    return problems


def _keys(value: object) -> set[str]:
    """Every key anywhere in a JSON document."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _readyz_problems(readyz: dict[str, Any]) -> list[str]:
    """The /readyz fields the runbook names that /readyz does not have."""
    text = guide_section("### When an alert fires", "## Logs")
    problems = []
    for path in _READYZ_FIELD.findall(text):
        node: Any = readyz
        for part in path.split("."):
            if part.startswith("<") and isinstance(node, dict):
                node = next(iter(node.values()))
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                problems.append(f"/readyz has no {path}")
                break
    # Fields named in passing after it, as (`pendingWrites`, `maxSeconds`): camelCase words
    # in a sentence that names /readyz.
    for sentence in re.split(r"[.;:]\s", text):
        if "`/readyz`" not in sentence:
            continue
        problems.extend(
            f"/readyz has no field {word}"
            for word in re.findall(r"`([a-z]+[A-Z][A-Za-z]*)`", sentence)
            if word not in _keys(readyz)
        )
    return problems


def _log_problems(written: list[dict[str, Any]]) -> list[str]:
    """Log lines the runbook names that were neither logged so nor are in the code."""
    text = guide_section("### When an alert fires", "## Logs")
    logged = {(r["level"], r["event"]) for r in written}
    source = "\n".join(
        path.read_text(encoding="utf-8") for path in (ROOT / "signing_gateway").rglob("*.py")
    )
    problems = []
    for level, message, fields in _log_lines(text):
        if (level.lower(), message) not in logged:
            if f'"{message}"' not in source:
                problems.append(f"{level} {message!r} is neither logged here nor in the code")
            continue
        keys = [set(r) for r in written if (r["level"], r["event"]) == (level.lower(), message)]
        if not any(fields <= have for have in keys):
            problems.append(f"{level} {message!r} has not all of {sorted(fields)}: {keys[0]}")
    return problems


def _log_lines(text: str) -> list[tuple[str, str, set[str]]]:
    """Each log line named: its level, message, and the fields named with it.

    The fields are the words in code spans after the message, up to the next log line named,
    the end of the sentence or of its clause (a semicolon), or a closing parenthesis.
    """
    matches = list(_LOG_LINE.finditer(text))
    lines = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        after = text[match.end() : end]
        clause = re.split(r"[.;]\s|\)", after, maxsplit=1)[0]
        message = " ".join(match.group(2).split())
        lines.append((match.group(1), message, set(re.findall(r"`([a-z_]+)`", clause))))
    return lines


#: Where the Logs section says security events are logged.
SECURITY_LOGGER = "signing_gateway.security"
#: A row of the Logs section's security events: name, level, message, then its fields.
_SECURITY_ROW = re.compile(r"^\| `([a-z-]+)` \| (INFO|WARNING|ERROR) \| `([^`]+)`[^|]*\|(.*)\|$")


def _security_event_problems(written: list[dict[str, Any]]) -> list[str]:
    """Rows of the security events table that the records (or, not logged here, the code) belie."""
    source = "\n".join(
        path.read_text(encoding="utf-8") for path in (ROOT / "signing_gateway").rglob("*.py")
    )
    problems = []
    for line in guide_section("## Logs", "### A process that seems stuck").splitlines():
        if not (row := _SECURITY_ROW.match(line)):
            continue
        name, level, message, field_column = row.groups()
        fields = set(re.findall(r"`([a-z_]+)`", field_column))
        logged = [r for r in written if r.get("security_event") == name]
        if not logged:
            if f'"{name}"' not in source or f'"{message}"' not in source:
                problems.append(f"{name}: neither logged here nor {message!r} in the code")
            continue
        if not any((r["level"], r["event"]) == (level.lower(), message) for r in logged):
            seen = {(r["level"], r["event"]) for r in logged}
            problems.append(f"{name} logged as {seen}, not {level} {message!r}")
        if not any(fields <= set(r) for r in logged):
            problems.append(f"{name} has not all of {sorted(fields)}")
        if {r["logger"] for r in logged} != {SECURITY_LOGGER}:
            problems.append(f"{name} is not logged on {SECURITY_LOGGER}")
    return problems


def _access_log_problems(written: list[dict[str, Any]]) -> list[str]:
    """Fields of the Logs section's access log record that the access log does not write."""
    section = guide_section("## Logs", "### A process that seems stuck")
    example = orjson.loads(section.split("```json", 1)[1].split("```", 1)[0])
    logged = [r for r in written if r.get("logger") == example["logger"]]
    if not logged:
        return ["no access log record"]
    missing = set(example) - set(logged[0])
    return [f"the access log record has no {sorted(missing)}"] if missing else []


async def test_a_caller_that_gives_up_while_its_signer_works_counts_disconnected(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], records: Records, tmp_path: Path
):
    """The "callers giving up" alert sees a client timeout shorter than the signer's answer.

    Such a caller hangs up while the gateway waits on the signer, not while it sends its
    body. uvicorn drops the answer written after that without a word; the request was
    counted under the status nobody received, and the alert on `disconnected` read 0. Its
    request is now cancelled as it leaves: logged with status 0 (no answer was made), and
    its issuance recorded `cancelled`, as the runbook says.
    """
    eu, domestic = fakes
    async with served_gateway(eu, domestic, tmp_path) as gateway:
        set_control(eu, latencyMs=1000)
        with pytest.raises(httpx.ReadTimeout):
            await gateway.dcc(patience=0.3)
        # Wait until the gateway has answered into the closed connection.
        scrape = await until_answered(
            gateway.scrape, lambda s: s.of("gateway_requests_in_progress")[0][1] == 1
        )
    ended = {
        labels["status_class"]: value
        for labels, value, _ in scrape.of("gateway_responses_sent_total")
        if labels["route"] == "/v1/dcc"
    }
    assert ended == {"2xx": 0, "4xx": 0, "5xx": 0, "disconnected": 1}
    by_status = [
        labels
        for labels, _, _ in scrape.of("gateway_responses_total")
        if labels["route"] == "/v1/dcc"
    ]
    assert by_status == []  # nobody received a status
    [logged] = [r for r in records.written() if r["event"] == "request" and r["route"] == "/v1/dcc"]
    assert (logged["outcome"], logged["status"]) == ("disconnected", 0)
    # What the runbook tells the operator: cancelled at the signer, nothing issued for it.
    audited = [r["audit"] for r in records.written() if r["event"] == "issuance attempt"]
    assert [(r["outcome"], r["status"], r["requestId"]) for r in audited] == [
        ("cancelled", None, logged["request_id"])
    ]
    bullet = runbook_bullets()["Callers giving up"]
    assert "recorded `cancelled` with no status" in bullet
    assert "`jq -c 'select(.outcome == \"undelivered\")'" in bullet
