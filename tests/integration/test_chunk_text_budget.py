"""A few kilobytes of spreadsheet that unfold into megabytes of text per row are stored in chunks bounded by their
text (a 32nd of ``limits.memory_mb``), not 5,000 rows to a chunk (services/ingest_run.py). Every row is still read,
judged and acked."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from gateway.bootstrap import App
from gateway.services import ingest_store
from gateway.services.ingest import ingest_file
from tests.fixtures.hostile import generate

ROWS, SPACES = 30, 500_000
MAPPING = """version: 1
client: demo
format: {type: ods, decimal_separator: ',', date_formats: ['%d.%m.%Y']}
fields:
  creditor_reference: Rechnungsnr
  claim_type: {const: service}
  currency: {const: EUR}
  principal_amount: Betrag
  due_date: Faellig
  debtor.last_name: Nachname
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rows_of_megabytes_are_chunked_by_their_text(app: App, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    app.config.limits.memory_mb = 64  # 2 MiB of cell text to a chunk: cut at the fifth of these rows
    sizes: list[int] = []
    real_store = ingest_store.ChunkStore.store

    def counted(self: ingest_store.ChunkStore, no: int, chunk: list[object], *args: object) -> object:
        sizes.append(len(chunk))
        return real_store(self, no, chunk, *args)  # type: ignore[arg-type]
    monkeypatch.setattr(ingest_store.ChunkStore, "store", counted)

    path = generate.spaces_ods(tmp_path / "spaces.ods", rows=ROWS, spaces=SPACES)
    assert path.stat().st_size < 20_000  # a few kilobytes that unfold into 15 million characters
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    result = ingest_file(app, path, "demo", mapping_path=tmp_path / "m.yaml", workers=0)
    assert sum(sizes) == ROWS and max(sizes) <= 5, sizes  # not one chunk of all 30
    assert (result.rows, result.rejected) == (ROWS, ROWS)  # the name is over its length: each row says so
    with open(str(result.ack_path), encoding="utf-8", newline="") as fh:
        lines = list(csv.DictReader(fh, delimiter=";"))
    assert len(lines) == ROWS and all(line["outcome"] == "rejected" for line in lines)
