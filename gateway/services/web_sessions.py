"""Server-side sessions of the web console: started at login, checked on every request, ended at logout.

The session cookie stays Starlette's signed cookie; it carries a random token (``sid``) besides the login, and
a request counts as logged in only while the token's row exists and has not expired. So a logout (which
deletes the row) ends the session for every copy of the cookie and on every node, and an operator can end a
login's sessions. A session ends ``web.session_max_age_seconds`` after its last use; the expiry is moved on at
most once a minute per session, so pages read but do not write.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from gateway.bootstrap import App
from gateway.store import web_sessions as store
from gateway.store.db import read_tx, write_tx

log = logging.getLogger(__name__)
EXTEND_AFTER = timedelta(seconds=60)  # a used session's expiry is moved on when it is older than this


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(app: App, login: str) -> str:
    """A new session for ``login``: its token (for the cookie). Expired sessions are cleared on the way."""
    token, now = secrets.token_urlsafe(32), app.now()
    with write_tx(app.engine) as conn:
        store.remove_expired(conn, now)
        store.add(conn, _hash(token), login, now, now + timedelta(seconds=app.config.web.session_max_age_seconds))
    return token


def check(app: App, token: str, login: str) -> bool:
    """True while the session of ``token`` exists, belongs to ``login`` and has not expired (then its expiry
    is moved on, at most once a minute)."""
    key, now = _hash(token), app.now()
    with read_tx(app.engine) as conn:
        found = store.get(conn, key)
    if found is None or found[0] != login or found[1] <= now:
        return False
    max_age = timedelta(seconds=app.config.web.session_max_age_seconds)
    if found[1] - now < max_age - EXTEND_AFTER:
        with write_tx(app.engine) as conn:
            store.extend(conn, key, now + max_age)
    return True


def end(app: App, token: str) -> None:
    """End the session of ``token`` (logout): every copy of its cookie is logged out from now on."""
    with write_tx(app.engine) as conn:
        store.remove(conn, _hash(token))
