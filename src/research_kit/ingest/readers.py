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
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from research_kit.core.errors import BadInput, MissingData
from research_kit.model.tables import TABLES, Table

FORMATS = {".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet", ".xlsx": "excel"}
_BLOCK = 1 << 20
CSV_BLOCK = 4 << 20  # bytes of CSV parsed at once
MMAP_LIMIT = 512 << 20  # a CSV file up to this size is scanned by Polars directly (memory-mapped)


@dataclass(frozen=True)
class Source:
    table: Table
    path: Path
    format: str
    encoding: str  # as found: "utf-8", "utf-8-sig", "latin-1", or "binary" for Parquet/Excel
    frame: pl.LazyFrame  # every schema column as String, plus any extra columns
    extra_columns: tuple[str, ...]


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


def read_source(table: Table, path: Path, scratch: Path) -> Source:
    """Open one table's file lazily, as text, after checking that it is that table."""
    fmt = FORMATS[path.suffix.lower()]
    if fmt == "csv":
        encoding, text_path = _decode_csv(path, scratch)
        frame = _scan_csv(path, text_path)
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
    missing = [c for c in table.columns if c not in columns]
    if missing:
        raise BadInput(f"{path}: not a {table.name} table: missing columns {', '.join(missing)}")
    if frame.head(1).collect().height == 0:
        raise BadInput(f"{path}: no rows")
    extra = tuple(c for c in columns if c not in table.columns)
    return Source(table, path, fmt, encoding, frame, extra)


def _decode_csv(path: Path, scratch: Path) -> tuple[str, Path]:
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
            if any(0x80 <= b <= 0x9F for b in block):
                target.unlink()
                raise BadInput(f"{path}: text in an encoding that is neither UTF-8 nor Latin-1")
            dst.write(block.decode("latin-1"))
    return "latin-1", target


def _scan_csv(path: Path, text_path: Path) -> pl.LazyFrame:
    with text_path.open(encoding="utf-8-sig", newline="") as fh:
        header = fh.readline()
    if not header.strip():
        raise BadInput(f"{path}: empty file")
    separator = ";" if header.count(";") > header.count(",") else ","
    try:
        names = pl.scan_csv(text_path, separator=separator, infer_schema=False, quote_char='"').collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise BadInput(f"{path}: not a readable CSV table ({str(exc).splitlines()[0]})") from None
    if text_path.stat().st_size <= MMAP_LIMIT:
        # Polars' own scan is faster; the pages it maps (counted in RSS) are bounded by the limit.
        return pl.scan_csv(
            text_path, separator=separator, infer_schema=False, missing_utf8_is_empty_string=True, quote_char='"'
        )
    schema = {name: pl.String for name in names}
    return register_io_source(partial(_csv_frames, text_path, separator, schema), schema=schema)


def _csv_frames(
    path: Path,
    separator: str,
    schema: dict[str, type[pl.String]],
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
        frame = pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken workbook
        raise BadInput(f"{path}: not a readable Excel workbook ({type(exc).__name__})") from None
    return pl.from_pandas(frame.astype(str)).lazy()
