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
from typing import Any, Literal

import msgspec
import yaml

from gateway.domain.credit import INTERESTS, CreditPolicy
from gateway.domain.limitation import LimitationPolicy
from gateway.errors import ConfigError


class Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class DatabaseConfig(Base):
    url: str = "sqlite:///var/gateway.db"
    echo: bool = False
    busy_timeout_seconds: float = 30.0  # SQLite: how long a writer waits for the write lock before "locked"


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
    stable_seconds: float = 1.0  # quiet this long after the last write/close/rename, and no writer: complete
    sweep_seconds: float = 30.0


class NodeConfig(Base):
    """This process's identity when several nodes share one database (docs/operations.md)."""

    id: str | None = None  # stable node id; default: $GATEWAY_NODE_ID, else made once and kept in <var>/node-id
    lease_seconds: float = 60.0  # client ingest, partner sync, status files: held this long, renewed while working


class SupervisorConfig(Base):
    """How ``serve`` keeps its background tasks going (docs/architecture.md, "Supervision")."""

    backoff_base_seconds: float = 0.5  # first wait after a failed step; doubles, full jitter
    backoff_max_seconds: float = 30.0
    give_up_after: int = 8  # the same task failing this often in a row (not transiently): exit non-zero
    file_attempts: int = 3  # a file whose ingest fails this often (not transiently) is set aside with a failed ack
    stop_grace_seconds: float = 7.0  # after SIGTERM/SIGINT: time for running work to finish, then exit anyway


class DispatcherConfig(Base):
    enabled: bool = True
    poll_seconds: float = 1.0
    batch_size: int = 5000  # claims per partner file
    lease_seconds: float = 60.0  # renewed every third of it while a row is worked on (a heartbeat)
    # serve: partners worked on side by side (one row at a time each), so that a slow partner holds up no other
    parallel_partners: int = 4
    # A row worked on this long (attempts end with the adapter's timeouts long before) is named in the log and
    # makes /healthz stale (dispatch:<partner>), so that a call hung for good gets the process restarted.
    stuck_seconds: float = 600.0
    max_attempts: int = 10
    # A retryable failure (partner down, timeouts, 5xx) is dead-lettered only after max_attempts AND this long
    # since its first failed attempt (outbox.failing_since): agencies have maintenance nights and outages of
    # hours, and ten quick attempts are over in well under an hour. Non-retryable failures are dead at once.
    retry_for_seconds: float = 86400.0
    backoff_base_seconds: float = 5.0
    backoff_max_seconds: float = 3600.0


class ClientSftpConfig(Base):
    """A client's SFTP login (issue 4 owns this section)."""

    authorized_keys: list[str] = msgspec.field(default_factory=list)  # OpenSSH public key lines
    # scrypt hash made by `python -m gateway.crypto.passwords`; never the password itself
    password_hash: str | None = None
    status_format: str = "csv"  # status files in status/: csv or xml
    status_files: bool = True
    max_file_bytes: int | None = None  # per upload; None = the server's default
    quota_bytes: int | None = None  # all files in upload/ together; None = the server's default


class SoapCredential(Base):
    """One SOAP login of a client; several at once let a password be rotated without downtime."""

    username: str
    password_hash: str  # scrypt hash made by `python -m gateway.crypto.passwords`
    role: Literal["submit", "read"] = "submit"  # read: may query but not submit or change claims
    sandbox: bool = False  # logs in to the client's sandbox (docs/sandbox.md): claims reach only the simulated agency


class ClientSoapConfig(Base):
    """A client's SOAP credentials: ``credentials``, and the older single username/password_hash."""

    username: str | None = None
    # scrypt hash made by `python -m gateway.crypto.passwords`; the password itself is never stored
    password_hash: str | None = None
    read_only: bool = False  # may query but not submit or change claims (Client.Authorization)
    credentials: list[SoapCredential] = msgspec.field(default_factory=list)


class ClientCreditConfig(Base):
    """A client's credit checks (docs/credit.md): which bureaus, the traffic-light policy, the guard rails."""

    bureaus: list[str] = msgspec.field(default_factory=list)  # ids under ``bureaus:``, asked at once
    policy: CreditPolicy = msgspec.field(default_factory=CreditPolicy)
    interests: list[str] = msgspec.field(default_factory=lambda: list(INTERESTS))  # stated interests allowed
    max_checks_per_hour: int = 100  # checks (cached ones too) per client per rolling hour; more are refused
    cache_seconds: float = 86400.0  # a complete result answers the same subject again this long, unpaid
    incomplete_cache_seconds: float = 0.0  # the same for a result some bureau did not answer (0: ask again)
    retention_days: int | None = None  # checks older than this lose their data (None: ``credit.retention_days``)


class ClientSandboxConfig(Base):
    """A client's sandbox (docs/sandbox.md): the client ``<id>.sandbox``, whose claims reach only a simulated agency."""

    enabled: bool = True
    partner: str | None = None  # a partner with sandbox: true; None: the only one configured
    sftp: ClientSftpConfig = msgspec.field(default_factory=ClientSftpConfig)  # the SFTP login "<id>.sandbox"
    watch: bool = True  # pick up files from inbox/<id>.sandbox/upload
    retention_days: int = 30  # `gateway retention run` (and serve, daily) erases sandbox claims this old


class ClientConfig(Base):
    name: str = ""
    enabled: bool = True  # false (`gateway clients disable`): no SFTP, SOAP or console login; stored claims stay
    mapping: str | None = None  # mappings/<mapping>.yaml; defaults to the client id
    default_partner: str | None = None
    hold_all: bool = False  # every accepted claim waits for release (a "collection run")
    # time-barred claims held, near ones warned (gateway/domain/limitation.py); the defaults are BGB 195, 199
    limitation: LimitationPolicy = msgspec.field(default_factory=LimitationPolicy)
    ack_delimiter: str | None = None  # defaults to the input file's delimiter
    ack_format: Literal["auto", "csv", "xml"] = "auto"  # auto: an XML ack for XML inputs, CSV otherwise
    ack_error_cap: int = 1000  # rejected rows listed in an ack; the rest are counted (issue 3)
    watch: bool = True  # pick up files from inbox/<client>/upload
    watch_marker: bool = False  # take dropped files only at their <name>.done marker (writers that close per chunk)
    sftp: ClientSftpConfig = msgspec.field(default_factory=ClientSftpConfig)
    soap: ClientSoapConfig = msgspec.field(default_factory=ClientSoapConfig)
    # `gateway retention run`: erase closed claims and raw files this many days after; None keeps them
    retention_days_after_close: int | None = None
    sandbox: ClientSandboxConfig | None = None
    sandbox_of: str | None = None  # set by the gateway on the derived sandbox client, never in the file
    credit: ClientCreditConfig | None = None  # credit checks across bureaus (docs/credit.md); None: none


class PartnerRetryConfig(Base):
    """Retries of one partner (issue 6): quick ones inside an attempt, then the outbox's across attempts."""

    in_call_attempts: int = 3  # tenacity, inside one leased attempt
    in_call_wait_seconds: float = 0.2  # first wait; doubles, full jitter
    in_call_wait_max_seconds: float = 2.0
    backoff_base_seconds: float | None = None  # across attempts; None: dispatcher.backoff_base_seconds
    backoff_max_seconds: float | None = None
    retry_for_seconds: float | None = None  # None: dispatcher.retry_for_seconds


class PartnerSyncConfig(Base):
    """Scheduled pull of a partner's status updates (issue 6)."""

    enabled: bool = True
    every_seconds: float = 86400.0  # daily by default


class PartnerWebhookConfig(Base):
    """Pushed updates: an HTTP endpoint ``gateway serve`` listens on for this partner (issue 6)."""

    listen: str | None = None  # host:port, e.g. 127.0.0.1:8470; None: no webhook
    secret_env: str | None = None  # HMAC-SHA256 secret from the environment ...
    secret_file: str | None = None  # ... or from a file (relative to base_dir)


class PartnerSimulatorConfig(Base):
    """Demo only: ``gateway serve`` runs a simulated agency for this partner in-process (issue 6)."""

    enabled: bool = False
    step_seconds: float = 5.0  # the simulated agency moves each case one status step this often
    key: str | None = None  # the partner's private key (default: the certificate path with .key)
    scenario: str = "paid"  # a sandbox partner's default scenario (gateway/domain/sandbox.py, docs/sandbox.md)


class PartnerConfig(Base):
    adapter: str
    certificate: str  # the partner's X.509 certificate (PEM) batches are encrypted to
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    max_attempts: int | None = None
    # partner status code -> canonical state, optionally with a stage: "in_progress:court_dunning"
    status_map: dict[str, str] = msgspec.field(default_factory=dict)
    retry: PartnerRetryConfig = msgspec.field(default_factory=PartnerRetryConfig)
    sync: PartnerSyncConfig = msgspec.field(default_factory=PartnerSyncConfig)
    webhook: PartnerWebhookConfig = msgspec.field(default_factory=PartnerWebhookConfig)
    simulator: PartnerSimulatorConfig = msgspec.field(default_factory=PartnerSimulatorConfig)
    # Narrows what the adapter declares it takes (adapters/base.py CAPABILITIES); None: all it declares.
    capabilities: list[str] | None = None
    # The gateway's own simulated agency for sandbox clients (docs/sandbox.md): takes sandbox claims only,
    # and a sandbox claim goes nowhere else. Must be a directory partner with its simulator enabled.
    sandbox: bool = False


class SftpServerConfig(Base):
    """The gateway's own SFTP server (issue 4 owns this section)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 2222
    host_key: str | None = None  # default: <keys.dir>/ssh_host_ed25519_key (made by `gateway keys init`)
    allow_scp: bool = False  # scp goes through the same jail when on
    max_file_bytes: int = 200 * 1024 * 1024
    quota_bytes: int = 1024 * 1024 * 1024
    max_auth_failures: int = 5  # failed logins per peer address and per login name within the window
    auth_failure_window_seconds: float = 300.0
    login_timeout_seconds: float = 60.0
    # Connections are file descriptors: these bound what strangers and one client can hold open at once.
    max_unauthenticated_per_address: int = 10  # connections from one address not logged in yet
    max_unauthenticated: int = 100  # connections not logged in yet, from all addresses
    max_connections_per_client: int = 20  # logged-in connections of one client
    max_open_handles_per_client: int = 64  # open files and listings of one client, over all its connections
    max_channels_per_connection: int = 10  # SSH channels (SFTP sessions) one connection has open at once
    ingest_workers: int = 4  # files ingested at once (one at a time per client)
    status_interval_seconds: float = 86400.0  # a status file per client at most this often
    # An upload whose connection broke off stays for the client to finish it; after this long untouched it is
    # deleted (plain client data on the gateway's disk). None: kept until the client deletes or replaces it.
    incomplete_retention_hours: float | None = 72.0


class SoapLoginThrottle(Base):
    """Failed SOAP logins, counted per username and per source address (docs/soap.md, Security)."""

    delay_after: int = 3  # failures before the next attempt must wait
    delay_seconds: float = 1.0  # the first wait; doubles with each further failure
    delay_max_seconds: float = 60.0
    block_after: int = 10  # failures, then every attempt is refused for block_seconds
    block_seconds: float = 900.0
    window_seconds: float = 900.0  # a failure older than this is forgotten
    address_factor: int = 5  # a source address gets the same treatment at this many times the counts


class SoapServerConfig(Base):
    """The SOAP endpoint for creditor ERP systems (issue 5 owns this section)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8443
    certificate: str | None = None  # PEM; default keys.dir/tls.crt from `keys init`
    private_key: str | None = None  # PEM; default keys.dir/tls.key
    threads: int = 16  # worker threads of the HTTPS server
    max_inflight: int = 8  # requests processed at once; more wait up to busy_wait_seconds, then Server.Busy
    busy_wait_seconds: float = 5.0
    max_request_bytes: int = 20 * 1024 * 1024  # larger bodies get Client.TooLarge before they are parsed
    # tags ('<') and attributes ('=') of a body, counted before parsing: a parsed node costs ~350 bytes, so
    # this (with max_inflight) bounds the memory requests take; 1000 rich claims have ~100,000 tags
    max_request_tags: int = 400_000
    # A request with more markup than this (tags and attributes, ~200 rich claims) is heavy: at most
    # max_heavy_inflight of them are parsed and validated at once (a refused attribute costs ~1.1 KB of the
    # validator's error log: eight requests at the limit took 1.16 GB), the rest wait like max_inflight's.
    heavy_request_tags: int = 20_000
    max_heavy_inflight: int = 2
    max_document_bytes: int = 5 * 1024 * 1024  # per document (decoded)
    max_claims_per_request: int = 1000
    # PostgreSQL assigns event ids before commit, so a poller could skip a late commit; GetChanges only
    # returns events older than this on PostgreSQL (SQLite commits in id order).
    changes_settle_seconds: float = 2.0
    # The address the WSDL advertises; None: https://<host>:<port>/soap of this listener. Never the request's Host.
    public_url: str | None = None
    header_timeout_seconds: float = 10.0  # TLS handshake, request line and headers, from connect or last answer
    read_timeout_seconds: float = 30.0  # longest wait for the next bytes of a body
    request_timeout_seconds: float = 300.0  # a whole body, from its first byte
    # Connections open at once (each a file descriptor of serve); more are closed as they arrive
    max_connections: int = 256
    max_connections_per_address: int = 64
    # Requests of one address whose body is still arriving, in worker threads at once (at most half of them)
    max_body_waits_per_address: int = 4
    max_unauthenticated_reads: int = 4  # WS-Security bodies read before their sender is known, at once
    max_password_checks: int = 2  # scrypt verifications at once (each ~100 ms of one core)
    login: SoapLoginThrottle = msgspec.field(default_factory=SoapLoginThrottle)


class WebUserConfig(Base):
    """One login of the web console: a client's user (``client``) or an operator (``operator: true``)."""

    password_hash: str | None = None  # scrypt hash made by `python -m gateway.crypto.passwords`
    password_file: str | None = None  # DEMO ONLY: a file holding the password; `keys init` makes it under keys.dir
    client: str | None = None
    operator: bool = False
    role: Literal["read", "submit"] = "read"  # submit: may also upload, release, cancel, report, message
    sandbox: bool = False  # a login to the client's sandbox (docs/sandbox.md); the gateway sets client to <id>.sandbox


class WebConfig(Base):
    """The web console for clients' users and operators (docs/web.md)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8444  # HTTPS with the SOAP certificate (soap.certificate / keys.dir/tls.crt)
    session_secret_file: str | None = None  # signs session cookies; default keys.dir/web-session.key (keys init)
    session_max_age_seconds: int = 8 * 3600  # a session ends this long after its last use (idle)
    session_absolute_seconds: int = 12 * 3600  # and this long after its login, however busy (a day's work)
    max_upload_bytes: int = 50 * 1024 * 1024
    header_timeout_seconds: float = 10.0  # TLS handshake, request line and headers, from connect or last answer
    request_timeout_seconds: float = 300.0  # a whole body (a form, an upload), from the end of its header
    # Connections open at once (each a file descriptor of serve); more are closed as they arrive
    max_connections: int = 256
    max_connections_per_address: int = 64
    users: dict[str, WebUserConfig] = msgspec.field(default_factory=dict)


class LimitsConfig(Base):
    """What one client file may cost: limits of the reader child process, sheet size (docs/configuration.md)."""

    memory_mb: int = 512  # the ceiling of the whole serve/ingest process while ingesting (documented, measured)
    reader_memory_mb: int = 256  # address space of the child process that parses a spreadsheet or XML file
    reader_cpu_seconds: int = 300  # CPU time of that child
    reader_timeout_seconds: float = 600.0  # wall-clock time the gateway waits for the reader's next rows, summed
    max_rows: int = 1_048_576  # rows of a sheet (a spreadsheet's own maximum); more is refused before parsing
    max_columns: int = 1024  # columns of a sheet or CSV header
    # Worker processes that prepare and store the chunks of one large file, in file order (docs/configuration.md);
    # None: chosen by the cores this process may use. 0: every file in the ingesting process alone.
    ingest_processes: int | None = None
    parallel_from_mb: float = 8.0  # files from this size use them (a smaller one is done before they would start)


class HealthConfig(Base):
    """The plain-HTTP health and metrics listener of ``serve`` (docs/operations.md)."""

    listen: str | None = "127.0.0.1:8480"  # host:port of /healthz, /readyz, /metrics; None: no listener
    stale_seconds: float = 60.0  # /healthz: a task is stale after max(3 x its interval, this) without a step
    check_timeout_seconds: float = 3.0  # /readyz and /metrics wait this long for the database
    # Connections open at once (each a file descriptor of serve); more are closed as they arrive
    max_connections: int = 64
    max_connections_per_address: int = 16


class LoggingConfig(Base):
    """Log lines of the ``gateway`` command (docs/operations.md)."""

    level: str = "INFO"  # of serve; other commands log warnings only unless -v
    format: Literal["text", "json"] = "text"  # json: one object per line (ts, level, logger, event, fields)
    file: str | None = None  # append to this file (relative to base_dir) instead of stderr


class BureauSimulatorConfig(Base):
    """Demo only: ``gateway serve`` runs this bureau's loopback simulator in-process, at the URL's port."""

    enabled: bool = False


class CreditConfig(Base):
    """Defaults of every client's credit checks (docs/credit.md)."""

    # a check's data is kept no longer than needed: ``gateway retention run`` erases it after this (audit row
    # kept); None keeps it until erased by hand
    retention_days: int | None = 365


class BureauConfig(Base):
    """One credit bureau (docs/credit.md): an adapter from ``adapters.bureaus.BUREAUS`` and its options."""

    adapter: str  # http_json | soap
    options: dict[str, Any] = msgspec.field(default_factory=dict)  # http_json: url; soap: wsdl
    timeout_seconds: float = 1.5  # the whole budget for this bureau in one check, retries included
    attempts: int = 2  # tries of a retryable error while the budget lasts
    max_in_flight: int = 16  # calls to this bureau at once in this process; more answer "busy" at once
    max_answer_bytes: int = 1048576  # a longer answer is refused ("answer too large") unread
    simulator: BureauSimulatorConfig = msgspec.field(default_factory=BureauSimulatorConfig)


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
    supervisor: SupervisorConfig = msgspec.field(default_factory=SupervisorConfig)
    node: NodeConfig = msgspec.field(default_factory=NodeConfig)
    sftp: SftpServerConfig = msgspec.field(default_factory=SftpServerConfig)
    soap: SoapServerConfig = msgspec.field(default_factory=SoapServerConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    health: HealthConfig = msgspec.field(default_factory=HealthConfig)
    web: WebConfig = msgspec.field(default_factory=WebConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    clients: dict[str, ClientConfig] = msgspec.field(default_factory=dict)
    partners: dict[str, PartnerConfig] = msgspec.field(default_factory=dict)
    routing: list[RouteRule] = msgspec.field(default_factory=list)
    bureaus: dict[str, BureauConfig] = msgspec.field(default_factory=dict)
    credit: CreditConfig = msgspec.field(default_factory=CreditConfig)
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
    # DEMO logins of the web console; `keys init` writes their passwords into var/keys/, serve prints them.
    "web": {"enabled": True, "users": {
        "demo": {"client": "demo", "role": "submit", "password_file": "var/keys/web-demo.password"},
        "operator": {"operator": True, "password_file": "var/keys/web-operator.password"}}},
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
    _derive_sandboxes(cfg)
    _check_references(cfg)
    return cfg


def _derive_sandboxes(cfg: GatewayConfig) -> None:
    """Add the client ``<id>.sandbox`` for every client with a sandbox, and move its sandbox logins there."""
    from gateway.domain.sandbox import SANDBOX_SUFFIX, SCENARIOS, STATUS_MAP, sandbox_id
    for cid, client in cfg.clients.items():
        if cid.endswith(SANDBOX_SUFFIX) or client.sandbox_of is not None:
            raise ConfigError(f"'{SANDBOX_SUFFIX}' clients are made by the gateway from clients.<id>.sandbox",
                              file=cfg.source, key=f"clients.{cid}")
    sandbox_partners = sorted(pid for pid, p in cfg.partners.items() if p.sandbox)
    for pid in sandbox_partners:
        p = cfg.partners[pid]
        if p.adapter != "directory" or not p.simulator.enabled:
            raise ConfigError("a sandbox partner is the gateway's own simulated agency: adapter directory with "
                              "simulator.enabled: true", file=cfg.source, key=f"partners.{pid}.sandbox")
        if p.simulator.scenario not in SCENARIOS:
            raise ConfigError(f"unknown scenario '{p.simulator.scenario}' (one of {', '.join(SCENARIOS)})",
                              file=cfg.source, key=f"partners.{pid}.simulator.scenario")
        p.status_map = {**STATUS_MAP, **p.status_map}  # the simulated agency's codes need no config
        _check_sandbox_apart(cfg, pid)
    web_sandboxes = {u.client for u in cfg.web.users.values() if u.sandbox and u.client}
    for cid, client in list(cfg.clients.items()):
        creds = [c for c in client.soap.credentials if c.sandbox]
        if client.sandbox is None and not creds and cid not in web_sandboxes:
            continue
        sb = client.sandbox or ClientSandboxConfig()
        partner = sb.partner or (sandbox_partners[0] if len(sandbox_partners) == 1 else None)
        if partner is None or partner not in sandbox_partners:
            raise ConfigError(f"a sandbox needs a partner with sandbox: true (configured: "
                              f"{', '.join(sandbox_partners) or 'none'}; docs/sandbox.md)",
                              file=cfg.source, key=f"clients.{cid}.sandbox.partner")
        if sb.retention_days < 0:
            raise ConfigError("expected 0 or more days", file=cfg.source, key=f"clients.{cid}.sandbox.retention_days")
        sid = sandbox_id(cid)
        if len(sid) > 64:
            raise ConfigError(f"a client with a sandbox has an id of at most {64 - len(SANDBOX_SUFFIX)} characters",
                              file=cfg.source, key=f"clients.{cid}")
        client.soap.credentials = [c for c in client.soap.credentials if not c.sandbox]
        # Everything else as the client has it (mapping, holds, acks, limitation), so the sandbox behaves like
        # production; no credit checks, which would ask real bureaus about real people.
        cfg.clients[sid] = msgspec.structs.replace(
            client, name=f"{client.name or cid} (Sandbox)", enabled=client.enabled and sb.enabled,
            mapping=client.mapping or cid, default_partner=partner, watch=sb.watch, sftp=sb.sftp,
            soap=ClientSoapConfig(credentials=creds), retention_days_after_close=None, sandbox=sb, sandbox_of=cid,
            credit=None)
    for login, user in cfg.web.users.items():
        if user.sandbox and user.operator:
            raise ConfigError("an operator login cannot be a sandbox login", file=cfg.source,
                              key=f"web.users.{login}.sandbox")
        if user.sandbox and user.client in cfg.clients:
            user.client = sandbox_id(user.client)


# Options naming a local folder a partner's files live in (other adapters' folders are remote).
_LOCAL_FOLDERS = {"directory": ("path", "instruction_path"), "mail": ("status_path",)}


def _partner_folders(cfg: GatewayConfig, pid: str) -> list[tuple[str, Path]]:
    p = cfg.partners[pid]
    return [(f"partners.{pid}.options.{opt}", cfg.path(str(p.options[opt])).resolve())
            for opt in _LOCAL_FOLDERS.get(p.adapter, ()) if p.options.get(opt)]


def _public_key(path: Path) -> bytes | None:
    """The certificate's public key (DER), or None when the file is not (yet) there or not a certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _check_sandbox_apart(cfg: GatewayConfig, pid: str) -> None:
    """A sandbox partner shares no folder and no certificate with another partner.

    Sandbox retention deletes old files in the sandbox partner's folders, and a sandbox batch is encrypted to
    its certificate: a shared folder would lose a real agency's files, a shared key would hand test batches
    to a real agency.
    """
    own = _partner_folders(cfg, pid)
    cert = cfg.path(cfg.partners[pid].certificate).resolve()
    for other in sorted(cfg.partners):
        if other == pid:
            continue
        for key, folder in own:
            for other_key, other_folder in _partner_folders(cfg, other):
                if folder == other_folder or folder.is_relative_to(other_folder) or other_folder.is_relative_to(folder):
                    raise ConfigError(f"a sandbox partner's folder must be apart from every other partner's: "
                                      f"{key} and {other_key} are the same folder or one holds the other "
                                      f"(docs/sandbox.md)", file=cfg.source, key=key)
        if cfg.partners[other].sandbox:
            continue
        other_cert = cfg.path(cfg.partners[other].certificate).resolve()
        same_key = other_cert != cert and (mine := _public_key(cert)) is not None and mine == _public_key(other_cert)
        if other_cert == cert or same_key:
            raise ConfigError(f"a sandbox partner needs a certificate of its own: partners.{pid}.certificate is "
                              f"{'the same file as' if other_cert == cert else 'the same key as'} "
                              f"partners.{other}.certificate (docs/sandbox.md)",
                              file=cfg.source, key=f"partners.{pid}.certificate")


def _check_references(cfg: GatewayConfig) -> None:
    for cid, client in cfg.clients.items():
        if client.default_partner and client.default_partner not in cfg.partners:
            raise ConfigError(f"unknown partner '{client.default_partner}' (configured: "
                              f"{', '.join(sorted(cfg.partners)) or 'none'})",
                              file=cfg.source, key=f"clients.{cid}.default_partner")
    from adapters.base import CAPABILITIES  # names only: the adapter's own set is checked when it loads
    for pid, partner in cfg.partners.items():
        unknown = sorted(set(partner.capabilities or ()) - set(CAPABILITIES))
        if unknown:
            raise ConfigError(f"unknown capabilities {', '.join(unknown)} (known: {', '.join(CAPABILITIES)})",
                              file=cfg.source, key=f"partners.{pid}.capabilities")
    _check_credit(cfg)
    for key in ("session_max_age_seconds", "session_absolute_seconds"):
        if getattr(cfg.web, key) < 60:
            raise ConfigError("expected at least 60 seconds", file=cfg.source, key=f"web.{key}")
    for cid, client in cfg.clients.items():
        if client.sandbox_of is None and client.default_partner and cfg.partners[client.default_partner].sandbox:
            raise ConfigError("a sandbox partner takes sandbox claims only (docs/sandbox.md)",
                              file=cfg.source, key=f"clients.{cid}.default_partner")
    for i, rule in enumerate(cfg.routing):
        if rule.partner not in cfg.partners:
            raise ConfigError(f"unknown partner '{rule.partner}'", file=cfg.source, key=f"routing[{i}].partner")
        ruled = cfg.clients.get(rule.client) if rule.client else None
        if cfg.partners[rule.partner].sandbox or (ruled is not None and ruled.sandbox_of):
            raise ConfigError("routing rules are for production claims; a sandbox's claims always go to its "
                              "sandbox partner (docs/sandbox.md)", file=cfg.source, key=f"routing[{i}]")
        if rule.client is not None and rule.client not in cfg.clients:
            raise ConfigError(f"unknown client '{rule.client}'", file=cfg.source, key=f"routing[{i}].client")


def _check_credit(cfg: GatewayConfig) -> None:
    from adapters.bureaus import BUREAUS  # names only: the adapter's options are checked when it loads
    if cfg.credit.retention_days is not None and cfg.credit.retention_days < 1:
        raise ConfigError("retention_days must be >= 1 (or null: keep until erased)", file=cfg.source,
                          key="credit.retention_days")
    for bid, bureau in cfg.bureaus.items():
        if bureau.adapter not in BUREAUS:
            raise ConfigError(f"unknown bureau adapter '{bureau.adapter}' (known: {', '.join(sorted(BUREAUS))})",
                              file=cfg.source, key=f"bureaus.{bid}.adapter")
        if bureau.timeout_seconds <= 0 or bureau.attempts < 1:
            raise ConfigError("timeout_seconds must be > 0 and attempts >= 1", file=cfg.source, key=f"bureaus.{bid}")
        if bureau.max_in_flight < 1 or bureau.max_answer_bytes < 1024:
            raise ConfigError("max_in_flight must be >= 1 and max_answer_bytes >= 1024", file=cfg.source,
                              key=f"bureaus.{bid}")
    for cid, client in cfg.clients.items():
        credit = client.credit
        if credit is None:
            continue
        key = f"clients.{cid}.credit"
        unknown = [b for b in credit.bureaus if b not in cfg.bureaus]
        if unknown or not credit.bureaus:
            known = ", ".join(sorted(cfg.bureaus)) or "none"
            raise ConfigError(f"unknown bureaus {', '.join(unknown)} (configured: {known})" if unknown
                              else "name at least one bureau", file=cfg.source, key=f"{key}.bureaus")
        bad = [i for i in credit.interests if i not in INTERESTS]
        if bad:
            raise ConfigError(f"unknown interests {', '.join(bad)} (known: {', '.join(INTERESTS)})",
                              file=cfg.source, key=f"{key}.interests")
        for problem in credit.policy.problems():
            raise ConfigError(problem, file=cfg.source, key=f"{key}.policy")
        if credit.max_checks_per_hour < 1 or credit.cache_seconds < 0 or credit.incomplete_cache_seconds < 0:
            raise ConfigError("max_checks_per_hour must be >= 1 and the cache times >= 0", file=cfg.source, key=key)
        if credit.retention_days is not None and credit.retention_days < 1:
            raise ConfigError("retention_days must be >= 1 (or null: the default)", file=cfg.source,
                              key=f"{key}.retention_days")
