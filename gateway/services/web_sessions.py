"""Server-side sessions of the web console: started at login, checked on every request, ended at logout.

The session cookie stays Starlette's signed cookie; it carries a random token (``sid``) besides the login, and
a request counts as logged in only while the token's row exists and has not expired. So a logout (which
deletes the row) ends the session for every copy of the cookie and on every node, and an operator can end a
login's sessions. A session ends ``web.session_max_age_seconds`` after its last use; the expiry is moved on at
most once a minute per session, so pages read but do not write. Whatever the use, it ends
``web.session_absolute_seconds`` after its login (its row's ``created_at``): a stolen cookie kept busy by a
script, or a browser left open on a shared desk and clicked now and then, does not stay logged in for ever.

Each row is bound to the login's credential as it was at login (``credential``: a keyed fingerprint of its
password hash, client and role, from ``UserBook.credential``); a request whose login now has another credential
(a reset password, the login removed and added again, for another client, or the config file edited by hand)
ends the session. A reset password and a removed login also delete the login's rows at once (``end_login``). A login keeps at
most ``MAX_PER_LOGIN`` sessions: a new one beyond that ends the oldest.
The session's search texts live in its row too (``search``/``remember``): they may be a debtor's name, and the
cookie is only signed, not encrypted. In the row they are encrypted like the claims' debtor data (``app.cipher``,
bound to the row's token hash), so the database and its backups never hold them in plain; a row that does not
open (written in plain by an earlier version, or under a key since removed) counts as no search.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from gateway.bootstrap import App
from gateway.errors import KeyStoreError
from gateway.store import web_sessions as store
from gateway.store.db import read_tx, write_tx

log = logging.getLogger(__name__)
EXTEND_AFTER = timedelta(seconds=60)  # a used session's expiry is moved on when it is older than this
# Sessions one login keeps at once (browsers, devices): a script logging in again and again made a row each,
# kept for web.session_max_age_seconds; at a new login beyond this the oldest end.
MAX_PER_LOGIN = 32


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(app: App, login: str, credential: str) -> str:
    """A new session for ``login`` with its ``credential`` now: its token (for the cookie). Expired sessions
    are cleared on the way."""
    token, now = secrets.token_urlsafe(32), app.now()
    with write_tx(app.engine) as conn:
        store.remove_expired(conn, now)
        store.add(conn, _hash(token), login, credential, now, _expiry(app, now, now))
        ended = store.keep_newest(conn, login, MAX_PER_LOGIN)
    if ended:
        log.info("web.sessions_ended login=%s count=%d reason=too_many", login, ended)
    return token


def _expiry(app: App, now: datetime, created: datetime) -> datetime:
    """When a session used ``now`` ends: idle for ``session_max_age_seconds``, and never later than
    ``session_absolute_seconds`` after its login at ``created``."""
    web = app.config.web
    return min(now + timedelta(seconds=web.session_max_age_seconds),
               created + timedelta(seconds=web.session_absolute_seconds))


def check(app: App, token: str, login: str, credential: str | None) -> bool:
    """True while the session of ``token`` exists, belongs to ``login`` with the same ``credential`` (None:
    the login is gone) and has not expired, idle or absolutely (then its expiry is moved on, at most once a
    minute). A session whose credential changed or whose absolute lifetime is over is deleted: it never comes
    back (a lowered ``session_absolute_seconds`` holds for sessions already open too)."""
    key, now = _hash(token), app.now()
    with read_tx(app.engine) as conn:
        found = store.get(conn, key)
    if found is None or found[0] != login or found[2] <= now:
        return False
    _, stored, expires, created = found
    ends = _expiry(app, now, created)
    if credential is None or not hmac.compare_digest(stored, credential) or ends <= now:
        with write_tx(app.engine) as conn:
            store.remove(conn, key)
        return False
    if ends < expires or ends - expires >= EXTEND_AFTER:
        with write_tx(app.engine) as conn:
            store.extend(conn, key, ends)
    return True


def end_login(app: App, login: str) -> int:
    """End every session of ``login`` (its password was reset or it was removed): how many."""
    with write_tx(app.engine) as conn:
        count = store.remove_login(conn, login)
    log.info("web.sessions_ended login=%s count=%d", login, count)
    return count


SEALED = "s1:"  # marks a sealed search; anything else in the column is not read


def _aad(key: str) -> bytes:
    return f"web_sessions.search:{key}".encode()


def _seal(app: App, key: str, kept: dict[str, Any]) -> str:
    blob = app.cipher.encrypt(json.dumps(kept).encode(), _aad(key))
    return SEALED + base64.b64encode(blob).decode("ascii")


def _open(app: App, key: str, raw: str | None) -> dict[str, Any]:
    if not raw or not raw.startswith(SEALED):
        return {}
    try:
        kept = json.loads(app.cipher.decrypt(base64.b64decode(raw[len(SEALED):], validate=True), _aad(key)))
    except (KeyStoreError, binascii.Error, ValueError):
        return {}
    return kept if isinstance(kept, dict) else {}


def forget_plain_searches(app: App) -> int:
    """Forget the searches an earlier version kept in plain (never read now, but still in the table until their
    session ended): called when the console starts; how many."""
    with write_tx(app.engine) as conn:
        count = store.clear_searches_not_starting(conn, SEALED)
    if count:
        log.info("web_sessions.plain_searches_forgotten count=%d", count)
    return count


def recall(app: App, token: str, name: str) -> object:
    """The search ``name`` kept for the session of ``token`` (None when there is none)."""
    key = _hash(token)
    with read_tx(app.engine) as conn:
        raw = store.search(conn, key)
    return _open(app, key, raw).get(name)


def remember(app: App, token: str, name: str, value: object) -> None:
    """Keep (or, with None, forget) the search ``name`` for the session of ``token``, on the server."""
    key = _hash(token)
    with write_tx(app.engine) as conn:
        kept = _open(app, key, store.search(conn, key))
        if value is None:
            kept.pop(name, None)
        else:
            kept[name] = value
        store.set_search(conn, key, _seal(app, key, kept) if kept else None)


def end(app: App, token: str) -> None:
    """End the session of ``token`` (logout): every copy of its cookie is logged out from now on."""
    with write_tx(app.engine) as conn:
        store.remove(conn, _hash(token))
