"""A client's label catalogue: the coloured flags a client names itself and puts on its claims.

A label is a name (at most ``claim_ops.MAX_LABEL_LEN`` characters) with a colour from ``PALETTE``; the
console shows colours as classes of its style sheet (a strict CSP allows no inline style), so a colour is a
palette name, never a value a user typed. Labels on claims are kept by name (``claim_ops.set_labels``,
``edit_labels``, ``rename_label``); a name on a claim that the catalogue lacks (set over SOAP) shows in
``DEFAULT_COLOUR``. Reads and writes are scoped to one client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.bootstrap import App
from gateway.services.claim_ops import InvalidRequest, clean_labels
from gateway.services.submit import serial_write_tx
from gateway.store import labels as label_store
from gateway.store.db import read_tx

log = logging.getLogger(__name__)
PALETTE = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "grey")
DEFAULT_COLOUR = "grey"
MAX_SHOWN = 200  # labels in the catalogue and the list's filter


@dataclass(frozen=True)
class Label:
    name: str
    colour: str
    defined: bool  # in the catalogue (False: only on claims, e.g. set over SOAP)


def catalogue(app: App, client_id: str) -> list[Label]:
    """The client's labels by name: those it defined, and those only found on its claims."""
    with read_tx(app.engine) as conn:
        defined = label_store.catalogue(conn, client_id)
        used = label_store.in_use(conn, client_id, MAX_SHOWN)
    names = sorted({*defined, *used})[:MAX_SHOWN]
    return [Label(n, defined.get(n, DEFAULT_COLOUR), n in defined) for n in names]


def colours(labels: list[Label]) -> dict[str, str]:
    """Name -> colour, for showing labels."""
    return {label.name: label.colour for label in labels}


def define(app: App, client_id: str, name: str, colour: str) -> bool:
    """Add a label to the client's catalogue, or give an existing one another colour; True if new."""
    if colour not in PALETTE:
        raise InvalidRequest(f"colour must be one of {', '.join(PALETTE)}", "colour")
    clean = clean_labels([name])
    if not clean:
        raise InvalidRequest("the name is empty", "name")
    with serial_write_tx(app) as conn:
        new = label_store.define(conn, client_id, clean[0], colour, app.now())
    log.info("labels.defined client=%s new=%s colour=%s", client_id, new, colour)
    return new
