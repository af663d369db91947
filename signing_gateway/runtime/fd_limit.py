"""File descriptors: lift the soft limit at start, and say when the signer pools cannot fit.

Every caller connection and every signer connection is a descriptor. A signer call holds a
connection of its own for its whole round trip (HTTP/1.1), so a gateway using its signer pools
fully also has at least as many callers connected: it needs about twice the pools' size. Past
the limit, ``accept()`` fails (asyncio logs "socket.accept() out of system resource" and stops
accepting for a second) and signer connects fail with EMFILE, which the circuit breaker counts
as the signer being down: the gateway then answers 503 although both sides are healthy.
Measured: bench S4 with 10,000 callers and a 10,240-connection pool under a 20,000 limit
answered 14,160 requests 503 ``signer-unavailable``.

At start the soft limit is raised to the hard one (as the Go runtime does; many shells leave
it at 1,024), and a warning names the shortfall when the configured pools need more than that.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

__all__ = ["FdBudget", "fd_budget", "raise_soft_limit"]

logger = logging.getLogger(__name__)

#: Descriptors that are neither callers nor signer connections: the listening socket, the
#: log and audit files, the interpreter's own, the readiness probes.
SPARE = 256


def raise_soft_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.

    None: no limit. An unlimited hard limit is left alone (the kernel refuses an unlimited
    soft one for descriptors); the soft limit then stays what it was.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard not in (resource.RLIM_INFINITY, soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # pragma: no cover - the kernel refused; keep ours
            pass
    return None if soft == resource.RLIM_INFINITY else soft


@dataclass(frozen=True, slots=True)
class FdBudget:
    """The descriptor limit against what the signer pools may open."""

    limit: int | None  # None: no limit
    signer_connections: int

    @property
    def needed(self) -> int:
        """Pools full, as many callers connected, plus the spare."""
        return 2 * self.signer_connections + SPARE

    @property
    def fits(self) -> bool:
        """Whether the limit covers the pools in full use."""
        return self.limit is None or self.limit >= self.needed

    def snapshot(self) -> dict[str, int | bool | None]:
        """The /readyz view."""
        return {
            "limit": self.limit,
            "signerConnections": self.signer_connections,
            "needed": self.needed,
            "fits": self.fits,
        }


def fd_budget(signer_connections: int) -> FdBudget:
    """Lift the soft limit, then log the budget: a warning when the pools cannot fit."""
    budget = FdBudget(raise_soft_limit(), signer_connections)
    if budget.fits:
        logger.info(
            "file descriptor limit %s covers signer pools of %d connections",
            "(none)" if budget.limit is None else budget.limit,
            signer_connections,
        )
    else:
        logger.warning(
            "file descriptor limit %d is below the %d that signer pools of %d connections need "
            "with as many callers connected; past it accepts and signer connects fail (EMFILE). "
            "Raise the limit (ulimit -n, the container's nofile) or lower max_connections and "
            "resilience.max_in_flight",
            budget.limit,
            budget.needed,
            signer_connections,
        )
    return budget
