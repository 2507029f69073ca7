from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from research_kit.core.errors import BadInput, MissingData
from research_kit.ingest.readers import find_sources, read_source
from research_kit.model.tables import PATIENTS, PHENOTYPES, TABLES

ROW = {c: "" for c in PHENOTYPES.columns} | {"national_id": "1", "hpo_code": "HP:0001250"}


def write_csv(path: Path, rows: list[dict[str, str]], *, sep: str = ",", encoding: str = "utf-8") -> Path:
    frame = pd.DataFrame(rows)
    path.write_bytes(frame.to_csv(index=False, sep=sep).encode(encoding))
    return path


def read(path: Path, tmp_path: Path, table=PHENOTYPES) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    return read_source(table, path, tmp_path / "scratch").frame.collect()


@pytest.mark.parametrize(("sep", "encoding"), [(",", "utf-8"), (";", "utf-8"), (",", "utf-8-sig"), (";", "latin-1")])
def test_csv_in_any_accepted_encoding_and_separator(tmp_path: Path, sep: str, encoding: str) -> None:
    path = write_csv(tmp_path / "phenotypes.csv", [ROW | {"observed_date": "Hôpital Léa"}], sep=sep, encoding=encoding)
    frame = read(path, tmp_path)
    assert frame.columns == list(PHENOTYPES.columns)
    assert frame["observed_date"][0] == "Hôpital Léa"
    assert read_source(PHENOTYPES, path, tmp_path / "s").encoding == encoding


def test_parquet_and_excel(tmp_path: Path) -> None:
    frame = pd.DataFrame([ROW])
    frame.to_parquet(tmp_path / "phenotypes.parquet")
    frame.to_excel(tmp_path / "phenotypes.xlsx", index=False)
    for name in ("phenotypes.parquet", "phenotypes.xlsx"):
        assert read(tmp_path / name, tmp_path)["hpo_code"][0] == "HP:0001250"


def test_extra_columns_are_reported(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "phenotypes.csv", [ROW | {"comment": "free text"}])
    assert read_source(PHENOTYPES, path, tmp_path / "s").extra_columns == ("comment",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"national_id,hpo_code,observed_date\n", "no rows"),
        (b"just some notes\nnothing tabular\n", "not a phenotypes table: missing columns"),
        (b"national_id,hpo_code\n1,HP:0001250\n", "missing columns observed_date"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        ("national_id,hpo_code,observed_date\n1,x,y\n".encode("utf-16"), "UTF-16"),
        (b"national_id,hpo_code,observed_date\n1,\x93quoted\x94,x\n", "neither UTF-8 nor Latin-1"),
    ],
)
def test_a_file_that_is_not_the_table_is_named_with_its_problem(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "phenotypes.csv"
    path.write_bytes(content)
    with pytest.raises(BadInput, match=message) as caught:
        read(path, tmp_path)
    assert str(path) in str(caught.value)


def test_broken_parquet_and_excel_are_named(tmp_path: Path) -> None:
    for name in ("phenotypes.parquet", "phenotypes.xlsx"):
        (tmp_path / name).write_bytes(b"not really")
        with pytest.raises(BadInput, match=name):
            read(tmp_path / name, tmp_path)


def test_sources_are_found_by_table_name(tmp_path: Path) -> None:
    for t in TABLES:
        (tmp_path / f"{t.name}.csv").write_text("x")
    (tmp_path / "faults.json").write_text("{}")
    assert set(find_sources([tmp_path])) == {t.name for t in TABLES}
    assert find_sources([tmp_path / "patients.csv", tmp_path])["patients"].name == "patients.csv"


def test_a_missing_or_doubled_table_is_named(tmp_path: Path) -> None:
    (tmp_path / "patients.csv").write_text("x")
    with pytest.raises(MissingData, match="no file for table diagnoses, encounters, phenotypes"):
        find_sources([tmp_path])
    for t in TABLES:
        (tmp_path / f"{t.name}.csv").write_text("x")
    (tmp_path / "patients.parquet").write_text("x")
    with pytest.raises(BadInput, match="a second file for table patients"):
        find_sources([tmp_path])
    with pytest.raises(MissingData, match="no such file or folder"):
        find_sources([tmp_path / "nowhere"])
    assert PATIENTS.name == "patients"


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_csv_blocks_split_only_between_records(tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CSV read in blocks (no memory map) gives the rows Polars' own reader gives, whatever the block size."""
    from research_kit.ingest import readers

    monkeypatch.setattr(readers, "CSV_BLOCK", block)
    monkeypatch.setattr(readers, "MMAP_LIMIT", 0)  # blocks even for a small file
    text = (
        "\ufeffnational_id;hpo_code;observed_date;comment\r\n"
        '1;HP:0000001;2020-01-01;"a; quoted\nline"\r\n'
        "\r\n"
        '2;HP:0000002;;"say ""hi"""\r\n'
        "3;HP:0000003;2021-02-03;plain\r\n"
    )
    path = tmp_path / "phenotypes.csv"
    path.write_bytes(text.encode("utf-8"))
    got = read(path, tmp_path)
    expected = pl.read_csv(
        text.removeprefix("\ufeff").encode(), separator=";", infer_schema=False, missing_utf8_is_empty_string=True
    )
    assert got.select(expected.columns).to_dicts() == expected.to_dicts()
    assert got.height == 4  # the blank line is a row of empty values, as Polars reads it


@pytest.mark.parametrize(
    "text",
    [
        'a,b,c\n1,2,3\n4,5\n6,7,8,9\n"x,q",1,2\n\n10,11,12\n"u""v",1\n"m\nl,",2,3\r\n9,9',
        'a,b,c\n1,O"Neil,A"b,Paris\nO"Jer,O"Ber,3\n1,2,3\n',  # a quote inside a value opens nothing
        "\ufeffa;b;c\r\n1;2;3\r\n1;2\r\n\r\n4;5;6;7",
        "a,b,c\n1,2,3",
    ],
)
def test_ragged_rows_are_the_rows_a_csv_reader_finds_with_another_width(tmp_path: Path, text: str) -> None:
    import csv
    import io

    from research_kit.ingest.readers import ragged_rows

    separator = ";" if ";" in text.splitlines()[0] else ","
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8", newline="")
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), delimiter=separator)
    next(reader)
    expected = {row: len(r) for row, r in enumerate(reader, start=1) if r and len(r) != 3}
    assert ragged_rows(path, separator, 3) == expected


def test_a_csv_whose_quoting_cannot_be_parsed_is_refused_without_quoting_its_values(tmp_path: Path) -> None:
    from research_kit.ingest.readers import read_source, reading

    header = ",".join(PATIENTS.columns)
    row = ",".join(["1932020311115"] + ["x"] * (len(PATIENTS.columns) - 1))
    text = f'{header}\n{row}\n"{row}\n{row}\n'  # a quote opened before an ID and never closed
    (tmp_path / "x.csv").write_text(text, encoding="utf-8")
    source = read_source(PATIENTS, tmp_path / "x.csv", tmp_path / "scratch")
    with pytest.raises(BadInput) as refused, reading(source.path):
        source.frame.collect()
    assert "1932020311115" not in str(refused.value)
    assert "x.csv: not readable as CSV" in str(refused.value)


@pytest.mark.parametrize(
    ("cell", "formula"),
    [("=1+1", True), ("@SUM(A1)", True), ("-1+cmd|' /C calc'!A0", True), ("+1+cmd", True), ("\t=cmd", True),
     ("\uff1d1", True), ("-", False), ("--", False), ("+/-", False), ("-5", False), ("-.5", False),
     ("+352 691 123 456", False), ("HP:0001250", False), ("ORPHA:558", False), ("2020-01-01", False)],
)  # fmt: skip
def test_formula_like_cells_are_what_a_spreadsheet_would_run(cell: str, formula: bool) -> None:
    from research_kit.ingest.validate import _formula_like

    frame = pl.DataFrame({"v": [cell]})
    assert frame.select(_formula_like(pl.col("v"))).item() is formula
