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


# ---------------------------------------------------------------- XLSX and ODS: cut runs against lxml trees
#
# Random sheets mixing the shapes the patterns read with everything they leave to lxml (entities, rich
# text, other attribute orders and quotes, comments, CDATA, CR, empty values, prefixes, rows without r,
# self-closing rows, huge rows), read in chunks of a few bytes so rows and tokens fall across chunk
# boundaries: every header, row and error must be what the lxml-only reader gives.

XLSX_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
X14AC = 'xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac"'
PLAIN_CELLS = [
    '<c r="{c}{n}" t="s"><v>{i}</v></c>', '<c r="{c}{n}"><v>1.5</v></c>', '<c r="{c}{n}" s="1"><v>45000</v></c>',
    '<c r="{c}{n}" s="1"><v>45000.25</v></c>', '<c r="{c}{n}" s="2"><v>0.5</v></c>', '<c r="{c}{n}"><v>007</v></c>',
    '<c r="{c}{n}"><v>-12</v></c>', '<c r="{c}{n}"><v>1E-3</v></c>', '<c r="{c}{n}"><v>abc</v></c>',
    '<c r="{c}{n}" t="n"><v>3</v></c>', '<c r="{c}{n}" t="b"><v>1</v></c>', '<c r="{c}{n}" t="b"><v>0</v></c>',
    '<c r="{c}{n}" t="e"><v>#N/A</v></c>', '<c r="{c}{n}" t="str"><v>a &amp; b &lt;c&gt;</v></c>',
    '<c r="{c}{n}" t="d"><v>2025-01-31T10:00:00</v></c>', '<c r="{c}{n}" t="inlineStr"><is><t>  plain  </t></is></c>',
    '<c r="{c}{n}" t="inlineStr"><is><t xml:space="preserve">  kept _x000D_ </t></is></c>',
    '<c r="{c}{n}" t="inlineStr"><is><t></t></is></c>', '<c r="{c}{n}"><f>SUM(A1:A3)</f><v>6</v></c>',
    '<c r="{c}{n}"><f t="shared" ref="A1:A3" si="0"/><v>2</v></c>', '<c r="{c}{n}"><f>"a"&amp;"b"</f><v>ab</v></c>',
    '<c r="{c}{n}" t="s"><f>A1</f><v>{i}</v></c>', '<c r="{c}{n}" s="1"/>', '<c r="{c}{n}" t="s"/>',
    '<c r="{c}{n}"></c>', '<c t="s"><v>{i}</v></c>', '<c><v>9</v></c>', '<c r="{c}{n}" t="inlineStr"><v>ignored</v></c>',
    '<c r="{c}{n}" t="s" >\n  <v>{i}</v>\n</c>', '<c r="{c}{n}"><v>1\u00e9</v></c>',
    '<c r="{c}{n}" t="inlineStr"><is><t>Arrow row :row</t></is></c>', '<c r="{c}{n}" t="inlineStr"><is><t>q"\'&gt;</t></is></c>',
]
ODD_CELLS = [  # read by lxml, alone or (after a comment) with the rest of the sheet
    '<c r="{c}{n}" t="str"><v>x&#x41;&#66;</v></c>', '<c r="{c}{n}" t="str"><v></v></c>', '<c r="{c}{n}" t="str"><v/></c>',
    '<c r="{c}{n}" t="d"><v></v></c>',
    '<c r="{c}{n}" t="inlineStr"><is><r><t>rich </t></r><r><t>text</t></r><rPh><t>ph</t></rPh></is></c>',
    '<c r="{c}{n}" t="inlineStr"><is><t>a\r\nb</t></is></c>', '<c r="{c}{n}" t="inlineStr"><is><t><![CDATA[x<y]]></t></is></c>',
    '<c t="s" r="{c}{n}"><v>{i}</v></c>', "<c r='{c}{n}' t='s'><v>{i}</v></c>", '<c  r="{c}{n}"><v>4</v></c>',
    '<c r="{c}{n}"><v> 5 </v></c>', '<c r="{c}{n}" cm="1"><v>5</v></c>', '<c r="{l}{n}"><v>8</v></c>',
    '<c r="{c}0{n}"><v>8</v></c>', '<c r="{c}{n}" t="inlineStr"><is><t>a]]&gt;b</t></is></c>',
    '<c r="{c}{n}" t="str"><v>tab\there</v></c>', '<x:c xmlns:x="urn:other" r="{c}{n}"><v>1</v></x:c>',
]
STOP_CELLS = ['<c r="{c}{n}"><!-- note --><v>5</v></c>', '<c r="{c}{n}"><v>5</v><?pi x?></c>']
ERROR_CELLS = ['<c r="{c}{n}" t="zz"><v>1</v></c>', '<c r="{c}{n}" t="s"><v>99999</v></c>', '<c r="{c}{n}" t="s"><v>1.5</v></c>',
               '<c r="{c}{n}" s="1"><v>x</v></c>', '<c r="{c}{n}" t="n"><v>x</v></c>', '<c r="XFD{n}"><v>1</v></c>',
               '<c r="{c}{n}"><v>1</v>', '<c r="{c}{n}" t="s" t="s"><v>1</v></c>', '<c r="{c}{n}"><v>&nbsp;</v></c>',
               '<c r="{c}{n}"><v>\x01</v></c>', '<c r="{c}{n}"><v>\ufffe</v></c>', '<c r="{c}1{n}"><v>1</v></c>']
ROW_HEADS = ['<row r="{n}">', '<row r="{n}" spans="1:9">', '<row r="{n}" spans="1:9" x14ac:dyDescent="0.25">', '<row>',
             "<row r='{n}'>", '<row spans="2:3" r="{n}">', '<row r="{n}" ht="20" customHeight="1">']


def _xlsx_sheet(rng: Any, rows: int, cells: list[str], heads: list[str], error: str | None) -> str:
    out = []
    for n in range(1, rows + 1):
        if rng.random() < 0.05:
            out.append(rng.choice(['<row r="{n}"/>', '<row r="{n}" spans="1:2"/>', "<row/>"]).format(n=n))
            continue
        cols = sorted(rng.sample(range(9), rng.randint(0, 6)))
        shapes = [rng.choice(cells) for _ in cols]
        if error and n == rows - 5:
            shapes[-1:] = [error]
        body = "".join(shape.format(c="ABCDEFGHI"[c], l="abcdefghi"[c], n=n, i=rng.randint(0, 5))
                       for c, shape in zip(cols, shapes))
        out.append(rng.choice(heads).format(n=n) + body + "</row>" + rng.choice(["", "\n", "\r\n  "]))
    return "".join(out)


def _xlsx_book(path: Path, sheet_xml: str, strings: list[str]) -> Path:
    import zipfile

    from tests.unit.test_stream_readers import CT, REL, STYLES
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", CT)
        zf.writestr("_rels/.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                    f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        zf.writestr("xl/_rels/workbook.xml.rels",
                    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                    f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>')
        zf.writestr("xl/workbook.xml", f'<workbook {XLSX_NS} xmlns:r="{REL}"><sheets><sheet name="Blatt" sheetId="1" '
                    'r:id="rId1"/></sheets></workbook>')
        zf.writestr("xl/styles.xml", f"<styleSheet {XLSX_NS}>{STYLES}</styleSheet>")
        zf.writestr("xl/sharedStrings.xml", f'<?xml version="1.0" encoding="UTF-8"?>\n<sst {XLSX_NS}>'
                    + "".join(strings) + "</sst>")
        zf.writestr("xl/worksheets/sheet1.xml", sheet_xml)
    return path


def _both_ways(monkeypatch: pytest.MonkeyPatch, read: Any, chunk: int) -> tuple[Any, Any]:
    from gateway.readers import sheet_stream
    monkeypatch.setattr(sheet_stream, "CHUNK", chunk)
    monkeypatch.setattr(sheet_stream, "CUT", False)
    tree = read()
    monkeypatch.setattr(sheet_stream, "CUT", True)
    return read(), tree


def _sheet_rows(cls: Any, path: Path, spec: FormatSpec, dates: frozenset[str] = frozenset()) -> Any:
    import re
    try:
        with cls(path, spec, date_columns=dates) as reader:
            return reader.header, reader.header_row, [(r.row, r.values) for r in reader]
    except InputError as exc:
        # Not well-formed: both refuse the file with libxml2's message, which names a line and column (where a
        # cut-out row was parsed alone they differ) and, once the parser has gone on past the first error,
        # may name a later one (it does so the tree-only way too, depending on where the chunks end).
        # The last row read whole before the damage, which the message names, differs with the chunks too.
        text = re.sub(r" file after row \d+: ", " file: ", str(exc))
        if "cannot read the" in text and not re.search(r"damaged content|DOCTYPE|MB of XML", text):
            return "InputError: " + text.partition(" file: ")[0] + " file: <not well-formed>"
        return "InputError: " + re.sub(r"line \d+(, column \d+)?", "line L", text)


SI = ["<si><t>Ref</t></si>", "<si><t>  trim me\t</t></si>", '<si><t xml:space="preserve">  kept  </t></si>',
      "<si><r><t>rich </t></r><r><rPr><b/></rPr><t>text</t></r><rPh><t>ph</t></rPh></si>", "<si><t>a_x000D_b</t></si>",
      "<si><t/></si>", "<si><t>&lt;&amp;&gt;&quot;&apos;</t></si>", "<si><t>&#x41;&#228;</t></si>", "<si/>",
      "<si>\n  <t>pretty</t>\n</si>", "<si><t>line\r\nbreak</t></si>", "<si><t><![CDATA[c<d]]></t></si>",
      "<si><!-- c --><t>commented</t></si>", "<si><t>Müller &amp; Söhne</t></si>", "<si><t>Arrow :si si</t></si>"]


@pytest.mark.parametrize("seed", range(16))
def test_xlsx_runs_read_like_lxml_trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    import random

    from gateway.readers.xlsx_stream import XlsxStreamReader
    rng = random.Random(seed)
    cells = PLAIN_CELLS * 6 + ODD_CELLS if seed % 4 else PLAIN_CELLS  # some sheets only plain shapes
    if seed % 5 == 3:
        cells = cells + STOP_CELLS
    error = ERROR_CELLS[seed % len(ERROR_CELLS)] if seed % 3 == 1 else None
    head = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' if seed % 2 else ""
    sheet = (f'{head}<worksheet {XLSX_NS} {X14AC}><dimension ref="A1:I80"/><sheetData>'
             + _xlsx_sheet(rng, 80, cells, ROW_HEADS[:3] * 3 + ROW_HEADS, error)
             + "</sheetData><mergeCells/></worksheet>")
    strings = SI[:3] + [rng.choice(SI) for _ in range(8)]
    path = _xlsx_book(tmp_path / "a.xlsx", sheet, strings)
    for spec in (FormatSpec(type="xlsx"), FormatSpec(type="xlsx", header_row=0, columns=["a", "b", "c", "d"]),
                 FormatSpec(type="xlsx", header_row=3)):
        for chunk in (rng.randint(40, 400), 1 << 16):
            fast, tree = _both_ways(monkeypatch, lambda: _sheet_rows(XlsxStreamReader, path, spec,
                                                                     frozenset({"a", "Ref"})), chunk)
            assert fast == tree, (seed, spec, chunk)


TEMPLATE_ROWS = [  # {n}: the row number; rows of one shape are read by the plan of the first
    '<row r="{n}" spans="1:6"><c r="A{n}" t="s"><v>{a}</v></c><c r="B{n}" s="1"><v>4500{b}</v></c>'
    '<c r="C{n}"><v>{b}.25</v></c><c r="D{n}" t="b"><v>1</v></c><c r="E{n}" t="str"><v>x{b}</v></c></row>',
    '<row r="{n}"><c r="A{n}" s="12" t="s"><v>{a}</v></c><c r="C{n}" s="{n}"><v>{b}</v></c>'
    '<c r="D{n}" t="inlineStr"><v>skipped</v></c><c r="B{n}" t="e"><v>#N/A</v></c><c r="B{n}"><v>{b}</v></c></row>',
    '<row r="{n}"><c r="A{n}" t="s"><v>{a}</v></c><c r="B{n}" s="{b}"/><c r="F{n}" s="1"><v>{n}</v></c></row>',
]
PERTURBED = [  # a row that looks like its shape but is not: each must be read (or refused) as lxml does
    ('<v>{a}</v></c><c r="B', '<v></v></c><c r="B'), ('<v>x{b}</v>', '<v>x&amp;{b}</v>'), ('r="C{n}"', 'r="C{m}"'),
    ('<v>{a}</v>', '<v>99999</v>'), ('<v>{a}</v>', '<v>1.5</v>'), ('<v>4500{b}</v>', '<v>x</v>'),
    ('s="12"', 's="1"'), ('<v>{b}.25</v>', '<v>{b}.250</v>'), ('r="A{n}"', 'r="a{n}"'), ('</c></row>', '</c> </row>'),
]


@pytest.mark.parametrize("perturb", [None, *PERTURBED])
def test_xlsx_row_plans_read_like_lxml_trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             perturb: tuple[str, str] | None) -> None:
    from gateway.readers.xlsx_stream import XlsxStreamReader
    rows = []
    for n in range(1, 120):
        shape = TEMPLATE_ROWS[(n // 7) % 3]
        if perturb and n in (50, 51):
            shape = shape.replace(*perturb)
        rows.append(shape.format(n=n, m=n + 1, a=n % 5, b=n % 10))
    strings = ["<si><t>s%d</t></si>" % i for i in range(5)]
    styles = ('<numFmts><numFmt numFmtId="164" formatCode="dd.mm.yyyy"/></numFmts><cellXfs>'
              + '<xf numFmtId="0"/><xf numFmtId="164"/>' * 8 + "</cellXfs>")
    sheet = f"<worksheet {XLSX_NS}><sheetData>{''.join(rows)}</sheetData></worksheet>"
    path = _xlsx_book(tmp_path / "t.xlsx", sheet, strings)
    _replace_member(path, "xl/styles.xml", f"<styleSheet {XLSX_NS}>{styles}</styleSheet>")
    for spec in (FormatSpec(type="xlsx"), FormatSpec(type="xlsx", header_row=0, columns=["a", "b", "c"])):
        for chunk in (97, 1 << 16):
            fast, tree = _both_ways(monkeypatch, lambda: _sheet_rows(XlsxStreamReader, path, spec,
                                                                     frozenset({"a", "b", "c", "s0"})), chunk)
            assert fast == tree
    if perturb is None:
        assert not isinstance(fast, str) and len(fast[2]) > 100
        with XlsxStreamReader(path, FormatSpec(type="xlsx")) as reader:
            list(reader)
            assert sum(map(len, reader._shapes.values())) >= 3 and len(reader._plans) < 100  # per shape, not row


def _replace_member(path: Path, member: str, text: str) -> None:
    import zipfile
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members[member] = text.encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


ODS_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0" office:version="1.2"')
ODS_PLAIN = [
    '<table:table-cell office:value-type="string" calcext:value-type="string"><text:p>R{n}</text:p></table:table-cell>',
    '<table:table-cell office:value-type="string"><text:p>Müller &amp; Söhne</text:p></table:table-cell>',
    '<table:table-cell office:value-type="string"><text:p/></table:table-cell>',
    '<table:table-cell office:value-type="string"></table:table-cell>', '<table:table-cell office:value-type="string"/>',
    '<table:table-cell table:style-name="ce1" office:value-type="date" office:date-value="2025-01-{d:02d}" '
    'calcext:value-type="date"><text:p>x</text:p></table:table-cell>',
    '<table:table-cell office:value-type="date" office:date-value="2025-01-31T08:15:30"/>',
    '<table:table-cell office:value-type="float" office:value="{n}.5"><text:p>{n},5</text:p></table:table-cell>',
    '<table:table-cell office:value-type="float" office:value="{n}"><text:p>{n}</text:p></table:table-cell>',
    '<table:table-cell office:value-type="float" office:value="0.30000000000000004"/>',
    '<table:table-cell office:value-type="currency" office:currency="EUR" office:value="12"/>',
    '<table:table-cell office:value-type="percentage" office:value="0.05"/>',
    '<table:table-cell office:value-type="float" office:value="1e20"/>',
    '<table:table-cell office:value-type="float" office:value="7" table:number-columns-repeated="2"/>',
    '<table:table-cell office:value-type="boolean" office:boolean-value="true"><text:p>WAHR</text:p></table:table-cell>',
    '<table:table-cell office:value-type="time" office:time-value="PT14H30M00S"/>',
    '<table:table-cell office:value-type="string" office:string-value="attr"><text:p>p</text:p></table:table-cell>',
    '<table:table-cell/>', '<table:table-cell table:number-columns-repeated="3"/>', '<table:covered-table-cell/>',
    '<table:table-cell table:style-name="ce2"><text:p>no type</text:p></table:table-cell>',
    '<table:table-cell office:value="5"/>', '<table:table-cell office:date-value="2025-02-01"/>',
    '<table:table-cell office:value-type="float"/>',
    '<table:covered-table-cell office:value-type="string"><text:p>covered</text:p></table:covered-table-cell>',
    '<table:table-cell office:value-type="string"><text:p>table row text</text:p></table:table-cell>',
]
ODS_ODD = [
    '<table:table-cell office:value-type="string"><text:p>a<text:s text:c="3"/>b<text:span>c</text:span></text:p>'
    '</table:table-cell>',
    '<table:table-cell office:value-type="string"><text:p>one</text:p><text:p>two</text:p></table:table-cell>',
    '<table:table-cell office:value-type="string"><text:p>seen</text:p><office:annotation><text:p>note</text:p>'
    '</office:annotation></table:table-cell>',
    '<table:table-cell office:value-type="string"> <text:p>spaced</text:p> </table:table-cell>',
    '<table:table-cell office:value-type="string"><text:p>&#x41;&#228;</text:p></table:table-cell>',
    '<table:table-cell office:value-type="string" office:string-value="a&amp;b"/>',
    "<table:table-cell office:value-type='float' office:value='3'/>",
    '<table:table-cell office:value-type="string" office:string-value="tab\there"/>',
    '<table:table-cell office:value-type="string"><text:p>cr\r\nlf</text:p></table:table-cell>',
    '<table:table-cell office:value-type="string"><text:p><![CDATA[x<y]]></text:p></table:table-cell>',
    '<table:table-cell xml:id="x1" office:value-type="float" office:value="2"/>',
    '<table:table-cell office:value-type="float" office:value="2" table:number-columns-repeated="3"/>',
]
ODS_STOP = ['<table:table-cell><table:table table:name="inner"><table:table-row><table:table-cell '
            'office:value-type="string"><text:p>in</text:p></table:table-cell></table:table-row></table:table>'
            '</table:table-cell>', '<table:table-cell><!-- c --></table:table-cell>']
ODS_ERROR = ['<table:table-cell office:value-type="float" office:value="abc"/>',
             '<table:table-cell table:number-columns-repeated="x" office:value-type="float" office:value="1"/>',
             '<table:table-cell office:value-type="float" office:value="1" office:value="2"/>',
             '<table:table-cell office:value-type="string" table:number-columns-repeated="2000"><text:p>w</text:p>'
             '</table:table-cell>', '<table:table-cell office:value-type="string"><text:p>&nbsp;</text:p></table:table-cell>',
             '<table:table-cell office:value-type="float" office:value="1" foo:bar="1"/>']
ODS_ROWS = ["<table:table-row>", '<table:table-row table:style-name="ro1">',
            '<table:table-row table:number-rows-repeated="3">', '<table:table-row table:visibility="collapse">',
            "<table:table-row table:style-name='ro1'>"]


def _ods_table(rng: Any, name: str, rows: int, cells: list[str], error: str | None) -> str:
    out = [f'<table:table table:name="{name}"><table:table-column table:number-columns-repeated="9"/>']
    if rng.random() < 0.5:
        out.append("<table:table-header-rows>")
    for n in range(1, rows + 1):
        if n == 3 and out[1:2] == ["<table:table-header-rows>"]:
            out.append("</table:table-header-rows><table:table-row-group>")
        shapes = [rng.choice(cells) for _ in range(rng.randint(0, 7))]
        if error and n == rows - 4:
            shapes.append(error)
        body = "".join(shape.format(n=n, d=1 + n % 28) for shape in shapes)
        out.append(rng.choice(ODS_ROWS) + body + "</table:table-row>" + rng.choice(["", "\n"]))
        if rng.random() < 0.03:
            out.append("<table:table-row/>")
    if out[1:2] == ["<table:table-header-rows>"]:
        out.append("</table:table-row-group>" if rows >= 3 else "</table:table-header-rows>")
    out.append('<table:table-row table:number-rows-repeated="1048000"><table:table-cell '
               'table:number-columns-repeated="1024"/></table:table-row></table:table>')
    return "".join(out)


def _ods_book(path: Path, content: str) -> Path:
    import zipfile
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        zf.writestr("content.xml", content)
    return path


@pytest.mark.parametrize("seed", range(16))
def test_ods_runs_read_like_lxml_trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    import random

    from gateway.readers.ods_stream import OdsStreamReader
    rng = random.Random(seed)
    cells = ODS_PLAIN * 4 + ODS_ODD if seed % 4 else ODS_PLAIN
    if seed % 5 == 3:
        cells = cells + ODS_STOP
    error = ODS_ERROR[seed % len(ODS_ERROR)] if seed % 3 == 1 else None
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' if seed % 2 else ""
    # an error in the first sheet: the second is read after it (a sheet after the one read is parsed as far as
    # the chunk with the sheet's end reaches, so whether its errors are seen depends on chunk sizes)
    tables = [_ods_table(rng, name, 60, cells, error if name == "Eins" else None) for name in ("Eins", "Zwei")]
    content = (f"{head}<office:document-content {ODS_NS}><office:body><office:spreadsheet>{''.join(tables)}"
               "</office:spreadsheet></office:body></office:document-content>")
    path = _ods_book(tmp_path / "a.ods", content)
    for spec in (FormatSpec(type="ods"), FormatSpec(type="ods", sheet=2, header_row=0, columns=["a", "b", "c"]),
                 FormatSpec(type="ods", sheet="zwei", header_row=4)):
        for chunk in (rng.randint(40, 400), 1 << 16):
            fast, tree = _both_ways(monkeypatch, lambda: _sheet_rows(OdsStreamReader, path, spec,
                                                                     frozenset({"a", "R1"})), chunk)
            assert fast == tree, (seed, spec, chunk)


ODS_SHAPES = [  # {n}: the row; rows of one shape are read by the pattern made from the first two
    '<table:table-row><table:table-cell office:value-type="string"><text:p>R{n}</text:p></table:table-cell>'
    '<table:table-cell office:value-type="float" office:value="{n}.5"><text:p>x</text:p></table:table-cell>'
    '<table:table-cell/><table:table-cell office:value-type="date" office:date-value="2025-01-{d:02d}"/>'
    '<table:table-cell office:value-type="boolean" office:boolean-value="true"/>'
    '<table:table-cell table:number-columns-repeated="1000"/></table:table-row>',
    '<table:table-row table:style-name="ro1"><table:table-cell office:value-type="string" office:string-value="k">'
    '<text:p>{n}</text:p></table:table-cell><table:table-cell office:value-type="float" office:value="{n}" '
    'table:number-columns-repeated="2"/><table:table-cell office:value-type="string"><text:p></text:p>'
    '</table:table-cell></table:table-row>',
    '<table:table-row table:number-rows-repeated="2"><table:table-cell office:value-type="percentage" '
    'office:value="0.{d}"/><table:covered-table-cell office:value-type="string"><text:p>c{n}</text:p>'
    '</table:covered-table-cell></table:table-row>',
]
ODS_PERTURBED = [('<text:p>R{n}</text:p>', '<text:p>R&amp;{n}</text:p>'), ('office:value="{n}.5"', 'office:value="x"'),
                 ('<text:p>R{n}</text:p>', '<text:p>R<text:s/>{n}</text:p>'), ('office:value="{n}.5"', 'office:value=""'),
                 ('office:date-value="2025-01-{d:02d}"', 'office:date-value="2025-13-{d:02d}"'),
                 ('<table:table-cell/>', '<table:table-cell table:number-columns-repeated="2000"/>'),
                 ('<text:p>c{n}</text:p>', '<text:p>c\t{n}</text:p>'), ('office:value="{n}.5"', 'office:value="1e400"')]


@pytest.mark.parametrize("perturb", [None, *ODS_PERTURBED])
def test_ods_row_shapes_read_like_lxml_trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              perturb: tuple[str, str] | None) -> None:
    from gateway.readers.ods_stream import OdsStreamReader
    rows = []
    for n in range(1, 120):
        shape = ODS_SHAPES[(n // 7) % 3]
        if perturb and n in (50, 51):
            shape = shape.replace(*perturb)
        rows.append(shape.format(n=n, d=1 + n % 28))
    content = (f"<office:document-content {ODS_NS}><office:body><office:spreadsheet><table:table table:name='T'>"
               f"{''.join(rows)}</table:table></office:spreadsheet></office:body></office:document-content>")
    path = _ods_book(tmp_path / "s.ods", content)
    for spec in (FormatSpec(type="ods"), FormatSpec(type="ods", header_row=0, columns=["a", "b", "c"])):
        for chunk in (97, 1 << 16):
            fast, tree = _both_ways(monkeypatch, lambda: _sheet_rows(OdsStreamReader, path, spec,
                                                                     frozenset({"a", "b", "R1"})), chunk)
            assert fast == tree
    if perturb is None:
        assert not isinstance(fast, str) and len(fast[2]) > 100
        with OdsStreamReader(path, FormatSpec(type="ods")) as reader:
            list(reader)
            assert sum(map(len, reader._shapes.values())) >= 2 and len(reader._plans) < 20  # per shape, not row


@pytest.mark.parametrize(("before", "refused"), [(" ", True), ("\t", True), ("\n", True), ("x", False)])
def test_sheet_size_reads_references_after_whitespace_only(tmp_path: Path, before: str, refused: bool) -> None:
    import zipfile

    from gateway.config import LimitsConfig
    from gateway.readers.sheet_size import check_sheet_size
    path = tmp_path / "s.xlsx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("xl/worksheets/sheet1.xml", f'<worksheet><sheetData><row><c r="A1"/><c{before}r="XFD7"/>'
                    "</row></sheetData></worksheet>")
    if refused:
        with pytest.raises(InputError, match=r"has a cell in column 16384 \(limit limits.max_columns = 1024\)"):
            check_sheet_size(str(path), "xlsx", LimitsConfig())
    else:
        check_sheet_size(str(path), "xlsx", LimitsConfig())  # an attribute xr=, not a reference


@pytest.mark.parametrize("sheet", [1, 2, 3])
def test_ods_row_shapes_are_not_carried_into_another_namespace_scope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     sheet: int) -> None:
    from gateway.readers.ods_stream import OdsStreamReader
    rows = "".join(ODS_SHAPES[0].format(n=n, d=1 + n % 28) for n in range(1, 40))
    tables = (f"<table:table table:name='A'>{rows}</table:table>"  # "office:" rebound on the second table
              f"<table:table table:name='B' xmlns:office='urn:not-office'>{rows}</table:table>"
              f"<table:table table:name='C'>{rows}</table:table>")
    content = (f"<office:document-content {ODS_NS}><office:body><office:spreadsheet>{tables}"
               "</office:spreadsheet></office:body></office:document-content>")
    path = _ods_book(tmp_path / "n.ods", content)
    spec = FormatSpec(type="ods", sheet=sheet, header_row=0, columns=["a", "b", "c", "d", "e"])
    for chunk in (211, 1 << 16):
        fast, tree = _both_ways(monkeypatch, lambda: _sheet_rows(OdsStreamReader, path, spec), chunk)
        assert fast == tree
        assert not isinstance(fast, str) and len(fast[2]) == (0 if sheet == 2 else 39)  # B: no office values
