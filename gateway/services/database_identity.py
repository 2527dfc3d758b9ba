"""The database this gateway has worked on, so that it never starts its work on another one by mistake.

A wrong ``database.url`` after an edit, a volume that did not mount (SQLite makes an empty file where the database
was), a database restored from another installation: started on it, the gateway found no submissions, so files
it had already acknowledged were taken as new and their claims handed over to the partners again, and nothing
said anything was amiss. Each database has an id (``gateway_meta.database_id``, made by migration 0017); each
node keeps the id it worked on in ``<var>/database-id``, written at its first start. ``serve`` refuses to start
(one line, exit 1) on an empty database where the node has worked before (before migrating anything into it) and
on a database with another id. A deliberate new start or a restore from another installation is said by deleting
``<var>/database-id``; a backup of this installation restored is the same database, with the same id.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import inspect, make_url, select

from gateway.bootstrap import App
from gateway.errors import GatewayError
from gateway.store.db import read_tx
from gateway.store.schema import gateway_meta

ID_FILE = "database-id"

_HINT = ("a wrong database.url, a volume not mounted, or a database restored from another installation? Nothing was "
         "changed. If this database is meant (a deliberate new start, or a restore of another installation), delete "
         "{marker} and start again")


def marker_path(app: App) -> Path:
    return app.config.var_dir / ID_FILE


def check_before_migrating(app: App) -> None:
    """Where this node has worked on a database before: refuse any other, before anything is migrated or created in
    it (an empty one, one older than the ids, one with another id)."""
    marker = marker_path(app)
    known = _read(marker)
    if known is None:
        return
    url = make_url(app.config.database_url)
    # a plain SQLite path (a ``file:`` URI with ``uri=true`` names it otherwise: looked at through a connection)
    file = Path(url.database) if url.get_backend_name() == "sqlite" and url.database not in (None, ":memory:") \
        and not url.database.startswith("file:") and url.query.get("uri") not in ("true", "1") else None
    # SQLite is not connected to for these two: a connection makes the file, and its pragmas write its first page
    if file is not None and not file.is_file():
        found = f"the database file {file} is missing"
    elif file is not None and file.stat().st_size == 0:
        found = "the database is empty"
    else:
        tables = inspect(app.engine)
        if not tables.has_table("alembic_version"):
            found = "the database is empty"
        elif not tables.has_table("gateway_meta"):
            found = "the database has no id (its schema is older than the database this node worked on)"
        else:
            current = _database_id(app)
            if current == known:
                return
            found = f"the database is {current}"
    raise GatewayError(f"{found}, but this node has worked on database {known} ({marker}): "
                       + _HINT.format(marker=marker))


def verify(app: App) -> str:
    """After the schema is current: the database's id, kept in the node's ``<var>/database-id`` at its first start
    (``check_before_migrating`` compared it before, where the node had one)."""
    current = _database_id(app)
    if current is None:
        raise GatewayError("the database has no gateway_meta.database_id (migration 0017 incomplete?): run "
                           "'gateway db upgrade'")
    marker = marker_path(app)
    known = _read(marker)
    if known is None:
        tmp = marker.with_name(f".{ID_FILE}.{os.getpid()}.tmp")
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(current + "\n", encoding="utf-8")
            os.replace(tmp, marker)
        except OSError as exc:
            raise GatewayError(f"cannot write {marker} ({exc.strerror or type(exc).__name__}): it keeps the id of "
                               "the database this node works on; the var folder must be writable") from None
    elif known != current:  # changed under us between the two looks: said as at the first
        raise GatewayError(f"the database is {current}, but this node has worked on database {known} ({marker}): "
                           + _HINT.format(marker=marker))
    return current


def _database_id(app: App) -> str | None:
    with read_tx(app.engine) as conn:
        value = conn.execute(select(gateway_meta.c.value).where(gateway_meta.c.key == "database_id")).scalar()
    return None if value is None else str(value)


def _read(marker: Path) -> str | None:
    try:
        text = marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a folder in its place, no permission: said in one line, not a traceback
        raise GatewayError(f"cannot read {marker} ({exc.strerror or type(exc).__name__}): it keeps the id of the "
                           "database this node works on; make it a readable file, or delete it") from None
    return text or None
