"""Header fields that repeat from request to request, kept once instead of once per request.

A request waiting on a slow signer keeps its header fields, as uvicorn parsed them, until it
is answered: with thousands in flight, most of them copies of the same few lines. Above all
the caller's `Authorization`, the same bearer token (hundreds of bytes) on every request a
client sends while the token lasts, but also `host`, `user-agent`, `content-type` and every
field name. `SharedFields.field` hands back one `(name, value)` tuple per distinct field
for the names it shares, and one bytes object per distinct name otherwise: bytes are
immutable, so sharing them changes nothing but memory (about 1 KB less per request in
flight with a 700-byte token).

What is kept outlives the requests that sent it, so it is bounded in count and in size: at
most `MAX_KEPT` names of at most `MAX_NAME_BYTES` and as many fields with values of at most
`MAX_VALUE_BYTES` (about 4.3 MB at most per table), and a full table is emptied rather than
searched for what to drop. Longer names and values are kept per request as before. A caller
sending a new value on every request costs the sharing and at most that much memory, never
more than a dictionary lookup per field.
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
#: Longer names are not shared (field names are short; a long one is not a repeating one).
MAX_NAME_BYTES: Final = 64
#: Longer values are not shared (a bearer token of up to ~4 KB is).
MAX_VALUE_BYTES: Final = 4096


class SharedFields:
    """One tuple per distinct repeating field and one bytes object per name (see module)."""

    __slots__ = ("_fields", "_names", "_repeating")

    def __init__(self, repeating: frozenset[bytes] = REPEATING) -> None:
        """Share the values of the fields named in `repeating`; start with nothing kept."""
        self._repeating = repeating
        self._names: dict[bytes, bytes] = {}
        self._fields: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}

    def field(self, name: bytes, value: bytes) -> tuple[bytes, bytes]:
        """The header field `name: value` (`name` in lower case), shared where it repeats."""
        if len(name) > MAX_NAME_BYTES:
            return (name, value)
        names = self._names
        kept_name = names.get(name)
        if kept_name is None:
            if len(names) >= MAX_KEPT:
                names.clear()
            kept_name = names[name] = name
        if kept_name not in self._repeating or len(value) > MAX_VALUE_BYTES:
            return (kept_name, value)
        fields = self._fields
        pair = (kept_name, value)
        kept = fields.get(pair)
        if kept is None:
            if len(fields) >= MAX_KEPT:
                fields.clear()
            kept = fields[pair] = pair
        return kept
