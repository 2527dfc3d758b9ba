"""``gateway clients list|show|add|set-password|add-key|remove-key|add-login|login-password|remove-login|disable|
enable``: clients and their logins in the config file (web console logins: ``web.users``).

Changes are written back to the config file (comments kept, validated, replaced atomically, the old one
kept as ``<file>.bak``); a running ``serve`` takes them without restart. No database is needed.
``add --mapping FILE`` checks a mapping file and installs it as ``mappings/<client>.yaml`` with the client.
Passwords are asked on the terminal (twice) or read as one line with ``--password-stdin``; they are
hashed at once and never printed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, load_config
from gateway.entrypoints.output import print_fields, print_json, print_table
from gateway.services import clients_admin as admin
from gateway.services import onboarding
from gateway.services.clients_admin import AdminError

SAVED = "saved to {file} (previous version: {file}.bak); a running serve applies it now"


def add_parser(sub: Any) -> None:
    """Register ``clients`` and its actions on the top-level subparsers."""
    cl = sub.add_parser("clients", help="add and change clients (written to the config file)")
    acts = cl.add_subparsers(dest="action", required=True)
    q = acts.add_parser("list", help="configured clients")
    q.add_argument("--json", action="store_true")
    q = acts.add_parser("show", help="one client's settings and logins (fingerprints, never secrets)")
    q.add_argument("client")
    q.add_argument("--json", action="store_true")
    q = acts.add_parser("add", help="a new client")
    q.add_argument("client", help="client id: lower-case letters, digits, '-', '_'")
    q.add_argument("--name", required=True)
    q.add_argument("--mapping", help="mappings/<MAPPING>.yaml (default: the client id), or a mapping FILE: "
                   "checked, then installed as mappings/<client>.yaml")
    q.add_argument("--default-partner")
    q.add_argument("--hold-all", action="store_true", help="every claim waits for release")
    q.add_argument("--key", action="append", default=[], help="SSH public key line or .pub file (repeatable)")
    q = acts.add_parser("set-password", help="set the client's SFTP or SOAP password")
    q.add_argument("client")
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("--sftp", dest="channel", action="store_const", const="sftp")
    which.add_argument("--soap", dest="channel", action="store_const", const="soap")
    q.add_argument("--username", help="SOAP username (default: the current one, else the client id)")
    q.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    q = acts.add_parser("add-key", help="authorize an SSH public key for SFTP")
    q.add_argument("client")
    q.add_argument("key", help="the key line, a .pub file, or - for stdin")
    q = acts.add_parser("remove-key", help="remove an SSH key by its fingerprint (see clients show)")
    q.add_argument("client")
    q.add_argument("fingerprint")
    q = acts.add_parser("add-login", help="a web console login of the client (password asked, or --password-stdin)")
    q.add_argument("client")
    q.add_argument("login")
    q.add_argument("--role", choices=("read", "submit"), default="read")
    q.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    q = acts.add_parser("login-password", help="set a new password for a web console login of the client")
    q.add_argument("client")
    q.add_argument("login")
    q.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    q = acts.add_parser("remove-login", help="remove a web console login of the client")
    q.add_argument("client")
    q.add_argument("login")
    for name, text in (("disable", "refuse the client's SFTP and SOAP logins"), ("enable", "allow them again")):
        acts.add_parser(name, help=text).add_argument("client")


def run(args: argparse.Namespace) -> int:
    """Dispatch ``gateway clients <action>``; 2 for a request that cannot be done as asked."""
    cfg = load_config(getattr(args, "config", None))
    handler = {"list": _list, "show": _show, "add": _add, "set-password": _set_password, "add-key": _add_key,
               "remove-key": _remove_key, "disable": _disable, "enable": _enable, "add-login": _add_login,
               "login-password": _login_password, "remove-login": _remove_login}[args.action]
    try:
        return handler(cfg, args)
    except AdminError as exc:
        print(f"gateway clients {args.action}: {exc}", file=sys.stderr)
        return 2


def _saved(cfg: GatewayConfig, what: str) -> None:
    print(f"{what}; " + SAVED.format(file=cfg.source))


def _list(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    rows = [asdict(admin.summary(cfg, cid)) for cid in sorted(cfg.clients)]
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        r["sftp"] = ", ".join(x for x in (f"{len(r['sftp_keys'])} key(s)" if r["sftp_keys"] else "",
                                          "password" if r["sftp_password"] else "") if x)
        r["soap"] = r["soap_username"] or ""
    print_table(rows, ("id", "name", "enabled", "mapping", "default_partner", "hold_all", "sftp", "soap"))
    return 0


def _show(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    s = admin.summary(cfg, args.client)
    if args.json:
        print_json(asdict(s))
    else:
        doc = asdict(s)
        keys = doc.pop("sftp_keys")
        print_fields(doc.items())
        for fp in keys:
            print(f"sftp key  {fp}")
    return 0


def _key_line(given: str) -> str:
    if given == "-":
        return sys.stdin.readline().strip()
    path = Path(given)
    if not given.startswith(("ssh-", "ecdsa-", "sk-")) and path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return given


def _add(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    keys = [_key_line(k) for k in args.key]
    for k in keys:
        admin.fingerprint(k)  # a bad key refuses the whole command before anything is written
    mapping = args.mapping
    installed = None
    if mapping and (mapping.endswith((".yaml", ".yml")) or os.sep in mapping) and args.client not in cfg.clients:
        target = cfg.mappings_dir / f"{args.client}.yaml"
        existed = target.exists()
        installed = onboarding.install_mapping(cfg, args.client, Path(mapping))  # ConfigError: not written
        mapping = None  # the client's own name: mappings/<client>.yaml
        try:
            new = admin.add_client(cfg, args.client, name=args.name, mapping=None,
                                   default_partner=args.default_partner, hold_all=args.hold_all)
        except BaseException:
            if not existed:
                installed.unlink(missing_ok=True)  # all or nothing: no mapping of a client that was not added
            raise
        print(f"mapping {mapping or args.mapping} checked and installed as {installed}")
    else:
        new = admin.add_client(cfg, args.client, name=args.name, mapping=mapping,
                               default_partner=args.default_partner, hold_all=args.hold_all)
    for k in keys:
        new, fp = admin.add_key(new, args.client, k)
        print(f"sftp key {fp} authorized")
    _saved(new, f"client {args.client} added")
    if installed is None and not (new.mappings_dir / f"{mapping or args.client}.yaml").exists():
        print(f"note: no mapping file {new.mappings_dir / f'{mapping or args.client}.yaml'} yet: "
              "files from this client fail until it exists (gateway mapping suggest)")
    return 0


def read_password(from_stdin: bool) -> str:
    """One password: a line from stdin, or asked twice on the terminal."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise AdminError("no terminal to ask for the password: pipe it with --password-stdin")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise AdminError("the two passwords differ")
    return first


def _set_password(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    admin.summary(cfg, args.client)  # an unknown client is refused before the password is asked
    new = admin.set_password(cfg, args.client, args.channel, read_password(args.password_stdin),
                             username=args.username)
    user = f" (username {new.clients[args.client].soap.username})" if args.channel == "soap" else ""
    _saved(new, f"{args.channel} password of client {args.client} set{user}")
    return 0


def _add_key(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    new, fp = admin.add_key(cfg, args.client, _key_line(args.key))
    _saved(new, f"sftp key {fp} authorized for client {args.client}")
    return 0


def _remove_key(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    new = admin.remove_key(cfg, args.client, args.fingerprint)
    _saved(new, f"sftp key {args.fingerprint} removed from client {args.client}")
    return 0


def _add_login(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    admin.summary(cfg, args.client)
    new = admin.add_web_user(cfg, args.login, client_id=args.client, role=args.role,
                             password=read_password(args.password_stdin))
    _saved(new, f"web login {args.login} ({args.role}) of client {args.client} added")
    return 0


def _login_password(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    if cfg.web.users.get(args.login) is None or cfg.web.users[args.login].client != args.client:
        raise AdminError(f"no web login '{args.login}' of client '{args.client}'")
    new = admin.set_web_password(cfg, args.login, read_password(args.password_stdin), client_id=args.client)
    _saved(new, f"password of web login {args.login} set (its open sessions end as serve applies it)")
    return 0


def _remove_login(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    new = admin.remove_web_user(cfg, args.login, client_id=args.client)
    _saved(new, f"web login {args.login} of client {args.client} removed (its sessions end as serve applies it)")
    return 0


def _disable(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    new = admin.set_enabled(cfg, args.client, False)
    _saved(new, f"client {args.client} disabled (no SFTP, SOAP or console login; its claims stay)")
    return 0


def _enable(cfg: GatewayConfig, args: argparse.Namespace) -> int:
    new = admin.set_enabled(cfg, args.client, True)
    _saved(new, f"client {args.client} enabled")
    return 0
