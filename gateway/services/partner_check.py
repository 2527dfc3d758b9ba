"""Connectivity check of a partner through its configured adapter (``gateway partners test``).

Each check does the least that proves delivery could work, with the adapter's own settings: the
directory adapter's folder is writable (a probe file written and removed), SFTP connects, logs in with
the pinned host key and lists the upload folder (the adapter's own session code), HTTP answers a GET of
``health_url`` (option) or the base URL with a status below 500, SOAP serves its WSDL, SMTP greets (and, with
``starttls`` or ``smtps``, shows a certificate that verifies). TLS is checked as a delivery checks it: against the partner's
``ca_file`` or the adapter's default store (``adapters/tls.py``), so a partner with a private CA is not reported
broken by the check alone. The partner's certificate is read too: a batch cannot be encrypted to a missing or
expired one.
"""

from __future__ import annotations

import os
import secrets
import smtplib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import Any

import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from cryptography import x509

from adapters.directory import DirectoryAdapter
from adapters.http_exchange import AnswerEncoding, AnswerTooLarge, Exchange
from adapters.mail import EmailAdapter
from adapters.rest import HttpAdapter
from adapters.sftp import SftpAdapter
from adapters.soap import SoapAdapter
from adapters.tls import certificate_failure, certificate_text
from gateway.bootstrap import App
from gateway.errors import ConfigError, DeliveryError, NotFound
from gateway.services.dispatch import open_adapter

CHECK_DEADLINE = 30.0  # seconds for one check's whole answer
CHECK_MAX_BYTES = 4 * 1024 * 1024  # a health page or a WSDL


@dataclass
class CheckResult:
    partner: str
    adapter: str
    ok: bool
    detail: str
    seconds: float
    certificate: str


def _certificate(app: App, partner_id: str) -> tuple[bool, str]:
    path = app.config.path(app.config.partners[partner_id].certificate)
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return False, f"certificate {path} unreadable: {type(exc).__name__}"
    until = cert.not_valid_after_utc
    if until <= datetime.now(timezone.utc):
        return False, f"certificate expired {until:%Y-%m-%d}"
    return True, f"certificate valid until {until:%Y-%m-%d}"


def _probe(adapter: Any, options: dict[str, Any]) -> str:
    if isinstance(adapter, DirectoryAdapter):
        if not adapter.path.is_dir():
            if not adapter.create:
                raise DeliveryError(f"{adapter.path} does not exist (option create: false)", retryable=True)
            adapter.path.mkdir(parents=True, exist_ok=True)
        probe = adapter.path / f".gateway-check-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            probe.write_bytes(b"")
        except OSError as exc:
            raise DeliveryError(f"{adapter.path} is not writable: {exc.strerror}", retryable=True) from exc
        probe.unlink()
        return f"folder {adapter.path} writable"
    if isinstance(adapter, SftpAdapter):
        async def listdir(sftp: Any) -> int:
            return len(await sftp.listdir(adapter.upload_dir))
        # the adapter's own session: same host key pinning, key and timeouts as a delivery
        n = adapter._run("check", listdir)
        return f"sftp {adapter.username}@{adapter.host}:{adapter.port} logged in, {adapter.upload_dir} lists {n} entries"
    if isinstance(adapter, HttpAdapter):
        if adapter.missing_token is not None:  # a delivery would send nothing: the check says so, not "ok"
            raise DeliveryError(f"option token_env names {adapter.missing_token}, which is not set (or empty) in "
                                "the gateway's environment", retryable=True)
        url = str(options.get("health_url") or adapter.client.base_url)
        return _get(url, "http", adapter.exchange.timeout, adapter.exchange.headers, adapter.exchange.ca_file,
                    adapter.exchange.default_tls)
    if isinstance(adapter, SoapAdapter):
        if not adapter.wsdl.lower().startswith(("http://", "https://")):  # a WSDL kept as a local file
            return f"wsdl {shown_url(adapter.wsdl)} is a local file; the endpoint it names is asked at the first call"
        return _get(adapter.wsdl, "wsdl", adapter.timeout, {}, adapter.exchange.ca_file, adapter.exchange.default_tls)
    if isinstance(adapter, EmailAdapter):
        where = f"smtp {adapter.host}:{adapter.port}"
        try:
            # connected and secured as a delivery is (implicit TLS or STARTTLS): the certificate a delivery would be
            # shown, checked as a delivery checks it
            with adapter.client() as smtp:
                adapter.open(smtp)
                code, _ = smtp.noop()
        except (OSError, smtplib.SMTPException) as exc:
            failure = certificate_failure(exc)
            if failure is not None:
                raise DeliveryError(f"{where}: {certificate_text(failure)}", retryable=False) from None
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from exc
        shown = {"starttls": ", its STARTTLS certificate verified", "smtps": ", its certificate verified (SMTPS)"}
        return f"{where} answers ({code})" + shown.get(adapter.tls or "", "")
    return "no connectivity check for this adapter; the adapter was built from its options"


def _get(url: str, what: str, timeout: float, headers: Mapping[str, str], ca_file: str | None = None,
         default_tls: Callable[[], ssl.SSLContext] = httpx.create_ssl_context) -> str:
    """One GET bounded in time and size, as deliveries are (``adapters/http_exchange.py``): a partner that drips
    its answer or sends gigabytes must not hang or swell the operator's check. Its TLS trusts what the adapter's
    deliveries trust (``ca_file``, else the adapter's default store)."""
    target, url = url, shown_url(url)  # ``url`` names it in every message; the request goes to ``target``
    exchange = Exchange("", headers, timeout=timeout, deadline=CHECK_DEADLINE, max_bytes=CHECK_MAX_BYTES,
                        ca_file=ca_file, default_tls=default_tls, where=f"{what} GET {url}")
    try:
        r = exchange.request("GET", target)
    except httpx.HTTPError as exc:
        failure = certificate_failure(exc)
        if failure is not None:
            raise DeliveryError(f"{what} GET {url}: {certificate_text(failure)}", retryable=False) from None
        raise DeliveryError(f"{what} GET {url}: {type(exc).__name__}: {exc}", retryable=True) from exc
    except TimeoutError:
        raise DeliveryError(f"{what} GET {url}: no whole answer within {CHECK_DEADLINE:g} s", retryable=True) from None
    except (AnswerTooLarge, AnswerEncoding) as exc:
        raise DeliveryError(f"{what} GET {url}: {exc}", retryable=True) from None
    if r.status >= 500 or (what == "wsdl" and r.status >= 400):
        raise DeliveryError(f"{what} GET {url}: HTTP {r.status}", retryable=True)
    if what == "wsdl" and b"definitions" not in r.content[:4096]:
        raise DeliveryError(f"wsdl GET {url}: HTTP {r.status} but no WSDL in the answer", retryable=False)
    return f"{what} GET {url}: HTTP {r.status}"


def shown_url(url: str) -> str:
    """``url`` as the check's messages name it: without a user and password, a query or a fragment, which may hold
    credentials (``https://user:secret@host/``, ``?token=...``) and end up in a terminal's scrollback or a job log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    if not parts.scheme or not host:
        return url.split("?", 1)[0].split("#", 1)[0] if "@" not in url else "(the configured URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?..." if parts.query else "")


def check_partner(app: App, partner_id: str) -> CheckResult:
    """Build the partner's adapter and probe it; never raises for an unreachable partner."""
    pcfg = app.config.partners.get(partner_id)
    if pcfg is None:
        raise NotFound(f"no partner '{partner_id}' (configured: {', '.join(sorted(app.config.partners)) or 'none'})")
    started = time.monotonic()
    cert_ok, cert = _certificate(app, partner_id)
    adapter: Any = None
    try:
        adapter = open_adapter(app, partner_id)
        detail, ok = _probe(adapter, dict(pcfg.options)), cert_ok
    except (DeliveryError, ConfigError) as exc:
        detail, ok = str(exc), False
    finally:
        if adapter is not None:
            adapter.close()
    return CheckResult(partner_id, pcfg.adapter, ok, detail, round(time.monotonic() - started, 3), cert)
