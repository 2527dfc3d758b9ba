"""The listeners' TLS certificate followed while serving: a renewed certificate and key are taken without a restart.

Certificates are renewed every few weeks or months (an ACME client, the company's PKI); a listener that only read
its files at start served the old one until it ran out, unless someone remembered to restart every node. SOAP and
the console look at the files' stamps every ``CHECK_SECONDS`` (a supervised task of ``serve``). When either
changed, a new TLS context is built from both; new connections get it, open ones keep theirs. A pair that does not
load (half-written, the certificate copied before its key, a key that does not match) leaves the context in use as
it is: said once (``tls.reload_failed``), tried again at the files' next change.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

from gateway.file_stamp import Stamp, file_stamp
from gateway.services.cert_expiry import not_after

log = logging.getLogger("gateway.serve")

CHECK_SECONDS = 30.0
T = TypeVar("T")


class CertificateFollower(Generic[T]):
    """Builds a listener's TLS setup (``build``: an SSL context or an adapter holding one) again when its files
    change, and hands it to the listener (``install``)."""

    def __init__(self, listener: str, cert: Path, key: Path, build: Callable[[], T],
                 install: Callable[[T], None]) -> None:
        self.listener, self.cert, self.key, self.build, self.install = listener, cert, key, build, install
        self.stamp = self._stamps()

    def _stamps(self) -> tuple[Stamp | None, Stamp | None]:
        return file_stamp(self.cert), file_stamp(self.key)

    def step(self) -> bool:
        stamp = self._stamps()
        if stamp == self.stamp:
            return False
        self.stamp = stamp  # a pair that fails is tried again when a file changes again, not every look
        try:
            fresh = self.build()
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("tls.reload_failed listener=%s file=%s error=%s: the certificate loaded before stays in use "
                        "until both files are in place and match", self.listener, self.cert,
                        getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__)
            return False
        self.install(fresh)
        until = not_after(self.cert)
        log.info("tls.reloaded listener=%s file=%s until=%s", self.listener, self.cert,
                 f"{until:%Y-%m-%d}" if until else "-")
        return False


def step_all(followers: Iterable[CertificateFollower[Any]]) -> bool:
    """One look for every listener (a supervised step): one whose reload fails in an unforeseen way delays no
    other's; its error is raised after all have looked, for the supervisor to log and count."""
    first: BaseException | None = None
    for follower in followers:
        try:
            follower.step()
        except Exception as exc:  # noqa: BLE001 - re-raised below, once the others have had their look
            first = first or exc
    if first is not None:
        raise first
    return False
