"""Sandbox clients and the scenarios the simulated agency plays for their claims (docs/sandbox.md).

A client's sandbox is a client of its own, ``<client>.sandbox``: its logins, inbox folder, claims,
submissions, change feed and status files are keyed by that id, so a sandbox login can only ever see
sandbox data and a sandbox reference never collides with a production one. A real client id cannot
contain a dot (``clients add`` refuses it, the config refuses the suffix), so the suffix alone marks a
sandbox claim; the store also writes it into a ``sandbox`` column that production queries exclude.

The scenario of a sandbox claim is chosen by its reference's prefix (``SBX-UNCOLLECTIBLE-4711``) or by a
keyword in its memo (``sandbox:disputed``); anything else plays the default scenario. Each scenario is
the list of status codes the simulated agency reports after the receipt, one per step.
"""

from __future__ import annotations

import re

SANDBOX_SUFFIX = ".sandbox"

# The simulated agency's status codes (adapters/simulators/agency.py uses the same).
ACCEPTED, WORKING, COURT, INSTALMENTS = "ANGENOMMEN", "IN_BEARBEITUNG", "MAHNVERFAHREN", "RATENZAHLUNG"
PAID, UNCOLLECTIBLE, DISPUTED = "BEZAHLT", "UNEINBRINGLICH", "WIDERSPRUCH"
CANCELLED, MONITORING = "STORNIERT", "UEBERWACHUNG"  # answers to a cancellation, a monitoring request

# scenario -> the codes after the receipt (ANGENOMMEN), one each step. INSTALMENTS books half the open
# amount as a payment through the agency, PAID the rest; a message comes with every payment.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "paid": (WORKING, PAID),
    "instalments": (WORKING, INSTALMENTS, PAID),
    "court": (WORKING, COURT, PAID),
    "uncollectible": (WORKING, COURT, UNCOLLECTIBLE),
    "disputed": (WORKING, DISPUTED),
    "received": (),  # stays handed over: the receipt and nothing else
    "in_progress": (WORKING,),  # stays in progress
}
DEFAULT_SCENARIO = "paid"

# What a sandbox partner's status_map must say for these codes (docs/sandbox.md shows the block).
STATUS_MAP = {ACCEPTED: "handed_over", WORKING: "in_progress:pre_court", COURT: "in_progress:court_dunning",
              INSTALMENTS: "instalment_plan", PAID: "closed_paid",
              UNCOLLECTIBLE: "closed_uncollectible", DISPUTED: "disputed", CANCELLED: "cancelled_by_client",
              MONITORING: "in_progress:long_term_monitoring"}

_PREFIX = re.compile(r"^SBX-([A-Z_]+)(?:-|$)", re.IGNORECASE)
_KEYWORD = re.compile(r"\bsandbox:([a-z_]+)\b", re.IGNORECASE)


def sandbox_id(client_id: str) -> str:
    """The id of ``client_id``'s sandbox client."""
    return client_id + SANDBOX_SUFFIX


def is_sandbox_client(client_id: str) -> bool:
    """Whether ``client_id`` names a sandbox client (its claims never reach a real partner)."""
    return client_id.endswith(SANDBOX_SUFFIX)


def production_id(client_id: str) -> str:
    """The production client a sandbox client belongs to (the id itself for a production client)."""
    return client_id.removesuffix(SANDBOX_SUFFIX)


def scenario_for(reference: str, memo: str | None, default: str = DEFAULT_SCENARIO) -> str:
    """The scenario a sandbox claim plays: its reference prefix first, then a memo keyword, else ``default``."""
    m = _PREFIX.match(reference)
    if m and m.group(1).lower() in SCENARIOS:
        return m.group(1).lower()
    m = _KEYWORD.search(memo or "")
    if m and m.group(1).lower() in SCENARIOS:
        return m.group(1).lower()
    return default
