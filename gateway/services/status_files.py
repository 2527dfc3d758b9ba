"""Status files: every status change of a client's claims since the last file, in ``status/``.

Driven by ``claim_events`` (client_id, id) and a cursor per client. The cursor moves and the planned
file (its event range) is recorded in one transaction *before* the file is written; a file lost to a
crash is written again from its range, so no change is reported twice or never. A run without new
events writes no file. Format per client: CSV (``;``, formula cells defused) or XML.

Each line also carries the claim's open amount, currency and the partner's file number as they stand
when the file is written (from the projection ``claim_current``): a client can book from the file alone.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import Connection, RowMapping

from gateway.bootstrap import App
from gateway.domain.model import from_minor
from gateway.episodes import Episodes
from gateway.errors import ConfigError
from gateway.faults import task_level
from gateway.domain.sandbox import is_sandbox_client
from gateway.services.ack import SANDBOX_NOTE, private_temp_name, remove_stale_temps, safe_cell
from gateway.store import event_notes, projection
from gateway.store import uploads as store
from gateway.store.db import read_tx, write_tx
from gateway.store.sql import dumps, loads

FORMATS = ("csv", "xml")
XML_NS = "urn:inkasso-gateway:status:1"
COLUMNS = ("event_id", "claim_id", "reference", "changed_at", "from_state", "state", "kind", "actor", "details",
           "open_amount", "currency", "file_number")
CHECK_RECENT = 20  # planned files checked for existence on each run
log = logging.getLogger(__name__)
_trouble = Episodes()  # client id -> the problem with its status folder, logged once
Failed = Callable[[str, BaseException], None]  # told of a client whose file could not be planned or written


def status_dir(app: App, client_id: str) -> Path:
    return app.config.inbox_dir / client_id / "status"


def write_due_status_files(app: App, *, force: bool = False, failed: Failed | None = None) -> list[Path]:
    """Plan and write every client's status file that is due (``force``: due now); returns files written.

    One client's trouble is its own: a file that cannot be written (a status folder made read-only), a stored
    event that cannot be read, or any other error of one client's plan or file is told to ``failed(client, exc)``
    and the other clients' files are written; the file is tried again at the next call. Without ``failed`` the
    first such error is raised once every client had its turn. The gateway's database away or broken is no
    client's fault: raised at once (``faults.task_level``)."""
    written: list[Path] = []
    first: BaseException | None = None
    for client_id, client in app.config.clients.items():
        if not client.sftp.status_files:
            continue
        for item in _client_files(app, client_id, client.sftp.status_format, force):
            if isinstance(item, Path):
                written.append(item)
            elif failed is not None:
                failed(client_id, item)
            else:
                first = first or item
    if first is not None:
        raise first
    return written


def _client_files(app: App, client_id: str, fmt: str, force: bool) -> Iterator[Path | BaseException]:
    """One client's due plan and files: each file written, or the error that kept one from being planned or
    written (then the client's other files still have their turn)."""
    try:
        if fmt not in FORMATS:
            raise ConfigError(f"expected one of {', '.join(FORMATS)}, got {fmt!r}", file=app.config.source,
                              key=f"clients.{client_id}.sftp.status_format")
        if not _folder_usable(app, client_id):
            return  # nothing planned meanwhile: the cursor stays, the next file holds what happened meanwhile
        _plan(app, client_id, fmt, force)
        with read_tx(app.engine) as conn:
            planned = store.planned_files(conn, client_id)[-CHECK_RECENT:]
    except Exception as exc:  # noqa: BLE001 - the client's alone, unless it is the database's (raised)
        if task_level(exc):
            raise
        yield exc
        return
    for row in planned:
        try:
            if not (status_dir(app, client_id) / row["filename"]).exists():
                yield _write(app, client_id, row)
        except Exception as exc:  # noqa: BLE001 - this file's alone; the client's next one has its turn
            if task_level(exc):
                raise
            yield exc


def _plan(app: App, client_id: str, fmt: str, force: bool) -> None:
    """Record the client's next file (its event range) when it is due; the cursor moves in the same transaction."""
    now = app.now()
    with write_tx(app.engine) as conn:
        cur = store.cursor(conn, client_id)
        last_run = cur["last_run_at"] if cur else None
        if force or last_run is None or (now - last_run).total_seconds() >= app.config.sftp.status_interval_seconds:
            after = int(cur["last_event_id"]) if cur else 0
            upto = max(after, store.max_event_id(conn, client_id))
            name = f"status_{now:%Y%m%dT%H%M%SZ}_{after + 1}-{upto}.{fmt}"
            store.plan_status_file(conn, client_id, after=after, upto=upto, filename=name, fmt=fmt, now=now)


def _folder_usable(app: App, client_id: str) -> bool:
    """False (logged once per problem) when the client's status folder cannot be made or is not a folder: that
    client's trouble alone, not a failure of the task that writes every client's files."""
    folder = status_dir(app, client_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # FileExistsError when a file has the name
        problem = None
    except OSError as exc:
        problem = f"{type(exc).__name__}: {exc.strerror or exc}"
    if problem is None:
        if _trouble.ok(client_id) is not None:
            log.info("status.folder_back client=%s folder=%s", client_id, folder)
    elif _trouble.failed(client_id, problem):
        log.warning("status.folder_unusable client=%s folder=%s error=%s: no status files for this client until it "
                    "is back (nothing is lost: the next file holds every change since the last one)", client_id,
                    folder, problem)
    return problem is None


def _write(app: App, client_id: str, plan: RowMapping) -> Path:
    with read_tx(app.engine) as conn:
        events = _revealed(conn, app, store.events_between(conn, client_id, plan["first_event_id"],
                                                           plan["last_event_id"]))
        now = projection.load(conn, [e["claim_id"] for e in events])
    folder = status_dir(app, client_id)
    folder.mkdir(parents=True, exist_ok=True)
    name = str(plan["filename"])
    final, tmp = folder / name, folder / private_temp_name(name)
    remove_stale_temps(final)
    try:
        if plan["format"] == "xml":
            _write_xml(tmp, client_id, plan, events, now)
        else:
            _write_csv(tmp, events, now, sandbox=is_sandbox_client(client_id))
        os.replace(tmp, final)
    except OSError as exc:
        # Named by the file it was for: the temp name is new at each try, so an error naming it would be a new
        # error at every look, logged each time instead of once while the folder stays unwritable.
        if exc.filename == str(tmp):
            exc.filename = str(final)
        if exc.filename2 == str(tmp):
            exc.filename2 = str(final)
        raise
    return final


def _revealed(conn: Connection, app: App, rows: list[RowMapping]) -> list[dict[str, Any]]:
    """The events with their sealed reasons opened (``event_notes``): the file is the client's, and says what
    the client wrote; the data of every other event stays the text stored."""
    events = [dict(r) for r in rows]
    sealed = [e for e in events if e["data"] and event_notes.SEALED in e["data"]]
    if sealed:
        docs = event_notes.reveal(conn, app.cipher, [{"claim_id": e["claim_id"], "data": loads(e["data"])}
                                                     for e in sealed])
        for e, doc in zip(sealed, docs):
            e["data"] = dumps(doc["data"])
    return events


def _cells(e: Mapping[str, Any], now: dict[int, dict[str, Any]]) -> tuple[str, ...]:
    cur = now.get(e["claim_id"])
    account = (str(from_minor(cur["open_minor"], cur["currency"])), cur["currency"],
               cur["partner_file_number"] or "") if cur else ("", "", "")
    return (str(e["id"]), str(e["claim_id"]), e["creditor_reference"], e["created_at"].isoformat(),
            e["from_state"] or "", e["state"], e["kind"], e["actor"], e["data"] or "", *account)


def _write_csv(path: Path, events: list[dict[str, Any]], now: dict[int, dict[str, Any]], sandbox: bool = False) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter=";", lineterminator="\r\n")
        w.writerow(COLUMNS)
        if sandbox:  # a sandbox's status file says so first, like its acks (docs/sandbox.md)
            w.writerow(["", "", "", "", "", "", "sandbox", "", SANDBOX_NOTE, "", "", ""])
        for e in events:
            w.writerow([safe_cell(c) for c in _cells(e, now)])
        fh.flush()
        os.fsync(fh.fileno())


def _write_xml(path: Path, client_id: str, plan: RowMapping, events: list[dict[str, Any]],
               now: dict[int, dict[str, Any]]) -> None:
    root = etree.Element(f"{{{XML_NS}}}statusChanges", nsmap={None: XML_NS})  # type: ignore[dict-item]  # the default namespace
    root.set("client", client_id)
    root.set("firstEvent", str(plan["first_event_id"]))
    root.set("lastEvent", str(plan["last_event_id"]))
    if is_sandbox_client(client_id):
        root.set("sandbox", "true")
    for e in events:
        change = etree.SubElement(root, f"{{{XML_NS}}}change")
        for col, value in zip(COLUMNS, _cells(e, now)):
            if value and col != "details":
                change.set(col, value)
        if e["data"]:
            etree.SubElement(change, f"{{{XML_NS}}}details").text = e["data"]
    with open(path, "wb") as fh:
        fh.write(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
        fh.flush()
        os.fsync(fh.fileno())
