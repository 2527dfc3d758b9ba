"""Back up the database and the keys into one new folder (``gateway db backup DEST``).

Debtor data is encrypted field-wise with the data keys, so a database without its keys is unreadable:
a backup always carries both. The folder holds

- ``gateway.db`` (SQLite: the online backup API, one step, so the copy is a consistent snapshot even
  while ``serve`` writes; what sits in the WAL is included) or ``gateway.dump`` (PostgreSQL:
  ``pg_dump -Fc`` of the gateway's schema, for ``pg_restore``),
- ``keys.tar``: the keys folder (data keys, signing key and certificate, TLS and SSH host keys),
- ``backup.json`` (what, when, schema revision) and ``SHA256SUMS`` (``sha256sum -c`` checks a copy).

The folder is written under a temporary name beside DEST and renamed at the end, so DEST exists only
when the backup is complete. Every file is 0600 and the folder 0700: it holds keys and debtor data.
Restoring is done with standard tools (docs/operations.md, "Backup and restore").
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from gateway.bootstrap import DATA_KEY_FILE, App
from gateway.errors import GatewayError

SQLITE_FILE, PG_FILE, KEYS_FILE, MANIFEST_FILE, SUMS_FILE = (
    "gateway.db", "gateway.dump", "keys.tar", "backup.json", "SHA256SUMS")


class BackupError(GatewayError):
    """The backup could not be made; nothing is left at DEST."""


@dataclass
class BackupResult:
    dest: Path
    database: str  # "sqlite" or "postgresql"
    revision: str | None
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    # The data keys came from the environment: they are NOT in keys.tar and must be kept elsewhere.
    data_keys_from_env: str | None = None


def backup(app: App, dest: Path) -> BackupResult:
    """Write a complete backup of database and keys into the new folder ``dest``."""
    cfg = app.config
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty folder: a backup never overwrites another")
    keys_dir = cfg.keys_dir
    if not keys_dir.is_dir():
        raise BackupError(f"no keys folder at {keys_dir}: a database backup without its keys cannot be read")
    env_keys = cfg.keys.data_keys_env if os.environ.get(cfg.keys.data_keys_env) else None
    if env_keys is None and not (keys_dir / DATA_KEY_FILE).exists():
        raise BackupError(f"no data keys at {keys_dir / DATA_KEY_FILE} nor in ${cfg.keys.data_keys_env}: "
                          "a database backup without its keys cannot be read")
    url = make_url(cfg.database_url)
    backend = url.get_backend_name()
    if backend == "sqlite" and (not url.database or url.database == ":memory:" or not Path(url.database).exists()):
        raise BackupError(f"no database file at {url.database}")  # checked before connecting creates one
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    try:
        revision = _revision(app)
        if backend == "sqlite":
            _sqlite_copy(Path(str(url.database)), work / SQLITE_FILE, cfg.database.busy_timeout_seconds)
        elif backend == "postgresql":
            _pg_dump(app, work / PG_FILE)
        else:
            raise BackupError(f"cannot back up a {backend} database (SQLite and PostgreSQL only)")
        _keys_tar(keys_dir, work / KEYS_FILE)
        result = BackupResult(dest=dest, database=backend, revision=revision, data_keys_from_env=env_keys)
        for name in sorted(p.name for p in work.iterdir()):
            result.files[name] = _sha256(work / name)
        _write(work / MANIFEST_FILE, json.dumps({
            "created_at": app.now().isoformat(), "gateway_id": cfg.gateway_id, "database": backend,
            "schema_revision": revision, "files": result.files,
            "data_keys": f"environment variable {env_keys} (not in keys.tar)" if env_keys else "keys.tar",
        }, indent=2).encode())
        _write(work / SUMS_FILE, "".join(f"{h}  {n}\n" for n, h in result.files.items()).encode())
        os.replace(work, dest)  # a rename replaces an empty folder; DEST appears complete or not at all
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return result


def _revision(app: App) -> str | None:
    with app.engine.connect() as conn:
        from alembic.runtime.migration import MigrationContext  # alembic only when a backup runs

        return MigrationContext.configure(conn).get_current_revision()


def _sqlite_copy(src: Path, target: Path, busy_timeout: float) -> None:
    source = sqlite3.connect(src, timeout=busy_timeout)
    try:
        copy = sqlite3.connect(_private_file(target))
        try:
            source.backup(copy)  # pages=-1: one step under one read transaction, a consistent snapshot
            problem = copy.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise BackupError(f"the copy of {src} fails its integrity check: {problem}")
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {src}: {exc}") from exc
    finally:
        source.close()
    _fsync(target)


def _pg_dump(app: App, target: Path) -> None:
    tool = shutil.which("pg_dump")
    if tool is None:
        raise BackupError("pg_dump not found on PATH: install the PostgreSQL client tools (the server's major "
                          "version or newer), or run `pg_dump -Fc` yourself and back up the keys folder too")
    with app.engine.connect() as conn:
        schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
    url = make_url(app.config.database_url)
    env = {**os.environ}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)  # never on the command line, where `ps` shows it
    dsn = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    # A gateway in a schema of its own is dumped alone; in "public" the whole database is the gateway's
    # (and a dump naming "public" would not restore into a fresh database, which already has it).
    only = [] if schema == "public" else [f"--schema={schema}"]
    done = subprocess.run([tool, "--format=custom", "--no-password", *only, f"--file={target}", f"--dbname={dsn}"],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise BackupError(f"pg_dump failed (exit {done.returncode}): {last}")
    os.chmod(target, 0o600)
    _fsync(target)


def _keys_tar(keys_dir: Path, target: Path) -> None:
    """The keys folder's contents, names relative to it (``tar -xpf keys.tar -C <keys.dir>`` restores)."""
    with open(_private_file(target), "wb") as fh:
        with tarfile.open(fileobj=fh, mode="w") as tar:
            for entry in sorted(keys_dir.iterdir()):
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    continue  # a key file being written right now (services/keys.py)
                tar.add(entry, arcname=entry.name)
        fh.flush()
        os.fsync(fh.fileno())


def _private_file(path: Path) -> Path:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


def _write(path: Path, data: bytes) -> None:
    with open(_private_file(path), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
