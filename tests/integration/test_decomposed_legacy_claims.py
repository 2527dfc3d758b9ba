"""Claims stored in Unicode's decomposed form (NFD: macOS and some exports write "Müller" as "Mu" + U+0308) before
every channel composed its input are found again when sent composed: same data is a duplicate of the stored
claim, never a second claim, and no "conflict" on a name that only differs in its Unicode form.

The stored claim is made the way such data was stored before: the submit service takes a claim built in NFD
(the channels compose before they get there; the service itself stores what it is given)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import msgspec

from bench.gen import HEADER, rows
from gateway.bootstrap import App
from gateway.domain.model import Claim
from gateway.services import claim_queries, erasure, submit
from gateway.services.ingest import ingest_file
from gateway.store import claims as claim_store
from gateway.store.claim_search import ClaimFilter
from gateway.store.db import read_tx
from tests.factories import make_claim


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def _decomposed(claim: Claim) -> Claim:
    d = claim.debtor
    return msgspec.structs.replace(claim, creditor_reference=_nfd(claim.creditor_reference),
                                   debtor=msgspec.structs.replace(d, first_name=_nfd(d.first_name or ""),
                                                                  last_name=_nfd(d.last_name or "")))


def _count(app: App) -> int:
    with read_tx(app.engine) as conn:
        return len(claim_store.listing(conn, client_id="demo", limit=1000))


def test_a_claim_stored_decomposed_and_sent_again_composed_is_the_same_claim(app: App) -> None:
    composed = make_claim("RÜ-2025-0042")  # a reference with an umlaut, a debtor Müller
    legacy = _decomposed(composed)
    assert legacy.creditor_reference != composed.creditor_reference
    first = submit.submit_claims(app, "demo", [submit.Draft(reference=legacy.creditor_reference, claim=legacy)],
                                 release=True)
    [stored] = first.results
    assert stored.outcome == "accepted" and stored.claim_id is not None

    again = submit.submit_claims(app, "demo", [submit.Draft(reference=composed.creditor_reference, claim=composed)],
                                 release=True)
    [answer] = again.results
    assert answer.existing and answer.claim_id == stored.claim_id, answer  # the same claim, the same data
    assert answer.outcome != "conflict" and answer.differing_fields == []
    assert _count(app) == 1


def test_a_file_row_sent_composed_finds_the_claim_stored_decomposed(app: App, tmp_path: Path) -> None:
    legacy = _decomposed(make_claim("RÜ-7"))
    first = submit.submit_claims(app, "demo", [submit.Draft(reference=legacy.creditor_reference, claim=legacy)],
                                 release=True)
    assert first.results[0].outcome == "accepted"
    row = next(iter(rows(1)))
    row[0] = "RÜ-7"  # composed, as files are read now
    csv = tmp_path / "again.csv"
    csv.write_text(";".join(HEADER) + "\n" + ";".join(f'"{v}"' if ";" in v else v for v in row) + "\n",
                   encoding="cp1252")
    result = ingest_file(app, csv, "demo")
    assert result.accepted == 0 and _count(app) == 1, result  # found: never a second claim of the debtor
    ack = Path(result.ack_path or "").read_text(encoding="utf-8")
    assert "duplicate_reference" in ack or "conflicting_resend" in ack, ack


def test_a_claim_stored_decomposed_is_found_by_reference_status_name_search_and_erasure(app: App) -> None:
    composed = make_claim("RÜ-9")  # debtor Jürgen Müller
    legacy = _decomposed(composed)
    first = submit.submit_claims(app, "demo", [submit.Draft(reference=legacy.creditor_reference, claim=legacy)],
                                 release=True)
    cid = first.results[0].claim_id
    assert cid is not None
    assert claim_queries.claim_by_reference(app, "demo", "RÜ-9").claim_id == cid  # GetClaimByReference
    [status] = claim_queries.statuses(app, "demo", ["RÜ-9"])  # GetClaimStatuses
    assert status.found and status.claim_id == cid
    rows, total, _ = claim_queries.list_claims(app, "demo", ClaimFilter(text="Jürgen Müller"))  # the console
    assert [r["claim_id"] for r in rows] == [cid] and total == 1
    assert erasure.find(app, client_id="demo", reference="RÜ-9") == [cid]  # an erasure request must find it
    assert erasure.find(app, client_id="demo", debtor_name="Jürgen Müller") == [cid]
