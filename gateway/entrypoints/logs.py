"""Log lines of the ``gateway`` command: level, destination and format from the ``logging`` config.

Every line of ours is one event: ``<event> key=value key=value ...`` (``ingest.done submission=S-1
rows=12``). ``format: text`` writes it as is after time, level and logger; ``format: json`` writes one
JSON object per line with ``ts``, ``level``, ``logger``, ``event`` (the first word) and each
``key=value`` pair as a field (a value runs to the next `` key=``, so it may hold spaces), words that
are not a pair in ``text``, and a traceback, if any, in ``exc``. What goes into a line is decided
where it is logged (no debtor data, no secrets); the format only changes its shape.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
from datetime import datetime, timezone
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import ConfigError

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_KEY = re.compile(r"(?:^|\s)([A-Za-z_][\w.]*)=")


def parse_event(message: str) -> dict[str, Any]:
    """``"ingest.done submission=S-1 rows=12"`` -> ``{"event": "ingest.done", "submission": "S-1", "rows": 12}``."""
    event, _, rest = message.partition(" ")
    doc: dict[str, Any] = {"event": event}
    keys = list(_KEY.finditer(rest))
    leading = rest[:keys[0].start()] if keys else rest
    for i, match in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(rest)
        key, value = match.group(1), rest[match.end():end].rstrip()
        if key in ("ts", "level", "logger", "event", "text", "exc"):
            key = f"{key}_"  # never overwrite the line's own fields
        doc[key] = int(value) if value.isdigit() and len(value) < 16 else value
    if leading.strip():
        doc["text"] = leading.strip()
    return doc


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name}
        doc.update(parse_event(record.getMessage()))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


# C0 controls and DEL, shown escaped: a value with a line break (a client's file name over SFTP, a library's
# message such as psycopg's "error ignored terminating Pipeline", a server's multi-line error) would otherwise
# start what reads as a line of its own in the text log: a forged event for whoever greps it.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f)} | {0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t"}


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, one line per record: control characters in the message escaped. A traceback, which
    follows the line, keeps its lines."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_CONTROLS)


class ReopeningFileHandler(logging.handlers.WatchedFileHandler):
    """``WatchedFileHandler`` whose failure to reopen the file (its folder removed, a disk gone read-only) never
    reaches the code that logs: the stock handler raised it from ``log.info`` into the caller, and from the
    supervisor's own error report, so every task of ``serve`` died without a word. The line goes to stderr
    instead (one ``logs.file_unusable`` note first), and the file is tried again at the next line."""

    failing = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reopenIfNeeded()
            if self.stream is None:  # a failed reopen left none
                self.stream = self._open()
                self._statstream()
        except OSError as exc:
            if not self.failing:
                self.failing = True
                self._to_stderr(f"logs.file_unusable file={self.baseFilename} error={exc.strerror or exc}: lines go "
                                "to stderr until the file can be written again")
            self._to_stderr(self.format(record))
            return
        if self.failing:
            self.failing = False
            logging.FileHandler.emit(self, logging.makeLogRecord({
                "name": __name__, "levelno": logging.WARNING, "levelname": "WARNING",
                "msg": "logs.file_back: lines written to stderr meanwhile are not in this file"}))
        logging.FileHandler.emit(self, record)

    @staticmethod
    def _to_stderr(line: str) -> None:
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # nowhere left to write: dropping a line beats stopping the caller


def configure_logging(cfg: GatewayConfig, *, verbose: bool, serve: bool) -> None:
    """Replace the start-up handler with the configured one (level, format, file)."""
    conf = cfg.logging
    level = logging.getLevelName(conf.level.upper())
    if not isinstance(level, int):
        raise ConfigError(f"expected DEBUG, INFO, WARNING or ERROR, got {conf.level!r}", file=cfg.source,
                          key="logging.level")
    handler: logging.Handler
    if conf.file:
        path = cfg.path(conf.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Reopened when logrotate has moved the file away, so rotation needs no restart and no copytruncate.
        handler = ReopeningFileHandler(path, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if conf.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):  # ours and basicConfig's start-up handler; others (a test's capture) stay
        if getattr(old, "gateway", False) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
            old.close()  # a StreamHandler leaves stderr open; a file handler closes its file
    setattr(handler, "gateway", True)  # noqa: B010 - marks the handler this function may replace later
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else level if serve else max(level, logging.WARNING))
    # alembic's start-up chatter ("Context impl SQLiteImpl.") is not one of our events; -v shows it.
    # Nor is every HTTP request a partner adapter makes (httpx logs one INFO line each; a sync every
    # few seconds would fill the log); -v shows them.
    for chatty in ("alembic", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.NOTSET if verbose else max(level, logging.WARNING))
    # watchdog logs every file event at DEBUG, and the config watcher watches the config file's folder: a
    # log file there made each line an event and each event a line (4 MB/s and a busy core, -v or not).
    logging.getLogger("watchdog").setLevel(max(level, logging.INFO))
