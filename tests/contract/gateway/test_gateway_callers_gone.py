"""A caller that leaves takes its request's work with it: signer call, slot, retries.

The gateway, served by uvicorn with its own HTTP protocol on a free port, in front of the
fake signers (real processes). A caller that closes its connection (or half-closes it) while
its signer call runs has that call cancelled at once: the signer slot it held is free for the
next caller, no retry is sent for it, and what it leaves behind on record (access log,
metrics, audit trail, issuance session) says that nobody was answered. Before, the call went
on for nobody until the signer answered or the attempt timed out, and was then retried.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from signing_gateway.api import examples
from signing_gateway.app import create_app
from signing_gateway.security.settings import AuditSettings
from signing_gateway.settings import ResilienceSettings, SignerSettings, TrustSettings
from tests.contract.gateway.conftest import set_control
from tests.support.audit import StalledDisk, records_by_request
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.gateway import make_settings, served_gateway
from tests.support.logs import logged_as_written
from tests.support.polling import until, until_answered
from tests.support.sessions import open_session

pytestmark = pytest.mark.timeout(60)

#: Signer slots per signer in these tests: a handful of callers fills them.
SLOTS = 4
#: How soon after its caller leaves a call must have let go of its slot.
PROMPTLY = 0.25


@dataclass
class Served:
    """The served gateway: its port, a client, its audit file, and the fakes behind it."""

    port: int
    client: httpx.AsyncClient
    audit_file: Path
    app: FastAPI

    async def metric(self, pattern: str) -> float:
        """The value of the one /metrics sample matching `pattern` (0 when there is none)."""
        text = (await self.client.get("/metrics")).text
        found = re.search(rf"^{pattern} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    async def signer_in_flight(self, signer: str = "eu") -> float:
        """`gateway_signer_in_flight` of `signer`."""
        return await self.metric(rf'gateway_signer_in_flight\{{signer="{signer}"\}}')

    async def waiting_for_domestic_slot(self) -> int:
        """Calls waiting for a domestic signer slot (`/readyz`)."""
        readiness = (await self.client.get("/readyz")).json()
        waiting: int = readiness["signers"]["domestic-signer"]["pending"]
        return waiting

    async def ended(self) -> None:
        """Wait until no request is in progress (but the scrape) and every record is written."""
        await until_answered(lambda: self.metric("gateway_requests_in_progress"), lambda n: n == 1)
        await until_answered(self.audit_pending, lambda pending: pending == 0, limit=15)

    async def audit_pending(self) -> int:
        """Audit records queued and not yet written (`/readyz`)."""
        pending: int = (await self.client.get("/readyz")).json()["audit"]["pendingWrites"]
        return pending

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """Each attempt's audit records in file order, by request id."""
        return records_by_request(self.audit_file)


def totals(signer: FakeSignerProcess, endpoint: str) -> dict[str, int]:
    """What the fake signer counted for `endpoint`, by outcome."""
    counted: dict[str, int] = signer.stats()["totals"].get(endpoint, {})
    return counted


@asynccontextmanager
async def served(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess],
    tmp_path: Path,
    **resilience: Any,
) -> AsyncIterator[Served]:
    """The gateway with an audit file, `SLOTS` slots per signer, in front of the fakes."""
    eu, domestic = fakes
    policy = ResilienceSettings(**{"max_in_flight": SLOTS, **resilience})
    settings = make_settings(
        audit=AuditSettings(file=tmp_path / "audit.jsonl"),
        eu_signer=SignerSettings(url=eu.base_url, resilience=policy),
        domestic_signer=SignerSettings(url=domestic.base_url, resilience=policy),
        trust=TrustSettings(fetch_from_signers=True),
    )
    for signer in fakes:
        signer.reset_stats()
    app = create_app(settings)
    async with (
        served_gateway(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        yield Served(port, client, tmp_path / "audit.jsonl", app)


def request_bytes(path: str, body: object, request_id: str) -> bytes:
    """One keep-alive JSON POST, as a caller sends it."""
    data = orjson.dumps(body)
    return (
        b"POST %s HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"X-Request-ID: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (path.encode(), request_id.encode(), len(data), data)
    )


async def send_and_wait(
    port: int, path: str, body: object, request_id: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has sent its request and waits for the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes(path, body, request_id))
    await writer.drain()
    return reader, writer


async def until_signer_has(signer: FakeSignerProcess, count: int) -> None:
    """Wait until the fake signer is working on `count` requests."""
    await until(lambda: signer.stats()["inFlight"] == count, limit=10)


async def timed(probe: Callable[[], Any]) -> float:
    """Seconds until `probe()` (awaited) is true, polled at every loop turn, 5 s at most."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await probe():
        assert loop.time() - start < 5, "condition not met before the deadline"
        await asyncio.sleep(0)
    return loop.time() - start


async def test_callers_that_leave_free_their_signer_slots_at_once(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path
) -> None:
    """Every slot held by a caller that left is free at once; a patient caller then is served.

    Their calls are cancelled at the signer, and each request is counted and logged once,
    `disconnected`, without an error logged. Before, each call held its slot until the signer
    answered (3 s), and the patient caller was shed 503 `signer-unavailable`.
    """
    eu, _ = fakes
    disconnected = r'gateway_responses_sent_total\{route="/v1/dcc",status_class="disconnected"\}'
    async with served(fakes, tmp_path, max_pending=0) as gateway:
        set_control(eu, latencyMs=3000)
        with logged_as_written() as logged:
            leavers = [
                await send_and_wait(gateway.port, "/v1/dcc", examples.EU_VACCINATION, f"gone-{i}")
                for i in range(SLOTS)
            ]
            await until_signer_has(eu, SLOTS)
            assert await gateway.signer_in_flight() == SLOTS
            for _, writer in leavers:
                writer.close()

            async def freed() -> bool:
                return await gateway.signer_in_flight() == 0

            freed_in = await timed(freed)
            set_control(eu, latencyMs=0)
            patient = await gateway.client.post("/v1/dcc", json=examples.EU_VACCINATION)
            await gateway.ended()
            counted = await gateway.metric(disconnected)
            drain, gate = gateway.app.state.drain, gateway.app.state.cpu_gate
            left = (drain.in_flight, gate.busy, gate.waiting)
        lines = logged()
    assert left == (0, 0, 0)  # nothing held in the drain's count or the CPU gate
    assert freed_in < PROMPTLY, f"the slots were freed {freed_in:.2f} s after the callers left"
    assert patient.status_code == 200, patient.text
    await until(lambda: totals(eu, "get_credential").get("cancelled") == SLOTS)
    assert counted == SLOTS
    assert not [line for line in lines if line["level"] in {"error", "critical"}], lines
    access = [line for line in lines if line["logger"] == "signing_gateway.access"]
    gone = [line for line in access if line["request_id"].startswith("gone-")]
    assert sorted(line["request_id"] for line in gone) == [f"gone-{i}" for i in range(SLOTS)]
    assert {line["outcome"] for line in gone} == {"disconnected"}


def _sum(metrics_text: str, family: str) -> float:
    """The sum of the samples of `family` in a /metrics text."""
    pattern = rf"^{family}(?:\{{[^}}]*\}})? (\S+)$"
    return sum(float(v) for v in re.findall(pattern, metrics_text, re.MULTILINE))


async def test_a_pipelining_caller_that_leaves_is_a_caller_gone_without_an_error(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path
) -> None:
    """Two requests in one write, then the caller leaves: the first is cancelled, none is an error.

    The first is counted and logged `disconnected` once, and its record says `cancelled`; the
    one queued behind it never ran. Before, uvicorn logged "ASGI callable returned without
    starting response." at ERROR for the first, and wrote a 500 into the closed connection:
    it had marked only the queued request's cycle disconnected.
    """
    eu, _ = fakes
    disconnected = r'gateway_responses_sent_total\{route="/v1/dcc",status_class="disconnected"\}'
    async with served(fakes, tmp_path) as gateway:
        set_control(eu, latencyMs=3000)
        with logged_as_written() as logged:
            _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(
                request_bytes("/v1/dcc", examples.EU_VACCINATION, "first")
                + request_bytes("/v1/dcc", examples.EU_VACCINATION, "queued")
            )
            await writer.drain()
            await until_signer_has(eu, 1)
            writer.close()
            await gateway.ended()
            counted = await gateway.metric(disconnected)
            text = (await gateway.client.get("/metrics")).text
        lines = logged()
        records = gateway.records()
    assert not [line for line in lines if line["level"] in {"error", "critical"}], lines
    assert counted == 1
    # Every request received is answered or counted gone, but the scrape itself.
    assert _sum(text, "gateway_requests_received_total") == _sum(
        text, "gateway_responses_sent_total"
    ) + _sum(text, "gateway_requests_in_progress")
    assert _sum(text, "gateway_requests_in_progress") == 1
    access = [
        (line["request_id"], line["outcome"])
        for line in lines
        if line["logger"] == "signing_gateway.access" and line["request_id"] in {"first", "queued"}
    ]
    assert access == [("first", "disconnected")]
    [record] = records["first"]
    assert (record["outcome"], record["status"]) == ("cancelled", None)
    assert "queued" not in records
    await until(lambda: totals(eu, "get_credential").get("cancelled") == 1)


async def test_no_retry_is_sent_for_a_caller_that_left(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path
) -> None:
    """A call hung at the signer when its caller leaves is cancelled, not timed out and retried.

    Its audit record says `cancelled` with no status (nothing was issued, nobody answered).
    Before, the attempt timed out, the gateway retried it for nobody, the signer signed, and
    the record said `issued`, then `undelivered`.
    """
    eu, _ = fakes
    retries = r'gateway_signer_retries_total\{signer="eu",endpoint="get_credential",reason="\w+"\}'
    async with served(fakes, tmp_path, attempt_timeout_seconds=1.0) as gateway:
        set_control(eu, fault="hang", faultCount=1)
        _, writer = await send_and_wait(gateway.port, "/v1/dcc", examples.EU_VACCINATION, "gone")
        await until_signer_has(eu, 1)
        writer.close()
        await gateway.ended()
        retried = await gateway.metric(retries)
        records = gateway.records()
    assert retried == 0
    assert sum(totals(eu, "get_credential").values()) == 1  # the hung attempt, nothing after
    [record] = records["gone"]
    assert (record["outcome"], record["status"], record["problemType"]) == (
        "cancelled",
        None,
        None,
    )
    assert [item["uvci"] for item in record["items"]] == [
        examples.EU_VACCINATION["dcc"]["v"][0]["ci"]
    ]


async def test_a_caller_gone_while_its_issued_record_is_written_is_recorded_undelivered(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Signed and verified, its record on its way when the caller left: `issued`, `undelivered`.

    The cancellation does not turn a credential the signer has signed into a `cancelled`
    attempt: it was issued, and delivered to nobody, as when the caller leaves just after.
    """
    disk = StalledDisk()
    disk.install(monkeypatch)
    eu, _ = fakes
    async with served(fakes, tmp_path) as gateway:
        _, writer = await send_and_wait(gateway.port, "/v1/dcc", examples.EU_VACCINATION, "gone")
        await until(lambda: disk.files[0].started == 1, limit=10)
        writer.close()
        await until_answered(
            lambda: gateway.metric("gateway_requests_in_progress"), lambda n: n == 1
        )
        disk.release()
        await gateway.ended()
        records = gateway.records()
    assert totals(eu, "get_credential") == {"ok": 1}
    issued, undelivered = records["gone"]
    assert issued["outcome"] == "issued"
    assert undelivered == {**issued, "outcome": "undelivered", "status": None, "problemType": None}


async def test_an_issued_record_queued_when_its_caller_left_stands_in_the_file(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its `issued` record still queued behind another's write when the caller left: both stay.

    The file says `issued`, then `undelivered`, as the log does. Before, the `undelivered`
    record took the queued `issued` one's place: the file held `undelivered` alone.
    """
    disk = StalledDisk()
    disk.install(monkeypatch)
    async with served(fakes, tmp_path) as gateway:
        reader, writer = await send_and_wait(
            gateway.port, "/v1/dcc", examples.EU_VACCINATION, "stays"
        )
        await until(lambda: disk.files[0].started == 1, limit=10)  # its record holds the disk
        _, leaver = await send_and_wait(gateway.port, "/v1/dcc", examples.EU_VACCINATION, "gone")
        await until_answered(gateway.audit_pending, lambda pending: pending == 2)
        leaver.close()
        await until_answered(
            lambda: gateway.metric("gateway_requests_in_progress"), lambda n: n == 2
        )
        disk.release()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        await gateway.ended()
        records = gateway.records()
    assert status_line.startswith(b"HTTP/1.1 200")
    assert [record["outcome"] for record in records["stays"]] == ["issued"]
    issued, undelivered = records["gone"]
    assert issued["outcome"] == "issued"
    assert undelivered == {**issued, "outcome": "undelivered", "status": None, "problemType": None}


def _attributes() -> dict[str, str]:
    return dict(examples.DOMESTIC_ATTRIBUTES, validFrom=examples.this_hour())


def _issue_body(session: dict[str, str]) -> dict[str, Any]:
    return {**session, "credentialsAttributes": [_attributes()]}


async def test_an_issue_cancelled_before_its_call_was_sent_puts_the_session_back(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path
) -> None:
    """Its caller gone while it waited for a signer slot, the session is back at once.

    The same stoken then issues. Before, the session stayed taken until the wait for a slot
    ran out (or, with a slot, the call was sent for nobody and the session used up).
    """
    _, domestic = fakes
    async with served(fakes, tmp_path, max_wait_seconds=20.0) as gateway:
        session = await open_session(gateway.client)
        set_control(domestic, fault="hang", faultCount=-1)
        holders = [
            await send_and_wait(
                gateway.port,
                "/v1/domestic/static",
                {"credentialAttributes": _attributes()},
                f"h{i}",
            )
            for i in range(SLOTS)
        ]
        await until_signer_has(domestic, SLOTS)
        _, writer = await send_and_wait(
            gateway.port, "/v1/domestic/issue", _issue_body(session), "gone"
        )
        await until_answered(gateway.waiting_for_domestic_slot, lambda waiting: waiting == 1)
        writer.close()
        await until_answered(
            lambda: gateway.metric("gateway_requests_in_progress"), lambda n: n == SLOTS + 1
        )
        for _, holder in holders:
            holder.close()
        await until(lambda: domestic.stats()["inFlight"] == 0)
        set_control(domestic, fault=None)
        again = await gateway.client.post("/v1/domestic/issue", json=_issue_body(session))
        await gateway.ended()
        records = gateway.records()
    assert again.status_code == 200, again.text
    assert totals(domestic, "issue") == {"ok": 1}  # only the second one reached the signer
    [gone] = records["gone"]
    assert (gone["outcome"], gone["status"]) == ("cancelled", None)


async def test_an_issue_cancelled_at_the_signer_uses_the_session_up(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path
) -> None:
    """Its caller gone while `/issue` is at the signer, the call stops; the session is spent.

    The signer may have spent the nonce, as for a signer that fails once sent: the same stoken
    is refused 401 from then on. Before, the call hung on for its attempt timeout.
    """
    _, domestic = fakes
    async with served(fakes, tmp_path) as gateway:
        session = await open_session(gateway.client)
        set_control(domestic, fault="hang", faultCount=1)
        _, writer = await send_and_wait(
            gateway.port, "/v1/domestic/issue", _issue_body(session), "gone"
        )
        await until_signer_has(domestic, 1)
        writer.close()

        async def stopped() -> bool:
            return await gateway.signer_in_flight("domestic") == 0

        stopped_in = await timed(stopped)
        again = await gateway.client.post("/v1/domestic/issue", json=_issue_body(session))
        await gateway.ended()
    assert stopped_in < PROMPTLY, f"the call stopped {stopped_in:.2f} s after the caller left"
    assert again.status_code == 401, again.text
    assert again.json()["type"].endswith("/stoken-invalid")
    await until(lambda: domestic.stats()["inFlight"] == 0)


async def test_a_caller_that_half_closes_is_a_caller_gone(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path
) -> None:
    """A request followed by a half-close (`SHUT_WR`) gets no answer; its signer call stops.

    End of input is all the gateway sees of a caller that closed its socket, too: served on,
    every caller that leaves would be noticed only when its answer is written. So the
    connection closes (the caller reads end of input, no answer) and the request is cancelled.
    """
    eu, _ = fakes
    async with served(fakes, tmp_path) as gateway:
        set_control(eu, latencyMs=3000)
        reader, writer = await send_and_wait(
            gateway.port, "/v1/dcc", examples.EU_VACCINATION, "half-closed"
        )
        await until_signer_has(eu, 1)
        sock = writer.get_extra_info("socket")
        sock.shutdown(socket.SHUT_WR)
        answer = await asyncio.wait_for(reader.read(), timeout=PROMPTLY * 4)

        async def freed() -> bool:
            return await gateway.signer_in_flight() == 0

        freed_in = await timed(freed)
        writer.close()
        await gateway.ended()
        records = gateway.records()
    assert answer == b""
    assert freed_in < PROMPTLY
    [record] = records["half-closed"]
    assert (record["outcome"], record["status"]) == ("cancelled", None)
