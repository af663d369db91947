"""Whether the configured trust files can be used, found without starting anything.

`trust_file_problems` is part of the check `serve` makes before anything starts
(`start_up_checks`, exit status 2), and of the error `trust_loading.load_trust` raises when a
file it was given cannot be loaded after all. Only the settings and the trust stores are
imported here, not the signer clients: a refused start-up loads no more than it checks.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from signing_gateway.settings import TrustSettings
from signing_gateway.verification.trust import DomesticTrustStore, EuTrustStore, TrustConfigError

_EU_CERTIFICATES = "SIGNING_GATEWAY_TRUST__EU_CERTIFICATES"
_DOMESTIC_KEYS = "SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS"
#: Neither trust file list is set and the keys are not fetched: nothing could verify a signer.
NO_TRUST = (
    f"SIGNING_GATEWAY_TRUST: no signer keys configured: set {_EU_CERTIFICATES} and/or "
    f"{_DOMESTIC_KEYS} (JSON lists of key files), or SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS="
    "true with the fake signers"
)


def unreadable_file(path: Path) -> str | None:
    """Why `path` cannot be read as a key file (None: it can), without opening it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:  # a path through something not a directory, or not searchable
        return (exc.strerror or type(exc).__name__).lower()
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable by this process"
    return None


def _file_problems(
    variable: str, paths: Sequence[Path], load: Callable[[Path], object]
) -> list[str]:
    """A line per file of `variable` that cannot be read or does not hold usable keys.

    Files are named by their place in the list: as for every setting, the value given is not
    repeated.
    """
    problems = []
    for number, path in enumerate(paths, 1):
        problem = load_problem(path, load)
        if problem is not None:
            problems.append(f"{variable}: file {number} of {len(paths)}: {problem}")
    return problems


def load_problem(
    path: Path,
    load: Callable[[Path], object],
    refusal: type[ValueError] = TrustConfigError,
) -> str | None:
    """Why `load` cannot use the file at `path` (None: it can).

    The file's own problem is the message of the `refusal` that `load` raises for it.
    """
    problem = unreadable_file(path)
    if problem is None:
        try:
            load(path)
        except refusal as exc:
            problem = str(exc)
        except OSError as exc:
            problem = (exc.strerror or type(exc).__name__).lower()
    return problem


def trust_file_problems(settings: TrustSettings) -> list[str]:
    """What stops the configured trust from loading, a line each (blocking file I/O).

    Nothing configured at all; a file that does not exist, cannot be read or holds no usable
    key. Keys fetched from the signers can only be checked by fetching them, at start-up.
    """
    if settings.fetch_from_signers:
        return []
    if not settings.eu_certificates and not settings.domestic_keys:
        return [NO_TRUST]
    return _file_problems(
        _EU_CERTIFICATES, settings.eu_certificates, lambda p: EuTrustStore.from_files([p])
    ) + _file_problems(
        _DOMESTIC_KEYS, settings.domestic_keys, lambda p: DomesticTrustStore.from_files([p])
    )
