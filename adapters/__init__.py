"""Partner adapters, registered by alias like kombu's transports and imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from adapters.base import Batch, PartnerAdapter, Receipt
from gateway.errors import ConfigError

__all__ = ["ADAPTERS", "Batch", "PartnerAdapter", "Receipt", "adapter_class", "load_adapter"]

# alias -> "module:Class"; strings so a partner's transport dependencies load only if configured.
ADAPTERS: dict[str, str] = {
    "directory": "adapters.directory:DirectoryAdapter",
    "http": "adapters.rest:HttpAdapter",
    "sftp": "adapters.sftp:SftpAdapter",
    "soap": "adapters.soap:SoapAdapter",
    "email": "adapters.mail:EmailAdapter",
}


def adapter_class(alias: str, partner_id: str) -> type[Any]:
    """The adapter class registered under alias (imported now); its ``capabilities`` say what it takes."""
    key = f"partners.{partner_id}.adapter"
    try:
        target = ADAPTERS[alias]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigError(f"unknown adapter {alias!r}; known adapters: {known}", key=key) from None
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"adapter {alias!r} ({target}) cannot be imported: {exc}", key=key) from exc
    if not isinstance(cls, type):
        raise ConfigError(f"adapter {alias!r} ({target}) is not a class", key=key)
    return cls


def load_adapter(alias: str, partner_id: str, options: Mapping[str, Any]) -> PartnerAdapter:
    """Import the adapter registered under alias and build it for one partner."""
    key = f"partners.{partner_id}.adapter"
    target = ADAPTERS.get(alias, "")
    adapter = adapter_class(alias, partner_id)(partner_id, options)
    if not isinstance(adapter, PartnerAdapter):
        raise ConfigError(f"adapter {alias!r} ({target}) does not implement PartnerAdapter", key=key)
    return adapter
