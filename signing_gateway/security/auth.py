"""Caller authentication for `/v1/*`: bearer JWTs, checked against configured public keys.

`TokenVerifier.verify(token)` returns the `Caller` or raises `AuthenticationFailed`. Route
dependencies (`authenticated_caller`, `require_scopes(...)`) read the verifier from the
lifespan state; with `auth.mode = "disabled"` they hand out an anonymous caller holding every
scope. Tokens and claims are never logged; refusals are counted by reason.

A request that expects `100 Continue` (its body held back until asked for) is authenticated
from its head instead, before its body is read (`authenticate_head`, run by the body limits):
a caller without a valid token is answered 401, and one whose token lacks the scope its route
asks before the body (`require_scopes`) 403, without sending its body; the route's dependency
takes the caller found then.

Callers reuse one token for many requests, so the verifier remembers the tokens it accepted
(`auth.token_cache_size`, least recently used dropped first): a token seen before skips the
signature check, but its time claims are checked again on every use, exactly as PyJWT checks
them, and it is accepted only while the key source still hands out the key set it was verified
with. Refusals are never remembered.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from jwt.utils import base64url_decode
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from signing_gateway.errors import GatewayError
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security.errors import AuthenticationFailed, PermissionDenied, TokenRefusal
from signing_gateway.security.jwks import JwksError, JwksKeys, KeySource
from signing_gateway.security.limits import BodyRefused
from signing_gateway.security.settings import ALL_SCOPES, AuthSettings

logger = logging.getLogger("signing_gateway.security")

#: A 403's reason, as `gateway_auth_failures_total` counts it and its log line says it.
_INSUFFICIENT_SCOPE = "insufficient-scope"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: the token's subject and client, and the scopes it grants."""

    subject: str
    client_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    authenticated: bool = True

    def require(self, *scopes: str) -> None:
        """Raise PermissionDenied unless every one of `scopes` is granted."""
        missing = [s for s in scopes if s not in self.scopes]
        if missing:
            raise PermissionDenied(missing)


ANONYMOUS = Caller(subject="anonymous", scopes=frozenset(ALL_SCOPES), authenticated=False)


def _scopes(value: object) -> frozenset[str]:
    if isinstance(value, str):
        # Spaces only (RFC 6749 section 3.3): `str.split()` also splits at tabs, U+001F or
        # U+00A0, granting a scope that is only part of one the identity provider issued.
        return frozenset(value.split(" ")) - {""}
    if isinstance(value, list):
        return frozenset(s for s in value if isinstance(s, str))
    return frozenset()


_REFUSALS: list[tuple[type[jwt.PyJWTError], TokenRefusal, str]] = [
    (jwt.ExpiredSignatureError, "expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "not-yet-valid", "the token is not valid yet"),
    (jwt.InvalidAudienceError, "wrong-audience", "the token is not meant for this gateway"),
    (jwt.InvalidIssuerError, "wrong-issuer", "the token comes from an unknown issuer"),
    (jwt.MissingRequiredClaimError, "missing-claim", "the token lacks a required claim"),
    (jwt.InvalidSignatureError, "bad-signature", "the token signature does not verify"),
    (jwt.InvalidAlgorithmError, "algorithm", "the token algorithm is not accepted"),
    # PyJWT raises this only for an iat that is not a number; an iat in the future is an
    # ImmatureSignatureError, above.
    (jwt.InvalidIssuedAtError, "invalid", "the token's iat claim is not a number"),
]

#: The media type prefix a token's `typ` may leave out (RFC 7515 section 4.1.9).
_APPLICATION = "application/"


def accepted_token_types(configured: Iterable[str]) -> frozenset[str]:
    """Each of the `configured` token types in every form a header's `typ` may give it.

    Media types compare case-insensitively, and a `typ` without a `/` means `application/`
    and it (RFC 7515 section 4.1.9): lowercased, and with and without that prefix where it may
    be left out, so that a request's check is one lookup of its `typ` lowercased.
    """
    forms: set[str] = set()
    for media_type in configured:
        name = media_type.lower()
        if "/" not in name:
            name = _APPLICATION + name
        forms.add(name)
        short = name.removeprefix(_APPLICATION)
        if short != name and "/" not in short:
            forms.add(short)
    return frozenset(forms)


#: The claims RFC 7519 types NumericDate: a JSON number, integer or not.
_TIME_CLAIMS = ("exp", "nbf", "iat")


def _not_a_numeric_date(claims: dict[str, Any]) -> str | None:
    """The first time claim in `claims` that is not a JSON number, or None.

    PyJWT takes `int()` of each, so a string (`"1796083200"`) or a boolean passed for a time;
    RFC 7519 section 2 makes a NumericDate a JSON number, which a float is too.
    """
    for name in _TIME_CLAIMS:
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            return name
    return None


def _refusal(exc: jwt.PyJWTError) -> AuthenticationFailed:
    """The refusal of a token PyJWT refused with `exc`."""
    for error_type, reason, detail in _REFUSALS:
        if isinstance(exc, error_type):
            return AuthenticationFailed(detail, reason=reason)
    return AuthenticationFailed("the token is invalid", reason="invalid")


def _claims_as_sent(token: str) -> dict[str, Any]:
    """The claims of `token` read as PyJWT reads them (`json`), with no check of any kind."""
    claims = json.loads(base64url_decode(token.split(".")[1]))
    return claims if isinstance(claims, dict) else {}


def _refuse_not_a_number(claims: dict[str, Any], cause: Exception | None) -> None:
    """Raise `AuthenticationFailed` if a time claim of `claims` is not a JSON number."""
    name = _not_a_numeric_date(claims)
    if name is not None:
        raise AuthenticationFailed(
            f"the token's {name} claim is not a number", reason="invalid"
        ) from cause


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token that passed every check: its caller, and what must be checked again on each use.

    `not_before` and `expires` are the token's iat/nbf and exp as PyJWT compares them (`int()`
    of the claim). `keys` refers to the key set the signature was checked with: the token is
    accepted from the cache only while the key source returns that very object. Weakly: a
    remembered token keeps no replaced key set alive (a JWKS URL's is replaced every refresh,
    and up to `token_cache_size` of them, each up to a 256 KiB document, would stay in memory
    for tokens that are never used again).
    """

    caller: Caller
    algorithm: str
    kid: str | None
    keys: weakref.ref[JwksKeys]
    not_before: int | None
    expires: int


def _verified(
    caller: Caller,
    algorithm: str,
    kid: str | None,
    keys: JwksKeys,
    claims: dict[str, Any],
) -> _Verified:
    # PyJWT accepted these claims, so int() of each present one succeeds (see _check_times).
    starts = [int(claims[name]) for name in ("iat", "nbf") if name in claims]
    return _Verified(
        caller, algorithm, kid, weakref.ref(keys), max(starts, default=None), int(claims["exp"])
    )


class TokenVerifier:
    """Checks bearer tokens: size, header, algorithm, key, signature, then the claims.

    Accepted tokens are remembered (see the module docstring): a token used again has only its
    time claims and key set checked.
    """

    def __init__(
        self,
        settings: AuthSettings,
        keys: KeySource,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Verify against `keys` with the algorithms, audience and issuer of `settings`.

        `clock` (wall-clock seconds) times the checks of remembered tokens; PyJWT reads the
        system clock for tokens it checks itself.
        """
        self._settings = settings
        self._keys = keys
        self._algorithms = frozenset(settings.algorithms)
        self._token_types = accepted_token_types(settings.token_types)
        self._clock = clock
        self._cache_size = settings.token_cache_size
        self._cache: OrderedDict[str, _Verified] = OrderedDict()

    @property
    def cached_tokens(self) -> int:
        """How many verified tokens are remembered."""
        return len(self._cache)

    async def verify(self, token: str) -> Caller:
        """The caller `token` identifies; AuthenticationFailed with a reason otherwise."""
        if len(token) > self._settings.max_token_bytes:
            raise AuthenticationFailed("the token is too long", reason="malformed")
        known = self._cache.get(token)
        if known is None:
            algorithm, kid = self._header(token)
            keys = await self._key_set(kid)
        else:
            self._check_times(token, known)
            algorithm, kid = known.algorithm, known.kid
            keys = await self._key_set(kid)
            if keys is known.keys():
                if token in self._cache:  # another request may have dropped it meanwhile
                    self._cache.move_to_end(token)
                return known.caller
            self._cache.pop(token, None)  # the keys changed: check the token against the new
        key = keys.key_for(kid, algorithm)
        if key is None:
            raise AuthenticationFailed("the token's signing key is unknown", reason="unknown-key")
        claims = self._claims(token, algorithm, key)
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise AuthenticationFailed("the token lacks a required claim", reason="missing-claim")
        client = claims.get("client_id")
        if not isinstance(client, str) or not client:  # null, "" or not text: OIDC's then
            client = claims.get("azp")
        caller = Caller(
            subject=subject,
            client_id=client if isinstance(client, str) and client else None,
            scopes=_scopes(claims.get(self._settings.scope_claim)),
        )
        if self._cache_size:
            self._remember(token, _verified(caller, algorithm, kid, keys, claims))
        return caller

    def _remember(self, token: str, verified: _Verified) -> None:
        self._cache[token] = verified
        self._cache.move_to_end(token)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _check_times(self, token: str, known: _Verified) -> None:
        """Refuse a remembered token outside its validity now, as PyJWT would (and forget it).

        PyJWT refuses `iat` or `nbf` > now + leeway as not yet valid, then `exp` <= now - leeway
        as expired, each claim taken as `int(claim)`.
        """
        now, leeway = self._clock(), self._settings.leeway_seconds
        if known.not_before is not None and known.not_before > now + leeway:
            self._cache.pop(token, None)
            raise AuthenticationFailed("the token is not valid yet", reason="not-yet-valid")
        if known.expires <= now - leeway:
            self._cache.pop(token, None)
            raise AuthenticationFailed("the token has expired", reason="expired")

    def _header(self, token: str) -> tuple[str, str | None]:
        """The accepted algorithm and the kid named in the token's header, of an accepted type.

        PyJWT refuses a header whose kid is there but not a string (null included) as an
        InvalidTokenError: the kid is then absent (None) or a string. The type (`typ`) is
        checked only when `auth.token_types` names some; the comparison is ASCII's (see
        `accepted_token_types`): `str.lower()` would take the Kelvin sign for a `k`.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed("the token is malformed", reason="malformed") from exc
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise AuthenticationFailed("the token algorithm is not accepted", reason="algorithm")
        if self._token_types:
            typ = header.get("typ")
            if not (isinstance(typ, str) and typ.isascii() and typ.lower() in self._token_types):
                raise AuthenticationFailed("the token type is not accepted", reason="wrong-type")
        return algorithm, kid

    async def _key_set(self, kid: str | None) -> JwksKeys:
        """The key set to look `kid` up in, from the key source."""
        try:
            return await self._keys.keys_for(kid)
        except JwksError as exc:
            raise AuthenticationFailed("no token keys are loaded", reason="no-keys") from exc

    def _claims(self, token: str, algorithm: str, key: jwt.PyJWK) -> dict[str, Any]:
        """Verify the signature and the registered claims; return every claim.

        The time claims are held to RFC 7519's NumericDate, a JSON number (see
        `_not_a_numeric_date`). The token's type (`typ`) was checked with its header, if at all
        (`auth.token_types`; see docs/security.md).
        """
        s = self._settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError) as exc:
            # PyJWT judges the times before the claims come back, taking `true` for 1 (so
            # "expired"). The signature has verified by then: its claims are read to name a
            # time claim that is no number as such, as for a token within its times.
            _refuse_not_a_number(_claims_as_sent(token), exc)
            raise _refusal(exc) from exc
        except jwt.PyJWTError as exc:
            raise _refusal(exc) from exc
        _refuse_not_a_number(claims, None)
        return claims


class BearerAuthentication(HTTPBearer):
    """The bearer scheme as OpenAPI documents it, answering with the authenticated `Caller`.

    FastAPI keeps each dependency's result until the request ends. `HTTPBearer`'s own result
    holds the token's text (about 1 KB with a 700-byte token, in a pydantic model) for as
    long as the request waits on a signer, for nothing once the caller is known: this one
    reads the token from the header field as `HTTPBearer` does, makes no such model, and
    hands FastAPI the `Caller` (one shared object per remembered token) instead.
    """

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]  # see above
        """Authenticate the request (once: FastAPI keeps a dependency's result)."""
        verifier: TokenVerifier | None = request.state.token_verifier
        if verifier is None:
            return ANONYMOUS
        known: Caller | None = request.scope.get(HEAD_CALLER)
        if known is not None:  # authenticated from the head (`authenticate_head`)
            return known
        try:
            return await _authenticate(verifier, request.headers.get("authorization"))
        except AuthenticationFailed as exc:
            _record_refusal(request.state.metrics, exc, request.url.path)
            raise


#: The scope key of the caller `authenticate_head` found, for the route's dependency.
HEAD_CALLER = "signing_gateway.head_caller"


async def _authenticate(verifier: TokenVerifier, authorization: str | None) -> Caller:
    """The caller the `Authorization` value's bearer token names.

    The token is read as `HTTPBearer` reads it: none unless the scheme is `Bearer` (in any
    case) and a token follows it.

    Raises:
        AuthenticationFailed: no bearer token, or one the verifier refuses.
    """
    scheme, token = get_authorization_scheme_param(authorization)
    if not (scheme and token) or scheme.lower() != "bearer":
        raise AuthenticationFailed("a bearer token is required", reason="missing")
    return await verifier.verify(token)


def _record_refusal(metrics: GatewayMetrics, exc: AuthenticationFailed, path: str) -> None:
    """Count and log a caller refused 401 (never its token)."""
    metrics.auth_failures.labels(reason=exc.reason).inc()
    logger.info(
        "caller refused",
        extra={"security_event": "auth-failed", "reason": exc.reason, "path": path},
    )


def _record_forbidden(
    metrics: GatewayMetrics, caller: Caller, path: str, exc: PermissionDenied
) -> None:
    """Count and log a caller refused 403: its token lacks a scope, which the line names.

    A scope's name is public (the 403's `WWW-Authenticate` names it too), and on-call needs
    it to tell an identity provider's missing grant from a caller at the wrong route.
    """
    metrics.auth_failures.labels(reason=_INSUFFICIENT_SCOPE).inc()
    logger.info(
        "caller lacks scope",
        extra={
            "security_event": "auth-forbidden",
            "reason": _INSUFFICIENT_SCOPE,
            "missing_scope": " ".join(exc.missing),
            "subject": caller.subject,
            "path": path,
        },
    )


async def authenticate_head(scope: Scope) -> None:
    """Authenticate a request to a `/v1` route from its head, before its body is asked for.

    For the body limits' `head_check`, which runs it on a request that holds its body back
    (`Expect: 100-continue`), after the refusals its head decides: the verifier checks the
    token as the route's dependency would, then the scopes the route requires before reading
    the body (its `RequireScopes` dependencies), and the caller it names is kept in the scope
    (`HEAD_CALLER`) for that dependency. A refusal is the dependency's 401 or 403 (problem and
    `WWW-Authenticate` alike, counted and logged alike), answered before the body is read, and
    counted under the route's template as the dependency's would be (the request's `route`). A
    request no route takes, or one to a route outside `/v1` (none of which authenticates), is
    left to the router.

    Raises:
        BodyRefused: the 401 of a request without a valid bearer token, the 403 of one whose
            token lacks a scope its route requires before its body.
    """
    state = scope.get("state") or {}
    verifier: TokenVerifier | None = state.get("token_verifier")
    if verifier is None:
        return
    route = _v1_route(scope)
    if route is None:
        return
    authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":  # once at most: the body limits refused it given twice
            authorization = value.decode("latin-1")
            break
    try:
        caller = await _authenticate(verifier, authorization)
    except AuthenticationFailed as exc:
        _record_refusal(state["metrics"], exc, scope["path"])
        raise _refused_from_head(scope, route, exc) from None
    for requirement in _requirements(route):
        try:
            requirement.check(caller)
        except PermissionDenied as exc:
            _record_forbidden(state["metrics"], caller, scope["path"], exc)
            raise _refused_from_head(scope, route, exc) from None
    scope[HEAD_CALLER] = caller


def _refused_from_head(scope: Scope, route: BaseRoute, exc: GatewayError) -> BodyRefused:
    """The body limits' refusal answering `exc` as the route's dependency would have."""
    # The request metrics label a request by the route the router noted in its scope: noted
    # here, the refusal is counted under the route's template, as the dependency's would be.
    scope["route"] = route
    headers = tuple((n.lower().encode(), v.encode()) for n, v in exc.headers().items())
    return BodyRefused(exc.status, exc.slug, exc.title, exc.detail, headers=headers)


def _v1_route(scope: Scope) -> BaseRoute | None:
    """The `/v1` route the app's router takes the request (path and method) to, if any."""
    router = getattr(scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route if str(getattr(route, "path", "")).startswith("/v1/") else None
    return None


def _requirements(route: BaseRoute) -> Iterator[RequireScopes]:
    """The scope checks among `route`'s own dependencies (its router's, and its own)."""
    for dependency in getattr(getattr(route, "dependant", None), "dependencies", ()):
        if isinstance(dependency.call, RequireScopes):
            yield dependency.call


authenticated_caller = BearerAuthentication(
    # The scheme's name in OpenAPI, as `HTTPBearer` names it: clients look it up by name.
    scheme_name="HTTPBearer",
    auto_error=False,
    description="A JWT from the configured identity provider; scopes in the `scope` claim",
)


CallerDep = Annotated[Caller, Depends(authenticated_caller)]


class ScopeCheck:
    """Scope checks for routes whose needs depend on the request (e.g. which parts it holds)."""

    def __init__(self, request: Request, caller: Caller) -> None:
        """Check for `caller` on `request`."""
        self._request = request
        self.caller = caller

    def require(self, *scopes: str) -> None:
        """Raise PermissionDenied (counted, logged) unless every one of `scopes` is granted."""
        try:
            self.caller.require(*scopes)
        except PermissionDenied as exc:
            _record_forbidden(self._request.state.metrics, self.caller, self._request.url.path, exc)
            raise


# `async def`: a plain `def` dependency would run in a worker thread on every request.
async def _scope_check(request: Request, caller: CallerDep) -> ScopeCheck:
    return ScopeCheck(request, caller)


ScopeCheckDep = Annotated[ScopeCheck, Depends(_scope_check)]


class RequireScopes:
    """A route dependency that authenticates, then requires `scopes`: all, or one if `any_of`.

    Its own class, so that `authenticate_head` finds it among a route's dependencies and makes
    the same check from a request's head, before the body is asked for.
    """

    __slots__ = ("any_of", "scopes")

    def __init__(self, *scopes: str, any_of: bool = False) -> None:
        """Require every one of `scopes`, or with `any_of` one of them at least."""
        self.scopes = scopes
        self.any_of = any_of

    def check(self, caller: Caller) -> None:
        """Raise PermissionDenied unless `caller` holds what is required."""
        if not self.any_of:
            caller.require(*self.scopes)
        elif caller.scopes.isdisjoint(self.scopes):
            raise PermissionDenied(list(self.scopes), any_of=True)

    # Straight on the caller, not through ScopeCheckDep: each dependency level costs FastAPI a
    # solve on every request (~8 % of /v1/dcc CPU went to dependency solving).
    async def __call__(self, request: Request, caller: CallerDep) -> Caller:
        """The caller, once it is found to hold what is required (else 403, counted, logged)."""
        try:
            self.check(caller)
        except PermissionDenied as exc:
            _record_forbidden(request.state.metrics, caller, request.url.path, exc)
            raise
        return caller


def require_scopes(*scopes: str, any_of: bool = False) -> RequireScopes:
    """A dependency that authenticates and then requires `scopes` (403 if not).

    Every one of them; with `any_of`, one at least: for a route whose exact needs show only in
    its body, so that a caller who could use none of it is refused before the body is read and
    learns nothing of how the body is checked.
    """
    return RequireScopes(*scopes, any_of=any_of)
