"""Typed gateway configuration (``config/gateway.yaml``), validated once at start-up.

Relative paths resolve against ``base_dir``, which is itself relative to the config file's folder
(``..`` in the shipped file, so paths are relative to the project root). Without a config file the
embedded defaults below apply, relative to the current directory. ``GATEWAY_DATABASE_URL`` overrides
``database.url``; secrets (keys) live in files under ``keys.dir`` or in the environment, never here.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import yaml

from gateway.errors import ConfigError


class Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class DatabaseConfig(Base):
    url: str = "sqlite:///var/gateway.db"
    echo: bool = False


class PathsConfig(Base):
    var: str = "var"
    inbox: str = "inbox"
    mappings: str = "mappings"


class KeysConfig(Base):
    dir: str = "var/keys"
    # JSON with the same shape as the data key file; wins over the file when set.
    data_keys_env: str = "GATEWAY_DATA_KEYS"


class WatcherConfig(Base):
    enabled: bool = True
    stable_seconds: float = 1.0  # size and mtime unchanged this long = the file is complete
    sweep_seconds: float = 30.0


class DispatcherConfig(Base):
    enabled: bool = True
    poll_seconds: float = 1.0
    batch_size: int = 5000  # claims per partner file
    lease_seconds: float = 300.0
    max_attempts: int = 10
    backoff_base_seconds: float = 5.0
    backoff_max_seconds: float = 3600.0


class ClientSftpConfig(Base):
    """A client's SFTP login (issue 4 owns this section)."""

    authorized_keys: list[str] = msgspec.field(default_factory=list)  # OpenSSH public key lines
    password_hash: str | None = None


class ClientSoapConfig(Base):
    """A client's SOAP credentials (issue 5 owns this section)."""

    username: str | None = None
    password_hash: str | None = None


class ClientConfig(Base):
    name: str = ""
    mapping: str | None = None  # mappings/<mapping>.yaml; defaults to the client id
    default_partner: str | None = None
    hold_all: bool = False  # every accepted claim waits for release (a "collection run")
    ack_delimiter: str | None = None  # defaults to the input file's delimiter
    watch: bool = True  # pick up files from inbox/<client>/upload
    sftp: ClientSftpConfig = msgspec.field(default_factory=ClientSftpConfig)
    soap: ClientSoapConfig = msgspec.field(default_factory=ClientSoapConfig)


class PartnerConfig(Base):
    adapter: str
    certificate: str  # the partner's X.509 certificate (PEM) batches are encrypted to
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    max_attempts: int | None = None
    # partner status code -> canonical state (issue 6 owns status mapping and sync settings)
    status_map: dict[str, str] = msgspec.field(default_factory=dict)


class SftpServerConfig(Base):
    """The gateway's own SFTP server (issue 4 owns this section)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 2222


class SoapServerConfig(Base):
    """The SOAP endpoint for creditor ERP systems (issue 5 owns this section)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8443


class RouteRule(Base):
    """First matching rule wins; unset conditions match everything."""

    partner: str
    client: str | None = None
    claim_type: str | None = None
    debtor_kind: str | None = None
    country: str | None = None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None


class GatewayConfig(Base):
    gateway_id: str = "inkasso-gateway"
    base_dir: str = "."
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    paths: PathsConfig = msgspec.field(default_factory=PathsConfig)
    keys: KeysConfig = msgspec.field(default_factory=KeysConfig)
    watcher: WatcherConfig = msgspec.field(default_factory=WatcherConfig)
    dispatcher: DispatcherConfig = msgspec.field(default_factory=DispatcherConfig)
    sftp: SftpServerConfig = msgspec.field(default_factory=SftpServerConfig)
    soap: SoapServerConfig = msgspec.field(default_factory=SoapServerConfig)
    clients: dict[str, ClientConfig] = msgspec.field(default_factory=dict)
    partners: dict[str, PartnerConfig] = msgspec.field(default_factory=dict)
    routing: list[RouteRule] = msgspec.field(default_factory=list)
    source: str = "<embedded defaults>"

    # -- resolved paths -------------------------------------------------------------------
    def path(self, value: str) -> Path:
        """A configured path made absolute against ``base_dir``."""
        p = Path(value)
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def var_dir(self) -> Path:
        return self.path(self.paths.var)

    @property
    def inbox_dir(self) -> Path:
        return self.path(self.paths.inbox)

    @property
    def mappings_dir(self) -> Path:
        return self.path(self.paths.mappings)

    @property
    def keys_dir(self) -> Path:
        return self.path(self.keys.dir)

    @property
    def database_url(self) -> str:
        url = os.environ.get("GATEWAY_DATABASE_URL") or self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            url = prefix + str(self.path(url[len(prefix):]).resolve())
        return url

    def client(self, client_id: str) -> ClientConfig:
        try:
            return self.clients[client_id]
        except KeyError:
            known = ", ".join(sorted(self.clients)) or "none"
            raise ConfigError(f"unknown client '{client_id}' (configured: {known})",
                              file=self.source, key="clients") from None

    def mapping_file(self, client_id: str) -> Path:
        name = self.client(client_id).mapping or client_id
        return self.mappings_dir / f"{name}.yaml"


EMBEDDED_DEFAULTS: dict[str, Any] = {
    "gateway_id": "inkasso-gateway-dev",
    "clients": {"demo": {"name": "Demo Fitness GmbH", "mapping": "demo", "default_partner": "demo-agency"}},
    "partners": {
        "demo-agency": {
            "adapter": "directory",
            "certificate": "var/keys/partners/demo-agency.crt",
            "options": {"path": "var/partners/demo-agency"},
        }
    },
    "routing": [{"partner": "demo-agency", "client": "demo"}],
}


def load_config(path: str | os.PathLike[str] | None = None) -> GatewayConfig:
    """Load and validate the config; ``None`` means $GATEWAY_CONFIG, then ./config/gateway.yaml, then defaults."""
    if path is None:
        path = os.environ.get("GATEWAY_CONFIG") or ("config/gateway.yaml" if Path("config/gateway.yaml").exists()
                                                    else None)
    if path is None:
        return _convert(dict(EMBEDDED_DEFAULTS), source="<embedded defaults>", base=Path.cwd())
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", file=str(file)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=str(file),
                          line=mark.line + 1 if mark else None) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping of settings at the top level", file=str(file))
    base = (file.parent / str(raw.pop("base_dir", "."))).resolve()
    return _convert(raw, source=str(file), base=base)


def _convert(raw: dict[str, Any], *, source: str, base: Path) -> GatewayConfig:
    raw = {**raw, "base_dir": str(base), "source": source}
    try:
        cfg = msgspec.convert(raw, GatewayConfig, strict=False)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        raise ConfigError(message, file=source, key=where.rstrip("`") or None) from exc
    _check_references(cfg)
    return cfg


def _check_references(cfg: GatewayConfig) -> None:
    for cid, client in cfg.clients.items():
        if client.default_partner and client.default_partner not in cfg.partners:
            raise ConfigError(f"unknown partner '{client.default_partner}' (configured: "
                              f"{', '.join(sorted(cfg.partners)) or 'none'})",
                              file=cfg.source, key=f"clients.{cid}.default_partner")
    for i, rule in enumerate(cfg.routing):
        if rule.partner not in cfg.partners:
            raise ConfigError(f"unknown partner '{rule.partner}'", file=cfg.source, key=f"routing[{i}].partner")
        if rule.client is not None and rule.client not in cfg.clients:
            raise ConfigError(f"unknown client '{rule.client}'", file=cfg.source, key=f"routing[{i}].client")
