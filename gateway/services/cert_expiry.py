"""Certificates that run out: said weeks before, not found out when a delivery or a TLS handshake fails.

Watched: the gateway's signing certificate (every batch is signed with it), its TLS certificate when SOAP or the
console listens (``soap.certificate`` or ``keys.dir/tls.crt``), each partner's certificate (batches are encrypted
to it) and a partner's ``ca_file`` (its earliest certificate: one CA of a bundle running out breaks the
handshake). ``CertificateWatch.step`` (a supervised task of ``serve``, hourly) reads each file's end of validity
once per change of the file, exports the seconds left (``gateway_certificate_expiry_seconds``, for the alert
``GatewayCertificateExpiring``) and logs once per certificate when fewer than ``WARN_DAYS`` remain, once when it
has run out, and once when a renewed file is back in the clear. A file that is missing or not a certificate is
left to the part that uses it (which refuses it with its own message); it has no figure meanwhile. One the
certificate library fails on in any other way is said once (``certs.unreadable``) and has no figure either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from gateway.bootstrap import App
from gateway.episodes import Episodes
from gateway.faults import describe
from gateway.file_stamp import Stamp, file_stamp
from gateway.services.keys import TLS_CERT_FILE

log = logging.getLogger("gateway.serve")

CHECK_SECONDS = 3600.0
WARN_DAYS = 30


@dataclass(frozen=True)
class Watched:
    role: str  # signing, tls, partner, partner_ca
    name: str  # "gateway" or the partner's id
    path: Path


def watched(app: App) -> list[Watched]:
    """The certificate files this gateway depends on, as configured now."""
    cfg = app.config
    out = [Watched("signing", "gateway", app.signing_cert_path)]
    if cfg.soap.enabled or cfg.web.enabled:  # the console listens with the SOAP certificate
        out.append(Watched("tls", "gateway", cfg.path(cfg.soap.certificate) if cfg.soap.certificate
                           else cfg.keys_dir / TLS_CERT_FILE))
    for pid, partner in sorted(cfg.partners.items()):
        out.append(Watched("partner", pid, cfg.path(partner.certificate)))
        ca = partner.options.get("ca_file")
        if isinstance(ca, str) and ca:
            out.append(Watched("partner_ca", pid, cfg.path(ca)))
    return out


def not_after(path: Path) -> datetime | None:
    """The earliest end of validity of the PEM certificates in ``path``; None when it holds none (or is a folder)."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return None
    return min((c.not_valid_after_utc for c in certs), default=None)


class CertificateWatch:
    """The supervised look at the certificates (``step``), and the seconds each has left (``remaining``)."""

    def __init__(self, app: App, clock: Callable[[], float] = time.time) -> None:
        self.app, self.clock = app, clock
        self.remaining: dict[tuple[str, ...], float] = {}
        self._read: dict[Path, tuple[Stamp | None, datetime | None]] = {}
        self._episodes = Episodes()

    def _until(self, w: Watched) -> datetime | None:
        stamp = file_stamp(w.path)
        known = self._read.get(w.path)
        if known is None or known[0] != stamp:
            key = f"read:{w.role}:{w.name}"
            try:
                until = not_after(w.path)
            except Exception as exc:  # noqa: BLE001 - one file the library chokes on hides no other's figure
                # Kept, not raised: failing at every look, the task would end the gateway (the supervisor gives
                # up on an error that repeats), for a certificate whose user refuses it with its own message.
                if self._episodes.failed(key, "unreadable"):
                    log.error("certs.unreadable role=%s name=%s file=%s error=%s: no figure for it until the file "
                              "changes", w.role, w.name, w.path, describe(exc))
                until = None
            else:
                if self._episodes.ok(key) is not None:
                    log.info("certs.readable role=%s name=%s file=%s", w.role, w.name, w.path)
            known = self._read[w.path] = (stamp, until)
        return known[1]

    def step(self) -> bool:
        now = self.clock()
        remaining: dict[tuple[str, ...], float] = {}
        for w in watched(self.app):
            until = self._until(w)
            if until is None:
                continue
            left = until.timestamp() - now
            remaining[(w.role, w.name)] = left
            key = f"{w.role}:{w.name}"
            if left <= 0:
                if self._episodes.failed(key, "expired"):
                    log.error("certs.expired role=%s name=%s file=%s since=%s: what depends on it fails until the "
                              "file is renewed", w.role, w.name, w.path, f"{until:%Y-%m-%d}")
            elif left < WARN_DAYS * 86400:
                if self._episodes.failed(key, "expiring"):
                    log.warning("certs.expiring role=%s name=%s file=%s days=%d until=%s: renew it before then",
                                w.role, w.name, w.path, int(left // 86400), f"{until:%Y-%m-%d}")
            elif self._episodes.ok(key) is not None:
                log.info("certs.renewed role=%s name=%s file=%s until=%s", w.role, w.name, w.path, f"{until:%Y-%m-%d}")
        self.remaining = remaining
        return False
