"""The JWKS file and the audit file: whether they can be used, found without starting anything.

`security_file_problems` is part of the check `serve` and the served factory make before
anything starts (`start_up_checks`, exit status 2); the lifespan (`setup`) names a file that
fails it later in the same words, by its setting, never its path. Only what reading the two
files needs is imported here, not the token verifier or the audit trail.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from signing_gateway.security.jwks import JwksError, StaticJwks
from signing_gateway.security.settings import AuditSettings, AuthSettings
from signing_gateway.start_up import StartUpError
from signing_gateway.trust_files import unreadable_file

_JWKS_FILE = "SIGNING_GATEWAY_AUTH__JWKS_FILE"
AUDIT_FILE = "SIGNING_GATEWAY_AUDIT__FILE"
#: The JWKS URL client's TLS settings, less their names' last part (`CA_BUNDLE`).
JWKS_TLS = "SIGNING_GATEWAY_AUTH__JWKS_"


class SecurityFileError(StartUpError):
    """Raised when the JWKS file or the audit file cannot be used; the gateway refuses to start.

    Its message is one line of the settings report: the variable and what is wrong.
    """


def read_jwks_file(path: Path) -> StaticJwks:
    """The keys of the JWKS file at `path` (blocking file I/O: start-up only).

    Raises:
        SecurityFileError: the file cannot be read or holds no usable key.
    """
    # Checked without opening first: reading a FIFO, say, would wait for a writer for ever.
    problem = unreadable_file(path)
    if problem is None:
        try:
            return StaticJwks.read(path)
        except JwksError as exc:
            # A read error's message names the path; the settings' lines never do.
            problem = "cannot be read" if isinstance(exc.__cause__, OSError) else str(exc)
    raise SecurityFileError(f"{_JWKS_FILE}: {problem}")


def security_file_problems(auth: AuthSettings, audit: AuditSettings) -> list[str]:
    """What stops the JWKS file or the audit file from opening at start-up, a line each.

    Blocking file I/O, for the check before anything starts (`start_up_checks`): without it
    the lifespan fails at the first of them, once the server is up, with exit status 3. The
    paths are not repeated, as for every setting.
    """
    problems = []
    if auth.mode != "disabled" and auth.jwks_file is not None:
        try:
            read_jwks_file(auth.jwks_file)
        except SecurityFileError as exc:
            problems.append(str(exc))
    if audit.file is not None:
        problem = unwritable(audit.file)
        if problem is not None:
            problems.append(f"{AUDIT_FILE}: {problem}")
    return problems


def unwritable(path: Path) -> str | None:
    """Why the audit file at `path` cannot be opened for appending (None: it can).

    A path that cannot be looked up (a directory on the way this process may not search) is
    named by the OS's word for it, as a key file's is (`unreadable_file`): `Path.exists`
    raised there, and the check ended in a traceback instead of its lines.
    """
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        return (exc.strerror or type(exc).__name__).lower()
    else:
        if not stat.S_ISREG(mode):
            return "not a regular file"
        return None if os.access(path, os.W_OK) else "not writable by this process"
    try:
        directory = stat.S_ISDIR(path.parent.stat().st_mode)
    except OSError:
        directory = False
    if not directory:
        return "its directory does not exist"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return "its directory is not writable by this process"
    return None


def read_password_text(path: Path) -> str:
    """The password a file holds, without the line end an editor or a Secret adds (blocking)."""
    return path.read_text(encoding="utf-8").rstrip("\r\n")
