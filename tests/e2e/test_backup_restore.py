"""Backup and restore as docs/operations.md tells an operator to do it: the demo file is ingested, `gateway db
backup` copies database and keys, var/ (database and keys) is wiped (on PostgreSQL the gateway's schema is
dropped), the documented restore commands are run (copy the file back / `pg_restore`; then `tar -xpf` of the
keys), and `gateway claims show` reads the debtor's name again. In between, the restored database without its
keys is refused: the keys are half of the backup. Without pg_dump on PATH the command says so and leaves
nothing half-made."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gateway.bootstrap import build_app
from gateway.config import load_config
from gateway.services.keys import init_keys
from tests.conftest import PG_URL, ROOT, _pg_schema_url, write_config

GATEWAY = [sys.executable, "-m", "gateway.entrypoints.cli"]
DEMO = ROOT / "examples" / "demo.csv"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'gateway.db'}"
        return
    if not PG_URL:
        pytest.skip("GATEWAY_TEST_PG_URL not set: PostgreSQL run skipped (CI sets it)")
    missing = [t for t in ("pg_dump", "pg_restore") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH: install the PostgreSQL client tools to run this")
    yield from _pg_schema_url()


def _run(cfg: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GATEWAY, "--config", str(cfg), *args], capture_output=True, text=True, timeout=120,
                          cwd=cfg.parent, env=env)


def _debtor_name(cfg: Path, claim_id: int) -> str:
    out = _run(cfg, "claims", "show", str(claim_id), "--json")
    assert out.returncode == 0, out.stderr
    debtor = json.loads(out.stdout)["claim"]["debtor"]
    return f"{debtor['first_name']} {debtor['last_name']}"


def _wipe_database(db: str) -> None:
    """On PostgreSQL the gateway's schema goes (what a lost database server leaves: nothing)."""
    if not db.startswith("postgresql"):
        return
    schema = make_url(db).query["options"]
    assert isinstance(schema, str)
    assert PG_URL
    engine = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema.rpartition("=")[2]}" CASCADE'))
    engine.dispose()


def test_backup_wipe_restore_reads_the_debtor_again(tmp_path: Path, db: str) -> None:
    cfg = write_config(tmp_path, db)
    init_keys(load_config(cfg))
    build_app(cfg, migrate=True).close()
    ingested = _run(cfg, "ingest", str(DEMO), "--client", "demo", "--json")
    assert ingested.returncode == 0, ingested.stderr
    claim_id = next(r["claim_id"] for r in json.loads(ingested.stdout)["results"] if r["claim_id"])
    name = _debtor_name(cfg, claim_id)
    assert name.strip()

    dest = tmp_path / "backups" / "b1"
    if db.startswith("postgresql"):
        no_tool = _run(cfg, "db", "backup", str(dest), env={"PATH": str(tmp_path / "no-tools")})
        assert no_tool.returncode == 1
        assert "pg_dump not found on PATH" in no_tool.stderr and "Traceback" not in no_tool.stderr
        assert not dest.exists() and not list(dest.parent.glob(".b1.partial-*"))  # nothing half-made
    made = _run(cfg, "db", "backup", str(dest), "--json")
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    dump = "gateway.db" if db.startswith("sqlite") else "gateway.dump"
    assert set(doc["files"]) == {dump, "keys.tar"} and doc["schema_revision"]
    assert name not in made.stdout + made.stderr  # the command names files and digests, never debtor data
    # private: the folder holds the keys and the debtors' data
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in dest.iterdir()} == {0o600}
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=dest).returncode == 0
    again = _run(cfg, "db", "backup", str(dest))
    assert again.returncode == 1 and "never overwrites" in again.stderr

    shutil.rmtree(tmp_path / "var")  # the database file (SQLite) and the keys
    _wipe_database(db)

    # the restore commands of docs/operations.md, "Backup and restore"
    if db.startswith("sqlite"):
        (tmp_path / "var").mkdir(mode=0o700, exist_ok=True)
        subprocess.run(["cp", "-p", str(dest / "gateway.db"), str(tmp_path / "var" / "gateway.db")], check=True)
    else:
        done = subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={PG_URL}",
                               str(dest / "gateway.dump")], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    no_keys = _run(cfg, "claims", "show", str(claim_id))
    assert no_keys.returncode == 1 and "data key" in no_keys.stderr  # the database alone is unreadable
    (tmp_path / "var" / "keys").mkdir(mode=0o700, parents=True)
    subprocess.run(["tar", "-xpf", str(dest / "keys.tar"), "-C", str(tmp_path / "var" / "keys")], check=True)

    assert _debtor_name(cfg, claim_id) == name
    assert stat.S_IMODE((tmp_path / "var" / "keys" / "data-keys.json").stat().st_mode) == 0o600

