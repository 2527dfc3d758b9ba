"""Shared fixtures: a gateway in a temp dir on SQLite, and on PostgreSQL when GATEWAY_TEST_PG_URL is set."""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.services.keys import init_keys

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("GATEWAY_TEST_PG_URL")


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests may talk to this machine only (loopback and unix sockets), never to the network."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                ok = ipaddress.ip_address(host).is_loopback
            except ValueError:
                ok = host == "localhost"
            if not ok:
                raise RuntimeError(f"test tried to connect to {address}: only loopback is allowed")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def _pg_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    assert PG_URL
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs on SQLite, and on PostgreSQL when GATEWAY_TEST_PG_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'gateway.db'}"
    elif not PG_URL:
        pytest.skip("GATEWAY_TEST_PG_URL not set: PostgreSQL run skipped (CI sets it)")
    else:
        yield from _pg_schema_url()


def write_config(base: Path, db_url: str, **overrides: Any) -> Path:
    """A gateway config rooted at ``base`` with the demo client and a directory partner."""
    (base / "mappings").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "mappings" / "demo.yaml", base / "mappings" / "demo.yaml")
    doc: dict[str, Any] = {
        "base_dir": ".",
        "gateway_id": "gw-test",
        "database": {"url": db_url},
        "watcher": {"stable_seconds": 0.3, "sweep_seconds": 2},
        "health": {"listen": "127.0.0.1:0"},  # an ephemeral port each: several serve processes run at once
        "dispatcher": {"poll_seconds": 0.2, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05},
        "clients": {"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency"}},
        "partners": {"demo-agency": {"adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
                                     "options": {"path": "var/partners/demo-agency"}}},
        "routing": [{"partner": "demo-agency", "client": "demo"}],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    path = base / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def config_path(tmp_path: Path, db_url: str) -> Path:
    path = write_config(tmp_path, db_url)
    init_keys(load_config(path))
    return path


@pytest.fixture
def app(config_path: Path) -> Iterator[App]:
    application = build_app(config_path, migrate=True)
    yield application
    application.close()
