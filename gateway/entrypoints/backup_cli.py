"""``gateway db backup DEST``: database and keys into one new folder (services/backup.py).

Restoring is done with standard tools, as docs/operations.md ("Backup and restore") describes; the
command prints them so the operator sees them next to the backup it just made.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.bootstrap import App
from gateway.entrypoints.output import print_json
from gateway.services.backup import KEYS_FILE, PG_FILE, SQLITE_FILE, backup


def add_action(db: Any) -> None:
    """Register ``backup`` under ``gateway db``."""
    q = db.add_parser("backup", help="copy the database and the keys into a new folder (online)")
    q.add_argument("dest", type=Path, help="a folder that does not exist yet (or is empty)")
    q.add_argument("--json", action="store_true")


def run(app: App, args: argparse.Namespace) -> int:
    result = backup(app, args.dest)
    if args.json:
        print_json({"dest": str(result.dest), "database": result.database, "schema_revision": result.revision,
                    "files": result.files, "data_keys_from_env": result.data_keys_from_env})
    else:
        print(f"backup written to {result.dest} ({result.database}, schema {result.revision}):")
        for name, digest in result.files.items():
            print(f"  {name}  sha256 {digest[:16]}...")
        db = SQLITE_FILE if result.database == "sqlite" else PG_FILE
        print(f"Restore: {db} back (docs/operations.md, 'Backup and restore'), then "
              f"`tar -xpf {KEYS_FILE} -C <keys.dir>`.")
    if result.data_keys_from_env:
        print(f"WARNING: the data keys come from ${result.data_keys_from_env} and are NOT in this backup: "
              "without them the database cannot be read. Keep that secret's copies with the backup's.",
              file=sys.stderr)
    print("Keep this folder like the keys themselves: it holds them. Store two copies, one offline.",
          file=sys.stderr)
    return 0
