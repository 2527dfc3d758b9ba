"""The one interface every credit bureau adapter implements: ``check(subject) -> BureauResult``.

Like the partner adapters, a bureau adapter imports only this module, its siblings, ``gateway.domain`` and
``gateway.errors``. It declares which of its errors are retryable (``BureauError.retryable``); the use case
(``services/credit.py``) retries those within the bureau's time budget, in one place.

Error texts name the bureau and what went wrong, never the subject nor the bureau's answer body (which
may quote the subject back).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gateway.domain.credit import BureauResult, Subject
from gateway.errors import DeliveryError


class BureauError(DeliveryError):
    """A bureau could not answer. ``code``: ``timeout``, ``unavailable``, ``refused``, ``invalid_answer``."""

    def __init__(self, bureau_id: str, code: str, message: str, *, retryable: bool) -> None:
        self.bureau_id, self.code = bureau_id, code
        super().__init__(f"bureau {bureau_id}: {code}: {message}", retryable=retryable)


@runtime_checkable
class CreditBureau(Protocol):
    """A transport to one credit bureau, registered by alias in ``adapters.bureaus.BUREAUS``."""

    name: str
    bureau_id: str

    def check(self, subject: Subject, *, purpose: str = "") -> BureauResult:
        """Ask the bureau about ``subject`` for the stated ``purpose`` (the legitimate interest, which bureaus
        record); BureauError when there is no usable answer."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
