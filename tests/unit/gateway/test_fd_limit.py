"""The file descriptor budget: the soft limit is lifted, a pool that cannot fit is named."""

from __future__ import annotations

import logging
import resource
from pathlib import Path

import pytest
import respx

from signing_gateway.runtime.fd_limit import SPARE, FdBudget, fd_budget, raise_soft_limit
from signing_gateway.settings import ResilienceSettings, SignerSettings
from tests.support.gateway import (
    DOMESTIC_SIGNER_URL,
    EU_SIGNER_URL,
    make_settings,
    make_test_keys,
    running_gateway,
)


@pytest.fixture
def lowered_soft_limit():
    """The soft limit one below the hard one for the test (restored after), if it can be."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no finite hard limit to raise the soft one to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard - 1, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_limit_is_raised_to_the_hard_one(lowered_soft_limit):
    """A shell's low soft limit does not cap the gateway below what the hard limit allows."""
    assert raise_soft_limit() == lowered_soft_limit
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == lowered_soft_limit


def test_pools_need_twice_their_size_plus_the_spare():
    """Each signer connection in use has a caller connection beside it."""
    budget = FdBudget(limit=20_000, signer_connections=10_248)
    assert budget.needed == 2 * 10_248 + SPARE
    assert not budget.fits
    assert FdBudget(limit=20_000, signer_connections=9_000).fits
    assert budget.snapshot() == {
        "limit": 20_000,
        "signerConnections": 10_248,
        "needed": 2 * 10_248 + SPARE,
        "fits": False,
    }


def test_no_limit_fits_any_pool():
    """An unlimited soft limit (None) is never reported short."""
    budget = FdBudget(limit=None, signer_connections=1_000_000)
    assert budget.fits
    assert budget.snapshot()["limit"] is None


def test_a_pool_that_cannot_fit_is_a_warning_naming_the_figures(caplog):
    """The operator reads the limit, the need and what to change in one line."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if limit == resource.RLIM_INFINITY:
        pytest.skip("no finite limit to exceed")
    too_many = limit  # twice the limit is needed: cannot fit
    with caplog.at_level(logging.INFO, logger="signing_gateway.runtime.fd_limit"):
        budget = fd_budget(too_many)
        fd_budget(1)
    assert not budget.fits
    warning, info = caplog.records
    assert warning.levelno == logging.WARNING
    assert str(budget.needed) in warning.getMessage()
    assert "max_connections" in warning.getMessage()
    assert info.levelno == logging.INFO


async def test_readyz_shows_the_budget_of_both_signer_pools(tmp_path):
    """/readyz fileDescriptors counts both pools' max_connections."""
    pools = {
        "eu_signer": SignerSettings(
            url=EU_SIGNER_URL,
            allow_plain_http=True,
            max_connections=300,
            resilience=ResilienceSettings(max_in_flight=256),
        ),
        "domestic_signer": SignerSettings(
            url=DOMESTIC_SIGNER_URL, allow_plain_http=True, max_connections=100
        ),
    }
    settings = make_settings(make_test_keys(tmp_path), **pools)
    with respx.mock(using="httpx", assert_all_called=False) as mock:
        mock.route(host="gateway.test").pass_through()
        mock.get(f"{EU_SIGNER_URL}/healthz").respond(200, json={"status": "ok"})
        mock.get(f"{DOMESTIC_SIGNER_URL}/healthz").respond(200, json={"status": "ok"})
        async with running_gateway(settings) as client:
            details = (await client.get("/readyz")).json()["fileDescriptors"]
    assert details["signerConnections"] == 400
    assert details["needed"] == 2 * 400 + SPARE
    assert details["limit"] == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert details["fits"] is (details["limit"] >= details["needed"])


def test_an_infinite_soft_limit_is_no_limit(monkeypatch):
    """An unlimited soft limit is reported as none, and left as it is."""
    infinite = resource.RLIM_INFINITY
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (infinite, infinite))
    monkeypatch.setattr(resource, "setrlimit", _never_called)
    assert raise_soft_limit() is None


def test_an_unlimited_hard_limit_leaves_the_soft_one_as_it_is(monkeypatch):
    """The kernel refuses an unlimited soft limit for descriptors: it is not asked for one."""
    infinite = resource.RLIM_INFINITY
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, infinite))
    monkeypatch.setattr(resource, "setrlimit", _never_called)
    assert raise_soft_limit() == 1024


def _never_called(*_args):  # pragma: no cover - called only when the rule breaks
    raise AssertionError("the limit must be left alone")


def test_a_limit_of_exactly_what_the_pools_need_fits():
    """The bound is inclusive: twice the pools plus the spare is enough."""
    assert FdBudget(limit=2 * 100 + SPARE, signer_connections=100).fits
    assert not FdBudget(limit=2 * 100 + SPARE - 1, signer_connections=100).fits


def test_the_operations_guide_gives_the_spare():
    """docs/operations.md: twice the pools' size "plus ~256"."""
    guide = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
    assert f"plus ~{SPARE}." in " ".join(guide.read_text("utf-8").split())
