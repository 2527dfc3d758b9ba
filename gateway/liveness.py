"""Signs of life from long work inside a supervised step, for the liveness check.

A step that ingests a large file runs for minutes; without a sign of life the health check would call
its task stale and a probe would restart a gateway that is working. The supervisor binds a callback in
each task's context (``bind``); ``asyncio.to_thread`` carries the context into the worker thread, where
the work calls ``beat()`` at each unit it finishes (a chunk of rows committed, a partner page applied).
A step that hangs (an adapter call that never returns) does not beat and still goes stale.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable

_current: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar("gateway_beat", default=None)


def bind(callback: Callable[[], None]) -> None:
    """In a supervised task's own context: where ``beat()`` reports."""
    _current.set(callback)


def beat() -> None:
    """The work in this context made progress (no-op outside a supervised task)."""
    callback = _current.get()
    if callback is not None:
        callback()
