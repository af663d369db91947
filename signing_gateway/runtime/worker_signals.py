"""The signals a `serve --workers N` supervisor tells its workers by: drain, and stop now.

Each worker drains on its first SIGTERM and stops now on its second, wherever they come from.
The supervisor, stopping on a SIGTERM, used to pass it on to each worker as SIGTERM too; a
SIGTERM sent to the whole process group (`kill -TERM -- -<pgid>`, systemd's default
`KillMode=control-group`) then reached each worker twice, once from its sender and once from
the supervisor, and even the first one stopped every drain now: what was in flight was
answered 503 instead of finished. The supervisor's own signals are told apart from anyone
else's, and each says what it means whatever the worker had before: `DRAIN` does nothing to
a worker already draining or stopping, `STOP_NOW` nothing to one that has had its second
signal (`resilience.shutdown.WorkerServer`).

Real-time signals, not SIGUSR1 and SIGUSR2: SIGUSR1 is `serve`'s stack dump (`kill -USR1`,
docs/operations.md), and an operator's USR1 or USR2 to the process group would have drained
every worker. No one else has a reason to send real-time signals to the gateway's processes,
and the kernel queues them: one sent while another is pending is not merged into it. Their
default action ends a process, so a worker holds them blocked from its start until its
server takes them (`serving._GatewayProcess`): one sent while it still starts waits there.

Light on purpose: the supervisor and each worker import it before anything else of theirs.
"""

from __future__ import annotations

import signal

#: The first real-time signal, where the platform has them (Linux does; macOS has none).
_FIRST_REAL_TIME: int | None = getattr(signal, "SIGRTMIN", None)
#: Whether `serve --workers N` > 1 can run here: `cli` refuses it, with a usage error, where
#: not. One process (`serve`, `demo`) needs none of these signals and runs anywhere.
AVAILABLE = _FIRST_REAL_TIME is not None
#: The supervisor's "drain": a worker takes it as its first SIGTERM, unless already stopping.
#: (0, no signal, where there are none: never sent, as no supervisor runs there.)
DRAIN = int(_FIRST_REAL_TIME) if _FIRST_REAL_TIME is not None else 0
#: The supervisor's "stop now": a worker takes it as its second SIGTERM, unless it had one.
STOP_NOW = DRAIN + 1 if AVAILABLE else 0
#: Both, as `signal.pthread_sigmask` takes them (none where there are none).
SUPERVISOR_SIGNALS = frozenset({DRAIN, STOP_NOW}) if AVAILABLE else frozenset[int]()
