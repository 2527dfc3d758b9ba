"""What kind of failure an exception is, and how to name it in a log line without leaking data.

``describe`` keeps the text only of errors whose text the gateway or the database driver composes
(SQL parameters are never rendered: engines are built with ``hide_parameters``); of any other
exception it keeps the type and the innermost frame, which is what an operator needs to find the
bug, while its message could carry a value from a client's file.
"""

from __future__ import annotations

import errno
import traceback

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.errors import GatewayError

_SERIALIZATION = {"40001", "40P01"}  # PostgreSQL serialization failure, deadlock detected
_FULL = {errno.ENOSPC, errno.EDQUOT}


def is_transient(exc: BaseException) -> bool:
    """Errors that go away by themselves: retry them for as long as they last, never give up."""
    if isinstance(exc, OperationalError):
        return True  # SQLite locked/busy, PostgreSQL connection lost or server shutting down
    if isinstance(exc, PoolTimeout):
        return True  # every pooled connection busy past the pool's timeout (threads waiting on a slow database)
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return getattr(exc.orig, "sqlstate", None) in _SERIALIZATION
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True  # a full disk or quota is freed by the operator; meanwhile nothing may count against a file
    return isinstance(exc, (TimeoutError, ConnectionError))


def describe(exc: BaseException) -> str:
    """A log-safe one-line description of ``exc`` (no values from client files)."""
    name = type(exc).__name__
    if isinstance(exc, DBAPIError):  # the driver's own first line; parameters are hidden by the engine
        orig = exc.orig if exc.orig is not None else exc
        return f"{type(orig).__name__}: {_first_line(str(orig))}"
    if isinstance(exc, GatewayError):
        return f"{name}: {_first_line(str(exc))}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{name}: {exc.strerror}" + (f" ({exc.filename})" if exc.filename else "")
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 2)[-1]}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return f"{name}{where}"


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."
