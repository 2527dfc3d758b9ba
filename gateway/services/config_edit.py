"""Write a change back to the config file: comments, key order and quoting kept, validated, atomic.

ruamel.yaml's round-trip mode edits the parsed document in place, so an operator's comments survive an
admin command. The new text is written to a temp file beside the config (same folder: ``base_dir`` and
relative paths resolve the same way), loaded with the gateway's own config loader, and only then renamed
over the file, after a copy of the old file is kept as ``<name>.bak``. A lock file serialises two admin
commands; a running ``serve`` picks up the renamed file through its config watcher.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError

Doc = CommentedMap


def config_file(cfg: GatewayConfig) -> Path:
    """The file ``cfg`` came from; embedded defaults cannot be edited."""
    if cfg.source.startswith("<"):
        raise ConfigError("no config file: pass --config or set GATEWAY_CONFIG to change clients",
                          file=cfg.source)
    return Path(cfg.source)


def _yaml(text: str) -> YAML:
    y = YAML()  # round-trip
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap an operator's long lines (SSH keys, comments)
    # keep the file's own list style: "key:\n  - item" (indented) or "key:\n- item"
    m = re.search(r"^( *)[^\s#][^\n#]*:[ \t]*(?:#[^\n]*)?\n( *)- ", text, re.M)
    if m and len(m.group(2)) > len(m.group(1)):
        off = len(m.group(2)) - len(m.group(1))
        y.indent(mapping=2, sequence=off + 2, offset=off)
    return y


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def edit_config(path: Path, change: Callable[[Doc], None]) -> GatewayConfig:
    """Apply ``change`` to the parsed file, validate the result, replace the file; returns the new config."""
    with _locked(path):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config: {exc.strerror}", file=str(path)) from exc
        y = _yaml(text)
        try:
            doc = y.load(text)
        except YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", file=str(path)) from exc
        if doc is None:
            doc = CommentedMap()
        if not isinstance(doc, CommentedMap):
            raise ConfigError("expected a mapping of settings at the top level", file=str(path))
        change(doc)
        out = io.StringIO()
        y.dump(doc, out)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(out.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
            shutil.copymode(path, tmp)
            try:
                cfg = load_config(tmp)
            except ConfigError as exc:  # name the real file, not the temp one
                raise ConfigError(f"the change was not saved: {str(exc).replace(str(tmp), str(path))}") from None
            shutil.copy2(path, path.with_name(path.name + ".bak"))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    cfg.source = str(path)
    return cfg


def section(doc: Doc, *keys: str) -> Doc:
    """The nested mapping at ``keys``, created (at the end) where missing."""
    node: Any = doc
    for key in keys:
        child = node.get(key)
        if child is None:
            child = CommentedMap()
            node[key] = child
        if not isinstance(child, CommentedMap):
            raise ConfigError(f"expected a mapping at {'.'.join(keys)}", key=".".join(keys))
        node = child
    return node  # type: ignore[no-any-return]
