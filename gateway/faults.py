"""What kind of failure an exception is, and how to name it in a log line without leaking data.

``describe`` keeps the text only of errors whose text the gateway or the database driver composes
(SQL parameters are never rendered: engines are built with ``hide_parameters``); of any other
exception it keeps the type and the innermost frame, which is what an operator needs to find the
bug, while its message could carry a value from a client's file.
"""

from __future__ import annotations

import errno
import re
import traceback

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.errors import GatewayError

_SERIALIZATION = {"40001", "40P01"}  # PostgreSQL serialization failure, deadlock detected
_FULL = {errno.ENOSPC, errno.EDQUOT}
# How PostgreSQL refuses a login: a wrong password (or any failed authentication method), a role that does not
# exist or may not log in, a database that does not exist, no pg_hba.conf line, and libpq's own "no password
# supplied". psycopg reports a failed connection without its SQLSTATE (28P01, 28000, 3D000 arrive as text only),
# so the server's words decide: in English (lc_messages C or en, the default) and in German.
_REFUSED = re.compile(
    r'authentication failed for user|role ".*" does not exist|database ".*" does not exist|no pg_hba\.conf entry|'
    r'is not permitted to log in|no password supplied|'
    r"-Authentifizierung für Benutzer|Rolle ».*« existiert nicht|Datenbank ».*« existiert nicht|"
    r"kein pg_hba\.conf-Eintrag")


def database_refused(exc: BaseException) -> bool:
    """The database server refused the gateway's login (user, password, database name, pg_hba.conf).

    Waiting does not mend it; an operator does, and may do so while ``serve`` runs (a password changed back), so it
    is also transient: at start-up ``serve`` exits on it, while running it is retried like a lost connection but
    logged as an error.
    """
    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return False
    return _REFUSED.search(str(exc.orig)) is not None


# SQLite's primary result codes (the low byte of the extended code Python reports) for a database file no retry
# will mend: damaged pages, a file that is no SQLite database (or is encrypted), a file or folder not writable.
_SQLITE_READONLY, _SQLITE_CORRUPT, _SQLITE_NOTADB = 8, 11, 26
_SQLITE_ERROR = 1  # generic: the schema's absence is told by its message
_SCHEMA_GONE = ("no such table", "no such column")


def database_broken(exc: BaseException) -> bool:
    """The gateway's SQLite database cannot be used as it is: damaged ("database disk image is malformed"), not a
    database ("file is not a database"), read-only, or without the gateway's tables. Waiting does not mend it and
    every retry works on a damaged file, so ``serve`` stops at once for the operator (``Supervisor.report``).

    Locked or busy, a full disk, an I/O error and a file that cannot be opened (its folder away, no descriptors
    left) are transient instead: they pass, or an operator frees the disk, while the gateway waits.
    """
    if not isinstance(exc, DBAPIError):
        return False
    code = getattr(exc.orig, "sqlite_errorcode", None)  # Python 3.11+: every sqlite3 error carries it
    if not isinstance(code, int):
        return False
    primary = code & 0xFF
    if primary in (_SQLITE_READONLY, _SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    return primary == _SQLITE_ERROR and str(exc.orig).startswith(_SCHEMA_GONE)


def is_transient(exc: BaseException) -> bool:
    """Errors that go away by themselves (or by an operator's hand while the gateway runs): retry them for as long
    as they last, never give up, never count them against a file or a partner."""
    if database_broken(exc):
        return False  # an OperationalError too (read-only, no such table), but no wait mends it
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


def task_level(exc: BaseException) -> bool:
    """The failure of a whole task, not of the one item (a client, a file, a submission) it was working on when it
    came: the gateway's own database away or busy, a full disk (``is_transient``: retried for as long as it lasts)
    or the database broken (``database_broken``: serve ends at once). Loops that contain an item's failure so that
    the other items go on raise these instead: every other item would meet them too."""
    return is_transient(exc) or database_broken(exc)


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
