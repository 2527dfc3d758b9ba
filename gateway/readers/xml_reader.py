"""XML records through lxml ``iterparse``: a record path, one XPath per column, memory kept flat.

The parser is hardened: no DTD loading, no entity resolution, no network, no huge-tree mode, and
a document with a DOCTYPE at all is refused (billion laughs and XXE both need one). Each record
element is cleared after its columns are read, and every finished element before it is dropped, at
its own level and at its ancestors' (junk siblings, wrappers of earlier record groups), so memory
stays flat however many records the file holds. What follows the last record (and one enormous
record) is held until the document ends: the reader runs in a child process whose memory limit
bounds that (``isolated``). Rows carry the record's line and an XPath (``/Export/Forderung[17]``).
When every column is one child step, a record's values come from one pass over its children.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lxml import etree

from gateway.errors import InputError
from gateway.readers.base import SourceRow

if TYPE_CHECKING:
    from gateway.mapping.spec import FormatSpec


def _clark(step: str, namespaces: dict[str, str], file: str) -> str:
    prefix, sep, local = step.rpartition(":")
    if not sep:
        return step
    if prefix not in namespaces:
        raise InputError(f"prefix '{prefix}' in '{step}' is not defined in format.namespaces", file=file)
    return f"{{{namespaces[prefix]}}}{local}"


_ATTR = re.compile(r"@([A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?)")
_STEPS = re.compile(r"[A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?(?:/[A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?)*")


def _getter(col: str, namespaces: dict[str, str], file: str) -> Callable[[Any], str]:
    """A column's value from its record: plain child paths and attributes directly, anything else by XPath."""
    if m := _ATTR.fullmatch(col):
        name = _clark(m.group(1), namespaces, file) if ":" in m.group(1) else m.group(1)
        return lambda elem: elem.get(name) or ""
    if _STEPS.fullmatch(col):  # ElementPath is ~20x faster than XPath for a child's text
        path = "/".join(_clark(step, namespaces, file) for step in col.split("/"))
        return lambda elem: elem.findtext(path) or ""
    xpath = etree.XPath(f"string({col})", namespaces=namespaces or None)
    return lambda elem: str(xpath(elem))


def _child_tag(col: str, namespaces: dict[str, str], file: str) -> str | None:
    """The tag of a column that is one child step (``Betrag``, ``x:Betrag``): read from one pass over the children."""
    if _STEPS.fullmatch(col) and "/" not in col:
        return _clark(col, namespaces, file)
    return None


class XmlReader:
    """Records at ``format.record_path``; ``format.columns`` maps column names to relative XPaths."""

    def __init__(self, path: str | os.PathLike[str], fmt: FormatSpec) -> None:
        self.file = str(path)
        namespaces = dict(fmt.namespaces)
        record_path = fmt.record_path or "/"
        columns = fmt.columns if isinstance(fmt.columns, dict) else {}
        self.header = list(columns)
        self.header_row = 0
        self._record = [_clark(s, namespaces, self.file) for s in record_path.strip("/").split("/") if s]
        self._path_text = "/" + "/".join(s for s in record_path.strip("/").split("/") if s)
        self._xpaths = [_getter(str(col), namespaces, self.file) for col in columns.values()]
        # When every column is one child step, a record's values come from a single pass over its children
        # (a tag -> text dict) instead of one ElementPath search per column; findtext's "first child with
        # that tag" is kept by taking the dict only when no two children share a tag.
        tags = [_child_tag(str(col), namespaces, self.file) for col in columns.values()]
        self._tags: list[str] | None = None if None in tags else [t for t in tags if t is not None]
        try:
            self._fh = open(path, "rb")
        except OSError as exc:
            raise InputError(f"cannot open the file: {exc.strerror}", file=self.file) from None

    def _refuse_doctype(self, elem: Any) -> None:
        docinfo = elem.getroottree().docinfo
        if docinfo.doctype or docinfo.internalDTD is not None:
            raise InputError("the XML document has a DOCTYPE declaration; documents with a DTD or entities are "
                             "refused (XXE and entity-expansion attacks)", file=self.file, row=1)

    def _on_path(self, elem: Any) -> bool:
        parent = elem.getparent()
        for tag in reversed(self._record[:-1]):
            if parent is None or parent.tag != tag:
                return False
            parent = parent.getparent()
        return parent is None

    def _scan_prolog(self) -> None:
        """Refuse a DOCTYPE before libxml2 sees it: the prolog is everything before the first element."""
        head = self._fh.read(1 << 16)
        self._fh.seek(0)
        for pattern, marker in ((b"<!DOCTYPE", b"<"), ("<!DOCTYPE".encode("utf-16-le"), "<".encode("utf-16-le")),
                                ("<!DOCTYPE".encode("utf-16-be"), "<".encode("utf-16-be"))):
            at = head.find(pattern)
            if at >= 0 and not re.search(rb"<[A-Za-z_]" if len(marker) == 1 else b"$^", head[:at]):
                raise InputError("the XML document has a DOCTYPE declaration; documents with a DTD or entities "
                                 "are refused (XXE and entity-expansion attacks)", file=self.file, row=1)

    def __iter__(self) -> Iterator[SourceRow]:
        self._scan_prolog()
        # Only the record elements' end events reach Python: 20-40x fewer events than walking every element.
        parser = etree.iterparse(self._fh, events=("end",), tag=self._record[-1], resolve_entities=False,
                                 no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False,
                                 remove_comments=True, remove_pis=True)
        getters, tags, count, checked = self._xpaths, self._tags, 0, False
        path_text, record_tag = self._path_text, self._record[-1]
        on_path: Any = None  # the last parent found to be on the record path: its records need no second look
        try:
            for _, elem in parser:
                if not checked:
                    self._refuse_doctype(elem)
                    checked = True
                parent = elem.getparent()
                if parent is None or parent is not on_path:
                    if not self._on_path(elem):
                        if not _in_record(elem, record_tag):
                            _drop(elem)  # a same-named element elsewhere in the tree: not a record, not needed
                        continue
                    if parent is not None:
                        _drop_before(parent)  # the ancestors' finished siblings: once per parent
                    on_path = parent
                count += 1
                if tags is not None:
                    texts = {child.tag: child.text for child in elem}
                    if len(texts) == len(elem):
                        values = [texts.get(tag) or "" for tag in tags]
                    else:
                        values = [get(elem) for get in getters]
                else:
                    try:
                        values = [get(elem) for get in getters]
                    except etree.XPathError as exc:
                        raise InputError(f"an XPath of format.columns fails on this record: {exc}", file=self.file,
                                         row=elem.sourceline) from None
                yield SourceRow(elem.sourceline or 0, values, None, f"{path_text}[{count}]")
                elem.clear(keep_tail=False)
                while elem.getprevious() is not None:
                    del parent[0]
        except etree.XMLSyntaxError as exc:
            raise InputError(f"not well-formed XML: {exc.msg}", file=self.file, row=exc.lineno or None) from None
        root = parser.root
        if root is not None and not checked:
            self._refuse_doctype(root)
        if count == 0:
            tag = str(root.tag) if root is not None else ""
            ns = tag[1:].partition("}")[0] if tag.startswith("{") else ""
            in_ns = f" in namespace {ns}" if ns else ""
            raise InputError(f"no record element at {self._path_text} (the root element is <{_local(tag)}>{in_ns}); "
                             "check format.record_path and format.namespaces", file=self.file)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> XmlReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _in_record(elem: Any, tag: str) -> bool:
    parent = elem.getparent()
    while parent is not None:
        if parent.tag == tag:
            return True
        parent = parent.getparent()
    return False


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _drop_before(node: Any) -> None:
    """Delete the finished elements before ``node``, at its level and each ancestor's."""
    while (parent := node.getparent()) is not None:
        while node.getprevious() is not None:
            del parent[0]
        node = parent


def _drop(elem: Any) -> None:
    """Free a finished record, and every finished element before it, at its level and its ancestors' levels.

    Elements that are not records (a header block, junk between records, the wrappers of earlier record
    groups) are finished once a later record ends, so nothing but the open ancestors stays in the tree.
    """
    elem.clear(keep_tail=False)
    node = elem
    while (parent := node.getparent()) is not None:
        while node.getprevious() is not None:
            del parent[0]
        node = parent
