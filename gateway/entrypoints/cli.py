"""The ``gateway`` command line. Handlers translate arguments, call a use case and print.

Exit codes: 0 done (an ingested file may still have rejected rows), 1 a gateway error (config, keys,
database), 2 wrong usage, 3 the input file is unusable, 4 not found, 5 an illegal transition.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError

from gateway.errors import ConfigError, GatewayError, IllegalTransition, InputError, NotFound

if TYPE_CHECKING:
    from gateway.bootstrap import App

# Importing this module must stay cheap: besides running the command, it is what an ingest's worker process
# imports again (spawn re-imports the parent's __main__: the ``gateway`` script, or this module under ``-m``),
# once per worker and for nothing. So the subcommands, the app and everything they pull in are imported in
# the functions that use them, never at the top; tests/integration/test_ingest_workers.py checks a worker.

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INPUT, EXIT_NOT_FOUND, EXIT_ILLEGAL = 0, 1, 2, 3, 4, 5


def _date(text: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=timezone.utc)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-11-23, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from gateway.entrypoints import (backup_cli, claims_admin_cli, clients_cli, credit_cli, keys_cli, mapping_cli,
                                     partners_admin_cli, partners_cli, status_cli)

    p = argparse.ArgumentParser(prog="gateway", description="Case-handover gateway for collection partners.")
    p.add_argument("--config", help="config file (default: $GATEWAY_CONFIG, then config/gateway.yaml)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("serve", help="run the gateway: inbox watcher and delivery")

    ing = sub.add_parser("ingest", help="ingest one client file")
    ing.add_argument("file", type=Path)
    ing.add_argument("--client", required=True)
    ing.add_argument("--mapping", type=Path, help="use this mapping file instead of the installed one")
    ing.add_argument("--dry-run", action="store_true", help="map and validate only; store nothing")
    # a str, not a Path: a trailing "/" says "a folder" even before the folder exists
    ing.add_argument("--ack", help="ack file, or a folder to write <file>.ack.csv into "
                                   "(default: inbox/<client>/ack/<file>.ack.csv)")
    ing.add_argument("--json", action="store_true")

    def filters(q: argparse.ArgumentParser, status_help: str) -> None:
        q.add_argument("--client")
        q.add_argument("--status", help=status_help)
        q.add_argument("--since", type=_date, help="received on or after this date (YYYY-MM-DD)")
        q.add_argument("--until", type=_date, help="received before this date (YYYY-MM-DD)")
        q.add_argument("--limit", type=int, default=100)
        q.add_argument("--offset", type=int, default=0)
        q.add_argument("--json", action="store_true")
        q.add_argument("--sandbox", action="store_true",
                       help="without --client: every client's sandbox instead of production (docs/sandbox.md)")

    cl = sub.add_parser("claims", help="list and inspect claims").add_subparsers(dest="action", required=True)
    filters(cl.add_parser("list", help="claims with their current state"), "state(s), comma-separated")
    cl.choices["list"].add_argument("--submission", help="submission reference")
    for name in ("show", "history"):
        q = cl.add_parser(name, help=f"{name} one claim")
        q.add_argument("claim_id", type=int)
        q.add_argument("--json", action="store_true")
    claims_admin_cli.add_actions(cl, _date)  # release, cancel, export
    seen = cl.add_parser("seen", help="mark a client's claims as seen (no longer unread)")
    seen.add_argument("claim_ids", type=int, nargs="*")
    seen.add_argument("--client", required=True)
    seen.add_argument("--all", action="store_true", help="every claim of the client")

    sl = sub.add_parser("submissions", help="list and inspect submissions").add_subparsers(dest="action",
                                                                                          required=True)
    filters(sl.add_parser("list"), "processing, completed, completed_with_errors, failed")
    q = sl.add_parser("show")
    q.add_argument("reference")
    q.add_argument("--json", action="store_true")

    ob = sub.add_parser("outbox", help="delivery work").add_subparsers(dest="action", required=True)
    q = ob.add_parser("list")
    q.add_argument("--status", help="pending, leased, done, dead")
    q.add_argument("--partner")
    q.add_argument("--limit", type=int, default=100)
    q.add_argument("--offset", type=int, default=0)
    q.add_argument("--json", action="store_true")
    retry = ob.add_parser("retry", help="deliver a dead-lettered or waiting row again, or every dead row (--dead), "
                                        "or try every waiting row of a partner now (--waiting)")
    retry.add_argument("id", type=int, nargs="?")
    retry.add_argument("--dead", action="store_true",
                       help="every dead-lettered row (of --partner only, if given): after an outage or a fix of "
                            "credentials or certificates, instead of one command per row")
    retry.add_argument("--waiting", action="store_true",
                       help="every row of --partner waiting for a later try (its backoff, or the partner's "
                            "Retry-After) is due now: the partner is back sooner than it said")
    retry.add_argument("--partner", help="with --dead: only this partner's rows; with --waiting: the partner")
    retry.add_argument("--force", action="store_true",
                       help="also break a lease: the row is taken now, whoever holds it (a node that is gone)")
    ob.add_parser("drain", help="deliver everything due now, then exit")

    mapping_cli.add_parser(sub)  # gateway mapping check|preview|suggest (no database)
    partners_admin_cli.add_actions(partners_cli.add_parser(sub))  # partners sync | list, show, test
    clients_cli.add_parser(sub)  # clients in the config file (no database)
    status_cli.add_parser(sub)
    credit_cli.add_parser(sub, _date)  # credit check | audit
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply migrations")
    db.add_parser("rebuild-projection", help="fold every claim's events into claim_current again (idempotent)")
    backup_cli.add_action(db)  # db backup DEST
    keys = sub.add_parser("keys", help="key material").add_subparsers(dest="action", required=True)
    keys.add_parser("init", help="create missing keys for the configured gateway")
    keys_cli.add_parsers(sub, keys, cl)  # keys rotate|retire|destroy-client, claims erase, retention run
    return p


PRIVATE_UMASK = 0o077  # var/ and inbox/ hold debtor data, keys and acks: nothing for group or others


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; expected conditions end with one line on stderr and an exit code, never a traceback."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a reader that went away (``| head``) is found here
        return code
    except BrokenPipeError:
        # As the Python docs advise for SIGPIPE: point stdout at devnull so the exit flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gateway: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    os.umask(PRIVATE_UMASK)  # every file and folder the gateway creates is 0600/0700 (docs/security.md)
    args = build_parser().parse_args(argv)
    from gateway.bootstrap import build_app
    from gateway.entrypoints import (backup_cli, claims_admin_cli, clients_cli, commands, credit_cli, keys_cli,
                                     mapping_cli, partners_admin_cli, partners_cli, status_cli)
    from gateway.entrypoints.logs import TextFormatter, configure_logging

    start = logging.StreamHandler(sys.stderr)  # until the config names the log's level, format and file
    start.setFormatter(TextFormatter())
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if args.command == "serve"
                        else logging.WARNING, handlers=[start])
    app: App | None = None
    try:
        if args.command == "mapping":
            return mapping_cli.run(args)
        if args.command == "ingest" and args.dry_run and (code := mapping_cli.ingest_dry_run(args)) is not None:
            return code  # a client not configured yet: no keys or database needed
        if args.command == "keys" and args.action == "init":
            from gateway.config import load_config
            return commands.keys_init(load_config(args.config))
        if args.command == "clients":
            return clients_cli.run(args)
        app = build_app(args.config)
        configure_logging(app.config, verbose=args.verbose, serve=args.command == "serve")
        if args.command == "db" and args.action == "rebuild-projection":
            commands.require_database(app)  # a rebuild never creates an empty database
            commands.ensure_schema(app)
            return commands.db_rebuild_projection(app)
        if args.command == "partners" and args.action in partners_admin_cli.ACTIONS:
            return partners_admin_cli.run(app, args)  # config and partners only: no database
        if args.command == "db" and args.action == "backup":
            commands.require_database(app)  # copies what is there; never migrates or creates it
            return backup_cli.run(app, args)
        if args.command == "db":
            return commands.db_upgrade(app)
        if args.command != "serve":
            commands.require_database(app)  # never create an empty database by accident
            commands.ensure_schema(app)
        elif not commands.wait_for_schema(app):
            return EXIT_OK  # stopped by a signal while the database was away

        if (args.command, getattr(args, "action", None)) in keys_cli.ACTIONS:
            return keys_cli.run(app, args)
        if args.command == "partners":
            return partners_cli.run(app, args)
        if args.command == "credit":
            return credit_cli.run(app, args)
        if args.command == "status":
            return status_cli.run(app, args)
        if args.command == "claims" and args.action in ("release", "cancel", "export"):
            return claims_admin_cli.run(app, args)
        handler: Any = getattr(commands, f"{args.command}_{getattr(args, 'action', '')}".rstrip("_"))
        return int(handler(app, args))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except NotFound as exc:
        print(f"not found: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except IllegalTransition as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ILLEGAL
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except DBAPIError as exc:  # the database is away or refused the command: one line, not a traceback
        from gateway.faults import describe
        print(f"database error: {describe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if app is not None:
            app.close()


if __name__ == "__main__":
    sys.exit(main())
