"""The idemix scheme's issuer key files: whether they can be used, and reading them.

Imported only in that scheme (`start_up_checks`, the app's start-up): it loads the key parser
(`verification.idemix_keys`), which the simulation scheme never runs. Keys are named by their
issuerPkId, not their path, as trust files are by their place in their list.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from signing_gateway.trust_files import load_problem, unreadable_file
from signing_gateway.verification.idemix_keys import (
    MAX_KEY_XML_CHARS,
    IdemixKeyError,
    IdemixPublicKey,
)

_IDEMIX_KEYS = "SIGNING_GATEWAY_IDEMIX__KEYS"


def _read_idemix_key(path: Path) -> IdemixPublicKey:
    """One IRMA XML issuer key file (blocking file I/O)."""
    if path.stat().st_size > MAX_KEY_XML_CHARS:
        raise IdemixKeyError(f"key XML longer than {MAX_KEY_XML_CHARS} characters")
    return IdemixPublicKey.from_xml(path.read_bytes())


def idemix_key_problems(keys: Mapping[str, Path]) -> list[str]:
    """A line per Idemix key file that cannot be read or parsed (blocking file I/O)."""
    problems = []
    for issuer_pk_id, path in keys.items():
        problem = load_problem(path, _read_idemix_key, IdemixKeyError)
        if problem is not None:
            problems.append(f"{_IDEMIX_KEYS}: key {issuer_pk_id}: {problem}")
    return problems


def read_idemix_keys(keys: Mapping[str, Path]) -> dict[str, IdemixPublicKey]:
    """The Idemix issuer keys by issuerPkId (blocking file I/O: start-up only).

    Raises:
        IdemixKeyError: a file cannot be read or parsed; the message names each, ``; ``
            between them.
    """
    if not any(unreadable_file(path) for path in keys.values()):
        try:
            return {issuer_pk_id: _read_idemix_key(path) for issuer_pk_id, path in keys.items()}
        except (IdemixKeyError, OSError):
            pass  # named below
    problems = idemix_key_problems(keys) or [
        f"{_IDEMIX_KEYS}: a key file changed while it was being loaded; start again"
    ]
    raise IdemixKeyError("; ".join(problems))
