"""The web console and time-barred claims: the run's release table marks them and leaves them out, a release without
a reason is refused with the reason why, one with a reason is recorded in the history; "why not handed over"
explains time_barred in German and English."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from gateway.services.claim_queries import get_claim
from gateway.services.ingest import ingest_file
from tests.integration.web.conftest import Console, claim_ids

HEADER = ("Rechnungsnr;Kundennr;Anrede;Vorname;Nachname;Firma;Geburtsdatum;Strasse;Hausnr;PLZ;Ort;Land;E-Mail;"
          "Telefon;IBAN;Rechnungsdatum;Faellig;Betrag;Mahngebuehr;Mahndatum;Bemerkung")
YEAR = datetime.now(timezone.utc).year


def _row(ref: str, year: int) -> str:
    return (f"{ref};K1;Herr;Max;Muster;;01.01.1980;Weg;1;10115;Berlin;DE;m@example.de;;DE89370400440532013000;"
            f"01.02.{year};15.02.{year};100,00;;;")


def test_time_barred_claims_in_the_release_table_and_why(console: Console, tmp_path: Path) -> None:
    src = tmp_path / "alt.csv"
    src.write_bytes(("\r\n".join((HEADER, _row("LIM-OLD", YEAR - 5), _row("LIM-OK", YEAR - 1))) + "\r\n")
                    .encode("cp1252"))
    ref = str(ingest_file(console.app, src, "demo").submission)
    old = claim_ids(console.app, "demo")["LIM-OLD"]
    c = console.client("anna")
    page = c.get(f"/runs/{ref}").text
    box = re.search(rf'<input type="checkbox" name="claim" value="{old}"[^>]*>', page)
    assert box and "checked" not in box.group(0) and "verjährt" in page and 'name="reason"' in page

    token = console.csrf(c, f"/runs/{ref}")
    r = c.post(f"/runs/{ref}/release", data={"csrf": token, "claim": [str(old)]})
    after = c.get(r.headers["location"]).text
    assert "0 Forderung(en) freigegeben" in after and "1 nicht freigegeben: time-barred (time_barred)" in after
    assert get_claim(console.app, "demo", old).state == "held"

    why = c.get(f"/claims/{old}").text
    assert "Verjährt: die Verjährungsfrist ist abgelaufen" in why and "Anerkenntnis vom" in why
    assert f"ended on {YEAR - 2}-12-31" in why  # the rule's inputs, as stored in the finding

    token = console.csrf(c, f"/runs/{ref}")
    r = c.post(f"/runs/{ref}/release", data={"csrf": token, "claim": [str(old)],
                                            "reason": "Anerkenntnis vom 01.03.2025"})
    assert "1 Forderung(en) freigegeben" in c.get(r.headers["location"]).text
    assert get_claim(console.app, "demo", old).state == "queued"
    assert "released: Anerkenntnis vom 01.03.2025" in c.get(f"/claims/{old}").text
    other = claim_ids(console.app, "demo")["LIM-OK"]
    assert get_claim(console.app, "demo", other).state == "queued"  # within its period: handed over as usual
    src.write_bytes(("\r\n".join((HEADER, _row("LIM-OLD2", YEAR - 5))) + "\r\n").encode("cp1252"))
    again = claim_ids(console.app, "demo")
    ingest_file(console.app, src, "demo")
    old2 = claim_ids(console.app, "demo")["LIM-OLD2"]
    assert old2 not in again.values()
    english = c.get(f"/claims/{old2}?lang=en").text
    assert "Time-barred: the limitation period has ended" in english and "release the claim with a reason" in english
