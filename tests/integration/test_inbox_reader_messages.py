"""What a client reads in the ack when a file dropped in its inbox cannot be read by a reader in a child
process: the file's own name and the place, never the descriptor the gateway read it through."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from gateway.bootstrap import App
from gateway.services.inbox import process_inbox_file

MAPPING = """version: 1
client: demo
format:
  type: xml
  record_path: /orders/order
  date_formats: ['%Y-%m-%d']
  columns: {id: '@id', name: name, total: total, due: due}
fields:
  creditor_reference: id
  claim_type: {const: service}
  currency: {const: EUR}
  principal_amount: total
  due_date: due
  debtor.last_name: name
"""


def test_a_cut_off_xml_file_is_named_by_its_own_name_in_the_ack(app: App, tmp_path: Path) -> None:
    (app.config.path("mappings") / "demo.yaml").write_text(MAPPING, encoding="utf-8")
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    path = upload / "export.xml"
    path.write_bytes(b'<?xml version="1.0"?><orders><order id="1"><name>Quxplantova</name><total>1.00</total>'
                     b"<due>2025-02-01</due></order><order id=\"2\"><name>Quxplantova")
    result = process_inbox_file(app, "demo", path, channel="watch")
    assert result.status == "failed"
    ack = app.config.inbox_dir / "demo" / "ack" / "export.xml.ack.xml"
    text = ack.read_text(encoding="utf-8") if ack.exists() else next(
        (app.config.inbox_dir / "demo" / "ack").glob("export.xml.ack.*")).read_text(encoding="utf-8")
    failed = re.search(r'outcome="failed">.*?>([^<]*)</', text, re.S)
    assert failed, text
    message = failed.group(1)
    assert message.startswith("export.xml, row"), message
    assert not re.search(r"(^|: )\d+(, row \d+)?: ", message), message  # no "27, row 1: " from /proc/<pid>/fd/27
    assert "Quxplantova" not in message and "Quxplantova" not in (result.error or "")
    assert "/proc/" not in message and "/proc/" not in (result.error or "")
