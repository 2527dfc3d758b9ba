"""The readers' fast paths give exactly what their general paths give, on odd and hostile input.

XML: a record whose columns are all one child step is read from one pass over its children; the
general path (one ElementPath search per column) is the reference, forced by clearing ``_tags``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.errors import InputError
from gateway.mapping.spec import FormatSpec
from gateway.readers.xml_reader import XmlReader

# ---------------------------------------------------------------- XML

XML_CASES = [
    # duplicate child tags: findtext takes the first
    b"<E><F><A>1</A><B>2</B><A>3</A></F><F><B>x</B></F></E>",
    # children with children: a child's own leading text only; empty and missing children
    b"<E><F><A>lead<i>in</i>tail</A><B/><C></C></F><F><A><![CDATA[c&d]]></A><B>&amp;&lt;&#x41;</B></F></E>",
    # junk siblings, nested groups, same-named elements elsewhere, comments and PIs between children
    b"<?xml version='1.0'?><E><Kopf><F><A>not a record</A></F></Kopf><G><F><A>1</A><!-- c --><?pi x?><B>2</B></F>"
    b"<X/><F><A>3</A></F></G><G><F><B>4</B><F><A>inner</A></F></F></G></E>",
    # namespaces: prefixed and default, a child in another namespace with the same local name
    b'<e:E xmlns:e="urn:e" xmlns:o="urn:o"><e:F><e:A>1</e:A><o:A>other</o:A><e:B>2</e:B></e:F>'
    b'<F xmlns="urn:e"><A>3</A><B>4</B></F></e:E>',
    # whitespace-only and mixed content records
    b"<E>\n  <F>\n    <A> 1 </A>\n    <B>\n</B>\n  </F>\n  <F>text<A>5</A>more</F>\n</E>",
]


def _xml_rows(path: Path, spec: FormatSpec, general: bool) -> Any:
    try:
        with XmlReader(path, spec) as reader:
            if general:
                reader._tags = None
            return [(r.row, r.values, r.xpath) for r in reader]
    except InputError as exc:
        return f"InputError: {exc}"


@pytest.mark.parametrize("doc", XML_CASES)
@pytest.mark.parametrize(("record_path", "columns", "namespaces"), [
    ("/E/F", {"a": "A", "b": "B", "c": "C"}, {}),
    ("/E/G/F", {"a": "A", "b": "B"}, {}),
    ("/e:E/e:F", {"a": "e:A", "b": "e:B", "o": "o:A"}, {"e": "urn:e", "o": "urn:o"}),
    ("/E/F", {"a": "A", "b": "B", "n": "@n"}, {}),
])
def test_xml_child_pass_reads_like_element_path(tmp_path: Path, doc: bytes, record_path: str,
                                                columns: dict[str, str], namespaces: dict[str, str]) -> None:
    path = tmp_path / "a.xml"
    path.write_bytes(doc)
    spec = FormatSpec(type="xml", record_path=record_path, columns=columns, namespaces=namespaces)
    fast = _xml_rows(path, spec, general=False)
    assert fast == _xml_rows(path, spec, general=True)


def test_xml_child_pass_takes_the_first_of_duplicate_children(tmp_path: Path) -> None:
    path = tmp_path / "a.xml"
    path.write_bytes(XML_CASES[0])
    spec = FormatSpec(type="xml", record_path="/E/F", columns={"a": "A", "b": "B"})
    assert _xml_rows(path, spec, general=False) == [(1, ["1", "2"], "/E/F[1]"), (1, ["", "x"], "/E/F[2]")]
