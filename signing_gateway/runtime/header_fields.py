"""Header fields that repeat from request to request, kept once instead of once per request.

A request waiting on a slow signer keeps its header fields, as uvicorn parsed them, until it
is answered: with thousands in flight, most of them copies of the same few lines. Above all
the caller's `Authorization`, the same bearer token (hundreds of bytes) on every request a
client sends while the token lasts, but also `host`, `user-agent`, `content-type` and every
field name. `SharedFields.field` hands back one `(name, value)` tuple per distinct field
for the names in `REPEATING`, and one bytes object per distinct name otherwise: bytes are
immutable, so sharing them changes nothing but memory (about 1 KB less per request in
flight with a 700-byte token).

Both tables are bounded, and a full table is emptied rather than searched for what to drop:
a caller sending a new value on every request only costs the sharing, never memory or more
than a dictionary lookup per field.
"""

from __future__ import annotations

from typing import Final

__all__ = ["REPEATING", "SharedFields"]

#: Fields whose value is usually the same on every request of a client (lower case, as
#: uvicorn keeps names). Not `content-length` or `x-request-id`, which differ per request.
REPEATING: Final = frozenset(
    {
        b"authorization",
        b"host",
        b"user-agent",
        b"content-type",
        b"accept",
        b"accept-encoding",
        b"connection",
    }
)
#: At most this many names, and as many fields, are kept.
MAX_KEPT: Final = 1024


class SharedFields:
    """One tuple per distinct repeating field and one bytes object per name (see module)."""

    __slots__ = ("_fields", "_names")

    def __init__(self) -> None:
        """Start with nothing kept."""
        self._names: dict[bytes, bytes] = {}
        self._fields: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}

    def field(self, name: bytes, value: bytes) -> tuple[bytes, bytes]:
        """The header field `name: value` (`name` in lower case), shared where it repeats."""
        names = self._names
        kept_name = names.get(name)
        if kept_name is None:
            if len(names) >= MAX_KEPT:
                names.clear()
            kept_name = names[name] = name
        if kept_name not in REPEATING:
            return (kept_name, value)
        fields = self._fields
        pair = (kept_name, value)
        kept = fields.get(pair)
        if kept is None:
            if len(fields) >= MAX_KEPT:
                fields.clear()
            kept = fields[pair] = pair
        return kept
