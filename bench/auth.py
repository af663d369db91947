"""Caller authentication in the bench: every gateway it starts checks tokens, as production does.

At the start of a run `make()` creates a local token issuer, writes its public keys to a JWKS
file and mints one token. Every gateway the bench starts runs with `auth.mode=jwt` against that
file (`BenchAuth.gateway_env`), and wrk sends the token with every request
(`Authorization: Bearer ...`, from `TOKEN_VAR`). The comparison servers (the pass-through
proxy, the blocking gateway) get the same request bytes and ignore the header.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from signing_gateway.api import examples
from signing_gateway.security.settings import SCOPE_DCC_SIGN
from signing_gateway.security.tokens import LocalTokenIssuer

ISSUER = "signing-gateway-bench"
AUDIENCE = "signing-gateway"
#: The bearer token's size: an identity provider's token with its client, tenant and session
#: claims is about this large (bench/http_protocol.py times the HTTP layer with the same).
TOKEN_BYTES = 700
#: How long the token of a bench run is valid: longer than any whole run (`make bench` takes
#: 7-10 minutes, a long soak an hour).
RUN_VALID_SECONDS = 6 * 3600
#: The environment variable wrk's script reads the token from.
TOKEN_VAR = "BENCH_TOKEN"  # noqa: S105 - a variable's name


@dataclass(frozen=True)
class BenchAuth:
    """The keys a gateway verifies callers against, and the token the callers send."""

    jwks_file: Path
    token: str
    issuer: str = ISSUER
    audience: str = AUDIENCE

    def gateway_env(self) -> dict[str, str]:
        """The gateway's settings for checking this run's tokens."""
        return {
            "SIGNING_GATEWAY_AUTH__MODE": "jwt",
            "SIGNING_GATEWAY_AUTH__JWKS_FILE": str(self.jwks_file),
            "SIGNING_GATEWAY_AUTH__ISSUER": self.issuer,
            "SIGNING_GATEWAY_AUTH__AUDIENCE": self.audience,
        }

    @property
    def header(self) -> dict[str, str]:
        """The request header that carries the token."""
        return {"Authorization": f"Bearer {self.token}"}


def mint_padded(
    issuer: LocalTokenIssuer, *, scopes: Iterable[str], valid_seconds: int, size: int
) -> str:
    """A token for `scopes`, valid `valid_seconds`, padded to about `size` bytes.

    The padding is one claim (`ext`) the gateway does not read; base64url turns its every
    3 bytes into 4, so the token lands within a few bytes of `size` (never shorter than
    the unpadded token).
    """
    jti = uuid.uuid4().hex

    def mint(pad: int) -> str:
        return issuer.mint(
            subject="bench-caller",
            scopes=list(scopes),
            ttl_seconds=valid_seconds,
            client_id="bench-wrk",
            jti=jti,
            tenant="nl",
            ext="x" * pad,
        )

    bare = len(mint(0))
    return mint(max(0, (size - bare) * 3 // 4))


def make(
    directory: Path,
    *,
    scopes: Iterable[str] = (SCOPE_DCC_SIGN,),
    valid_seconds: int = RUN_VALID_SECONDS,
    size: int = TOKEN_BYTES,
) -> BenchAuth:
    """A fresh issuer: its JWKS written to `directory`/jwks.json, and a token it minted."""
    issuer = LocalTokenIssuer(issuer=ISSUER, audience=AUDIENCE, kid="bench-1")
    jwks_file = directory / "jwks.json"
    jwks_file.write_text(json.dumps(issuer.jwks()))
    token = mint_padded(issuer, scopes=scopes, valid_seconds=valid_seconds, size=size)
    return BenchAuth(jwks_file=jwks_file, token=token)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.auth DIR`: what the bench writes at the start of a run, to run the
    printed commands of docs/benchmarks.md by hand.

    Writes DIR/jwks.json (for the gateway) and DIR/dcc.json (the request body wrk sends) and
    prints the token: `export BENCH_TOKEN=$(python -m bench.auth "$RUN_DIR")`.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.auth", description=main.__doc__)
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    (args.directory / "dcc.json").write_text(json.dumps(examples.EU_VACCINATION))
    print(make(args.directory).token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
