"""Loading trust at start-up: from files, parsed once; from the signers, stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
from pathlib import Path

import pytest

from signing_gateway.settings import TrustSettings
from signing_gateway.signers.errors import SignerConnectError, SignerMalformedResponseError
from signing_gateway.trust_files import NO_TRUST, trust_file_problems, unreadable_file
from signing_gateway.trust_loading import TrustUnavailableError, load_trust
from signing_gateway.verification.trust import (
    DomesticKey,
    DomesticTrustStore,
    DscCertificate,
    EuTrustStore,
    KeySet,
)
from tests.support.credentials import make_domestic_signer, make_dsc

OPERATIONS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


class _Signer:
    """A signer client whose key fetch fails, at once or after `delay` seconds."""

    def __init__(self, name: str, delay: float) -> None:
        self.name, self.delay, self.calls = name, delay, 0

    async def fetch_keys(self) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay)  # a slow attempt, as a read timeout would be
        raise SignerConnectError("refused", signer=self.name, endpoint="keys")


async def test_a_failed_fetch_leaves_no_fetch_running():
    """When one signer gives up, start-up fails and the other signer's fetch is cancelled."""
    eu, domestic = _Signer("eu", 0.0), _Signer("domestic", 1.0)
    with pytest.raises(TrustUnavailableError):
        await load_trust(
            TrustSettings(fetch_from_signers=True),
            eu_client=eu,  # type: ignore[arg-type]
            domestic_client=domestic,  # type: ignore[arg-type]
            wait_for_signers=0.3,
        )
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    calls = domestic.calls
    await asyncio.sleep(1.2)
    assert domestic.calls == calls  # nothing asks the domestic signer any more


async def test_one_signer_giving_up_does_not_wait_for_the_others_attempt():
    """The start-up fails when the first signer gives up, not when the other's attempt ends."""
    started = asyncio.get_running_loop().time()
    with pytest.raises(TrustUnavailableError, match="the eu signer"):
        await load_trust(
            TrustSettings(fetch_from_signers=True),
            eu_client=_Signer("eu", 0.0),  # type: ignore[arg-type]
            domestic_client=_Signer("domestic", 5.0),  # type: ignore[arg-type]
            wait_for_signers=0.3,
        )
    assert asyncio.get_running_loop().time() - started < 2.0


class _Raising:
    """A signer client whose key fetch fails at once with `error`, which is no refusal."""

    def __init__(self, name: str, error: Exception) -> None:
        self.name, self.error = name, error

    async def fetch_keys(self) -> None:
        raise self.error


async def test_a_fetch_failing_otherwise_than_refused_stops_the_start_up_at_once():
    """Pin that a TimeoutError not of the wait propagates as it is, without the other's wait.

    Only the wait ending is "no answer yet"; the other signer's fetch is cancelled, not awaited.
    """
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError, match="the client's own") as raised:
        await load_trust(
            TrustSettings(fetch_from_signers=True),
            eu_client=_Raising("eu", TimeoutError("the client's own")),  # type: ignore[arg-type]
            domestic_client=_Signer("domestic", 3600.0),  # type: ignore[arg-type]
            wait_for_signers=3.0,
        )
    assert not isinstance(raised.value, TrustUnavailableError)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


@pytest.fixture
def trust_files(tmp_path: Path) -> TrustSettings:
    """Two DSC files (one holding two certificates) and two domestic key files."""
    eu = [tmp_path / "dsc-1.pem", tmp_path / "dsc-2.pem"]
    eu[0].write_bytes(make_dsc(["test"]).pem)
    eu[1].write_bytes(make_dsc(["vaccination"]).pem + make_dsc(["recovery"]).pem)
    domestic = [tmp_path / "domestic-1.pem", tmp_path / "domestic-2.pem"]
    for path in domestic:
        path.write_bytes(make_domestic_signer().public_pem)
    return TrustSettings(eu_certificates=eu, domestic_keys=domestic)


async def _load(settings: TrustSettings) -> tuple[EuTrustStore, DomesticTrustStore]:
    """The trust stores of `settings`' files (no signer is asked)."""
    return await load_trust(
        settings,
        eu_client=None,  # type: ignore[arg-type]
        domestic_client=None,  # type: ignore[arg-type]
    )


async def test_good_trust_files_are_parsed_once(
    trust_files: TrustSettings, monkeypatch: pytest.MonkeyPatch
):
    """Each certificate and key of usable trust files is parsed once at start-up, not twice."""
    parsed: list[str] = []
    certificate, key = DscCertificate.from_der, DomesticKey.from_pem

    def parse_certificate(_cls: type, der: bytes) -> DscCertificate:
        parsed.append("certificate")
        return certificate(der)

    def parse_key(_cls: type, data: bytes) -> DomesticKey:
        parsed.append("key")
        return key(data)

    monkeypatch.setattr(DscCertificate, "from_der", classmethod(parse_certificate))
    monkeypatch.setattr(DomesticKey, "from_pem", classmethod(parse_key))
    eu, domestic = await _load(trust_files)
    assert (len(eu), len(domestic)) == (3, 2)
    assert sorted(parsed) == ["certificate"] * 3 + ["key"] * 2


async def test_unusable_trust_files_are_each_named(trust_files: TrustSettings, tmp_path: Path):
    """A start-up with unusable trust files fails naming each by its place in its list."""
    (tmp_path / "garbage.pem").write_bytes(b"not a certificate")
    settings = TrustSettings(
        eu_certificates=[*trust_files.eu_certificates, tmp_path / "garbage.pem"],
        domestic_keys=[tmp_path / "missing.pem", *trust_files.domestic_keys, tmp_path],
    )
    with pytest.raises(TrustUnavailableError) as refused:
        await _load(settings)
    assert str(refused.value) == (
        "SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 3 of 3: not a usable X.509 certificate; "
        "SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS: file 1 of 4: no such file; "
        "SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS: file 4 of 4: is a directory, not a file"
    )


async def test_a_file_failing_to_read_is_named_with_the_systems_reason(
    trust_files: TrustSettings, monkeypatch: pytest.MonkeyPatch
):
    """Pin that a file that stats as readable but fails the read (EIO) is named, not raised."""
    failing = trust_files.eu_certificates[1]
    read_bytes = Path.read_bytes

    def read_or_fail(path: Path) -> bytes:
        if path == failing:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_or_fail)
    with pytest.raises(TrustUnavailableError) as refused:
        await _load(trust_files)
    assert str(refused.value) == (
        "SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 2 of 2: input/output error"
    )


class _Publishing:
    """A signer client whose key fetch fails `failures` times, then answers `keys`."""

    def __init__(self, name: str, keys: KeySet, failures: int = 0) -> None:
        self.name, self.keys, self.failures, self.calls = name, keys, failures, 0

    async def fetch_keys(self) -> KeySet:
        self.calls += 1
        if self.calls <= self.failures:
            raise SignerConnectError("refused", signer=self.name, endpoint="keys")
        return self.keys


def _key_set(dscs: int = 0, domestic_keys: int = 0) -> KeySet:
    """A `GET /keys` answer holding this many DSCs and domestic keys."""
    return KeySet(
        eu=EuTrustStore([DscCertificate.from_der(make_dsc(["test"]).der) for _ in range(dscs)]),
        domestic=DomesticTrustStore(
            [DomesticKey.from_pem(make_domestic_signer().public_pem) for _ in range(domestic_keys)]
        ),
    )


async def _fetch(eu: _Publishing, domestic: _Publishing, wait: float = 5.0):
    return await load_trust(
        TrustSettings(fetch_from_signers=True),
        eu_client=eu,  # type: ignore[arg-type]
        domestic_client=domestic,  # type: ignore[arg-type]
        wait_for_signers=wait,
    )


async def test_fetched_keys_come_each_from_its_own_signer():
    """EU certificates from the EU signer's answer, domestic keys from the domestic one's."""
    eu, domestic = await _fetch(
        _Publishing("eu", _key_set(dscs=2, domestic_keys=5)),
        _Publishing("domestic", _key_set(dscs=4, domestic_keys=1)),
    )
    assert (len(eu), len(domestic)) == (2, 1)


async def test_loaded_trust_is_logged_with_its_counts(caplog: pytest.LogCaptureFixture):
    """Pin that operators see at INFO how many certificates and keys the gateway trusts."""
    with caplog.at_level(logging.INFO, logger="signing_gateway.trust_loading"):
        await _fetch(
            _Publishing("eu", _key_set(dscs=2)), _Publishing("domestic", _key_set(domestic_keys=1))
        )
    [record] = [r for r in caplog.records if r.getMessage() == "trust loaded"]
    assert record.levelno == logging.INFO
    assert (record.eu_certificates, record.domestic_keys) == (2, 1)


async def test_a_signer_not_up_yet_is_asked_again_within_a_second():
    """Refused twice (a signer still starting), then answered: the keys load, a beat later."""
    eu = _Publishing("eu", _key_set(dscs=1), failures=2)
    started = asyncio.get_running_loop().time()
    stores = await _fetch(eu, _Publishing("domestic", _key_set(domestic_keys=1)))
    assert [len(store) for store in stores] == [1, 1]
    assert eu.calls == 3
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_a_signer_that_never_answers_is_named_with_the_wait():
    """Giving up after the wait says which signer, for how long, and the variable to look at."""
    with pytest.raises(TrustUnavailableError) as refused:
        await _fetch(
            _Publishing("eu", _key_set(dscs=1)),
            _Publishing("domestic", _key_set(), failures=1000),
            wait=0.3,
        )
    assert str(refused.value).startswith(
        "could not fetch keys from the domestic signer within 0.3 s "
        "(SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS): "
    )


async def test_a_signer_that_takes_the_request_and_never_answers_is_given_up_at_the_wait():
    """The wait bounds the attempt in flight, not only the pauses between refused ones."""
    silent = _Signer("domestic", 3600.0)  # took the request; an hour before it says anything
    started = asyncio.get_running_loop().time()
    # Bounded here too, so a gateway that waits on the attempt fails this test, not hangs it.
    with pytest.raises(TrustUnavailableError) as refused:
        async with asyncio.timeout(5):
            await _fetch(_Publishing("eu", _key_set(dscs=1)), silent, wait=0.3)  # type: ignore[arg-type]
    took = asyncio.get_running_loop().time() - started
    assert 0.3 <= took < 1.5
    assert str(refused.value) == (
        "could not fetch keys from the domestic signer within 0.3 s "
        "(SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS): no answer yet"
    )
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_signers_publishing_no_key_at_all_stop_the_start_up():
    """Nothing to verify with is refused; keys of one kind only are enough."""
    with pytest.raises(TrustUnavailableError) as refused:
        await _fetch(_Publishing("eu", _key_set()), _Publishing("domestic", _key_set()))
    assert str(refused.value) == (
        "the signers published no keys (SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS)"
    )
    eu, domestic = await _fetch(
        _Publishing("eu", _key_set(dscs=1)), _Publishing("domestic", _key_set())
    )
    assert (len(eu), len(domestic)) == (1, 0)


async def test_keys_that_cannot_be_read_stop_the_start_up_at_once_naming_the_signer():
    """A whole answer that is no key document fails at once; a refusal is still asked again.

    Asking again for the whole wait (30 s by default) only delayed the same failure: a signer
    that publishes a broken document publishes it again a quarter of a second later.
    """
    unreadable = SignerMalformedResponseError(
        "2xx body does not match the key material", signer="eu", endpoint="keys", status_code=200
    )
    eu = _Raising("eu", unreadable)
    domestic = _Publishing("domestic", _key_set(domestic_keys=1), failures=1000)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TrustUnavailableError) as refused:
        async with asyncio.timeout(10):
            await _fetch(eu, domestic, wait=3.0)  # type: ignore[arg-type]
    assert asyncio.get_running_loop().time() - started < 1.0, "asked again for the whole wait"
    assert str(refused.value) == (
        "the eu signer's keys cannot be read (SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS): "
        "eu keys: 2xx body does not match the key material"
    )
    assert refused.value.__cause__ is unreadable
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


def test_the_signers_get_the_documented_time_to_give_their_keys():
    """30 s, as docs/operations.md says of `_FETCH_FROM_SIGNERS`."""
    wait = inspect.signature(load_trust).parameters["wait_for_signers"].default
    assert wait == 30.0
    guide = " ".join(OPERATIONS.read_text("utf-8").split())
    assert "giving their keys to `_FETCH_FROM_SIGNERS` within 30 s" in guide


@pytest.fixture
def with_a_fifo(tmp_path: Path, trust_files: TrustSettings) -> TrustSettings:
    """`trust_files` with a named pipe as the third EU certificate file."""
    os.mkfifo(tmp_path / "pipe.pem")
    return TrustSettings(
        eu_certificates=[*trust_files.eu_certificates, tmp_path / "pipe.pem"],
        domestic_keys=trust_files.domestic_keys,
    )


def _release(pipe: Path) -> None:
    """Let a reader waiting on `pipe` for a writer go (none should be: ENXIO then)."""
    with contextlib.suppress(OSError):
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))


def test_a_fifo_is_named_as_not_a_regular_file(with_a_fifo: TrustSettings):
    """A named pipe would block a read for ever: the check names it without opening it."""
    assert trust_file_problems(with_a_fifo) == [
        "SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 3 of 3: not a regular file"
    ]


async def test_a_fifo_fails_the_start_up_without_being_opened(with_a_fifo: TrustSettings):
    """Loading never reads the pipe (it would wait for a writer): the start-up fails at once."""
    try:
        with pytest.raises(TrustUnavailableError, match="file 3 of 3: not a regular file"):
            async with asyncio.timeout(5):
                await _load(with_a_fifo)
    finally:
        await asyncio.to_thread(_release, with_a_fifo.eu_certificates[-1])


def test_a_path_through_a_file_and_an_unreadable_file_are_named(
    tmp_path: Path, trust_files: TrustSettings, monkeypatch: pytest.MonkeyPatch
):
    """The system's reason for a path that cannot be reached; a file this process cannot read."""
    [dsc, _] = trust_files.eu_certificates
    [key, _] = trust_files.domestic_keys
    settings = TrustSettings(eu_certificates=[dsc / "dsc.pem"], domestic_keys=[key])
    assert trust_file_problems(settings) == [
        "SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 1 of 1: not a directory"
    ]
    monkeypatch.setattr(os, "access", lambda path, _mode: Path(path) != key)
    assert unreadable_file(key) == "not readable by this process"
    assert unreadable_file(dsc) is None


_UNREADABLE_EXTENSIONS = (
    "SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 1 of 1: DSC extensions are not readable"
)


@pytest.fixture
def unreadable_extensions(tmp_path: Path) -> TrustSettings:
    """One DSC file whose EKU extension does not parse."""
    (tmp_path / "dsc.pem").write_bytes(make_dsc(None, eku_der=b"").pem)
    return TrustSettings(eu_certificates=[tmp_path / "dsc.pem"])


def test_a_certificate_whose_extensions_do_not_parse_is_named(
    unreadable_extensions: TrustSettings,
):
    """A DSC whose EKU extension does not parse is a problem line of the check, not a traceback."""
    assert trust_file_problems(unreadable_extensions) == [_UNREADABLE_EXTENSIONS]


async def test_a_certificate_whose_extensions_do_not_parse_fails_the_start_up_named(
    unreadable_extensions: TrustSettings,
):
    """Loading such a file fails the start-up with the same line."""
    with pytest.raises(TrustUnavailableError) as refused:
        await _load(unreadable_extensions)
    assert str(refused.value) == _UNREADABLE_EXTENSIONS


def test_the_check_wants_some_trust_but_not_every_kind(trust_files: TrustSettings):
    """Nothing configured is one line; EU or domestic files alone pass, as fetching does."""
    assert trust_file_problems(TrustSettings()) == [NO_TRUST]
    assert trust_file_problems(TrustSettings(eu_certificates=trust_files.eu_certificates)) == []
    assert trust_file_problems(TrustSettings(domestic_keys=trust_files.domestic_keys)) == []
    assert trust_file_problems(TrustSettings(fetch_from_signers=True)) == []
