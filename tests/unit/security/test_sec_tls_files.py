"""The TLS files a client loads at start-up, each named by its setting when it will not load."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from signing_gateway.issuance.redis_stokens import SessionStoreFilesError, open_redis_store
from signing_gateway.issuance.store_settings import SessionStoreSettings
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security.settings import AuthSettings
from signing_gateway.security.tls_files import tls_problems
from signing_gateway.settings import Settings
from signing_gateway.start_up_checks import tls_file_problems
from tests.support.credentials import make_dsc

PREFIX = "SIGNING_GATEWAY_EU_SIGNER__"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A CA bundle, a client certificate with its key, another key, an encrypted one, junk."""
    client, other = make_dsc(), make_dsc()
    contents = {
        "ca.pem": make_dsc().pem,
        "client.pem": client.pem,
        "client.key": client.key_pem(),
        "other.key": other.key_pem(),
        "encrypted.key": client.key_pem(password=b"secret"),
        "junk.txt": b"not PEM",
        "empty": b"\n",
    }
    for name, content in contents.items():
        (tmp_path / name).write_bytes(content)
    paths = {name: tmp_path / name for name in contents}
    paths["missing"] = tmp_path / "missing.pem"
    paths["directory"] = tmp_path
    return paths


def test_usable_tls_files_and_none_at_all_pass(files: dict[str, Path]) -> None:
    """Pin that a CA bundle and a client certificate with its own key are no problem."""
    assert tls_problems(PREFIX, None, (None, None)) == []
    assert tls_problems(PREFIX, files["ca.pem"], (files["client.pem"], files["client.key"])) == []


@pytest.mark.parametrize(
    ("ca", "cert", "key", "line"),
    [
        ("missing", None, None, "CA_BUNDLE: no such file"),
        ("directory", None, None, "CA_BUNDLE: is a directory, not a file"),
        ("junk.txt", None, None, "CA_BUNDLE: holds no PEM CA certificate"),
        (None, "missing", "client.key", "CLIENT_CERT: no such file"),
        (None, "junk.txt", "client.key", "CLIENT_CERT: holds no PEM certificate"),
        (None, "client.key", "client.key", "CLIENT_CERT: holds no PEM certificate"),
        (None, "client.pem", "junk.txt", "CLIENT_KEY: holds no PEM private key"),
        (None, "client.pem", "other.key", f"CLIENT_KEY: is not the key of {PREFIX}CLIENT_CERT"),
        (
            None,
            "client.pem",
            "encrypted.key",
            "CLIENT_KEY: is encrypted; give the key without a password",
        ),
    ],
)
def test_a_tls_file_that_will_not_load_is_named_by_its_setting(
    files: dict[str, Path], ca: str | None, cert: str | None, key: str | None, line: str
) -> None:
    """Pin the line for each way a CA bundle, a client certificate or its key fails to load.

    Before, none was checked: the start-up ended in the SSL module's traceback, exit 3.
    """
    given = (files[cert] if cert else None, files[key] if key else None)
    assert tls_problems(PREFIX, files[ca] if ca else None, given) == [PREFIX + line]


@pytest.mark.parametrize(("mode", "read"), [("jwt", True), ("disabled", False)])
def test_the_jwks_ca_bundle_is_checked_only_where_a_jwks_url_is_fetched(
    files: dict[str, Path], mode: str, read: bool
) -> None:
    """Pin that auth.mode=disabled fetches no JWKS, so its CA bundle is not the start-up's concern.

    A bundle left set for local use must not stop a gateway that never opens it.
    """
    auth = AuthSettings(
        mode=mode,  # type: ignore[arg-type]
        jwks_url="https://idp.test/jwks",
        jwks_ca_bundle=files["missing"],
        audience="signing-gateway",
        issuer="https://idp.test/",
    )
    problems = tls_file_problems(Settings(auth=auth))
    assert [line.split(": ", 1)[0] for line in problems] == (
        ["SIGNING_GATEWAY_AUTH__JWKS_CA_BUNDLE"] if read else []
    )


STORE = "SIGNING_GATEWAY_SESSION_STORE__"


def _store(**given: object) -> Settings:
    store = SessionStoreSettings(kind="redis", **given)  # type: ignore[arg-type]
    return Settings(auth=AuthSettings(mode="disabled"), session_store=store)


def test_a_redis_session_stores_tls_files_are_checked_by_their_settings(
    files: dict[str, Path],
) -> None:
    """Pin that the store's CA bundle and client key are named as the signers' are.

    Before, they were not checked: a bad file failed the first connection, not the start-up.
    """
    tls = {"redis_url": "rediss://redis.test:6380/0"}
    assert tls_file_problems(_store(**tls, ca_bundle=files["ca.pem"])) == []
    assert tls_file_problems(_store(**tls, ca_bundle=files["junk.txt"])) == [
        STORE + "CA_BUNDLE: holds no PEM CA certificate"
    ]
    pair = {"client_cert": files["client.pem"], "client_key": files["other.key"]}
    assert tls_file_problems(_store(**tls, **pair)) == [
        f"{STORE}CLIENT_KEY: is not the key of {STORE}CLIENT_CERT"
    ]


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"\xff\xfe", "is not UTF-8 text"),
        (b"s3cret\n", None),
    ],
)
def test_a_redis_password_file_must_hold_a_password(
    tmp_path: Path, content: bytes | None, line: str | None
) -> None:
    """Pin the line for a password file that is missing, empty or not text.

    Before, an empty file sent an empty AUTH (every session refused 503), and a missing one
    failed the lifespan with a traceback.
    """
    path = tmp_path / "redis-password"
    if content is not None:
        path.write_bytes(content)
    settings = _store(redis_url="redis://127.0.0.1:6379/0", redis_password_file=path)
    assert tls_file_problems(settings) == (
        [] if line is None else [f"{STORE}REDIS_PASSWORD_FILE: {line}"]
    )


def test_a_memory_store_opens_none_of_the_redis_files(files: dict[str, Path]) -> None:
    """Pin that files left set for a store that is not used stop nothing."""
    settings = Settings(
        auth=AuthSettings(mode="disabled"),
        session_store=SessionStoreSettings(redis_password_file=files["missing"]),
    )
    assert tls_file_problems(settings) == []


@pytest.mark.parametrize(
    ("given", "line"),
    [
        (
            {"client_cert": "client.pem", "client_key": "encrypted.key"},
            "CLIENT_KEY: is encrypted; give the key without a password",
        ),
        ({"ca_bundle": "junk.txt"}, "CA_BUNDLE: holds no PEM CA certificate"),
        ({"redis_password_file": "missing"}, "REDIS_PASSWORD_FILE: no such file"),
        ({"redis_password_file": "empty"}, "REDIS_PASSWORD_FILE: is empty"),
    ],
    ids=["encrypted-key", "junk-ca", "password-gone", "password-emptied"],
)
async def test_a_store_file_that_does_not_load_when_opened_is_a_named_start_up_error(
    files: dict[str, Path], given: dict[str, str], line: str
) -> None:
    """Pin the one-line start-up error of a store file that fails when the app opens the store.

    A file changed since the check, or an app from `create_app()`, which checks none first.
    Before, an encrypted key had OpenSSL ask for its password on the terminal, and the others
    ended the lifespan in a traceback.
    """
    paths = {name: files[value] for name, value in given.items()}
    settings = SessionStoreSettings(kind="redis", redis_url="rediss://127.0.0.1:6380/0", **paths)  # type: ignore[arg-type]
    with pytest.raises(SessionStoreFilesError) as refused:
        await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
    assert str(refused.value) == STORE + line


@pytest.mark.parametrize(
    ("name", "line"), [("missing", "no such file"), ("empty", "is empty")], ids=["gone", "empty"]
)
async def test_a_sentinel_password_file_is_checked_as_the_redis_one(
    files: dict[str, Path], name: str, line: str
) -> None:
    """Pin that the sentinels' password file is a named line before serving, and at opening.

    Without the check an empty file sent no AUTH, and every new connection failed 503.
    """
    settings = SessionStoreSettings(
        kind="redis",
        sentinels=["redis://127.0.0.1:26379"],
        sentinel_service="sessions",
        sentinel_password_file=files[name],
        allow_plain=True,
    )
    problem = f"{STORE}SENTINEL_PASSWORD_FILE: {line}"
    whole = Settings(auth=AuthSettings(mode="disabled"), session_store=settings)
    assert await asyncio.to_thread(tls_file_problems, whole) == [problem]
    with pytest.raises(SessionStoreFilesError) as refused:
        await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
    assert str(refused.value) == problem
