"""A real SOAP endpoint over HTTPS on 127.0.0.1 (ephemeral port) and zeep clients trusting its certificate."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
from zeep.transports import Transport

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.crypto.passwords import verify_password
from gateway.entrypoints.soap.server import SoapServer
from gateway.services.keys import init_keys
from tests.conftest import write_config

PASSWORDS = {"demo-erp": "demo password 1234", "other-erp": "other password 5678", "viewer": "viewer password 90"}


def cheap_hash(password: str) -> str:
    """A scrypt hash in the stored format with a low cost factor, to keep tests fast."""
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 10, r=8, p=1, dklen=32)
    stored = f"scrypt${2 ** 10}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password(password, stored)
    return stored


_HASHES = {user: cheap_hash(pw) for user, pw in PASSWORDS.items()}


def client_config(**extra: Any) -> dict[str, Any]:
    return {
        "demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency",
                 "soap": {"username": "demo-erp", "password_hash": _HASHES["demo-erp"]}},
        "other": {"name": "Other", "mapping": "demo", "default_partner": "demo-agency",
                  "soap": {"username": "other-erp", "password_hash": _HASHES["other-erp"]}},
        "viewer": {"name": "Viewer", "mapping": "demo", "default_partner": "demo-agency",
                   "soap": {"username": "viewer", "password_hash": _HASHES["viewer"], "read_only": True}},
        **extra,
    }


@dataclass
class Endpoint:
    app: App
    server: SoapServer
    cert: Path

    @property
    def url(self) -> str:
        return self.server.url

    def session(self, user: str | None = "demo-erp", password: str | None = None) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify; and no proxies on loopback
        s.verify = str(self.cert)
        if user is not None:
            s.auth = (user, password if password is not None else PASSWORDS[user])
        return s

    def client(self, user: str | None = "demo-erp", password: str | None = None) -> zeep.Client:
        return zeep.Client(self.url + "?wsdl", transport=Transport(session=self.session(user, password)))


@pytest.fixture
def soap_app(tmp_path: Path, db_url: str) -> Iterator[App]:
    path = write_config(tmp_path, db_url, clients=client_config(),
                        soap={"threads": 8, "max_request_bytes": 256 * 1024, "max_document_bytes": 64 * 1024,
                              "changes_settle_seconds": 0})
    init_keys(load_config(path))
    app = build_app(path, migrate=True)
    yield app
    app.close()


@contextmanager
def endpoint_of(app: App) -> Iterator[Endpoint]:
    """``app``'s real SOAP endpoint on an ephemeral loopback port, stopped at the end."""
    server = SoapServer(app, host="127.0.0.1", port=0)
    server.start()
    try:
        yield Endpoint(app, server, app.config.keys_dir / "tls.crt")
    finally:
        server.stop()


@contextmanager
def serving(tmp_path: Path, db_url: str, **overrides: Any) -> Iterator[Endpoint]:
    """A gateway of its own (the SOAP clients unless ``clients`` is given, ``overrides`` as config sections) with its
    real SOAP endpoint; stopped and closed at the end."""
    overrides.setdefault("clients", client_config())
    path = write_config(tmp_path, db_url, **overrides)
    init_keys(load_config(path))
    app = build_app(path, migrate=True)
    try:
        with endpoint_of(app) as ep:
            yield ep
    finally:
        app.close()


@pytest.fixture
def endpoint(soap_app: App) -> Iterator[Endpoint]:
    with endpoint_of(soap_app) as ep:
        yield ep


def claim(ref: str = "R-1", **changes: Any) -> dict[str, Any]:
    """A valid claim as zeep takes it (arrays wrapped in their item element)."""
    doc: dict[str, Any] = {
        "creditor_reference": ref, "principal_amount": "120.50", "invoice_number": f"INV-{ref}",
        "invoice_date": "2025-03-01", "due_date": "2025-03-15",
        "debtor": {"first_name": "Jürgen", "last_name": "Müller", "birth_date": "1980-05-17",
                   "addresses": {"Address": [{"street": "Hauptstraße 12", "postal_code": "50667", "city": "Köln"}]},
                   "emails": {"Email": ["j.mueller@example.org"]}},
    }
    doc.update(changes)
    return doc


def submit(client: zeep.Client, *claims: dict[str, Any], release: bool | None = None) -> Any:
    return client.service.SubmitClaims(claims={"ClaimInput": list(claims)}, release=release)
