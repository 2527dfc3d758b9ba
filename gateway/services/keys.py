"""``gateway keys init``: create whatever keys the embedded default needs, never overwrite one.

Losing the data key means losing every debtor's data, so an existing key file is always kept.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.bootstrap import DATA_KEY_FILE, SIGNING_CERT_FILE, SIGNING_KEY_FILE
from gateway.config import GatewayConfig
from gateway.crypto.certs import new_rsa_key, self_signed_cert, write_cert, write_private_key
from gateway.crypto.fieldcrypt import new_key_file_content

TLS_KEY_FILE, TLS_CERT_FILE, HOST_KEY_FILE = "tls.key", "tls.crt", "ssh_host_ed25519_key"
WEB_SESSION_FILE = "web-session.key"


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def init_keys(cfg: GatewayConfig) -> list[str]:
    """Create missing keys; returns a line per file created (empty when all existed)."""
    kdir, made = cfg.keys_dir, []
    data = kdir / DATA_KEY_FILE
    if not data.exists() and not os.environ.get(cfg.keys.data_keys_env):
        _write_secret(data, json.dumps(new_key_file_content(), indent=2).encode())
        made.append(f"data keys (AES-256-GCM, at rest): {data}")
    if not (kdir / SIGNING_KEY_FILE).exists():
        key = new_rsa_key()
        write_private_key(kdir / SIGNING_KEY_FILE, key)
        write_cert(kdir / SIGNING_CERT_FILE, self_signed_cert(key, f"{cfg.gateway_id} batch signing",
                                                              usage="signing"))
        made.append(f"batch signing key and certificate: {kdir / SIGNING_CERT_FILE}")
    if not (kdir / TLS_KEY_FILE).exists():
        key = new_rsa_key(2048)
        write_private_key(kdir / TLS_KEY_FILE, key)
        write_cert(kdir / TLS_CERT_FILE, self_signed_cert(key, "localhost", usage="tls", dns_names=["localhost"]))
        made.append(f"self-signed TLS certificate: {kdir / TLS_CERT_FILE}")
    if not (kdir / HOST_KEY_FILE).exists():
        host = ed25519.Ed25519PrivateKey.generate()
        _write_secret(kdir / HOST_KEY_FILE, host.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.OpenSSH,
                                                               serialization.NoEncryption()))
        made.append(f"SSH host key: {kdir / HOST_KEY_FILE}")
    if cfg.web.enabled and not cfg.web.session_secret_file and not (kdir / WEB_SESSION_FILE).exists():
        _write_secret(kdir / WEB_SESSION_FILE, secrets.token_urlsafe(48).encode())
        made.append(f"web console session secret: {kdir / WEB_SESSION_FILE}")
    for login, user in cfg.web.users.items():
        pw = cfg.path(user.password_file) if user.password_file else None
        if pw is None or pw.exists() or not pw.resolve().is_relative_to(kdir.resolve()):
            continue
        # A demo login: its password is made here, kept only in this 0600 file, and shown by `serve`.
        _write_secret(pw, secrets.token_urlsafe(12).encode())
        made.append(f"DEMO web login '{login}' password (for trying the console only): {pw}")
    for pid, partner in cfg.partners.items():
        cert = cfg.path(partner.certificate)
        if cert.exists() or not cert.resolve().is_relative_to(kdir.resolve()):
            continue
        # A demo partner: we make its key pair so a newcomer can open what the gateway sends it.
        key = new_rsa_key()
        write_private_key(cert.with_suffix(".key"), key)
        write_cert(cert, self_signed_cert(key, f"{pid} (demo partner)", usage="encryption"))
        made.append(f"DEMO partner '{pid}' key pair (for trying the gateway only): {cert.with_suffix('.key')}")
    return made
