"""The one interface every credit bureau adapter implements: ``check(subject) -> BureauResult``.

Like the partner adapters, a bureau adapter imports only this module, its siblings, ``gateway.domain`` and
``gateway.errors``. It declares which of its errors are retryable (``BureauError.retryable``); the use case
(``services/credit.py``) retries those within the bureau's time budget, in one place.

Error texts name the bureau and what went wrong, never the subject nor the bureau's answer body (which
may quote the subject back).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from gateway.domain.credit import BureauResult, Subject
from gateway.errors import DeliveryError


class BureauError(DeliveryError):
    """A bureau could not answer. ``code``: ``timeout``, ``unavailable``, ``refused``, ``invalid_answer``,
    ``too_large`` (an answer longer than the bureau's ``max_answer_bytes``, not read further)."""

    def __init__(self, bureau_id: str, code: str, message: str, *, retryable: bool) -> None:
        self.bureau_id, self.code = bureau_id, code
        super().__init__(f"bureau {bureau_id}: {code}: {message}", retryable=retryable)


@runtime_checkable
class CreditBureau(Protocol):
    """A transport to one credit bureau, registered by alias in ``adapters.bureaus.BUREAUS``."""

    name: str
    bureau_id: str

    def check(self, subject: Subject, *, purpose: str = "", deadline: float | None = None) -> BureauResult:
        """Ask the bureau about ``subject`` for the stated ``purpose`` (the legitimate interest, which bureaus
        record); BureauError when there is no usable answer, ``timeout`` past ``deadline`` (``time.monotonic``;
        None: the adapter's own timeout from now), however slowly the bureau sends."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


DEFAULT_MAX_ANSWER_BYTES = 1 << 20


def read_capped(bureau_id: str, chunks: Iterable[bytes], max_bytes: int, deadline: float,
                declared: str | None = None) -> bytes:
    """A response body read chunk by chunk: ``too_large`` (not retryable) past ``max_bytes`` (or when the
    declared Content-Length says so before reading), ``timeout`` once ``deadline`` has passed (a bureau
    trickling bytes cannot hold the call beyond its budget by more than one read)."""
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise BureauError(bureau_id, "too_large", f"answer too large (over {max_bytes} bytes)", retryable=False)
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise BureauError(bureau_id, "too_large", f"answer too large (over {max_bytes} bytes)",
                              retryable=False)
        if time.monotonic() > deadline:
            raise BureauError(bureau_id, "timeout", "no complete answer in time", retryable=True)
    return bytes(body)


def time_left(bureau_id: str, deadline: float) -> float:
    """Seconds until ``deadline``; ``timeout`` when none are left (nothing is sent then)."""
    left = deadline - time.monotonic()
    if left <= 0.01:
        raise BureauError(bureau_id, "timeout", "no time left to ask", retryable=False)
    return left
