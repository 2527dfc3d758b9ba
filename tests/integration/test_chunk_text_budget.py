"""A few kilobytes of spreadsheet that unfold into megabytes of text per row are stored in chunks bounded by their
text (a 32nd of ``limits.memory_mb``), not 5,000 rows to a chunk (services/ingest_run.py). Every row is still read,
judged and acked."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from gateway.bootstrap import App
from gateway.services import ingest_store
from gateway.services.ingest import ingest_file
from tests.integration.test_hostile_input import HEADER, mapping

ROWS, SPACES = 30, 500_000


def _cell(v: str) -> str:
    return f'<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>'


def spaces_ods(path: Path) -> Path:
    """An ODS whose every row's last cell is ``SPACES`` spaces from one element (``<text:s text:c=.../>``)."""
    rows = ["<table:table-row>" + "".join(_cell(h) for h in HEADER.split(";")) + "</table:table-row>"]
    for i in range(ROWS):
        values = [f"SP-{i:03d}", "K1", "Herr", "Max", "Muster", "", "01.01.1980", "Weg", "1", "10115", "Berlin", "DE",
                  "", "", "", "01.02.2025", "15.02.2025", "100,00", "", ""]
        cells = "".join(_cell(v) for v in values)
        cells += f'<table:table-cell office:value-type="string"><text:p>x<text:s text:c="{SPACES}"/>y</text:p>' \
                 "</table:table-cell>"
        rows.append(f"<table:table-row>{cells}</table:table-row>")
    content = ('<?xml version="1.0" encoding="UTF-8"?><office:document-content '
               'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
               'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
               'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body>'
               '<office:spreadsheet><table:table table:name="S">' + "".join(rows) +
               "</table:table></office:spreadsheet></office:body></office:document-content>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", content)
    return path


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

    path = spaces_ods(tmp_path / "spaces.ods")
    assert path.stat().st_size < 20_000  # a few kilobytes that unfold into 15 million characters
    result = ingest_file(app, path, "demo", mapping_path=mapping(tmp_path, **{"type:_csv": "type: ods"}),
                         workers=0)
    assert sum(sizes) == ROWS and max(sizes) <= 5, sizes  # not one chunk of all 30
    assert (result.rows, result.rejected) == (ROWS, ROWS)  # the memo is over its 2,000 characters: each row says so
    with open(str(result.ack_path), encoding="utf-8", newline="") as fh:
        lines = list(csv.DictReader(fh, delimiter=";"))
    assert len(lines) == ROWS and all(line["outcome"] == "rejected" for line in lines)
