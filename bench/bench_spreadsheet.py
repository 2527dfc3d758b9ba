"""Spreadsheet and XML readers: rows/s and peak RSS of the streaming readers against bare calamine / iterparse.

    .venv/bin/python -m bench.bench_spreadsheet                 # 100k rows, best of 3, XLSX, ODS and XML
    .venv/bin/python -m bench.bench_spreadsheet --rows 20000 --repeat 1 --kinds xml

The files carry ``bench/gen.py``'s demo rows (21 columns) as a spreadsheet holds them: text as shared
strings (XLSX, written by xlsxwriter) or text cells (ODS, written like LibreOffice writes them, with the
trailing repeated empty rows), amounts as numbers, dates as date cells. Each mode runs in a fresh
process; the figure is the best CPU time (process_time) of ``--repeat`` passes and the process's peak
RSS (VmHWM). "calamine bare" opens the workbook and walks ``iter_rows()`` without looking at a cell;
"calamine reader" is ``SpreadsheetReader`` (cells as text, the reader before the streaming ones).
XML: ``bench/bench_ingest.py``'s export (one ``<Forderung>`` per row, a child per non-empty column);
"iterparse bare" is lxml ``iterparse`` on the record tag reading each child's text and clearing the
record (bench_ingest's anchor), "streaming reader" is ``XmlReader`` with the 21 columns as child paths.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

from bench.gen import HEADER, rows

ROOT = Path(__file__).resolve().parents[1]
_NUMERIC = {"Betrag", "Mahngebuehr"}
_DATES = {"Geburtsdatum", "Rechnungsdatum", "Faellig", "Mahndatum"}


def _typed(name: str, value: str) -> str | float | dt.date:
    if value and name in _NUMERIC:
        return float(value.replace(".", "").replace(",", "."))
    if value and name in _DATES:
        d, m, y = value.split(".")
        return dt.date(int(y), int(m), int(d))
    return value


def write_xlsx(path: Path, n: int) -> Path:
    import xlsxwriter
    wb = xlsxwriter.Workbook(str(path))
    ws, date = wb.add_worksheet("Forderungen"), wb.add_format({"num_format": "dd.mm.yyyy"})
    ws.write_row(0, 0, HEADER)
    for r, row in enumerate(rows(n), start=1):
        for c, (name, value) in enumerate(zip(HEADER, row)):
            v = _typed(name, value)
            if isinstance(v, dt.date):
                ws.write_datetime(r, c, dt.datetime.combine(v, dt.time()), date)
            elif isinstance(v, float):
                ws.write_number(r, c, v)
            elif v:
                ws.write_string(r, c, v)
    wb.close()
    return path


def _ods_cell(name: str, value: str) -> str:
    v = _typed(name, value)
    if isinstance(v, dt.date):
        return (f'<table:table-cell table:style-name="ce1" office:value-type="date" office:date-value="{v.isoformat()}">'
                f"<text:p>{value}</text:p></table:table-cell>")
    if isinstance(v, float):
        return f'<table:table-cell office:value-type="float" office:value="{v!r}"><text:p>{value}</text:p></table:table-cell>'
    if v:
        return f'<table:table-cell office:value-type="string"><text:p>{escape(value)}</text:p></table:table-cell>'
    return "<table:table-cell/>"


def write_ods(path: Path, n: int) -> Path:
    ns = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        zf.writestr("META-INF/manifest.xml", '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:'
                    'xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="/" manifest:media-type='
                    '"application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path='
                    '"content.xml" manifest:media-type="text/xml"/></manifest:manifest>')
        with zf.open("content.xml", "w") as fh:
            fh.write(f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns}><office:body>'
                     '<office:spreadsheet><table:table table:name="Forderungen">'.encode())
            fh.write(("<table:table-row>" + "".join(f'<table:table-cell office:value-type="string"><text:p>{h}'
                      "</text:p></table:table-cell>" for h in HEADER) + "</table:table-row>").encode())
            for row in rows(n):
                fh.write(("<table:table-row>" + "".join(_ods_cell(k, v) for k, v in zip(HEADER, row))
                          + '<table:table-cell table:number-columns-repeated="1003"/></table:table-row>').encode())
            fh.write(b'<table:table-row table:number-rows-repeated="1048000"><table:table-cell '
                     b'table:number-columns-repeated="1024"/></table:table-row></table:table></office:spreadsheet>'
                     b"</office:body></office:document-content>")
    return path


_CHILD = """
import json, sys, time
from gateway.mapping.spec import FormatSpec
mode, path, kind, repeat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def run():
    if kind == "xml":
        if mode == "bare":
            from bench.bench_ingest import _iterparse
            return _iterparse(path)
        from bench.gen import HEADER
        from gateway.readers.xml_reader import XmlReader
        spec = FormatSpec(type="xml", record_path="/Export/Forderung",
                          columns={h: h.replace("-", "_") for h in HEADER})
        with XmlReader(path, spec) as reader:
            return sum(1 for _ in reader)
    if mode == "bare":
        import python_calamine
        book = python_calamine.CalamineWorkbook.from_path(path)
        n = sum(1 for _ in book.get_sheet_by_name(book.sheet_names[0]).iter_rows())
        book.close()
        return n - 1
    if mode == "calamine":
        from gateway.readers.spreadsheet import SpreadsheetReader as cls
    elif kind == "xlsx":
        from gateway.readers.xlsx_stream import XlsxStreamReader as cls
    else:
        from gateway.readers.ods_stream import OdsStreamReader as cls
    with cls(path, FormatSpec(type=kind)) as reader:
        return sum(1 for _ in reader)
best = None
for _ in range(repeat):
    t = time.process_time()
    n = run()
    best = min(best or 1e9, time.process_time() - t)
with open("/proc/self/status") as fh:
    peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
print(json.dumps({"rows": n, "seconds": best, "peak_mb": peak // 1024}))
"""


def measure(mode: str, path: Path, kind: str, repeat: int, tree: Path = ROOT) -> dict[str, float]:
    """One mode in a fresh process (importing the gateway from ``tree``): rows, best CPU seconds, peak RSS in MB."""
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(path), kind, str(repeat)], cwd=tree,
                         capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--before", type=Path, help="another checkout (git worktree) whose streaming readers are "
                        "measured next to this one's, interleaved: before, after, after, before")
    parser.add_argument("--kinds", nargs="*", default=["xlsx", "ods", "xml"], choices=["xlsx", "ods", "xml"])
    args = parser.parse_args()
    with open("/proc/loadavg") as fh:
        print(f"load average before: {' '.join(fh.read().split()[:3])}")
    print("| file | reader | rows | CPU s | rows/s | peak RSS MB | vs bare |")
    print("|---|---|---|---|---|---|---|")
    from bench.bench_ingest import write_xml
    writers = {"xlsx": write_xlsx, "ods": write_ods, "xml": write_xml}
    for kind in args.kinds:
        write = writers[kind]
        path = args.dir / f"bench_sheet_{args.rows}.{kind}"
        if not path.exists():
            started = time.monotonic()
            write(path, args.rows)
            print(f"(wrote {path} in {time.monotonic() - started:.0f} s)", file=sys.stderr)
        bare = measure("bare", path, kind, args.repeat)
        modes = ((("bare", "iterparse bare"), ("stream", "streaming reader")) if kind == "xml" else
                 (("bare", "calamine bare iter_rows"), ("calamine", "calamine reader (text)"),
                  ("stream", "streaming reader")))
        if args.before:
            first, second = measure("stream", path, kind, args.repeat, args.before), measure("stream", path, kind,
                                                                                                args.repeat)
            again, last = measure("stream", path, kind, args.repeat), measure("stream", path, kind, args.repeat,
                                                                             args.before)
            best = {"before": min(first, last, key=lambda m: m["seconds"]),
                    "after": min(second, again, key=lambda m: m["seconds"])}
            modes = modes[:-1] + (("before", "streaming reader, before"), ("after", "streaming reader, after"))
        for mode, label in modes:
            m = bare if mode == "bare" else best[mode] if args.before and mode in ("before", "after") else measure(
                mode, path, kind, args.repeat)
            print(f"| {kind.upper()} {args.rows // 1000}k | {label} | {m['rows']:,} | {m['seconds']:.2f} | "
                  f"{m['rows'] / m['seconds']:,.0f} | {m['peak_mb']} | {bare['seconds'] / m['seconds']:.2f}x |")
    with open("/proc/loadavg") as fh:
        print(f"load average after: {' '.join(fh.read().split()[:3])}")


if __name__ == "__main__":
    main()
