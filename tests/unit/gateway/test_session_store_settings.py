"""What the session-store settings refuse, and in which words; and what they take as is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from signing_gateway.issuance.store_settings import SENTINEL_CONNECTIONS, SessionStoreSettings
from signing_gateway.settings import Settings
from tests.unit.gateway.test_settings_refusals import PRODUCTION

LOOPBACK = "redis://127.0.0.1:6379/0"
REMOTE = "redis://sessions.internal:6379/0"
#: A password file's path (settings do not open it; the start-up check does).
SECRET = Path("/run/secrets/redis-password")
TLS = "rediss://sessions.internal:6380/2"
URL_SHAPE = "redis_url must be redis://host:port/db or rediss://host:port/db"
NO_USER_INFO = (
    "redis_url must not hold a user name or password: use redis_username and redis_password_file"
)
BAD_PORT = "redis_url has a port that is not a number from 1 to 65535"
BAD_DATABASE = "redis_url's path must be a database number, e.g. /0"
NO_QUERY = "redis_url takes no query or fragment: each option is a setting"
TLS_ONLY = "ca_bundle, client_cert and client_key need a rediss:// redis_url or sentinels"
PAIRED = "client_cert and client_key go together"
PLAIN_OFF_HOST = "redis:// to a non-loopback host needs allow_plain=true; use rediss://"
PLAIN_SENTINELS = (
    "redis:// sentinels need allow_plain=true: the primary they name may be on another host; "
    "use rediss://"
)


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    """A file to name as a CA bundle, certificate, key or password (only its path is read)."""
    path = tmp_path / "file.pem"
    path.write_text("-")
    return path


def _refusal(**values: object) -> str:
    """The one message building `SessionStoreSettings(kind="redis", **values)` fails with."""
    with pytest.raises(ValidationError) as refused:
        SessionStoreSettings(kind="redis", **values)  # type: ignore[arg-type]
    [error] = refused.value.errors()
    return str(error["msg"]).removeprefix("Value error, ")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (None, "kind=redis needs redis_url (redis://host:port/db or rediss://) or sentinels"),
        ("http://127.0.0.1:6379/0", URL_SHAPE),
        ("unix:///run/redis.sock", URL_SHAPE),
        ("redis:///0", URL_SHAPE),
        ("redis://gateway:secret@127.0.0.1:6379/0", NO_USER_INFO),
        ("redis://:secret@127.0.0.1:6379/0", NO_USER_INFO),
        ("redis://127.0.0.1:65536/0", BAD_PORT),
        ("redis://127.0.0.1:redis/0", BAD_PORT),
        # The client took port 0 as no port, and connected to 6379 unsaid.
        ("redis://127.0.0.1:0/0", BAD_PORT),
        ("redis://127.0.0.1:6379/sessions", BAD_DATABASE),
        ("redis://127.0.0.1:6379/-1", BAD_DATABASE),
        ("redis://127.0.0.1:6379/0/1", BAD_DATABASE),
        ("redis://127.0.0.1:6379/\N{ARABIC-INDIC DIGIT THREE}", BAD_DATABASE),
        ("redis://127.0.0.1:6379/0?ssl_cert_reqs=none", NO_QUERY),
        ("redis://127.0.0.1:6379/0#primary", NO_QUERY),
    ],
    ids=[
        "no-url",
        "http",
        "unix-socket",
        "no-host",
        "user-and-password",
        "password",
        "port-out-of-range",
        "port-not-a-number",
        "port-zero",
        "database-not-a-number",
        "database-negative",
        "path-deeper",
        "database-not-ascii",
        "query",
        "fragment",
    ],
)
def test_a_redis_url_the_client_would_misread_is_refused(url: str | None, problem: str) -> None:
    """Pin each shape of redis_url that is refused at start-up, and its message.

    Each would connect somewhere else than meant, put a password where logs show it, or
    set an option no setting names.
    """
    assert _refusal(redis_url=url) == problem


@pytest.mark.parametrize("setting", ["ca_bundle", "client_cert", "client_key"])
def test_tls_files_need_a_rediss_url(pem: Path, setting: str) -> None:
    """A CA bundle or client certificate given with redis:// would be ignored: refused."""
    values: dict[str, Any] = {"client_cert": pem, "client_key": pem, setting: pem}
    if setting == "ca_bundle":
        values = {setting: pem}
    assert _refusal(redis_url=LOOPBACK, **values) == TLS_ONLY


@pytest.mark.parametrize("given", ["client_cert", "client_key"])
def test_a_client_certificate_and_its_key_go_together(pem: Path, given: str) -> None:
    """One without the other cannot authenticate the gateway: refused, not half used."""
    assert _refusal(redis_url=TLS, **{given: pem}) == PAIRED


def test_a_user_name_needs_a_password_file() -> None:
    """A Redis ACL user without a password cannot log in: refused at start-up."""
    assert _refusal(redis_url=LOOPBACK, redis_username="gateway") == (
        "redis_username needs redis_password_file"
    )


@pytest.mark.parametrize("host", ["sessions.internal", "10.0.0.7", "0.0.0.0", "[fe80::1]"])  # noqa: S104 - a host refused
def test_plain_redis_to_another_host_needs_allow_plain(host: str) -> None:
    """Sessions (each holding the signer's nonce) sent unencrypted off the host: opt in."""
    url = f"redis://{host}:6379/0"
    assert _refusal(redis_url=url) == PLAIN_OFF_HOST
    allowed = SessionStoreSettings(kind="redis", redis_url=url, allow_plain=True)
    assert allowed.plain_off_host()


def test_production_refuses_plain_redis_off_host_even_when_allowed() -> None:
    """allow_plain does not hold in production: the store must be reached over rediss://."""
    plain = SessionStoreSettings(
        kind="redis", redis_url=REMOTE, allow_plain=True, redis_password_file=SECRET
    )
    with pytest.raises(ValidationError) as refused:
        Settings(**PRODUCTION, session_store=plain)
    assert [(e["loc"], e["msg"]) for e in refused.value.errors()] == [
        (
            (),
            (
                "production keeps issuance sessions only over TLS: "
                "session_store.redis_url is redis:// to another host (use rediss://)"
            ),
        )
    ]
    loopback = SessionStoreSettings(kind="redis", redis_url=LOOPBACK)
    assert Settings(**PRODUCTION, session_store=loopback).session_store.redis_url == LOOPBACK
    assert Settings(**{**PRODUCTION, "environment": "dev"}, session_store=plain)


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        (LOOPBACK, ("redis", "127.0.0.1", 6379, 0)),
        ("redis://localhost/3", ("redis", "localhost", 6379, 3)),
        ("redis://[::1]:6390", ("redis", "::1", 6390, 0)),
        ("redis://127.0.0.2:6379/", ("redis", "127.0.0.2", 6379, 0)),
        (TLS, ("rediss", "sessions.internal", 6380, 2)),
    ],
    ids=["loopback", "localhost", "ipv6-loopback", "loopback-net", "tls"],
)
def test_a_usable_redis_url_is_read_as_written(url: str, parts: tuple[str, str, int, int]) -> None:
    """Loopback over redis://, any host over rediss://: the scheme, host, port and database."""
    settings = SessionStoreSettings(kind="redis", redis_url=url)
    assert settings.redis_parts() == parts
    assert not settings.plain_off_host()


def test_rediss_takes_its_files_and_credentials(pem: Path) -> None:
    """A CA bundle, a client certificate with its key, and an ACL user with its password."""
    settings = SessionStoreSettings(
        kind="redis",
        redis_url=TLS,
        ca_bundle=pem,
        client_cert=pem,
        client_key=pem,
        redis_username="gateway",
        redis_password_file=pem,
    )
    assert (settings.ca_bundle, settings.client_key, settings.redis_username) == (
        pem,
        pem,
        "gateway",
    )


def test_the_memory_store_needs_no_redis_setting() -> None:
    """The default keeps sessions in the process; Redis settings are checked only for redis."""
    assert SessionStoreSettings().kind == "memory"
    assert Settings(**PRODUCTION).session_store.kind == "memory"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://loc\talhost:6379/0", "redis_url must not hold white space or control characters"),
        ("redis://local\nhost:6379/0", "redis_url must not hold white space or control characters"),
        (
            "redis://[::1].evil.test:6379/0",
            "redis_url's host in brackets must be an IPv6 address, e.g. [::1]",
        ),
        (
            "redis://[::1]x:6379/0",
            "redis_url's host in brackets must be an IPv6 address, e.g. [::1]",
        ),
        (
            "redis://127.0.0.1:6379/2147483647",
            "redis_url's database number must be at most 2147483646",
        ),
    ],
    ids=[
        "tab-in-host",
        "line-end-in-host",
        "bracketed-then-name",
        "bracketed-then-text",
        "database-too-large",
    ],
)
def test_a_redis_url_read_other_than_written_is_refused(url: str, problem: str) -> None:
    """Pin that the host connected to is the one written.

    Before, urlsplit dropped the tab (`localhost`) and read `[::1].evil.test` as ::1, which
    then counted as loopback, so plain redis:// passed; a database number no server can have
    was taken, and every operation then failed 503.
    """
    assert _refusal(redis_url=url) == problem


def test_the_ipv6_loopback_in_brackets_is_taken() -> None:
    """[::1], with or without a port, is the loopback it reads as."""
    for url in ("redis://[::1]:6379/0", "redis://[::1]/0"):
        assert not SessionStoreSettings(kind="redis", redis_url=url).plain_off_host()


def test_a_redis_url_with_the_memory_store_is_refused() -> None:
    """Pin that a Redis configured with the kind forgotten is not silently ignored.

    Before, the sessions stayed in each replica's memory, and issues reaching another replica
    were refused 401 with nothing to say why.
    """
    with pytest.raises(ValidationError) as refused:
        SessionStoreSettings(redis_url=LOOPBACK)
    [error] = refused.value.errors()
    assert str(error["msg"]).removeprefix("Value error, ") == (
        "redis_url is set but kind is memory: set kind=redis to keep the sessions there "
        "(or leave redis_url out)"
    )


def test_production_authenticates_to_a_redis_on_another_host() -> None:
    """Pin that production gives another host's Redis a password or a client certificate.

    Whoever can write the keys can delete sessions or plant one for an owner of their
    choosing. Before, production took a Redis without AUTH.
    """
    remote_tls = "rediss://sessions.internal:6380/0"
    anonymous = SessionStoreSettings(kind="redis", redis_url=remote_tls)
    with pytest.raises(ValidationError) as refused:
        Settings(**PRODUCTION, session_store=anonymous)
    assert [e["msg"] for e in refused.value.errors()] == [
        (
            "production authenticates to its session store: set "
            "session_store.redis_password_file (AUTH) or client_cert and client_key (mutual TLS)"
        )
    ]
    for proven in (
        {"redis_password_file": SECRET},
        {"client_cert": SECRET, "client_key": SECRET},
    ):
        store = SessionStoreSettings(kind="redis", redis_url=remote_tls, **proven)  # type: ignore[arg-type]
        assert Settings(**PRODUCTION, session_store=store).session_store is store
    loopback = SessionStoreSettings(kind="redis", redis_url=LOOPBACK)
    assert Settings(**PRODUCTION, session_store=loopback)
    assert Settings(**{**PRODUCTION, "environment": "dev"}, session_store=anonymous)


def test_a_user_name_beside_a_bracketed_host_is_refused_as_a_user_name() -> None:
    """The password rule speaks first: the URL's host is not what is wrong with it."""
    assert _refusal(redis_url="redis://gateway@[::1]:6379/0") == NO_USER_INFO


def test_an_ipv6_address_with_its_zone_is_taken_and_connected_to_as_the_socket_writes_it() -> None:
    """`[fe80::1%25eth0]` is an IPv6 address (its zone escaped, RFC 6874): taken, unescaped."""
    store = SessionStoreSettings(
        kind="redis", redis_url="redis://[fe80::1%25eth0]:6379/0", allow_plain=True
    )
    assert store.redis_parts() == ("redis", "fe80::1%eth0", 6379, 0)


SENTINELS = ["rediss://sentinel-0.internal:26379", "rediss://sentinel-1.internal:26379"]
LOOPBACK_SENTINELS = ["redis://127.0.0.1:26379", "redis://[::1]:26380"]
SENTINEL_NO_PATH = (
    "sentinels take no path, e.g. rediss://sentinel-0:26379: the sessions are in database 0"
)
SENTINEL_NO_QUERY = (
    "sentinels take no query or fragment, e.g. rediss://sentinel-0:26379: each option is a setting"
)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"redis_url": LOOPBACK}, "set redis_url or sentinels, not both"),
        (
            {"sentinel_service": None},
            "sentinels need sentinel_service (the primary's name in them)",
        ),
        (
            {"sentinels": ["redis://127.0.0.1:26379", "rediss://127.0.0.1:26380"]},
            "sentinels must all be redis:// or all rediss://",
        ),
        (
            {"sentinels": ["redis://127.0.0.1:26379/1"]},
            SENTINEL_NO_PATH,
        ),
        (
            {"sentinels": ["redis://:secret@127.0.0.1:26379"]},
            "sentinels must not hold a user name or password: use sentinel_password_file",
        ),
        (
            {"sentinels": ["sentinel-0.internal:26379"]},
            "sentinels must be redis://host:port or rediss://host:port",
        ),
        (
            {"sentinels": ["redis://127.0.0.1:0"]},
            "sentinels has a port that is not a number from 1 to 65535",
        ),
        (
            {"sentinels": ["rediss://sentinel-0.internal"]},
            "sentinels need a port, e.g. rediss://sentinel-0:26379",
        ),
        (
            {"sentinels": ["redis://loc\talhost:26379"]},
            "sentinels must not hold white space or control characters",
        ),
        (
            {"sentinels": ["redis://[::1].evil.test:26379"]},
            "sentinels' host in brackets must be an IPv6 address, e.g. [::1]",
        ),
        (
            {"sentinels": ["redis://sentinel-0.internal:26379"], "allow_plain": False},
            PLAIN_SENTINELS,
        ),
        ({"allow_plain": False}, PLAIN_SENTINELS),
        (
            {"sentinels": LOOPBACK_SENTINELS, "ca_bundle": SECRET},
            "ca_bundle, client_cert and client_key need a rediss:// redis_url or sentinels",
        ),
    ],
    ids=[
        "with-redis-url",
        "no-service",
        "mixed-schemes",
        "path",
        "password",
        "no-scheme",
        "port-zero",
        "no-port",
        "tab-in-host",
        "bracketed-then-name",
        "plain-off-host",
        "plain-on-loopback",
        "tls-file-with-redis-scheme",
    ],
)
def test_sentinel_settings_the_store_could_not_use_are_refused(
    values: dict[str, Any], problem: str
) -> None:
    """Pin each refused shape of the sentinel settings, and its message, at start-up."""
    given: dict[str, Any] = {
        "sentinels": LOOPBACK_SENTINELS,
        "sentinel_service": "sessions",
        "allow_plain": True,
    }
    assert _refusal(**{**given, **values}) == problem


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("rediss://s:26379/abc", SENTINEL_NO_PATH),
        ("rediss://s:26379/0/1", SENTINEL_NO_PATH),
        ("rediss://s:26379/2147483647", SENTINEL_NO_PATH),
        ("rediss://s:26379?x=1", SENTINEL_NO_QUERY),
        ("rediss://s:26379/?x=1", SENTINEL_NO_QUERY),
        ("rediss://s:26379#f", SENTINEL_NO_QUERY),
    ],
    ids=["name-path", "two-numbers", "database-too-large", "query", "slash-query", "fragment"],
)
def test_a_sentinel_url_with_more_than_host_and_port_is_refused_as_a_sentinel(
    url: str, problem: str
) -> None:
    """Pin that a sentinel's path, query or fragment is refused under `sentinels`.

    Before, these were refused with redis_url's words ("redis_url's path must be a database
    number", "redis_url takes no query or fragment"), naming a setting that was not set.
    """
    assert _refusal(sentinels=[url], sentinel_service="sessions") == problem


@pytest.mark.parametrize(
    "setting", ["sentinel_service", "sentinel_username", "sentinel_password_file"]
)
def test_sentinel_settings_without_sentinels_are_refused(setting: str) -> None:
    """A sentinel setting beside redis_url would be ignored: refused."""
    value = SECRET if setting == "sentinel_password_file" else "sessions"
    assert _refusal(redis_url=LOOPBACK, **{setting: value}) == (
        "sentinel_service, sentinel_username and sentinel_password_file need sentinels"
    )


def test_a_sentinel_user_name_needs_its_password_file() -> None:
    """A sentinel ACL user without a password would send no AUTH at all: refused, as Redis's."""
    assert _refusal(
        sentinels=SENTINELS, sentinel_service="sessions", sentinel_username="signing-gateway"
    ) == ("sentinel_username needs sentinel_password_file")


def test_sentinels_with_the_memory_store_are_refused() -> None:
    """Sentinels configured with the kind forgotten are not silently ignored."""
    with pytest.raises(ValidationError) as refused:
        SessionStoreSettings(sentinels=LOOPBACK_SENTINELS, sentinel_service="sessions")
    [error] = refused.value.errors()
    assert str(error["msg"]).removeprefix("Value error, ") == (
        "sentinels is set but kind is memory: set kind=redis to keep the sessions there "
        "(or leave sentinels out)"
    )


def test_sentinels_are_read_as_written_and_count_in_the_connections() -> None:
    """Each sentinel's host and port; TLS from their scheme; their connections in the budget."""
    store = SessionStoreSettings(
        kind="redis",
        sentinels=SENTINELS,
        sentinel_service="sessions",
        sentinel_password_file=SECRET,
    )
    assert store.sentinel_addresses() == [
        ("sentinel-0.internal", 26379),
        ("sentinel-1.internal", 26379),
    ]
    assert store.uses_tls()
    assert not store.plain_off_host()
    assert store.connections() == 32 + 2 * SENTINEL_CONNECTIONS
    loopback = SessionStoreSettings(
        kind="redis", sentinels=LOOPBACK_SENTINELS, sentinel_service="sessions", allow_plain=True
    )
    assert not loopback.uses_tls()
    assert loopback.plain_off_host()  # the primary they name may be elsewhere
    assert SessionStoreSettings().connections() == 0


def test_production_refuses_plain_sentinels_off_host_even_when_allowed() -> None:
    """allow_plain does not hold in production for sentinels either."""
    plain = SessionStoreSettings(
        kind="redis",
        sentinels=["redis://sentinel-0.internal:26379"],
        sentinel_service="sessions",
        allow_plain=True,
        redis_password_file=SECRET,
        sentinel_password_file=SECRET,
    )
    with pytest.raises(ValidationError) as refused:
        Settings(**PRODUCTION, session_store=plain)
    assert [e["msg"] for e in refused.value.errors()] == [
        (
            "production keeps issuance sessions only over TLS: session_store.sentinels are "
            "redis:// (the primary they name may be on another host; use rediss://)"
        )
    ]


def test_production_authenticates_to_sentinels_on_another_host() -> None:
    """Pin that production proves itself to the sentinels too: whoever tells them names the primary.

    A password for the primary alone is refused; with the sentinels' too, or a client
    certificate (shown to both), it is taken.
    """
    primary_only = SessionStoreSettings(
        kind="redis", sentinels=SENTINELS, sentinel_service="sessions", redis_password_file=SECRET
    )
    with pytest.raises(ValidationError) as refused:
        Settings(**PRODUCTION, session_store=primary_only)
    assert [e["msg"] for e in refused.value.errors()] == [
        (
            "production authenticates to its session store: set "
            "session_store.redis_password_file (AUTH; sentinel_password_file too) or "
            "client_cert and client_key (mutual TLS)"
        )
    ]
    for proven in (
        {"redis_password_file": SECRET, "sentinel_password_file": SECRET},
        {"client_cert": SECRET, "client_key": SECRET},
    ):
        store = SessionStoreSettings(
            kind="redis",
            sentinels=SENTINELS,
            sentinel_service="sessions",
            **proven,  # type: ignore[arg-type]
        )
        assert Settings(**PRODUCTION, session_store=store).session_store is store


def test_production_takes_sentinels_on_loopback_as_naming_a_primary_elsewhere() -> None:
    """Pin that sentinels on loopback do not lift production's TLS and AUTH rules.

    They name the primary at each connection, and may name one on another host (a local
    sentinel, or a tunnel to remote ones): redis:// sentinels are refused, even on loopback,
    and rediss:// ones need the primary's password (not the loopback sentinels'). Before,
    sentinels all on loopback were taken to name a loopback primary: production sent the
    sessions in the clear, unauthenticated, to whatever host they named.
    """
    plain = SessionStoreSettings(
        kind="redis", sentinels=LOOPBACK_SENTINELS, sentinel_service="sessions", allow_plain=True
    )
    tls = SessionStoreSettings(
        kind="redis",
        sentinels=["rediss://127.0.0.1:26379"],
        sentinel_service="sessions",
    )
    plain_refused = (
        "production keeps issuance sessions only over TLS: session_store.sentinels are "
        "redis:// (the primary they name may be on another host; use rediss://)"
    )
    unproven = (
        "production authenticates to its session store: set "
        "session_store.redis_password_file (AUTH; sentinel_password_file too) or "
        "client_cert and client_key (mutual TLS)"
    )
    for store, problems in ((plain, [plain_refused, unproven]), (tls, [unproven])):
        with pytest.raises(ValidationError) as refused:
            Settings(**PRODUCTION, session_store=store)
        assert [e["msg"] for e in refused.value.errors()] == problems
    proven = tls.model_copy(update={"redis_password_file": SECRET})
    assert Settings(**PRODUCTION, session_store=proven).session_store is proven
