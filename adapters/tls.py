"""How the adapters that speak TLS to a partner (``email``, ``http``, ``soap``) check the partner's certificate.

Always verified, the host name included; what is trusted is the partner's option ``ca_file`` (a PEM file of the CA
certificates that sign the partner's server certificate, for a partner with a private CA) or else the default
store of the transport (``client_context``). A certificate that does not verify is the operator's to mend (a
private CA not configured, a certificate expired or for another name, or someone in between): retried it would
fail the same way on every attempt, so ``certificate_failure`` lets the adapter report it as not retryable,
naming the option, and the row is dead at once like a refused SFTP host key.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from gateway.errors import ConfigError, DeliveryError
from gateway.file_stamp import Stamp, file_stamp


def ca_file_option(partner_id: str, options: Mapping[str, Any]) -> str | None:
    """The partner's ``ca_file`` option (None if not set), checked to be a string."""
    value = options.get("ca_file")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError("option 'ca_file' must be the path of a PEM file",
                          key=f"partners.{partner_id}.options.ca_file")
    return value


def client_context(where: str, ca_file: str | None,
                   default: Callable[[], ssl.SSLContext] = ssl.create_default_context) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and host name: against ``ca_file`` only when given,
    else ``default()`` (the system store for ``ssl.create_default_context``).

    A ``ca_file`` that cannot be loaded fails the attempt retryably, naming the file, like the partner's certificate
    the batches are encrypted to: the gateway's own material not in place yet (a volume not mounted, a file not
    copied in) goes out by itself once it is there."""
    try:
        ctx = default() if ca_file is None else _load(None, ca_file)
    except _Unloadable as exc:
        raise DeliveryError(f"{where}: {exc}", retryable=True) from None
    # Whatever the default store's maker did: a partner's certificate is always checked, its name included.
    ctx.verify_mode, ctx.check_hostname = ssl.CERT_REQUIRED, True
    return ctx


class PartnerTls:
    """One partner's client context (``client_context``), made again when its ``ca_file`` has changed on disk.

    A dead letter for a certificate not accepted tells the operator to trust the CA with ``ca_file`` and retry the
    rows; a CA renewed in the same file is then trusted from the next call, as ``gateway partners test`` (a process
    of its own) already reports, not only after ``serve``'s next start (made once, the context kept the old CA and
    the retried rows were dead again). One ``stat`` per call; the default store is made once."""

    def __init__(self, where: str, ca_file: str | None,
                 default: Callable[[], ssl.SSLContext] = ssl.create_default_context) -> None:
        self.where, self.ca_file, self.default = where, ca_file, default
        self._ctx: ssl.SSLContext | None = None
        self._stamp: Stamp | None = None

    def context(self) -> ssl.SSLContext:
        """The context to verify the partner with; DeliveryError (retryable) when ``ca_file`` cannot be loaded."""
        stamp = file_stamp(self.ca_file) if self.ca_file is not None else None
        if self._ctx is None or stamp != self._stamp:
            self._ctx = client_context(self.where, self.ca_file, self.default)
            self._stamp = stamp  # taken before the load: a change meanwhile is loaded again at the next call
        return self._ctx


class _Unloadable(Exception):
    pass


def _load(ctx: ssl.SSLContext | None, path: str, name: str = "option ca_file") -> ssl.SSLContext:
    """``ctx`` also trusting the CA certificates in ``path`` (a PEM file, or a folder hashed by c_rehash as
    REQUESTS_CA_BUNDLE may name one); without ``ctx``, a context trusting those alone."""
    folder = os.path.isdir(path)
    try:
        if ctx is None:
            ctx = ssl.create_default_context(capath=path) if folder else ssl.create_default_context(cafile=path)
        elif folder:
            ctx.load_verify_locations(capath=path)
        else:
            ctx.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:  # missing, unreadable, or no PEM certificate in it
        raise _Unloadable(f"{name}: cannot load CA certificates from {path} "
                          f"({type(exc).__name__}: {getattr(exc, 'strerror', None) or exc})") from None
    return ctx


def with_environment_bundles(default: Callable[[], ssl.SSLContext], names: tuple[str, ...] = (
        "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")) -> Callable[[], ssl.SSLContext]:
    """``default`` that also trusts the CA bundles the environment variables ``names`` point at (requests' variables:
    a deployment that set them for the SOAP partner when zeep's transport was requests keeps working)."""
    def make() -> ssl.SSLContext:
        ctx = default()
        for name in names:
            if os.environ.get(name):
                ctx = _load(ctx, os.environ[name], name)
        return ctx
    return make


def certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc`` (raised as is, or wrapped by httpx/httpcore), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def certificate_text(failure: ssl.SSLCertVerificationError) -> str:
    """What to tell the operator: OpenSSL's reason (``self-signed certificate``, ``Hostname mismatch ...``) and the
    option to mend it with. The reason names the certificate's problem, never anything of a claim."""
    reason = str(failure.verify_message or failure.reason or "not verified")[:200]
    return (f"the partner's TLS certificate was not accepted ({reason}); not retried: trust its CA with option "
            f"ca_file, or have the partner's certificate mended, then `gateway outbox retry --dead --partner ...`")
