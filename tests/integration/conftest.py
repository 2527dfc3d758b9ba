"""Fixtures of the integration tests that run a gateway against a simulated partner (``gw``, ``sim``,
``keys_template``: see ``tests/contract/harness.py``); a module's own fixture of the same name wins."""

from tests.contract.harness import gw, keys_template, sim  # noqa: F401
