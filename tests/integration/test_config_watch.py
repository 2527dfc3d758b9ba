"""The running serve's config reload (``ConfigWatcher``) reads the file only once its writer is done with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from gateway.bootstrap import build_app
from gateway.config import load_config
from gateway.entrypoints.config_watch import ClientReloader, ConfigWatcher
from gateway.services.keys import init_keys
from tests.conftest import write_config

IN_PLACE = ("import os, sys\n"
            "data = open(sys.argv[1], 'rb').read()\n"
            "cut = data.index(sys.argv[3].encode())\n"
            "fd = os.open(sys.argv[2], os.O_WRONLY | os.O_TRUNC)\n"
            "os.write(fd, data[:cut])\n"
            "print('half', flush=True)\n"
            "sys.stdin.readline()\n"
            "os.write(fd, data[cut:])\n"
            "os.close(fd)\n")


def test_a_config_written_in_place_is_read_once_its_writer_closes_it(tmp_path: Path, db_url: str) -> None:
    # Halfway through an in-place write (an editor saving in pieces, a copy) the file held a valid config without
    # its last client: the reload took it, and that client's SFTP and SOAP logins were gone until the rest came.
    client = {"mapping": "demo", "default_partner": "demo-agency"}
    path = write_config(tmp_path, db_url, clients={"demo": {"name": "Demo", **client},
                                                   "other": {"name": "Other", **client}})
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["clients"] = doc.pop("clients")  # last in the file, so the half written is a whole config
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    doc["clients"]["demo"]["name"] = "Demo Renamed"  # the edit being written
    init_keys(load_config(path))
    app = build_app(path, migrate=True)
    try:
        new = tmp_path / "new.yaml"
        new.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        assert "\n  other:\n" in new.read_text(encoding="utf-8")
        watcher = ConfigWatcher(path, ClientReloader(app, None, None))
        proc = subprocess.Popen([sys.executable, "-c", IN_PLACE, str(new), str(path), "\n  other:\n"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "half"
            watcher.reload()  # as at the write's event
            assert sorted(app.config.clients) == ["demo", "other"]
            assert app.config.clients["demo"].name == "Demo"
        finally:
            proc.communicate("go\n", timeout=30)
        assert proc.returncode == 0
        watcher.reload()  # as at the close's event
        assert sorted(app.config.clients) == ["demo", "other"]
        assert app.config.clients["demo"].name == "Demo Renamed"
    finally:
        app.close()
