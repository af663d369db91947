"""The domain layer: what a valid certificate request is. Pure and synchronous.

Nothing here knows HTTP, FastAPI or the signers. Value sets are read lazily from package data.
"""

from signing_gateway.domain.dcc import Dcc, EuRequest, KeyUsage, resolve_expiration
from signing_gateway.domain.domestic import (
    DomesticAttributes,
    DomesticPolicy,
    check_domestic_policy,
)
from signing_gateway.domain.errors import DomainValidationError, FieldError

__all__ = [
    "Dcc",
    "DomainValidationError",
    "DomesticAttributes",
    "DomesticPolicy",
    "EuRequest",
    "FieldError",
    "KeyUsage",
    "check_domestic_policy",
    "resolve_expiration",
]
