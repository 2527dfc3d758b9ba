"""Worker processes of a parallel ingest: chosen by config, and gone with the ingesting process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from bench.gen import write_csv
from gateway.bootstrap import build_app
from gateway.config import LimitsConfig, load_config
from gateway.services.ingest import default_workers
from gateway.services.keys import init_keys
from gateway.store.db import read_tx
from gateway.store.schema import claims, submissions
from tests.conftest import ROOT, write_config
from tests.support import wait_for


def test_default_workers_follow_the_config_and_the_size() -> None:
    limits = LimitsConfig(ingest_processes=2, parallel_from_mb=1.0)
    assert default_workers(limits, 2 << 20) == 2
    assert default_workers(limits, 1 << 19) == 0  # small files: none
    assert default_workers(LimitsConfig(ingest_processes=0, parallel_from_mb=0.0), 1 << 30) == 0
    auto = default_workers(LimitsConfig(parallel_from_mb=0.0), 1 << 30)
    assert auto == (0 if len(os.sched_getaffinity(0)) < 2 else min(3, len(os.sched_getaffinity(0))))


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.update(int(c) for c in text)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_killed_ingest_takes_its_workers_along_and_resumes_whole_once(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}", dispatcher={"batch_size": 300},
                       limits={"ingest_processes": 2, "parallel_from_mb": 0.1},
                       node={"lease_seconds": 2})  # the killed ingest's lease runs out quickly
    init_keys(load_config(cfg))
    build_app(cfg, migrate=True).close()
    path = write_csv(tmp_path / "big.csv", 12_000)
    command = [sys.executable, "-m", "gateway.entrypoints.cli", "--config", str(cfg), "ingest", str(path),
               "--client", "demo"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app = build_app(cfg)
    try:
        def stored() -> int:
            with read_tx(app.engine) as conn:
                return int(conn.execute(select(func.count()).select_from(claims)).scalar_one())

        wait_for("the workers storing chunks", lambda: stored() >= 900, timeout=60)
        workers = _children(proc.pid)
        assert len(workers) >= 2, "no worker processes: nothing was tested"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        wait_for("the workers gone with their parent", lambda: not any(_alive(w) for w in workers), timeout=10)
        # With the workers gone nothing can store any more: the file is only partly in
        assert stored() < 12_000
        again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert again.returncode == 0, again.stderr
        with read_tx(app.engine) as conn:
            n = conn.execute(select(func.count(func.distinct(claims.c.creditor_reference)))).scalar_one()
            statuses = [r[0] for r in conn.execute(select(submissions.c.status))]
        assert stored() == n == 12_000 and statuses == ["completed"]
    finally:
        if proc.poll() is None:
            proc.kill()
        app.close()


# What ``pip install`` writes for the ``gateway`` console script, and a probe in place of the workers' initializer.
CONSOLE_SCRIPT = """import sys
from gateway.entrypoints.cli import main
if __name__ == '__main__':
    from gateway.services import ingest_run
    from tests.integration.worker_probe import recording_init
    ingest_run.init_store_worker = recording_init
    sys.exit(main())
"""


def test_a_worker_of_the_gateway_command_imports_no_subcommands(tmp_path: Path) -> None:
    # A spawned worker runs the parent's __main__ again: under the ``gateway`` command that is the script above,
    # which imports the CLI. Importing the CLI must stay cheap (subcommands, serve, SOAP, SFTP and the rest
    # imported only when a command runs), or every worker pays for it in CPU and memory, for nothing.
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}", dispatcher={"batch_size": 300},
                       limits={"ingest_processes": 1, "parallel_from_mb": 0.0})
    init_keys(load_config(cfg))
    build_app(cfg, migrate=True).close()
    path = write_csv(tmp_path / "rows.csv", 600)
    script, record = tmp_path / "gateway", tmp_path / "worker-modules.txt"
    script.write_text(CONSOLE_SCRIPT, encoding="utf-8")
    env = {**os.environ, "GATEWAY_TEST_WORKER_MODULES": str(record),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(script), "--config", str(cfg), "ingest", str(path), "--client", "demo"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert record.exists(), "no worker process started: nothing was tested"
    modules = set(record.read_text(encoding="utf-8").split())
    assert "gateway.entrypoints.cli" in modules, "the worker did not run the script again: nothing was tested"
    heavy = sorted(m for m in modules if m.startswith("gateway.entrypoints.") and m != "gateway.entrypoints.cli"
                   or m.split(".")[0] in ("spyne", "asyncssh", "xlsxwriter", "ruamel", "prometheus_client"))
    assert heavy == []


def test_files_ingested_at_once_share_one_bound_of_worker_processes() -> None:
    from gateway.services.ingest import MAX_WORKER_PROCESSES, _worker_slots

    with _worker_slots(2) as first, _worker_slots(3) as second, _worker_slots(3) as third:
        assert (first, second, third) == (2, MAX_WORKER_PROCESSES - 2, 0)
    with _worker_slots(3) as again:  # all given back
        assert again == MAX_WORKER_PROCESSES
