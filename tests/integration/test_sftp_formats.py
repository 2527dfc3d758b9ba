"""Every reader's format over SFTP: a golden fixture uploaded with asyncssh yields its recorded ack."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from lxml import etree

from gateway.bootstrap import build_app
from gateway.config import load_config
from gateway.services.ack import ack_schema
from gateway.services.keys import init_keys
from tests.conftest import write_config
from tests.sftp_support import ServerThread, make_key, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# one golden client per format: csv, xlsx, ods, xml, fixed width
CASES = [("fitnessplus", "input.csv"), ("autohaus", "input.xlsx"), ("stadtwerke", "input.ods"),
         ("erp", "input.xml"), ("altinkasso", "input.txt")]


@pytest.mark.parametrize(("client", "input_name"), CASES)
def test_upload_of_each_format_gets_its_golden_ack(client: str, input_name: str, tmp_path: Path,
                                                   db_url: str) -> None:
    folder = FIXTURES / client
    key = make_key(tmp_path / "client-keys", client)
    partners = {p: {"adapter": "directory", "certificate": f"var/keys/partners/{p}.crt",
                    "options": {"path": f"var/partners/{p}"}} for p in ("demo-agency", "intl-agency")}
    config = write_config(tmp_path, db_url, partners=partners, sftp={"enabled": True, "port": 0},
                          clients={client: {"name": client, "default_partner": "demo-agency",
                                            "ack_format": "csv",  # the golden acks are CSV
                                            "sftp": {"authorized_keys": [key.public_line]}}})
    shutil.copy(folder / "mapping.yaml", tmp_path / "mappings" / f"{client}.yaml")
    init_keys(load_config(config))
    app = build_app(config, migrate=True)
    try:
        with ServerThread(app) as srv:
            async def upload() -> None:
                async with srv.connect(key.private, client) as conn, conn.start_sftp_client() as sftp:
                    await sftp.put(str(folder / input_name), f"/upload/{input_name}")

            asyncio.run(upload())
            ack = app.config.inbox_dir / client / "ack" / f"{input_name}.ack.csv"
            wait_for("the ack", ack.exists)
            assert ack.read_text(encoding="utf-8") == (folder / f"{input_name}.expected.ack.csv").read_text(
                encoding="utf-8")
    finally:
        app.close()


def test_xml_upload_gets_an_xml_ack_that_follows_the_schema(tmp_path: Path, db_url: str) -> None:
    key = make_key(tmp_path / "client-keys", "erp")
    config = write_config(tmp_path, db_url, sftp={"enabled": True, "port": 0},
                          clients={"erp": {"name": "erp", "default_partner": "demo-agency",
                                           "sftp": {"authorized_keys": [key.public_line]}}})
    shutil.copy(FIXTURES / "erp" / "mapping.yaml", tmp_path / "mappings" / "erp.yaml")
    init_keys(load_config(config))
    app = build_app(config, migrate=True)
    try:
        with ServerThread(app) as srv:
            async def upload() -> None:
                async with srv.connect(key.private, "erp") as conn, conn.start_sftp_client() as sftp:
                    await sftp.put(str(FIXTURES / "erp" / "input.xml"), "/upload/export.xml")
                    f = await sftp.open("/upload/broken.xml", "wb")
                    await f.write(b"<Export>")
                    conn.abort()

            asyncio.run(upload())
            acks = app.config.inbox_dir / "erp" / "ack"
            for name, outcomes in (("export.xml", {"accepted", "rejected"}), ("broken.xml", {"incomplete"})):
                ack = acks / f"{name}.ack.xml"
                wait_for(f"the ack of {name}", ack.exists)
                doc = etree.parse(str(ack), etree.XMLParser(resolve_entities=False, no_network=True))
                ack_schema().assertValid(doc)
                assert {e.get("outcome") for e in doc.iter() if e.get("outcome")} == outcomes
    finally:
        app.close()
