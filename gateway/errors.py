"""The exceptions that stop an operation. Row-level problems are data (``domain.findings``), not these.

    GatewayError
    ├── ConfigError            config/gateway.yaml or a mapping file is wrong (file, key, what was expected)
    ├── KeyStoreError          a key file is missing, unreadable or a ciphertext does not decrypt
    ├── InputError             a submitted file cannot be used at all (format, encoding, size)
    ├── NotFound               an unknown claim, submission, client or partner
    ├── IllegalTransition      a lifecycle move the table does not allow
    ├── Unsupported            the claim's partner does not accept this operation (refused before queueing)
    ├── ImmutableRecord        an attempt to change or delete a claim or an event
    ├── DeliveryError          a partner adapter failed (``retryable`` says whether to try again)
    └── Interrupted            the gateway is stopping: the work ends early and resumes at the next start
"""

from __future__ import annotations

import os


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        self.file, self.key, self.line = file, key, line
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        at = f"at '{key}': " if key else ""
        super().__init__(f"{prefix}{at}{message}")


class KeyStoreError(GatewayError):
    pass


class InputError(GatewayError):
    """A file that cannot be processed at all; ``where`` names the file and position if known.

    The text names the file by its name only (never a server path) and holds no value of the file;
    ``detail`` may quote the file's content (a header that was a data row) for the client's own ack.
    """

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 column: str | None = None, detail: str | None = None) -> None:
        self.file, self.row, self.column, self.message, self.detail = file, row, column, message, detail
        name = os.path.basename(file) if file else None
        parts = [p for p in (name, f"row {row}" if row else None, f"column {column!r}" if column else None) if p]
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)


class NotFound(GatewayError):
    pass


class IllegalTransition(GatewayError):
    def __init__(self, src: str, dst: str, actor: str, reason: str, claim_id: int | None = None) -> None:
        self.src, self.dst, self.actor, self.reason, self.claim_id = src, dst, actor, reason, claim_id
        claim = f"claim {claim_id}: " if claim_id is not None else ""
        super().__init__(f"{claim}illegal transition {src} -> {dst} by {actor}: {reason}")


class Unsupported(GatewayError):
    """An operation the claim's partner does not accept (its adapter or its config leaves it out)."""

    def __init__(self, partner_id: str, operation: str, what: str) -> None:
        self.partner_id, self.operation = partner_id, operation
        super().__init__(f"partner {partner_id} does not accept {what}")


class ImmutableRecord(GatewayError):
    pass


class DeliveryError(GatewayError):
    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        # retry_after: seconds the partner asked the gateway to wait (HTTP Retry-After) before trying again
        self.retryable, self.retry_after = retryable, retry_after
        super().__init__(message)


class Interrupted(GatewayError):
    """``serve`` is stopping; what was committed stays, the rest is resumed at the next start."""
