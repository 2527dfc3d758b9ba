"""Credit bureau adapters, registered by alias like the partner adapters and imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from adapters.bureaus.base import DEFAULT_MAX_ANSWER_BYTES, BureauError, CreditBureau
from gateway.errors import ConfigError

__all__ = ["BUREAUS", "BureauError", "CreditBureau", "load_bureau"]

# alias -> "module:Class"
BUREAUS: dict[str, str] = {
    "http_json": "adapters.bureaus.http_json:HttpJsonBureau",
    "soap": "adapters.bureaus.soap:SoapBureau",
}


def load_bureau(alias: str, bureau_id: str, options: Mapping[str, Any], timeout: float, *,
                max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> CreditBureau:
    """Import the adapter registered under ``alias`` and build it for one bureau (answers longer than
    ``max_answer_bytes`` are refused unread)."""
    key = f"bureaus.{bureau_id}.adapter"
    try:
        target = BUREAUS[alias]
    except KeyError:
        raise ConfigError(f"unknown bureau adapter {alias!r}; known: {', '.join(sorted(BUREAUS))}", key=key) from None
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"bureau adapter {alias!r} ({target}) cannot be imported: {exc}", key=key) from exc
    bureau = cls(bureau_id, options, timeout, max_answer_bytes=max_answer_bytes)
    if not isinstance(bureau, CreditBureau):
        raise ConfigError(f"bureau adapter {alias!r} ({target}) does not implement CreditBureau", key=key)
    return bureau
