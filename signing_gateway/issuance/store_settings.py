"""The session store's settings (`SIGNING_GATEWAY_SESSION_STORE__*`): memory, or a shared Redis.

A group of `signing_gateway.settings.Settings`, kept beside the store it configures
(`issuance.redis_client`, `issuance.redis_stokens`): the Redis URL, its sentinels, TLS files,
credentials and bounds, each checked when the settings are built.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, PositiveFloat, PositiveInt, model_validator

from signing_gateway.security.settings import (
    FINITE_NUMBERS,
    FileSetting,
    NameSetting,
    is_loopback_host,
)

#: The largest database number Redis can be configured with (`databases` is an int).
MAX_REDIS_DATABASE = 2**31 - 2
#: A bracketed host (an IPv6 address) and nothing after it but a port.
_BRACKETED_HOST = re.compile(r"\[[0-9A-Fa-f:.]+(?:%25[0-9A-Za-z._~-]+)?\](?::[0-9]*)?")
#: What a sentinel URL is: a scheme, a host and a port, nothing after them.
_SENTINEL_EXAMPLE = "rediss://sentinel-0:26379"

#: The key prefix of issuance sessions in a shared store: one Redis can serve several gateways
#: (or environments) if each has its own.
DEFAULT_SESSION_KEY_PREFIX = "signing-gateway:stoken:"


#: Connections a Redis session store keeps to each sentinel at most: the new connections to
#: the primary share one asking of them at a time.
SENTINEL_CONNECTIONS = 1


def _url_parts(url: str) -> tuple[str, str, int, int]:
    """A redis:// URL's scheme, host, port and database number (a checked URL only)."""
    parts = urlsplit(url)
    database = parts.path.strip("/") or "0"
    # An IPv6 zone is written %25 in a URL (RFC 6874); the socket takes it as %.
    host = (parts.hostname or "").replace("%25", "%")
    return parts.scheme, host, parts.port or 6379, int(database)


class SessionStoreSettings(BaseModel):
    """Where issuance sessions (stokens) live: this process's memory, or a shared Redis.

    With `memory`, `/v1/domestic/issue` must reach the process that answered prepare-issue
    (one replica, or session affinity). With `redis`, every replica and worker sharing the
    server takes every session, each still single use and its owner's only.
    """

    model_config = FINITE_NUMBERS

    kind: Literal["memory", "redis"] = Field(
        "memory",
        description="memory: sessions in this process (one replica, or session affinity); "
        "redis: shared by every replica and worker through redis_url, or the primary "
        "sentinels name",
    )
    redis_url: NameSetting | None = Field(
        None,
        description="redis://host:port/db, or rediss:// for TLS (no user name or password in "
        "it: see redis_username and redis_password_file); not with sentinels",
    )
    sentinels: list[NameSetting] = Field(
        default_factory=list,
        description="Instead of redis_url, Redis Sentinels that name the primary, as a JSON "
        "list of redis://host:port, or rediss:// for TLS to them and to the primary "
        '(["rediss://sentinel-0:26379", ...], one scheme for all); database 0',
    )
    sentinel_service: NameSetting | None = Field(
        None, description="The primary's name in the sentinels (with sentinels)"
    )
    sentinel_username: NameSetting | None = Field(
        None, description="The sentinels' ACL user name (with sentinel_password_file)"
    )
    sentinel_password_file: FileSetting | None = Field(
        None, description="File holding the sentinels' password (AUTH), read at start-up"
    )
    redis_username: NameSetting | None = Field(
        None, description="Redis ACL user name (with redis_password_file)"
    )
    redis_password_file: FileSetting | None = Field(
        None, description="File holding the Redis password (AUTH), read at start-up"
    )
    ca_bundle: FileSetting | None = Field(
        None, description="PEM CA bundle to verify the Redis server's TLS (rediss:// only)"
    )
    client_cert: FileSetting | None = Field(
        None, description="PEM client certificate for mutual TLS to Redis (rediss:// only)"
    )
    client_key: FileSetting | None = Field(
        None, description="PEM key of the client certificate (rediss:// only)"
    )
    allow_plain: bool = Field(
        default=False,
        description="Allow redis:// (no TLS) to a non-loopback host, or redis:// sentinels "
        "(the primary they name may be anywhere); refused when environment=production",
    )
    key_prefix: NameSetting = Field(
        DEFAULT_SESSION_KEY_PREFIX,
        min_length=1,
        description="Prefix of the session keys (the rest is a SHA-256 of the stoken)",
    )
    connect_timeout_seconds: PositiveFloat = Field(
        0.5, le=10, description="Seconds to connect to Redis (at most 10)"
    )
    timeout_seconds: PositiveFloat = Field(
        1.0,
        le=10,
        description="Seconds one session operation may take, its wait for a connection "
        "included; slower is answered 503 session-store-unavailable (at most 10)",
    )
    max_connections: PositiveInt = Field(
        32, le=10_000, description="Connections kept to Redis at most"
    )
    sentinel_check_seconds: PositiveFloat = Field(
        5.0,
        le=60,
        description="With sentinels: seconds between two askings of them which server is the "
        "primary; once they name another, every connection to the old one is closed (else "
        "those open reach it until it is demoted) (at most 60)",
    )
    required: bool = Field(
        default=False,
        description="Readiness fails while Redis is down (every replica shares it: all of "
        "them would leave service, the EU routes too)",
    )

    def redis_parts(self) -> tuple[str, str, int, int]:
        """The Redis URL's scheme, host, port and database number (valid settings only)."""
        assert self.redis_url is not None  # noqa: S101 - checked by the validator
        return _url_parts(self.redis_url)

    def connections(self) -> int:
        """Connections the store holds open at most: to the primary, and to each sentinel."""
        if self.kind != "redis":
            return 0
        return self.max_connections + len(self.sentinels) * SENTINEL_CONNECTIONS

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The host and port of each sentinel (valid settings only)."""
        return [_url_parts(url)[1:3] for url in self.sentinels]

    def uses_tls(self) -> bool:
        """Whether the store is reached over TLS (rediss://; valid kind=redis settings only)."""
        return urlsplit(self.sentinels[0] if self.sentinels else self.redis_url or "").scheme == (
            "rediss"
        )

    def _primary_off_host(self) -> bool:
        """Whether the primary may be on another host: the URL's is not loopback, or sentinels.

        The sentinels name the primary at each new connection, whatever host they are on
        themselves: sentinels on loopback may name a primary on another host.
        """
        return bool(self.sentinels) or not is_loopback_host(self.redis_parts()[1])

    def plain_off_host(self) -> bool:
        """Whether sessions may travel to Redis unencrypted (redis://, not to loopback only)."""
        if self.kind != "redis" or (self.redis_url is None and not self.sentinels):
            return False
        return not self.uses_tls() and self._primary_off_host()

    def unauthenticated_off_host(self) -> bool:
        """Whether a Redis (or its sentinels) on another host would take the gateway unproven.

        Whoever can write the keys can delete sessions or plant one for an owner of their
        choosing, and whoever can tell the sentinels can name another primary: production
        proves who it is, by AUTH (to each) or by a client certificate.
        """
        if self.kind != "redis" or (self.redis_url is None and not self.sentinels):
            return False
        sentinels_off_host = not all(
            is_loopback_host(host) for host, _ in self.sentinel_addresses()
        )
        unproven = (self._primary_off_host() and self.redis_password_file is None) or (
            sentinels_off_host and self.sentinel_password_file is None
        )
        return unproven and self.client_cert is None

    @model_validator(mode="after")
    def _usable_redis(self) -> SessionStoreSettings:
        if self.kind == "memory":
            self._check_no_redis()
            return self
        if self.sentinels:
            self._check_sentinels()
        elif self.redis_url is None:
            raise ValueError(
                "kind=redis needs redis_url (redis://host:port/db or rediss://) or sentinels"
            )
        else:
            self._check_redis_url(self.redis_url)
            sentinel_settings = (
                self.sentinel_service,
                self.sentinel_username,
                self.sentinel_password_file,
            )
            if any(value is not None for value in sentinel_settings):
                raise ValueError(
                    "sentinel_service, sentinel_username and sentinel_password_file need sentinels"
                )
        tls_files = (self.ca_bundle, self.client_cert, self.client_key)
        if not self.uses_tls() and any(path is not None for path in tls_files):
            raise ValueError(
                "ca_bundle, client_cert and client_key need a rediss:// redis_url or sentinels"
            )
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        self._check_user_names()
        if self.plain_off_host() and not self.allow_plain:
            if self.sentinels:
                raise ValueError(
                    "redis:// sentinels need allow_plain=true: the primary they name may be "
                    "on another host; use rediss://"
                )
            raise ValueError(
                "redis:// to a non-loopback host needs allow_plain=true; use rediss://"
            )
        return self

    def _check_user_names(self) -> None:
        # A user name without its password would send no AUTH at all.
        for whose in ("redis", "sentinel"):
            if (
                getattr(self, f"{whose}_username") is not None
                and getattr(self, f"{whose}_password_file") is None
            ):
                raise ValueError(f"{whose}_username needs {whose}_password_file")

    def _check_no_redis(self) -> None:
        # A Redis configured and the kind forgotten would leave every session in the memory
        # of one replica, unsaid: refused rather than ignored.
        for name in ("redis_url", "sentinels"):
            if getattr(self, name):
                raise ValueError(
                    f"{name} is set but kind is memory: set kind=redis to keep the sessions "
                    f"there (or leave {name} out)"
                )

    def _check_sentinels(self) -> None:
        if self.redis_url is not None:
            raise ValueError("set redis_url or sentinels, not both")
        if self.sentinel_service is None:
            raise ValueError("sentinels need sentinel_service (the primary's name in them)")
        for url in self.sentinels:
            self._check_url(url, "sentinels", shape="redis://host:port or rediss://host:port")
            parts = urlsplit(url)
            if parts.path not in ("", "/"):
                raise ValueError(
                    f"sentinels take no path, e.g. {_SENTINEL_EXAMPLE}: "
                    "the sessions are in database 0"
                )
            if parts.query or parts.fragment:
                raise ValueError(
                    f"sentinels take no query or fragment, e.g. {_SENTINEL_EXAMPLE}: "
                    "each option is a setting"
                )
            # Left out, the port would be Redis's 6379, not a sentinel's (26379 by default).
            if parts.port is None:
                raise ValueError(f"sentinels need a port, e.g. {_SENTINEL_EXAMPLE}")
        if len({urlsplit(url).scheme for url in self.sentinels}) > 1:
            raise ValueError("sentinels must all be redis:// or all rediss://")

    @staticmethod
    def _check_url(
        url: str,
        name: str = "redis_url",
        shape: str = "redis://host:port/db or rediss://host:port/db",
    ) -> None:
        # What redis_url and each sentinel share; the path and the query are each one's own.
        # urlsplit drops tabs and line ends (`loc\talhost` is localhost) and reads
        # `[::1].evil.test` as the host ::1: what it connects to would not be what was written.
        if any(char.isspace() or not char.isprintable() for char in url):
            raise ValueError(f"{name} must not hold white space or control characters")
        parts = urlsplit(url)
        # A password in a URL reaches logs and process listings; the file keeps it out.
        if "@" in parts.netloc:
            files = (
                "sentinel_password_file"
                if name == "sentinels"
                else ("redis_username and redis_password_file")
            )
            raise ValueError(f"{name} must not hold a user name or password: use {files}")
        if ("[" in parts.netloc or "]" in parts.netloc) and not _BRACKETED_HOST.fullmatch(
            parts.netloc
        ):
            whose = f"{name}'" if name.endswith("s") else f"{name}'s"
            raise ValueError(f"{whose} host in brackets must be an IPv6 address, e.g. [::1]")
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(f"{name} must be {shape}")
        try:
            port = parts.port
        except ValueError:
            port = 0
        # Port 0 is no port: the client would have connected to 6379 instead, unsaid.
        if port == 0:
            raise ValueError(f"{name} has a port that is not a number from 1 to 65535")

    @classmethod
    def _check_redis_url(cls, url: str) -> None:
        cls._check_url(url)
        parts = urlsplit(url)
        database = parts.path.strip("/")
        if (database and not (database.isascii() and database.isdigit())) or "/" in database:
            raise ValueError("redis_url's path must be a database number, e.g. /0")
        if database and int(database) > MAX_REDIS_DATABASE:
            raise ValueError(f"redis_url's database number must be at most {MAX_REDIS_DATABASE}")
        if parts.query or parts.fragment:
            raise ValueError("redis_url takes no query or fragment: each option is a setting")
