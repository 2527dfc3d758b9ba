"""A known reference sent again: identical data stays a duplicate (file) / existing claim (SOAP); changed data
is a ``conflict`` naming the canonical fields that differ, never their values. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import delete, func, select

from gateway.bootstrap import App
from gateway.services.ack import ack_schema
from gateway.services.ingest import ingest_file
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx, write_tx
from gateway.store.schema import claim_events, claim_fingerprints, claims, submission_findings, submissions
from tests.integration.soap.conftest import Endpoint, claim, endpoint, soap_app, submit  # noqa: F401
from tests.integration.test_ingest import row, write_csv

PLANTED = "Qwzrtxvbnk"  # a debtor name that must never leave the encrypted column


def _named(ref: str, last_name: str) -> str:
    return row(ref).replace(";Max;Muster;", f";Max;{last_name};")


def _ack(path: str | None) -> list[dict[str, str]]:
    with open(str(path), encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


def _stored_text(app: App) -> str:
    """Every text the gateway stores outside the encrypted columns, for the planted-value sweep."""
    with read_tx(app.engine) as conn:
        parts = [str(tuple(r)) for t in (submission_findings, claim_events, submissions, claim_fingerprints)
                 for r in conn.execute(select(t))]
        parts += [r[0] for r in conn.execute(select(claims.c.body))]
    return "\n".join(parts)


def test_file_resend_conflicts_on_changed_rows_only(app: App, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway")
    first = ingest_file(app, write_csv(tmp_path / "run1.csv", row("A-1"), row("A-2"), _named("A-3", "Muster"),
                                       row("A-4")), "demo")
    assert (first.accepted, first.rejected) == (4, 0)
    with write_tx(app.engine) as conn:  # A-4 as if stored before migration 0007: no fingerprint
        conn.execute(delete(claim_fingerprints).where(claim_fingerprints.c.claim_id == first.results[3].claim_id))
        assert conn.execute(select(func.count()).select_from(claim_fingerprints)).scalar_one() == 3

    again = ingest_file(app, write_csv(tmp_path / "run2.csv", row("A-1"), row("A-2", amount="100,01"),
                                       _named("A-3", PLANTED), row("A-4"), row("A-5"), row("A-4", amount="7,00")),
                        "demo")
    a1, a2, a3, a4, a5, a4_changed = _ack(again.ack_path)
    assert [r["outcome"] for r in (a1, a2, a3, a4, a5, a4_changed)] == [
        "rejected", "conflict", "conflict", "rejected", "accepted", "conflict"]
    assert (again.rows, again.accepted, again.rejected) == (6, 1, 5)  # conflicts count as rejected
    assert a1["codes"] == "duplicate_reference" and "with the same data" in a1["messages"]
    assert a4["codes"] == "duplicate_reference"  # the fingerprint-less claim, compared field by field
    assert a2["codes"] == "conflicting_resend"
    assert a2["messages"].endswith("with different data in: principal_amount; nothing was stored")
    assert "in: debtor.last_name;" in a3["messages"]
    assert "in: principal_amount;" in a4_changed["messages"]  # changed, and stored without a fingerprint
    with read_tx(app.engine) as conn:
        assert conn.execute(select(func.count()).select_from(claims)).scalar_one() == 5
        sub = sub_store.get(conn, str(again.submission))
        found = {(f["reference"], f["outcome"], f["code"]) for f in sub_store.findings(conn, sub["id"])}
        assert sub["rejected"] == 5 and sub["status"] == "completed_with_errors"
    assert ("A-2", "conflict", "conflicting_resend") in found and ("A-1", "rejected", "duplicate_reference") in found
    assert PLANTED not in Path(str(again.ack_path)).read_text(encoding="utf-8")
    assert PLANTED not in caplog.text and "Muster" not in caplog.text
    assert PLANTED not in _stored_text(app)
    if app.engine.dialect.name == "sqlite":
        db = Path(str(app.engine.url.database))
        for f in (db, db.with_name(db.name + "-wal")):
            assert not f.exists() or PLANTED.encode() not in f.read_bytes()


def test_xml_ack_carries_the_conflict_outcome(app: App, tmp_path: Path) -> None:
    ingest_file(app, write_csv(tmp_path / "x1.csv", row("X-1")), "demo")
    ack_path = tmp_path / "x2.ack.xml"
    ingest_file(app, write_csv(tmp_path / "x2.csv", row("X-1", amount="1,00")), "demo", ack_path=ack_path)
    doc = etree.parse(str(ack_path))
    ack_schema().assertValid(doc)
    [el] = doc.getroot()
    assert el.get("outcome") == "conflict" and el[0].get("code") == "conflicting_resend"


def test_soap_resend_existing_or_conflict(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway")
    c = endpoint.client()
    (ok,) = submit(c, claim("S-1"), claim("S-2")).results.ClaimResult[:1]
    same = submit(c, claim("S-1"), claim("S-1"))
    assert [(r.existing, r.outcome, r.claim_id) for r in same.results.ClaimResult] == [(True, "accepted",
                                                                                         ok.claim_id)] * 2
    assert same.rejected == 0
    debtor = {**claim()["debtor"], "last_name": PLANTED}
    changed = submit(c, claim("S-1", principal_amount="120.51"), claim("S-2", debtor=debtor, due_date="2025-03-16"),
                     claim("S-3"), claim("S-3", principal_amount="1.00"))
    a, b, new, repeat = changed.results.ClaimResult
    assert (a.outcome, a.existing, a.claim_id) == ("conflict", False, ok.claim_id)
    assert list(a.differing_fields.string) == ["principal_amount"]
    assert [f.code for f in a.findings.Finding] == ["conflicting_resend"]
    assert list(b.differing_fields.string) == ["debtor.last_name", "due_date"]
    assert (new.outcome, repeat.outcome, repeat.claim_id) == ("accepted", "conflict", new.claim_id)
    assert (changed.accepted, changed.rejected, changed.status) == (1, 3, "completed_with_errors")
    assert str(c.service.GetClaim(ok.claim_id).claim.principal_amount) == "120.50"
    sub = c.service.GetSubmission(changed.submission)
    assert {f.outcome for f in sub.findings.SubmissionFinding} == {"conflict"}
    assert PLANTED not in str(changed) + str(sub) + caplog.text
    assert PLANTED not in _stored_text(endpoint.app)
