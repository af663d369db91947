"""A DSC that ends while the fake runs: signing for its usage stops with a 500 (in-process)."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from typing import TYPE_CHECKING

import httpx
import orjson
import pytest

from fake_signer import eu, keys
from fake_signer.app import create_app
from fake_signer.errors import KeyExpiredError, WireInputError
from fake_signer.settings import FakeSignerSettings
from tests.contract.fake_signer.signer_wire import eu_body
from tests.support.fake_signer_app import serving_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def serving(
    material: keys.KeyMaterial, **settings: object
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on an in-process EU fake signer with `material` on a free port."""
    app = create_app(FakeSignerSettings(role="eu", **settings), keys=material)
    async with serving_app(app) as client:
        yield client


def made_ago(age: dt.timedelta) -> keys.KeyMaterial:
    """Keys generated `age` ago, so that each DSC ends DSC_VALIDITY after that."""
    return keys.generate_key_material("NL", dt.datetime.now(dt.UTC) - age)


def rfc3339(when: dt.datetime) -> str:
    """`when` as an RFC 3339 UTC instant."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_dsc_ended_while_running_is_a_500_not_the_callers_fault():
    """Pin that signing with an ended DSC is refused as the signer's 500, counted key_expired.

    Before, it was a 400 blaming the caller's expirationTime for being after the DSC's end.
    """
    material = made_ago(keys.DSC_VALIDITY + dt.timedelta(hours=1))
    end = material.eu[keys.KeyUsage.VACCINATION].certificate.not_valid_after_utc
    async with serving(material) as client:
        response = await client.post("/get_credential", json=eu_body())
        assert response.status_code == 500
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.text == (
            f"cannot sign for vaccination: dsc-vaccination.crt.pem ended at {rfc3339(end)}; "
            "start the fake again with fresh keys"
        )
        # Input the signer refuses anyway is its 500 too (the real server's only error
        # status), counted apart as a bad request.
        assert (await client.post("/get_credential", json={})).status_code == 500
        totals = (await client.get("/_stats")).json()["totals"]
    assert totals == {"get_credential": {"key_expired": 1, "bad_request": 1}}


async def test_a_csca_ended_while_running_stops_signing_too():
    """Pin that a DSC is no use once the CSCA above it has ended: the CSCA is named."""
    material = made_ago(dt.timedelta(hours=1))
    _, old_csca = keys.generate_csca("NL", dt.datetime.now(dt.UTC) - keys.CSCA_VALIDITY)
    material = keys.KeyMaterial(material.csca_key, old_csca, material.eu, material.domestic)
    async with serving(material) as client:
        response = await client.post("/get_credential", json=eu_body("test"))
    assert response.status_code == 500
    assert response.text.startswith("cannot sign for test: csca.crt.pem ended at ")


async def test_a_dsc_ending_during_the_latency_wait_signs_nothing():
    """Pin that a DSC that ends while a request waits out its latency signs nothing with it."""
    material = made_ago(keys.DSC_VALIDITY - dt.timedelta(seconds=2))
    end = material.eu[keys.KeyUsage.VACCINATION].certificate.not_valid_after_utc
    async with serving(material, latency_ms=3000, latency_distribution="fixed") as client:
        assert time.time() < end.timestamp()
        body = eu_body(expiration=rfc3339(end))
        response = await client.post("/get_credential", json=body)
        totals = (await client.get("/_stats")).json()["totals"]
    assert response.status_code == 500
    assert response.text.startswith("cannot sign for vaccination: dsc-vaccination.crt.pem ended")
    assert totals == {"get_credential": {"key_expired": 1}}


def test_expiration_at_the_instant_of_the_request_is_not_in_the_future():
    """Pin that an `expirationTime` equal to now is refused: it is not in the future."""
    material = made_ago(dt.timedelta(hours=1))
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    body = orjson.dumps(eu_body(expiration=rfc3339(at)))
    with pytest.raises(WireInputError, match="not in the future"):
        eu.parse_request(body, now=at.timestamp(), keys=material)
    assert eu.parse_request(body, now=at.timestamp() - 0.5, keys=material).expires_at == int(
        at.timestamp()
    )


def test_a_dsc_still_signs_at_its_last_instant():
    """Pin that notAfter is the last instant a DSC signs (RFC 5280), refused only after it."""
    material = made_ago(dt.timedelta(hours=1))
    usage = keys.KeyUsage.TEST
    end = material.eu[usage].certificate.not_valid_after_utc.timestamp()
    eu.check_signing_key(material, usage, end)
    with pytest.raises(KeyExpiredError, match=r"dsc-test\.crt\.pem ended at"):
        eu.check_signing_key(material, usage, end + 1)


def test_expiration_after_the_csca_ends_is_refused_naming_it():
    """Pin that an `expirationTime` past the CSCA's end is refused, though the DSC lasts longer.

    A verifier checks the chain: a credential valid after its CSCA has ended would fail there.
    """
    material = made_ago(dt.timedelta(hours=1))
    made = dt.datetime.now(dt.UTC) - keys.CSCA_VALIDITY + dt.timedelta(days=30)
    _, csca = keys.generate_csca("NL", made)
    material = keys.KeyMaterial(material.csca_key, csca, material.eu, material.domestic)
    end = csca.not_valid_after_utc
    assert end < material.eu[keys.KeyUsage.TEST].certificate.not_valid_after_utc
    now = time.time()
    at_end = orjson.dumps(eu_body("test", expiration=rfc3339(end)))
    assert eu.parse_request(at_end, now=now, keys=material).expires_at == int(end.timestamp())
    later = orjson.dumps(eu_body("test", expiration=rfc3339(end + dt.timedelta(seconds=1))))
    with pytest.raises(WireInputError) as refused:
        eu.parse_request(later, now=now, keys=material)
    assert str(refused.value) == (
        "expirationTime is after the signing certificate's validity: "
        f"csca.crt.pem ends at {rfc3339(end)}"
    )
