"""The one interface every partner adapter implements, and the values it passes in and out.

Adapters import only this module, ``gateway.domain`` and ``gateway.errors``; never the store.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

import msgspec


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """One rendered, signed and encrypted case file ready for a partner."""

    batch_id: str  # the idempotency key: delivering the same batch twice must not duplicate it
    partner_id: str
    filename: str
    payload: bytes
    claim_ids: list[int]
    content_type: str = "application/pkcs7-mime"


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """The partner's confirmation that a batch arrived."""

    batch_id: str
    partner_reference: str
    delivered_at: dt.datetime  # timezone-aware UTC
    detail: str = ""


@runtime_checkable
class PartnerAdapter(Protocol):
    """A transport to one collection partner, registered by alias in ``adapters.ADAPTERS``."""

    name: str
    # The adapter's own exceptions worth retrying; the dispatcher builds its retry policy from these
    # plus DeliveryError.retryable, so no adapter re-invents backoff.
    retryable: tuple[type[BaseException], ...]

    def deliver(self, batch: Batch) -> Receipt:
        """Hand the batch over exactly once; raises DeliveryError on failure."""
        ...

    def close(self) -> None:
        """Release connections and other resources."""
        ...
