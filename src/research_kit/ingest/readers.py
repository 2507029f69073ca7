"""Reading a raw export: find each table's file, read it as text, check it is the expected table.

Accepted: CSV (UTF-8, UTF-8 with BOM or Latin-1; comma or semicolon),
Parquet and Excel (.xlsx). Every value is read as text; validation decides
what it means. A file that cannot be read as its table (not a table, empty,
missing columns, an encoding that cannot be decoded) is a
:class:`~research_kit.core.errors.BadInput` naming the file and the problem.
Latin-1 files are transcoded to UTF-8 into ``scratch`` (inside the
workspace) before Polars reads them lazily.

A CSV file larger than :data:`MMAP_LIMIT` is read in blocks of
:data:`CSV_BLOCK` bytes, each parsed by Polars, rather than scanned by Polars
directly: Polars memory-maps the file it scans, and every page of it read
stays resident until the scan ends (GBs for a large export). Blocks keep
resident memory to a few of them. Smaller files are scanned directly, which
is faster.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
from polars.io.plugins import register_io_source

from research_kit.core.errors import BadInput, MissingData
from research_kit.model.tables import TABLES, Table

FORMATS = {".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet", ".xlsx": "excel"}
_BLOCK = 1 << 20
_C1_CONTROLS = re.compile(rb"[\x80-\x9f]")  # what Latin-1 would decode into control characters
CSV_BLOCK = 4 << 20  # bytes of CSV parsed at once
MMAP_LIMIT = 512 << 20  # a CSV file up to this size is scanned by Polars directly (memory-mapped)


@dataclass(frozen=True)
class Layout:
    """A CSV file as Polars reads it: its UTF-8 text (the file itself, or a transcoded copy), separator, header."""

    text_path: Path
    separator: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    table: Table
    path: Path
    format: str
    encoding: str  # as found: "utf-8", "utf-8-sig", "latin-1", or "binary" for Parquet/Excel
    frame: pl.LazyFrame  # every schema column as String, plus any extra columns (a longer row: cut, see below)
    extra_columns: tuple[str, ...]
    layout: Layout | None = None  # a CSV's
    absent: tuple[str, ...] = ()  # optional columns the file leaves out: read as empty

    def strict_frame(self) -> pl.LazyFrame:
        """The frame, read so that a row with more fields than the header stops it (:class:`MoreFields`)."""
        return self.frame if self.layout is None else with_absent(_csv_frame(self.layout, truncate=False), self.absent)

    def count_ragged(self) -> dict[int, int]:
        """Rows (from 1) whose number of fields is not the header's (a pass over the file); none for Parquet."""
        if self.layout is None:
            return {}
        return ragged_rows(self.layout.text_path, self.layout.separator, len(self.layout.names))


class MoreFields(Exception):
    """A strictly read CSV met a row with more fields than its header: read it again, counting its rows."""


def fingerprint(source: Source) -> tuple[str, bool]:
    """The file's SHA-256 and whether its rows may all have the header's number of fields, in one pass.

    They may when the file holds no quote (lines are then records) and as many separators as its lines need:
    then a line has fewer fields only if another has more, which the strict read refuses. (A blank line has
    fewer: the counts then disagree.) Otherwise the ingest counts each row's fields (:func:`ragged_rows`, a
    second pass).
    """
    digest = hashlib.sha256()
    layout = source.layout
    sep = layout.separator.encode() if layout else b","
    seps, newlines, last, plain = 0, 0, b"\n", layout is not None
    with source.path.open("rb") as fh:
        while chunk := fh.read(CSV_BLOCK):
            digest.update(chunk)
            if plain:
                plain = b'"' not in chunk
                seps += chunk.count(sep)
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
    if layout is None:
        return digest.hexdigest(), True
    lines = newlines + (last != b"\n")  # a last line without its newline
    return digest.hexdigest(), plain and seps == lines * (len(layout.names) - 1)


def find_sources(paths: list[Path]) -> dict[str, Path]:
    """Each table's file among ``paths`` (folders and files), by file name: patients.csv, diagnoses.parquet..."""
    found: dict[str, Path] = {}
    names = {t.name for t in TABLES}
    candidates: list[Path] = []
    for path in paths:
        if path.is_dir():
            candidates += sorted(p for p in path.iterdir() if p.is_file())
        elif path.is_file():
            candidates.append(path)
        else:
            raise MissingData(f"{path}: no such file or folder")
    for path in candidates:
        stem, ext = path.stem.lower(), path.suffix.lower()
        if stem in names and ext in FORMATS:
            if stem in found and found[stem].resolve() == path.resolve():
                continue  # named twice: as a file and through its folder
            if stem in found:
                raise BadInput(f"{path}: a second file for table {stem} (the first is {found[stem]})")
            found[stem] = path
    missing = [n for n in names if n not in found]
    if missing:
        where = ", ".join(str(p) for p in paths)
        raise MissingData(f"{where}: no file for table {', '.join(sorted(missing))} (expected e.g. {missing[0]}.csv)")
    return found


def read_source(table: Table, path: Path, scratch: Path, *, allow_empty: bool = False) -> Source:
    """Open one table's file lazily, as text, after checking that it is that table (with rows, unless
    ``allow_empty``: a child table of one of several sources may have none)."""
    fmt = FORMATS[path.suffix.lower()]
    layout: Layout | None = None
    if fmt == "csv":
        encoding, text_path = decode_csv(path, scratch)
        frame, layout = scan_csv(path, text_path)
    elif fmt == "parquet":
        encoding = "binary"
        try:
            frame = pl.scan_parquet(path)
            schema = frame.collect_schema()
        except Exception as exc:  # noqa: BLE001 - any reader failure means "not a Parquet table"
            raise BadInput(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
        frame = frame.select(pl.col(name).cast(pl.String) for name in schema.names())
    else:
        encoding = "binary"
        frame = _read_excel(path)
    columns = frame.collect_schema().names()
    missing = [c for c in table.required if c not in columns]
    if missing:
        raise BadInput(f"{path}: not a {table.name} table: missing columns {', '.join(missing)}")
    if not allow_empty and frame.head(1).collect().height == 0:
        raise BadInput(f"{path}: no rows")
    extra = tuple(c for c in columns if c not in table.columns)
    absent = tuple(c for c in table.optional if c not in columns)
    return Source(table, path, fmt, encoding, with_absent(frame, absent), extra, layout, absent)


def converted_source(table: Table, path: Path) -> Source:
    """A raw table a source reader made (Parquet of text, every column of the table; it may have no rows)."""
    frame = pl.scan_parquet(path)
    columns = frame.collect_schema().names()
    extra = tuple(c for c in columns if c not in table.columns)
    return Source(table, path, "parquet", "binary", frame, extra)


def with_absent(frame: pl.LazyFrame, absent: tuple[str, ...]) -> pl.LazyFrame:
    """``frame`` with each optional column it lacks, empty."""
    return frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in absent) if absent else frame


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Read ``path``'s rows inside: a file Polars cannot parse (a quote never closed, a stray quote inside an
    unquoted field) is refused in one line naming it, before anything is registered."""
    try:
        yield
    except pl.exceptions.ComputeError as exc:  # its text quotes the field, which may be a patient's identifier
        if "more fields" in str(exc):
            raise MoreFields(str(path)) from None
        raise BadInput(
            f"{path}: not readable as CSV (a quote never closed, or a stray quote inside a field): fix the export"
        ) from None


def check_header(path: Path, names: list[str]) -> None:
    """Refuse a header with a column without a name, or a name given twice (which would hide one column)."""
    seen: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if not name.strip():
            raise BadInput(f"{path}: column {number} of the header has no name")
        key = name.strip()
        if key in seen:
            raise BadInput(f"{path}: the header names column {key!r} twice (columns {seen[key]} and {number})")
        seen[key] = number


def decode_csv(path: Path, scratch: Path) -> tuple[str, Path]:
    """Find the encoding by decoding the whole file; Latin-1 files are transcoded to UTF-8 in ``scratch``."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise BadInput(f"{path}: UTF-16 text; save it as UTF-8 or Latin-1")
    encoding = "utf-8-sig" if head[:3] == codecs.BOM_UTF8 else "utf-8"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as fh:
            while block := fh.read(_BLOCK):
                if b"\x00" in block:
                    raise BadInput(f"{path}: not a text table (it holds binary data)")
                if block.isascii() and not decoder.getstate()[0]:
                    continue  # ASCII is UTF-8, and no multi-byte character is pending
                decoder.decode(block)
            decoder.decode(b"", final=True)
        return encoding, path
    except UnicodeDecodeError:
        pass
    # Not UTF-8. Latin-1 decodes any byte, so refuse what it would turn into control characters.
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = scratch / f"{path.stem}.utf8.csv"
    with path.open("rb") as src, target.open("w", encoding="utf-8", newline="") as dst:
        while block := src.read(_BLOCK):
            if _C1_CONTROLS.search(block):
                target.unlink()
                raise BadInput(f"{path}: text in an encoding that is neither UTF-8 nor Latin-1")
            dst.write(block.decode("latin-1"))
    return "latin-1", target


def scan_csv(path: Path, text_path: Path) -> tuple[pl.LazyFrame, Layout]:
    """The table, lazily (a row with more fields than the header loses the rest: the ingest counts such rows
    and quarantines them), and its layout. A bad header is refused."""
    with text_path.open(encoding="utf-8-sig", newline="") as fh:
        header = fh.readline()
    if not header.strip():
        raise BadInput(f"{path}: empty file")
    separator = ";" if header.count(";") > header.count(",") else ","
    try:
        names = next(csv.reader([header], delimiter=separator, quotechar='"'))
    except csv.Error as exc:
        raise BadInput(f"{path}: the header is not readable CSV ({exc})") from None
    check_header(path, names)
    layout = Layout(text_path, separator, tuple(names))
    try:
        pl.scan_csv(text_path, infer_schema=False, separator=separator, quote_char='"').collect_schema()
    except pl.exceptions.PolarsError:  # its text may quote a value (an identifier): name the file only
        raise BadInput(f"{path}: not a readable CSV table") from None
    return _csv_frame(layout, truncate=True), layout


def _csv_frame(layout: Layout, *, truncate: bool) -> pl.LazyFrame:
    """The CSV as a lazy frame of text; ``truncate``: a row with more fields loses the rest, else it stops."""
    if layout.text_path.stat().st_size <= MMAP_LIMIT:
        # Polars' own scan is faster; the pages it maps (counted in RSS) are bounded by the limit.
        return pl.scan_csv(
            layout.text_path,
            separator=layout.separator,
            quote_char='"',
            infer_schema=False,
            missing_utf8_is_empty_string=True,
            truncate_ragged_lines=truncate,
        )
    schema = {name: pl.String for name in layout.names}
    frames = partial(_csv_frames, layout.text_path, layout.separator, schema, truncate)
    return register_io_source(frames, schema=schema)


def ragged_rows(path: Path, separator: str, width: int) -> dict[int, int]:
    """Rows (numbered from 1 after the header) whose number of fields is not the header's ``width``.

    Counted with NumPy over the bytes, a block at a time, where no value is quoted (the usual export): a
    record ends at a newline and has one field more than it has separators. A file with a quote anywhere is
    counted by Python's csv module instead, which reads quotes as Polars does (a quote opens a value only at
    its start). A blank line is a row of empty values (as the table reader reads it), never ragged.
    """
    found: dict[int, int] = {}
    row, first, pending = 0, True, b""
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(CSV_BLOCK)
            if b'"' in chunk:
                return _ragged_rows_by_csv(path, separator, width)
            data = pending + chunk
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            block, pending = data[:cut], data[cut:]
            if block:
                fields, blank = _fields_per_record(block, ord(separator))
                if first:
                    fields, blank, first = fields[1:], blank[1:], False  # the header
                bad = np.flatnonzero((fields != width) & ~blank)
                found.update(zip((bad + row + 1).tolist(), fields[bad].tolist(), strict=True))
                row += len(fields)
            if not chunk:
                return found


def _ragged_rows_by_csv(path: Path, separator: str, width: int) -> dict[int, int]:
    found: dict[int, int] = {}
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=separator, quotechar='"')
        try:
            next(reader, None)
            for row, record in enumerate(reader, start=1):
                if record and len(record) != width:
                    found[row] = len(record)
        except csv.Error:
            raise BadInput(f"{path}: not readable as CSV (near row {reader.line_num}): fix the export") from None
    return found


def _fields_per_record(block: bytes, separator: int) -> tuple[np.ndarray, np.ndarray]:
    """Each record's number of fields, and whether it is blank, for whole lines with no quote in them."""
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    if not len(ends) or ends[-1] != len(data) - 1:
        ends = np.append(ends, len(data))  # the last record, without a final newline
    starts = np.concatenate(([0], ends[:-1] + 1))
    seps = np.flatnonzero(data == separator)
    fields = np.searchsorted(seps, ends) - np.searchsorted(seps, starts) + 1
    length = ends - starts
    carriage = (length == 1) & (data[np.minimum(starts, len(data) - 1)] == ord("\r"))
    return fields, (length == 0) | carriage


def _csv_frames(
    path: Path,
    separator: str,
    schema: dict[str, type[pl.String]],
    truncate: bool,
    with_columns: list[str] | None,
    predicate: pl.Expr | None,
    n_rows: int | None,
    _batch_size: int | None,
) -> Iterator[pl.DataFrame]:
    """The rows of a CSV file as frames, one per block (the io-source protocol of :func:`register_io_source`)."""
    left = n_rows
    for first, block in _csv_blocks(path, CSV_BLOCK):
        frame = pl.read_csv(
            block,
            has_header=first,  # the header is the first block's first record
            separator=separator,
            schema=schema,
            missing_utf8_is_empty_string=True,
            quote_char='"',
            raise_if_empty=False,
            truncate_ragged_lines=truncate,  # ragged rows are counted apart (ragged_rows) and quarantined
        )
        if with_columns is not None:
            frame = frame.select(with_columns)
        if predicate is not None:
            frame = frame.filter(predicate)
        if left is not None:
            frame = frame.head(left)
            left -= frame.height
        yield frame
        if left == 0:
            return


def _csv_blocks(path: Path, size: int) -> Iterator[tuple[bool, bytes]]:
    """The file in blocks of about ``size`` bytes, each ending where a record ends; True for the first.

    A newline ends a record when an even number of quote characters precedes it
    (one inside a quoted value does not). A block never ends just before a blank
    line: parsed as a block's first line, Polars would skip it, where parsed in
    the middle of the file it is a row (of empty values).
    """
    first = True
    pending = b""
    with path.open("rb") as fh:
        while block := fh.read(size):
            data = pending + block
            cut = _record_end(data)
            if cut == 0:
                pending = data  # no record ends in it yet: read on
                continue
            yield first, data[:cut]
            first, pending = False, data[cut:]
    if pending or first:
        yield first, pending


def _record_end(data: bytes) -> int:
    """Just after the last newline of ``data`` that ends a record and is not followed by a blank line; 0 if none."""
    quotes = data.count(b'"') if b'"' in data else 0  # most exports quote nothing
    end = len(data)
    newline = data.rfind(b"\n", 0, end - 2)  # the two bytes after a newline tell whether a blank line follows
    while newline >= 0:
        if quotes:
            quotes -= data.count(b'"', newline, end)
        if quotes % 2 == 0 and not data.startswith((b"\n", b"\r\n"), newline + 1):
            return newline + 1
        end = newline
        newline = data.rfind(b"\n", 0, end)
    return 0


def _read_excel(path: Path) -> pl.LazyFrame:
    import pandas as pd

    try:
        header = pd.read_excel(path, dtype=str, header=None, nrows=1, keep_default_na=False, engine="openpyxl")
        frame = pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken workbook
        raise BadInput(f"{path}: not a readable Excel workbook ({type(exc).__name__})") from None
    check_header(path, [str(v) for v in header.iloc[0].tolist()] if len(header) else [])
    return pl.from_pandas(frame.astype(str)).lazy()
