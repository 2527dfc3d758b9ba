"""The previews (the console's mapping workshop, ``mapping preview``) judge limitation by the client's own
settings, as its real ingest does, on SQLite and PostgreSQL: a claim from 2015 is time-barred under the
statutory rule but not for a client with 30 years."""

from __future__ import annotations

from pathlib import Path

from gateway.bootstrap import build_app
from gateway.config import load_config
from gateway.services import mapping_workshop as workshop
from gateway.services import onboarding
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from gateway.services.preview import Preview
from tests.conftest import ROOT, write_config

REF = "RE-2025-0001"


def _codes(pre: Preview) -> list[str]:
    return [f.code for r in pre.rows if r.claim is not None and r.claim.creditor_reference == REF for f in r.findings]


def test_previews_use_the_client_limitation_like_the_ingest(tmp_path: Path, db_url: str) -> None:
    path = write_config(tmp_path, db_url, clients={
        "demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency", "limitation": {"years": 30}},
        "stat": {"name": "Statutory", "mapping": "demo", "default_partner": "demo-agency"}})
    init_keys(load_config(path))
    app = build_app(path, migrate=True)
    try:
        raw = (ROOT / "examples" / "demo.csv").read_bytes().replace(b"15.01.2025;29.01.2025",
                                                                     b"15.01.2015;29.01.2015")
        sample = tmp_path / "old.csv"
        sample.write_bytes(raw)
        text = (tmp_path / "mappings" / "demo.yaml").read_text(encoding="utf-8")
        shown = {}
        for client in ("demo", "stat"):
            token = workshop.store_sample(app, client, "old.csv", raw).token
            shown[client] = (_codes(workshop.preview(app, token, client, text)),
                             _codes(onboarding.preview_for_client(app.config, sample, client)))
        real = ingest_file(app, sample, "demo")
        ingested = [f.code for r in real.results if r.reference == REF for f in r.findings]
        assert "time_barred" not in ingested  # the client's 30 years at the real ingest
        workshop_codes, cli_codes = shown["demo"]
        assert "time_barred" not in workshop_codes and "time_barred" not in cli_codes, (shown, ingested)
        # The same sample under the statutory rule: the previews do judge limitation.
        assert all("time_barred" in codes for codes in shown["stat"]), shown
    finally:
        app.close()
