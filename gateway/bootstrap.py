"""Wires concrete parts together: config, database engine, keys, router. Nothing else builds them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import cached_property
from pathlib import Path

from sqlalchemy import Connection, Engine

from gateway.config import GatewayConfig, load_config
from gateway.crypto.fieldcrypt import FieldCipher, load_field_cipher
from gateway.services.login_throttle import LoginThrottle
from gateway.services.mappings import MappingRegistry
from gateway.services.routing import Router
from gateway.store import keys_store
from gateway.store.leases import database_clock
from gateway.store.db import make_engine, upgrade

DATA_KEY_FILE = "data-keys.json"
SIGNING_KEY_FILE = "gateway-signing.key"
SIGNING_CERT_FILE = "gateway-signing.crt"


@dataclass
class App:
    """Everything a use case needs, built once per process."""

    config: GatewayConfig
    engine: Engine
    router: Router = field(init=False)
    # Set when ``serve`` is stopping: long work in threads checks it between units and ends early
    # (what it leaves is resumed at the next start).
    stopping: threading.Event = field(default_factory=threading.Event)
    # The owner name of this process's leases: the node id in ``serve`` (services/node.py).
    lease_owner: str | None = None
    # Set by ``close``: work scheduled for later in a thread of its own (the archive index) is not done any more.
    closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.router = Router(self.config)

    @cached_property
    def cipher(self) -> FieldCipher:
        return load_field_cipher(self.config.keys_dir / DATA_KEY_FILE, self.config.keys.data_keys_env)

    @cached_property
    def login_throttle(self) -> LoginThrottle:
        """The process's one count of failed logins, shared by SOAP and the web console (per login, per address)."""
        return LoginThrottle(self.config.soap.login)

    @cached_property
    def mappings(self) -> MappingRegistry:
        """Installed client mappings, reloaded when their files change (last good kept on error)."""
        return MappingRegistry(self.config)

    @property
    def signing_key_path(self) -> Path:
        return self.config.keys_dir / SIGNING_KEY_FILE

    @property
    def signing_cert_path(self) -> Path:
        return self.config.keys_dir / SIGNING_CERT_FILE

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def lease_now(self, conn: Connection) -> datetime:
        """The time leases are taken, renewed and judged by, read in ``conn``: the database server's clock on
        PostgreSQL, where several nodes share the leases and each node's own clock may be off (see
        ``store.leases``); this node's ``now`` on SQLite, where it is the only one. Tests that drive the clock
        replace this too when their leases are to follow it."""
        return database_clock(conn) or self.now()

    def today(self) -> date:
        return self.now().date()

    def close(self) -> None:
        self.closed.set()
        self.engine.dispose()


def make_app_engine(cfg: GatewayConfig) -> Engine:
    """The database engine as the App has it (also built by ingest's worker processes for their own writes)."""
    engine = make_engine(cfg.database_url, echo=cfg.database.echo, busy_timeout=cfg.database.busy_timeout_seconds)
    keys_store.register_cipher(engine, lambda: load_field_cipher(cfg.keys_dir / DATA_KEY_FILE, cfg.keys.data_keys_env))
    return engine


def build_app(config: GatewayConfig | str | Path | None = None, *, migrate: bool = False) -> App:
    """An App from a config (object, path, or the default lookup); ``migrate`` upgrades the schema first."""
    cfg = config if isinstance(config, GatewayConfig) else load_config(config)
    engine = make_app_engine(cfg)
    if migrate:
        upgrade(engine)
    return App(config=cfg, engine=engine)
