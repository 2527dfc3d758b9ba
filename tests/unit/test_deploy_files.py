"""The deployment files say what the code does: the systemd unit (``systemd-analyze verify`` when the tool is
here, and its keys read back with configparser), the Containerfile (what it copies exists, the ports it exposes
are the container config's, the HEALTHCHECK probes the health listener) and the compose file (PostgreSQL 15,
a one-shot migration before two nodes with their own ids, a shared inbox and shared keys). No container engine
runs here, so the images themselves are not built by the tests (docs/operations.md, "Containers")."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import GatewayConfig, SupervisorConfig, load_config
from gateway.entrypoints.cli import build_parser
from gateway.entrypoints.supervisor import EXIT_TASK_FAILED
from gateway.services import render

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "inkasso-gateway.service"
INSTALLED_GATEWAY = "/opt/inkasso-gateway/venv/bin/gateway"


def _unit() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed: the unit is only checked by test_unit_has_the_promised_keys")
    gateway = Path(sys.executable).with_name("gateway")
    if not gateway.exists():
        pytest.skip(f"no gateway script at {gateway}: verify needs an executable ExecStart")
    # verify insists that ExecStart exists: point it at this checkout's gateway, the rest is verified as shipped
    text = UNIT.read_text()
    assert INSTALLED_GATEWAY in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED_GATEWAY, str(gateway)))
    done = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""  # an unknown or misplaced key is only a warning: none allowed


def test_unit_has_the_promised_keys() -> None:
    s = _unit()
    assert s["User"] == "inkasso" and s["Group"] == "inkasso"
    workdir = s["WorkingDirectory"]
    exec_start = s["ExecStart"].split()
    assert exec_start[0] == INSTALLED_GATEWAY
    args = build_parser().parse_args(exec_start[1:])
    assert args.command == "serve" and args.config == "/etc/inkasso-gateway/gateway.yaml"
    assert s["Restart"] == "on-failure" and EXIT_TASK_FAILED != 0  # 6 restarts, 0 (after SIGTERM) does not
    assert s["KillSignal"] == "SIGTERM"
    assert float(s["TimeoutStopSec"]) > SupervisorConfig().stop_grace_seconds
    assert s["EnvironmentFile"].lstrip("-").startswith("/etc/inkasso-gateway/")
    assert set(s["ReadWritePaths"].split()) == {f"{workdir}/var", f"{workdir}/inbox"}
    assert set(s["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    expected = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                "PrivateDevices": "yes", "SystemCallFilter": "@system-service", "UMask": "0077",
                "CapabilityBoundingSet": ""}
    assert {k: s.get(k) for k in expected} == expected
    assert int(s["LimitNOFILE"]) >= 4096


def _instructions() -> list[tuple[str, str]]:
    """The Containerfile's instructions with continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", (DEPLOY / "Containerfile").read_text())
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def _container_config() -> GatewayConfig:
    return load_config(DEPLOY / "container" / "gateway.yaml")


def test_containerfile_copies_what_exists_and_bakes_no_key() -> None:
    ins = _instructions()
    assert ins[0] == ("FROM", "python:3.11-slim")
    sources = [p for op, arg in ins if op == "COPY" for p in arg.split()[:-1] if not p.startswith("--")]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such path in the build context (the project root)"
        assert not re.search(r"(^|/)(var|keys|inbox)(/|$)|\.key$|data-keys", src), f"COPY {src} may bake in a key"
    # the XSDs are read from beside the package, so they must be in the image
    assert render.SCHEMA_PATH.relative_to(ROOT).parts[0] in {Path(s).parts[0] for s in sources}
    users = [arg for op, arg in ins if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_containerfile_exposes_the_configured_ports_and_probes_healthz() -> None:
    ins, cfg = _instructions(), _container_config()
    exposed = {int(p) for op, arg in ins if op == "EXPOSE" for p in arg.split()}
    assert cfg.health.listen
    health_port = int(cfg.health.listen.rpartition(":")[2])
    assert exposed == {cfg.sftp.port, cfg.soap.port, cfg.web.port, health_port}
    check = next(arg for op, arg in ins if op == "HEALTHCHECK")
    assert f"http://127.0.0.1:{health_port}/healthz" in check
    assert '"/healthz"' in (ROOT / "gateway" / "entrypoints" / "health.py").read_text()
    env = next(arg for op, arg in ins if op == "ENV")
    assert "GATEWAY_CONFIG=/etc/inkasso-gateway/gateway.yaml" in env


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (volume name or host path) of a service's short-syntax volumes."""
    return {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}


def test_compose_runs_postgresql_a_migration_and_two_nodes() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "migrate", "gateway-a", "gateway-b"}
    assert services["postgres"]["image"].startswith("postgres:15")
    assert build_parser().parse_args(services["migrate"]["command"]).action == "upgrade"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    cfg = _container_config()
    nodes = [services["gateway-a"], services["gateway-b"]]
    ids = {n["environment"]["GATEWAY_NODE_ID"] for n in nodes}
    assert len(ids) == 2
    for node in nodes:
        assert build_parser().parse_args(node["command"]).command == "serve"
        assert node["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert node["environment"]["GATEWAY_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in node["environment"]["GATEWAY_DATABASE_URL"]
        assert "POSTGRES_PASSWORD:?" in node["environment"]["GATEWAY_DATABASE_URL"]  # no default password
        mounts = _mounts(node)
        assert (DEPLOY / mounts["/etc/inkasso-gateway/gateway.yaml"]).resolve() == \
            (DEPLOY / "container" / "gateway.yaml").resolve()
        container_ports = {int(p.split(":")[-1]) for p in node["ports"]}
        assert container_ports == {cfg.sftp.port, cfg.soap.port, cfg.web.port}
    a, b = (_mounts(n) for n in nodes)
    shared = (str(cfg.inbox_dir), str(cfg.keys_dir))
    assert all(a[p] == b[p] and a[p] in _compose()["volumes"] for p in shared)  # one inbox, one key set
    assert a[str(cfg.var_dir)] != b[str(cfg.var_dir)]  # var/ (node id, work folders) per node
    assert _mounts(services["migrate"])[str(cfg.keys_dir)] == a[str(cfg.keys_dir)]


def test_operations_doc_names_what_the_deploy_files_use() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    for name in ("deploy/systemd/inkasso-gateway.service", "deploy/Containerfile", "deploy/compose.yaml",
                 "GATEWAY_NODE_ID", "GATEWAY_DATABASE_URL", "GATEWAY_DATA_KEYS", "gateway db backup",
                 *_compose()["services"]):
        assert name in doc, f"docs/operations.md does not mention {name}"
