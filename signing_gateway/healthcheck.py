"""The image's HEALTHCHECK: `python -m signing_gateway.healthcheck` asks the gateway's /healthz.

It runs every 10 s in the container, so it imports nothing but the standard library (the
gateway's own modules take ~0.3 s of CPU to import). It asks /healthz where `serve` answers it,
reading the two port variables as `serve` reads them (`cli.FromEnvironment`): the exact name
first, else the name in any case; an empty value or a Kubernetes service link
(`tcp://10.96.0.6:8081`) is no port; a port is ASCII decimal digits only. Tests hold the two
readings together (tests/unit/gateway/test_image_healthcheck.py).

- The probe port, when there is one; else the API port; else 8080, `serve`'s default.
- A value `serve` refuses fails the check: `serve` exits on it, so nothing healthy listens,
  whatever else answers at the port the value seems to spell.
- An API port of 0 (a free port, chosen at start) without a probe port fails the check: the
  port it got cannot be known from here.

It asks 127.0.0.1 directly, past any `http_proxy` set for the container: urllib would send even
a loopback request through it unless `no_proxy` names the address. Exit status 0 means /healthz
answered 200.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.request

PROBE_PORT = "SIGNING_GATEWAY_PROBE_PORT"
API_PORT = "SIGNING_GATEWAY_PORT"
DEFAULT_API_PORT = 8080
#: A Kubernetes service link's value, as `settings_env.SERVICE_LINK_VALUE` reads it.
_SERVICE_LINK = re.compile(r"(?:tcp|udp|sctp)://[^/\s]+:\d+", re.IGNORECASE)
_HIGHEST_PORT = 65535
TIMEOUT_SECONDS = 3.0


class Refused(Exception):
    """A port variable `serve` would refuse, or a port the check cannot know."""


def _value(name: str) -> str:
    """The variable `name`: its exact name first, else in any case; "" when unset."""
    if name in os.environ:
        return os.environ[name]
    return next((v for k, v in os.environ.items() if k.upper() == name), "")


def _port(name: str, lowest: int) -> int | None:
    """The port variable `name` holds (None: no port there).

    Raises:
        Refused: a value `serve` refuses.
    """
    text = _value(name)
    if not text or _SERVICE_LINK.fullmatch(text):
        return None
    if text.isascii() and text.isdigit() and lowest <= int(text) <= _HIGHEST_PORT:
        return int(text)
    raise Refused(f"{name}: not a port serve takes")


def healthz_port() -> int:
    """The port `serve` answers /healthz on, as the environment configures it.

    Raises:
        Refused: a port variable `serve` refuses, or an API port of 0 with no probe port.
    """
    probe, api = _port(PROBE_PORT, 1), _port(API_PORT, 0)
    if probe is not None:
        return probe
    if api is None:
        return DEFAULT_API_PORT
    if api == 0:
        raise Refused(f"{API_PORT}=0 picks a free port; set {PROBE_PORT} to check it")
    return api


def main() -> int:
    """Ask /healthz; 0 when it answers 200."""
    try:
        port = healthz_port()
    except Refused as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://127.0.0.1:{port}/healthz"
    try:  # an answer other than 2xx raises too (HTTPError)
        with direct.open(url, timeout=TIMEOUT_SECONDS) as answer:
            status = answer.status
    except OSError as exc:  # one line for `docker inspect`, not a traceback
        sys.stderr.write(f"{url}: {exc}\n")
        return 1
    return 0 if status == 200 else 1  # noqa: PLR2004 - HTTP OK


if __name__ == "__main__":
    sys.exit(main())
