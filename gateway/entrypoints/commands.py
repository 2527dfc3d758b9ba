"""CLI command handlers: one function per ``gateway <command> [action]``, each returning an exit code."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from gateway.bootstrap import App
from gateway.config import GatewayConfig
from gateway.entrypoints.output import money, print_fields, print_json, print_table
from gateway.errors import GatewayError
from gateway.faults import database_refused, describe, is_transient
from gateway.services.ack import AckTargetError, ack_target
from gateway.services.dispatch import Dispatcher, release_waiting_rows, retry_all_dead, retry_dead
from gateway.entrypoints.progress import RowProgress
from gateway.services.ingest import IngestResult, ingest_file
from gateway.services.ingest_run import PROGRESS
from gateway.services.listing import Page, claims_page, outbox_page, submissions_page
from gateway.services.keys import init_keys
from gateway.services.node import break_outbox_lease
from gateway.services import claim_queries, projection_ops
from gateway.services.partner_updates import collection_run_status
from gateway.store import claims as claim_store
from gateway.store import event_notes
from gateway.store import submissions as sub_store
from gateway.store.db import pending_migrations, read_tx, upgrade


log = logging.getLogger("gateway.serve")

INGEST_LEASE_WAIT = 600.0  # seconds `gateway ingest` waits while another process ingests for the client


def ensure_schema(app: App) -> None:
    """SQLite (one node) migrates itself; a shared PostgreSQL is migrated on purpose with ``db upgrade``."""
    if not pending_migrations(app.engine):
        return
    if make_url(app.config.database_url).get_backend_name() == "sqlite":
        upgrade(app.engine)
        return
    raise GatewayError("the database schema is not up to date: run 'gateway db upgrade'")


def _schema_of_this_installation(app: App) -> None:
    """``ensure_schema`` on the database this node has worked on, never on another (services/database_identity)."""
    from gateway.services import database_identity

    database_identity.check_before_migrating(app)
    ensure_schema(app)
    database_identity.verify(app)


SCHEMA_WAIT_MAX = 30.0  # seconds between looks for a database that is away when `serve` starts


def wait_for_schema(app: App) -> bool:
    """``ensure_schema`` for ``serve``: a database that is not reachable yet (the machine booting, a server
    restarting, a failover) is waited for, with a log line per try and backoff up to ``SCHEMA_WAIT_MAX``,
    instead of the process ending with a traceback. A database that refuses the login (``database_refused``)
    is not waited for: ``GatewayError``, exit 1. False when SIGINT or SIGTERM came meanwhile."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda _s, _f: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        attempt = 0
        while True:
            try:
                if not _unless_stopped(lambda: _schema_of_this_installation(app), stop):
                    break
                if attempt:
                    log.info("serve.database_back attempts=%d", attempt + 1)
                return True
            except DBAPIError as exc:
                if database_refused(exc):
                    raise refused_at_start(exc) from None
                if not is_transient(exc):
                    raise
                attempt += 1
                delay = min(SCHEMA_WAIT_MAX, 0.5 * 2 ** (attempt - 1))
                log.warning("serve.database_unavailable attempt=%d retry_in=%.1fs error=%s", attempt, delay,
                            describe(exc))
            if stop.wait(delay):
                break
        log.info("serve.stopped exit_code=0 (stopped while waiting for the database)")
        return False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def refused_at_start(exc: BaseException) -> GatewayError:
    """The one line ``serve`` exits with (1) when the database refuses its login: a wrong user, password or database
    name is not mended by waiting, and a service manager restarting it for ever would hide the cause. The server's
    reason names the user or database, never the password (the URL is not part of it)."""
    return GatewayError(f"the database refused the gateway ({describe(exc)}); waiting will not mend this: check "
                        "the user, password and database name in database.url and the server's pg_hba.conf")


def _unless_stopped(fn: Any, stop: threading.Event) -> bool:
    """Run ``fn`` in a thread of its own until it ends (True; its exception is raised here) or ``stop`` is set
    (False). A server that takes the connection and never answers (hung, or a proxy whose backend is gone) keeps
    the driver waiting for as long as its connect timeout, and a stop signal must not wait for that; the
    abandoned thread is a daemon and ends with the process."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
            outcome.append(exc)

    thread = threading.Thread(target=run, name="serve-database-check", daemon=True)
    thread.start()
    while thread.is_alive():
        if stop.is_set():
            return False
        thread.join(0.1)
    if outcome and outcome[0] is not None:
        raise outcome[0]
    return True


def _sqlite_file(app: App) -> Path | None:
    url = make_url(app.config.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def require_database(app: App) -> None:
    """Refuse to work on a SQLite database that does not exist (connecting would create an empty one)."""
    path = _sqlite_file(app)
    if path is not None and not path.exists():
        raise GatewayError(f"no database at {path}: run `gateway db upgrade` first (or check --config)")


def db_upgrade(app: App) -> int:
    """Create or migrate the schema, and say which."""
    path = _sqlite_file(app)
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        upgrade(app.engine)
        print(f"created database {path} (schema at the latest version)")
        return 0
    where = str(path) if path is not None else app.engine.url.render_as_string(hide_password=True)
    if not pending_migrations(app.engine):
        print(f"database {where}: schema is up to date")
        return 0
    fresh = not inspect(app.engine).has_table("alembic_version")
    upgrade(app.engine)
    print(f"database {where}: {'created the schema' if fresh else 'migrated the schema to the latest version'}")
    return 0


def keys_init(cfg: GatewayConfig) -> int:
    made = init_keys(cfg)
    for line in made:
        print(f"created {line}")
    if not made:
        print(f"all keys exist under {cfg.keys_dir}")
    return 0


def serve(app: App, args: argparse.Namespace) -> int:
    from gateway.entrypoints.serve import run_server
    return run_server(app)


# -- ingest ------------------------------------------------------------------------------------
def ingest(app: App, args: argparse.Namespace) -> int:
    ack = None
    if args.ack is not None:  # checked before anything is stored: a bad target must not strand a submission
        client = app.config.clients.get(args.client)
        try:
            ack = ack_target(args.ack, args.file.name, client.ack_format if client else "auto")
        except AckTargetError as exc:
            print(f"gateway ingest: error: --ack: {exc}", file=sys.stderr)
            return 2
    # A running serve (this node or another) may be ingesting for the same client: wait for our turn.
    progress = RowProgress(args.file.name)
    token = PROGRESS.set(progress)
    try:
        result = ingest_file(app, args.file, args.client, mapping_path=args.mapping, dry_run=args.dry_run,
                             ack_path=ack, lease_wait=INGEST_LEASE_WAIT)
    finally:
        PROGRESS.reset(token)
        summary = progress.finish()
    if result.status not in ("duplicate", "failed") or result.rows:
        print(f"{args.file.name}: {summary}", file=sys.stderr)  # the summary line (stderr: --json stays clean)
    if args.json:
        print_json(_result_doc(result))
    else:
        _print_result(result)
    return 3 if result.status == "failed" else 0


def _result_doc(r: IngestResult) -> dict[str, Any]:
    return {
        "submission": r.submission, "status": r.status, "client": r.client_id, "file": r.filename,
        "dry_run": r.dry_run, "rows": r.rows, "accepted": r.accepted, "held": r.held, "rejected": r.rejected,
        "total_amount": r.total_amount, "duplicate_of": r.duplicate_of, "ack": r.ack_path, "error": r.error,
        "results": [{"row": x.row, "reference": x.reference, "outcome": x.outcome, "claim_id": x.claim_id,
                     "findings": [msgspec.structs.asdict(f) for f in x.findings]} for x in r.results],
        "results_truncated": r.results_truncated,
    }


def _print_result(r: IngestResult) -> None:
    if r.status == "duplicate":
        print(f"{r.filename}: already ingested as submission {r.duplicate_of}; nothing done")
        return
    if r.status == "failed":
        print(f"{r.filename}: file not usable: {r.error}", file=sys.stderr)
    label = "dry run (nothing stored)" if r.dry_run else f"submission {r.submission}"
    print(f"{r.filename}: {label}: {r.rows} rows, {r.accepted} accepted, {r.held} held, {r.rejected} rejected"
          f" (open total {r.total_amount})")
    for x in r.results:
        if x.findings:
            for f in x.findings:
                where = f.column or f.field or ""
                print(f"  row {x.row} {x.reference or ''} [{x.outcome}] {f.code} {where}: {f.message}")
    if r.results_truncated:
        print("  (more rows: see the ack file)")
    if r.ack_path and not r.dry_run:
        print(f"ack: {r.ack_path}")


# -- claims ------------------------------------------------------------------------------------
def claims_list(app: App, args: argparse.Namespace) -> int:
    with read_tx(app.engine) as conn:
        sid = sub_store.get(conn, args.submission)["id"] if args.submission else None
        page = claims_page(conn, client_id=args.client, state=args.status, submission_id=sid, since=args.since,
                           until=args.until, limit=args.limit, offset=args.offset, sandbox=args.sandbox)
    docs = [{**r, "open_amount": money(r["open_minor"], r["currency"])} for r in page.rows]
    if args.json:
        print_json(docs)
    else:
        print_table(docs, ("id", "client_id", "creditor_reference", "state", "open_amount", "partner_id",
                           "due_date", "created_at"))
    _cut_note(page)
    return 0


def _cut_note(page: Page) -> None:
    """On stderr, so stdout stays the data a script reads."""
    if page.cut:
        print(page.note(), file=sys.stderr)


def claims_show(app: App, args: argparse.Namespace) -> int:
    v = claim_queries.operator_claim(app, args.claim_id)
    claim, a = v.claim, v.account
    account = {k: getattr(a, k) for k in ("principal", "fees", "interest", "agency_costs", "paid_direct",
                                          "paid_agency", "payouts", "written_off", "open", "overpaid")}
    doc = {"id": v.claim_id, "state": v.state, "submission": v.submission, "created_at": v.created_at,
           "total_open_amount": a.open, "account": {"currency": a.currency, **account, "stage": a.stage,
                                                    "partner_file_number": a.partner_file_number,
                                                    "closing_reason": a.closing_reason, "unread": a.unread},
           "claim": claim}
    if args.json:
        print_json(doc)
    else:
        print_fields([("claim", v.claim_id), ("state", v.state), ("stage", a.stage), ("client", claim.client_id),
                      ("reference", claim.creditor_reference), ("debtor", claim.debtor.display_name()),
                      ("partner", claim.partner_id), ("file number", a.partner_file_number),
                      ("closing reason", a.closing_reason), ("created", v.created_at),
                      *((k.replace("_", " "), f"{amount} {a.currency}") for k, amount in account.items())])
        print()
        print(msgspec.json.format(msgspec.json.encode(claim), indent=2).decode())
    return 0


def claims_seen(app: App, args: argparse.Namespace) -> int:
    if not args.all and not args.claim_ids:
        print("gateway claims seen: name claim ids or --all", file=sys.stderr)
        return 2
    n = projection_ops.mark_seen(app, args.client, None if args.all else args.claim_ids)
    print(f"{n} claim(s) marked seen")
    return 0


def db_rebuild_projection(app: App) -> int:
    c = projection_ops.rebuild_projection(app)
    print(f"projection rebuilt: {c.claims} claims from {c.events} events; {c.added} added, {c.changed} corrected, "
          f"{c.unchanged} unchanged" + (f", {c.removed} naming no claim removed" if c.removed else ""))
    return 0


def claims_history(app: App, args: argparse.Namespace) -> int:
    with read_tx(app.engine) as conn:
        claim_store.get_row(conn, args.claim_id)
        events = event_notes.reveal(conn, app.cipher, claim_store.history(conn, args.claim_id))
    if args.json:
        print_json(events)
    else:
        print_table([{**e, "detail": _detail(e["data"])} for e in events],
                    ("id", "created_at", "from_state", "state", "actor", "kind", "detail"))
    return 0


def _detail(data: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in data.items()) if isinstance(data, dict) else ""


# -- submissions -------------------------------------------------------------------------------
def submissions_list(app: App, args: argparse.Namespace) -> int:
    with read_tx(app.engine) as conn:
        page = submissions_page(conn, client_id=args.client, status=args.status, since=args.since,
                                until=args.until, limit=args.limit, offset=args.offset, sandbox=args.sandbox)
    docs = [_submission_doc(r) for r in page.rows]
    if args.json:
        print_json(docs)
    else:
        docs = [{**d, "rows": f"{d['rows_done']} so far" if d["status"] == "processing" else d["rows"]} for d in docs]
        print_table(docs, ("reference", "client_id", "channel", "filename", "status", "rows", "accepted", "held",
                           "rejected", "total", "received_at"))
    _cut_note(page)
    return 0


def _submission_doc(r: Any) -> dict[str, Any]:
    doc = {k: v for k, v in r.items() if k not in ("dedupe_key",)}
    doc["total"] = money(r["total_minor"], r["currency"] or "EUR")
    # counts are written at the end; progress_row (last source row stored) moves with every chunk
    doc["rows_done"] = r["progress_row"] if r["status"] == "processing" else r["rows"]
    return doc


def submissions_show(app: App, args: argparse.Namespace) -> int:
    ref: int | str = int(args.reference) if args.reference.isdigit() else args.reference
    with read_tx(app.engine) as conn:
        row = sub_store.get(conn, ref)
        found = sub_store.findings(conn, row["id"])
        run = collection_run_status(conn, row["id"])
    # handover: processing until the partner confirmed every claim sent, then handed_over
    doc = {**_submission_doc(row), "handover": run, "findings": [dict(f) for f in found]}
    if args.json:
        print_json(doc)
    else:
        print_fields([(k, v) for k, v in doc.items() if k != "findings"])
        print()
        print_table(found, ("row", "reference", "outcome", "code", "column", "message"), empty="no findings")
    return 0


# -- outbox ------------------------------------------------------------------------------------
def outbox_list(app: App, args: argparse.Namespace) -> int:
    with read_tx(app.engine) as conn:
        page = outbox_page(conn, status=args.status, partner_id=args.partner, limit=args.limit, offset=args.offset)
    if args.json:
        print_json([{k: v for k, v in r.items() if k != "payload"} for r in page.rows])
    else:
        print_table(page.rows, ("id", "partner_id", "operation", "status", "attempts", "available_at",
                                "last_error"))
    _cut_note(page)
    return 0


def outbox_retry(app: App, args: argparse.Namespace) -> int:
    dead, partner, force = getattr(args, "dead", False), getattr(args, "partner", None), getattr(args, "force", False)
    waiting = getattr(args, "waiting", False)
    wrong = (("--waiting goes with --partner P alone (no row id, --dead or --force)"
              if not partner or dead or force or args.id is not None else None) if waiting
             else "--dead takes no row id and no --force (it retries dead rows only)" if dead and (args.id is not None
                                                                                                  or force)
             else "a row id is needed, or --dead for every dead-lettered row" if not dead and args.id is None
             else "--partner goes with --dead or --waiting (a row id names its partner already)"
             if not dead and partner else None)
    if partner and partner not in app.config.partners:  # a typo said so, not "0 rows" as if all were well
        wrong = (f"no partner '{partner}' in the configuration (configured: "
                 f"{', '.join(sorted(app.config.partners)) or 'none'})")
    if wrong:
        print(f"gateway outbox retry: error: {wrong}", file=sys.stderr)
        return 2
    if waiting:
        assert partner is not None  # checked above
        print(f"{release_waiting_rows(app, partner)} waiting outbox row(s) of partner {partner} are due now")
        return 0
    if dead:
        rows, claims = retry_all_dead(app, partner_id=partner)
        print(f"{rows} dead outbox row(s){f' of partner {partner}' if partner else ''} will be delivered again "
              f"({claims} failed claim(s) queued again)")
        return 0
    if force and break_outbox_lease(app, args.id):
        print(f"outbox row {args.id}: lease broken (a batch the old holder did send is recognised by its id)")
    requeued = retry_dead(app, args.id)
    print(f"outbox row {args.id} will be delivered again ({requeued} failed claim(s) queued again)")
    return 0


def outbox_drain(app: App, args: argparse.Namespace) -> int:
    worker = Dispatcher(app, owner=f"cli-{socket.gethostname()}-{os.getpid()}")
    try:
        n = worker.drain()
    finally:
        worker.close()
    print(f"handled {n} outbox row(s)")
    return 0
