"""Routing: which partner gets a claim. Config rules first (first match wins), then the client default.

A sandbox client's claim goes to its sandbox partner and nowhere else, whatever it names or a rule says;
a production claim never goes to a sandbox partner (docs/sandbox.md). The dispatcher checks it again.
"""

from __future__ import annotations

from gateway.config import ClientConfig, GatewayConfig, RouteRule
from gateway.domain.model import Claim
from gateway.domain.sandbox import is_sandbox_client


class Router:
    def __init__(self, config: GatewayConfig) -> None:
        self._rules = list(config.routing)
        self._clients = config.clients
        self._sandbox_partners = {pid for pid, p in config.partners.items() if p.sandbox}

    def pick(self, claim: Claim) -> str | None:
        """The partner id for ``claim``; None if no rule and no default applies."""
        client: ClientConfig | None = self._clients.get(claim.client_id)
        if is_sandbox_client(claim.client_id):
            partner = client.default_partner if client else None
            return partner if partner in self._sandbox_partners else None
        picked = self._production(claim, client)
        return None if picked in self._sandbox_partners else picked

    def _production(self, claim: Claim, client: ClientConfig | None) -> str | None:
        if claim.partner_id:  # the client named one explicitly
            return claim.partner_id
        for rule in self._rules:
            if _matches(rule, claim):
                return rule.partner
        return client.default_partner if client else None


def _matches(rule: RouteRule, claim: Claim) -> bool:
    country = claim.debtor.addresses[0].country if claim.debtor.addresses else None
    total = claim.total_open_amount
    return ((rule.client is None or rule.client == claim.client_id)
            and (rule.claim_type is None or rule.claim_type == claim.claim_type.value)
            and (rule.debtor_kind is None or rule.debtor_kind == claim.debtor.kind.value)
            and (rule.country is None or rule.country == country)
            and (rule.min_amount is None or total >= rule.min_amount)
            and (rule.max_amount is None or total <= rule.max_amount))
