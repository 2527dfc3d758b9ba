"""Operator use cases on clients: add, change logins and keys, disable; written back to the config file.

Passwords arrive here as plaintext only long enough to be hashed (scrypt, ``crypto.passwords``); only the
hash is written. Nothing in this module logs or returns a password or a key.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from gateway.config import ClientConfig, GatewayConfig
from gateway.crypto.passwords import hash_password
from gateway.errors import GatewayError, NotFound
from gateway.services.config_edit import Doc, config_file, edit_config, section

Channel = Literal["sftp", "soap"]
_CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MIN_PASSWORD = 12


class AdminError(GatewayError):
    """An operator request that cannot be done as asked (a duplicate id, a weak password, ...)."""


@dataclass
class ClientSummary:
    id: str
    name: str
    enabled: bool
    mapping: str
    default_partner: str | None
    hold_all: bool
    sftp_keys: list[str]  # fingerprints, never the key lines
    sftp_password: bool
    soap_username: str | None
    soap_password: bool
    soap_read_only: bool


def fingerprint(line: str) -> str:
    """SHA256 fingerprint of an OpenSSH public key line, as ``ssh-keygen -l`` prints it."""
    key = _parse_key(line)
    digest = hashlib.sha256(key.public_data).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _parse_key(line: str) -> Any:
    import asyncssh  # ~0.4 s to import: only when a key is handled, not on every CLI start
    try:
        return asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise AdminError(f"not an OpenSSH public key: {exc}") from None


def summary(cfg: GatewayConfig, client_id: str) -> ClientSummary:
    """What the config says about one client (no secrets)."""
    c: ClientConfig = cfg.clients.get(client_id) or _unknown(cfg, client_id)
    return ClientSummary(client_id, c.name, c.enabled, c.mapping or client_id, c.default_partner, c.hold_all,
                         [_safe_fingerprint(k) for k in c.sftp.authorized_keys], bool(c.sftp.password_hash),
                         c.soap.username, bool(c.soap.password_hash), c.soap.read_only)


def _safe_fingerprint(line: str) -> str:
    try:
        return fingerprint(line)
    except AdminError:
        return "(invalid key)"


def _unknown(cfg: GatewayConfig, client_id: str) -> ClientConfig:
    raise NotFound(f"no client '{client_id}' (configured: {', '.join(sorted(cfg.clients)) or 'none'})")


def _client(doc: Doc, client_id: str) -> Doc:
    clients = section(doc, "clients")
    if client_id not in clients:
        raise NotFound(f"no client '{client_id}' in the config file")
    return section(doc, "clients", client_id)


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AdminError(f"use at least {MIN_PASSWORD} characters")
    return hash_password(password)


def _username_free(cfg: GatewayConfig, username: str, client_id: str) -> None:
    for cid, c in cfg.clients.items():
        if cid != client_id and c.soap.username == username:
            raise AdminError(f"SOAP username '{username}' is already used by client '{cid}'")


def add_client(cfg: GatewayConfig, client_id: str, *, name: str, mapping: str | None = None,
               default_partner: str | None = None, hold_all: bool = False) -> GatewayConfig:
    """A new client entry at the end of ``clients``; the config loader checks partner and mapping names."""
    if not _CLIENT_ID.match(client_id):
        raise AdminError("a client id is 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
    if client_id in cfg.clients:
        raise AdminError(f"client '{client_id}' exists already")

    def change(doc: Doc) -> None:
        entry = CommentedMap()
        entry["name"] = name
        entry["mapping"] = mapping or client_id
        if default_partner:
            entry["default_partner"] = default_partner
        entry["hold_all"] = hold_all
        section(doc, "clients")[client_id] = entry
    return edit_config(config_file(cfg), change)


def set_password(cfg: GatewayConfig, client_id: str, channel: Channel, password: str,
                 username: str | None = None) -> GatewayConfig:
    """Set the SFTP or SOAP password (SOAP: and its username, default the current one or the client id)."""
    summary(cfg, client_id)
    hashed = _check_password(password)
    user = None
    if channel == "soap":
        user = username or cfg.clients[client_id].soap.username or client_id
        _username_free(cfg, user, client_id)

    def change(doc: Doc) -> None:
        sec = section(_client(doc, client_id), channel)
        if user is not None:
            sec["username"] = user
        sec["password_hash"] = hashed
    return edit_config(config_file(cfg), change)


def add_key(cfg: GatewayConfig, client_id: str, line: str) -> tuple[GatewayConfig, str]:
    """Add an SSH public key to the client's SFTP login; returns the new config and its fingerprint."""
    summary(cfg, client_id)
    fp = fingerprint(line)
    if fp in {_safe_fingerprint(k) for k in cfg.clients[client_id].sftp.authorized_keys}:
        raise AdminError(f"key {fp} is already authorized for client '{client_id}'")

    def change(doc: Doc) -> None:
        sec = section(_client(doc, client_id), "sftp")
        keys = sec.get("authorized_keys")
        if keys is None:
            keys = sec["authorized_keys"] = CommentedSeq()
        keys.append(" ".join(line.split()))
    return edit_config(config_file(cfg), change), fp


def remove_key(cfg: GatewayConfig, client_id: str, fp: str) -> GatewayConfig:
    """Remove the key with fingerprint ``fp`` (as ``clients show`` prints it)."""
    current = summary(cfg, client_id).sftp_keys
    if fp not in current:
        raise NotFound(f"client '{client_id}' has no key {fp}")
    index = current.index(fp)

    def change(doc: Doc) -> None:
        keys: Any = section(_client(doc, client_id), "sftp")["authorized_keys"]
        del keys[index]
    return edit_config(config_file(cfg), change)


def set_enabled(cfg: GatewayConfig, client_id: str, enabled: bool) -> GatewayConfig:
    """Disable (or enable again) a client's logins; its claims and files stay."""
    summary(cfg, client_id)

    def change(doc: Doc) -> None:
        entry = _client(doc, client_id)
        if enabled:
            entry.pop("enabled", None)
        else:
            entry["enabled"] = False
    return edit_config(config_file(cfg), change)


# -- web console logins (``web.users``) ------------------------------------------------------------
_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
WebRole = Literal["read", "submit"]


def new_password() -> str:
    """A random password for a new or reset login (shown once to the operator, then only its hash exists)."""
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def web_logins(cfg: GatewayConfig, client_id: str | None = None) -> list[tuple[str, str | None, str]]:
    """(login, client id or None for an operator, role) of the console's logins, one client's if given."""
    return [(login, u.client, "operator" if u.operator else u.role) for login, u in sorted(cfg.web.users.items())
            if client_id is None or u.client == client_id]


def add_web_user(cfg: GatewayConfig, login: str, *, client_id: str, role: WebRole, password: str) -> GatewayConfig:
    """A new console login of one client with ``role``; only the password's hash is written."""
    summary(cfg, client_id)
    if not _LOGIN.match(login):
        raise AdminError("a login is 1-128 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    if login in cfg.web.users:
        raise AdminError(f"the login '{login}' exists already")
    if role not in ("read", "submit"):
        raise AdminError("a client's login has the role read or submit")
    hashed = _check_password(password)

    def change(doc: Doc) -> None:
        entry = CommentedMap()
        entry["client"] = client_id
        entry["role"] = role
        entry["password_hash"] = hashed
        section(doc, "web", "users")[login] = entry
    return edit_config(config_file(cfg), change)


def set_web_password(cfg: GatewayConfig, login: str, password: str, *, client_id: str | None) -> GatewayConfig:
    """A new password for a console login of ``client_id`` (None: an operator's login); a demo login's
    ``password_file`` is replaced by the hash."""
    user = cfg.web.users.get(login)
    if user is None or user.client != client_id:
        raise NotFound(f"no login '{login}'" + (f" of client '{client_id}'" if client_id else ""))
    hashed = _check_password(password)

    def change(doc: Doc) -> None:
        entry = section(doc, "web", "users", login)
        entry.pop("password_file", None)
        entry["password_hash"] = hashed
    return edit_config(config_file(cfg), change)


def remove_web_user(cfg: GatewayConfig, login: str, *, client_id: str) -> GatewayConfig:
    """Remove a console login of ``client_id``; its sessions end at their next request."""
    user = cfg.web.users.get(login)
    if user is None or user.client != client_id:
        raise NotFound(f"no login '{login}' of client '{client_id}'")

    def change(doc: Doc) -> None:
        del section(doc, "web", "users")[login]
    return edit_config(config_file(cfg), change)


__all__ = ["AdminError", "ClientSummary", "add_client", "add_key", "add_web_user", "fingerprint", "new_password",
           "remove_key", "remove_web_user", "set_enabled", "set_password", "set_web_password", "summary",
           "web_logins"]
