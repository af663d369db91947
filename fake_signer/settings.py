"""Settings of a fake-signer process, from keyword arguments or `FAKE_SIGNER_*` variables."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from collections.abc import Mapping


class Role(StrEnum):
    """Which signer services a process serves."""

    EU = "eu"
    DOMESTIC = "domestic"
    ALL = "all"

    @property
    def serves_eu(self) -> bool:
        """Whether the EU endpoints and keys are served."""
        return self in {Role.EU, Role.ALL}

    @property
    def serves_domestic(self) -> bool:
        """Whether the domestic endpoints and keys are served."""
        return self in {Role.DOMESTIC, Role.ALL}


class LatencyDistribution(StrEnum):
    """Shape of the simulated signing latency.

    `fixed` waits exactly `latency_ms`; `uniform` draws from latency ± jitter (never below 0);
    `lognormal` draws with mean `latency_ms` and standard deviation `jitter_ms` (a long right tail,
    as HSM latencies tend to have).
    """

    FIXED = "fixed"
    UNIFORM = "uniform"
    LOGNORMAL = "lognormal"


class DomesticScheme(StrEnum):
    """How the domestic endpoints sign.

    `simulation` signs with Ed25519 in the Idemix message shapes (`fake_signer.domestic`);
    `idemix` issues real CL signatures and NL2 QRs with the CoronaCheck test key VWS-TEST-0
    (`fake_signer.idemix_signer`), as the Idemix server answers.
    """

    SIMULATION = "simulation"
    IDEMIX = "idemix"


class Overflow(StrEnum):
    """What happens to a signing request when every capacity slot is taken."""

    QUEUE = "queue"
    REJECT = "reject"


#: The prefix of the environment variables read (any case, as pydantic-settings reads them).
ENV_PREFIX = "FAKE_SIGNER_"
#: The port of each role when none is given: where a gateway in development looks for that signer
#: (its default signer URLs), clear of the gateway's own 8080 and probe port 8081. Role `all`
#: takes the EU signer's.
DEFAULT_PORTS = {Role.EU: 9081, Role.DOMESTIC: 9082, Role.ALL: 9081}
#: The longest latency, jitter, `delay` or `slow-body` the fake takes, in milliseconds (10
#: minutes): longer than any client waits, while a larger one (`delay=1e300`) would in effect be a
#: hang, which the `hang` fault already says outright. A latency draw is never longer either.
MAX_LATENCY_MS = 600_000.0
#: The largest listen backlog a socket takes (a C int); the kernel caps it at somaxconn anyway.
MAX_BACKLOG = 2**31 - 1


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


# The levels `logging` knows by name, in any case (checked here: a bad one is a settings error).
LogLevel = Annotated[
    Literal["debug", "info", "warning", "error", "critical"], BeforeValidator(_lower)
]


class FakeSignerSettings(BaseSettings):
    """Everything a fake-signer process can be told at start.

    Each field is also read from the environment as `FAKE_SIGNER_<FIELD>` (e.g.
    `FAKE_SIGNER_LATENCY_MS=200`); keyword arguments win over the environment.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    role: Role = Role.ALL
    # Not empty: "" would bind every interface.
    host: str = Field(default="127.0.0.1", min_length=1)
    # Default: DEFAULT_PORTS of the role (see `_port_for_role`).
    port: int = Field(default=DEFAULT_PORTS[Role.ALL], ge=0, le=65535)
    # At most MAX_LATENCY_MS: a longer (or infinite) latency would make every signing hang.
    latency_ms: float = Field(default=0.0, ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False)
    jitter_ms: float = Field(default=0.0, ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False)
    latency_distribution: LatencyDistribution = LatencyDistribution.UNIFORM
    seed: int | None = None
    capacity: int | None = Field(default=None, ge=1)
    overflow: Overflow = Overflow.QUEUE
    error_rate: float = Field(default=0.0, ge=0, le=1)
    country: str = Field(default="NL", pattern=r"^[A-Z]{2}$")
    keys_dir: Path | None = None
    # Large enough for thousands of simultaneous connects (the kernel caps it at somaxconn); at
    # most what listen() takes, a C int.
    backlog: int = Field(default=8192, ge=1, le=MAX_BACKLOG)
    # Seconds to wait for running signing requests on shutdown before cancelling them (0: at once);
    # at most as long as the longest latency: a larger one (1e300) would keep a stop from ending.
    shutdown_timeout: float = Field(
        default=2.0, ge=0, le=MAX_LATENCY_MS / 1000, allow_inf_nan=False
    )
    log_level: LogLevel = "info"
    # Stop once this process is no longer the parent: a launcher killed outright (SIGKILL) takes
    # its fakes with it, also those in a process group of their own (the demo's).
    parent_pid: int | None = Field(default=None, ge=1)
    domestic_scheme: DomesticScheme = DomesticScheme.SIMULATION

    @model_validator(mode="before")
    @classmethod
    def _port_for_role(cls, data: Any) -> Any:  # noqa: ANN401 - raw settings, validated after
        # Runs on the arguments and environment merged: a port given either way wins.
        if not isinstance(data, dict) or "port" in data:
            return data
        try:
            role = Role(data.get("role", Role.ALL))
        except ValueError:
            return data  # the role's own validation reports it
        return {**data, "port": DEFAULT_PORTS[role]}

    @field_validator("keys_dir", mode="before")
    @classmethod
    def _keys_dir_given(cls, value: object) -> object:
        # Path("") is ".": an empty value would write private keys into the working directory.
        if value == "":
            raise ValueError("must not be empty (leave it unset for throwaway keys)")
        return value


class UnknownVariableError(ValueError):
    """A `FAKE_SIGNER_*` environment variable that names no setting."""


def check_variables(environ: Mapping[str, str]) -> None:
    """Refuse `FAKE_SIGNER_*` variables that name no setting.

    pydantic-settings ignores them even with `extra="forbid"`, so a misspelt one
    (`FAKE_SIGNER_LATENCY=200`) would start a fake without the behaviour a test asked for.

    Raises:
        UnknownVariableError: naming each such variable.
    """
    known = {f"{ENV_PREFIX}{name}".upper() for name in FakeSignerSettings.model_fields}
    unknown = sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )
    if unknown:
        raise UnknownVariableError(
            f"unknown environment variable {', '.join(unknown)}: each {ENV_PREFIX}* variable "
            f"names an option, as {ENV_PREFIX}LATENCY_MS does --latency-ms"
        )
