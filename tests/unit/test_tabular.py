"""Mapped CSV, Excel and Parquet exports: read back through their mappings, and drafts of mappings.

The three reshaped exports of a simulated raw export (simulator/reshaped.py: a French hospital's Latin-1 CSV,
a German Excel workbook in the 1904 date system, a centre's typed Parquet files) must each give the raw
tables again through its mapping.
"""

from __future__ import annotations

import re
import tomllib
import zipfile
from pathlib import Path

import polars as pl
import pytest

from research_kit.core.errors import BadInput
from research_kit.ingest.converted import SOURCE_ISSUE, SOURCE_RECORD, Converted
from research_kit.ingest.mapping import VOCABULARY, check_mapping, load_mapping
from research_kit.ingest.tabular import Workbooks, draft_tabular, read_tabular
from research_kit.model.tables import BY_NAME, SOURCE
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.simulator.reshaped import CENTRE, read_raw, write_reshaped

EXPORTS = ("hospital-csv", "workbook", "centre-parquet")
# The coded columns of each export, which --show-values may show (the steward judges them non-identifying).
CODED = {
    "hospital-csv": ["Sexe", "Statut vital", "Frontalier", "Consentement réutilisation", "Accepte d'être contacté",
                     "Statut du diagnostic", "Type de consultation"],
    "workbook": ["Geschlecht", "Vitalstatus", "Grenzgänger", "Einwilligung Weiterverwendung", "Kontakt erlaubt",
                 "Diagnosestatus", "Kontaktart"],
    "centre-parquet": ["sex", "cross_border", "consent_reuse", "contact_ok"],
}  # fmt: skip


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    base = tmp_path_factory.mktemp("reshaped")
    simulate_export(SimulationSpec(patients=300, seed=5, format="csv"), base / "raw")
    return base / "raw", write_reshaped(base / "raw", base / "out")


def read(mapping: Path, tmp_path: Path, source: Path | None = None) -> Converted:
    loaded = load_mapping(mapping)
    return read_tabular(loaded, source or mapping.with_suffix(""), tmp_path / "scratch")


def expected(raw: dict[str, pl.DataFrame], name: str, table: str) -> pl.DataFrame:
    frame = raw[table]
    if name == "centre-parquet" and table == "encounters":  # the centre's own encounters only
        frame = frame.filter(pl.col("centre_code") == CENTRE)
    return frame


@pytest.mark.parametrize("name", EXPORTS)
def test_each_reshaped_export_reads_back_as_the_raw_export(
    exports: tuple[Path, dict[str, Path]], tmp_path: Path, name: str
) -> None:
    raw_folder, mappings = exports
    raw = read_raw(raw_folder)
    assert check_mapping(mappings[name]) == []
    converted = read(mappings[name], tmp_path)
    assert converted.balanced
    assert not converted.refused
    assert converted.records_in == sum(f.height for f in converted.tables.values())
    assert set(converted.tables) == set(raw)
    for table, frame in converted.tables.items():
        want = expected(raw, name, table)
        assert frame.select(want.columns).equals(want), (name, table)
        assert set(frame.columns) <= {*BY_NAME[table].columns, SOURCE_RECORD, SOURCE_ISSUE}
        assert frame.schema == dict.fromkeys(frame.columns, pl.String)
        assert (frame[SOURCE] == name).all()
        assert (frame[SOURCE_ISSUE] == "").all()
        extra = [c for c in frame.columns if c not in want.columns and c not in (SOURCE, SOURCE_RECORD, SOURCE_ISSUE)]
        assert all((frame[c] == "").all() for c in extra)  # e.g. the OMIM column: empty, as the raw export has none
    assert converted.files
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in converted.files.values())
    assert converted.facts["mapping_sha256"] == load_mapping(mappings[name]).sha256


def test_source_records_name_the_file_and_row(exports: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    _, mappings = exports
    patients = read(mappings["centre-parquet"], tmp_path).tables["patients"]
    half = (patients.height + 1) // 2
    assert patients[SOURCE_RECORD][0] == "patients_part1.parquet:1"
    assert patients[SOURCE_RECORD][half] == "patients_part2.parquet:1"
    assert read(mappings["hospital-csv"], tmp_path).tables["diagnoses"][SOURCE_RECORD][4] == "diagnostics.csv:5"


def hand_made(tmp_path: Path, rows: str, mapping: str) -> Converted:
    """A small semicolon CSV export and its mapping, read."""
    source = tmp_path / "src"
    source.mkdir(parents=True)
    (source / "p.csv").write_text(rows, encoding="utf-8")
    path = tmp_path / "m.toml"
    path.write_text('version = 1\n[source]\nname = "h"\nkind = "csv"\n' + mapping, encoding="utf-8")
    return read_tabular(load_mapping(path), source, tmp_path / "scratch")


PATIENTS = """\
[identity]
field = "ID"
[tables.patients]
files = ["p.csv"]
[tables.patients.columns]
sex = "Sexe"
date_of_birth = "Né"
consent_reuse = "Accord"
[tables.patients.dates]
date_of_birth = "%d/%m/%Y"
[tables.patients.values.sex]
M = "male"
F = "female"
[tables.patients.values.consent_reuse]
oui = "yes"
non = "no"
[tables.patients.constants]
country = "LU"
"""


def test_an_unmapped_value_is_passed_on_unchanged_with_its_issue(tmp_path: Path) -> None:
    rows = "ID;Sexe;Né;Accord\n1;M;01/02/2003;oui\n2; F ;31/02/2003;peut-être\n3;X;2003-02-01;\n4;;;non\n"
    frame = hand_made(tmp_path, rows, PATIENTS).tables["patients"]
    assert frame["sex"].to_list() == ["male", "female", "X", ""]
    assert frame["consent_reuse"].to_list() == ["yes", "peut-être", "", "no"]
    assert frame[SOURCE_ISSUE].to_list() == ["", "consent_reuse:unmapped_value", "sex:unmapped_value", ""]
    # A date that does not read with the format is passed on as it was: validation quarantines it.
    assert frame["date_of_birth"].to_list() == ["2003-02-01", "31/02/2003", "2003-02-01", ""]
    assert frame["country"].to_list() == ["LU"] * 4
    assert frame["national_id"].to_list() == ["1", "2", "3", "4"]


def test_registry_identities_codes_and_ragged_rows(tmp_path: Path) -> None:
    mapping = """\
[identity]
field = "Case"
kind = "registry"
[tables.diagnoses]
files = ["p.csv"]
[tables.diagnoses.columns]
status = "Status"
[tables.diagnoses.codes]
Codes = "curie"
Orpha = "ORPHA"
"""
    rows = (
        "Case;Status;Codes;Orpha\n"
        "A1;confirmed;OMIM:154700 | icd-10:q87.4;\n"
        "A2;confirmed;Orphanet:558;\n"
        "registry:A3;suspected;SNOMED:1234;558\n"
        ";suspected;;Orphanet_558\n"
        "A5;confirmed;mondo:0007947;558;extra\n"
    )
    converted = hand_made(tmp_path, rows, mapping)
    frame = converted.tables["diagnoses"]
    assert frame["national_id"].to_list() == ["registry:A1", "registry:A2", "registry:A3", ""]
    assert frame["omim_code"].to_list() == ["OMIM:154700", "", "", ""]
    assert frame["icd10_code"].to_list() == ["Q87.4", "", "", ""]
    assert frame["orpha_code"].to_list() == ["", "ORPHA:558", "ORPHA:558", "ORPHA:558"]
    assert (
        "SNOMED:1234" not in frame.select(["orpha_code", "omim_code", "icd10_code", "icd11_code", "mondo_code"]).rows()
    )
    assert frame[SOURCE_ISSUE].to_list() == ["", "", "diagnoses:unknown_code_system", ""]
    assert [(r.locator, r.reason) for r in converted.refused] == [("p.csv:5", "5 fields where the header has 4")]
    assert (converted.records_in, converted.converted) == (5, 4)


def test_a_missing_column_or_file_names_the_mapping_key(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"p.csv: no column 'Né' \(tables.patients.columns.date_of_birth\)"):
        hand_made(tmp_path / "a", "ID;Sexe;Accord\n1;M;oui\n", PATIENTS)
    with pytest.raises(BadInput, match=r"no file matches 'q.csv' \(tables.patients.files\)"):
        hand_made(tmp_path / "b", "ID\n1\n", PATIENTS.replace('"p.csv"', '"q.csv"'))


# A workbook written by hand (not by openpyxl) in the 1904 date system: serial 0 is 1904-01-01.
def _workbook(path: Path, date1904: bool) -> None:
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    kinds = "application/vnd.openxmlformats-officedocument.spreadsheetml"

    def text(ref: str, value: str) -> str:
        return f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>'

    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{kinds}.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{kinds}.worksheet+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{kinds}.styles+xml"/></Types>'
        ),
        "_rels/.rels": f'<Relationships xmlns="{pkg}"><Relationship Id="rId1" '
        f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<workbook xmlns="{main}" xmlns:r="{rel}"><workbookPr date1904="{int(date1904)}"/>'
        '<sheets><sheet name="Patients" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{pkg}">'
        f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{rel}/styles" Target="styles.xml"/></Relationships>',
        "xl/styles.xml": f'<styleSheet xmlns="{main}"><fonts count="1"><font/></fonts><fills count="1">'
        '<fill><patternFill patternType="none"/></fill></fills><borders count="1"><border/></borders>'
        '<cellStyleXfs count="1"><xf/></cellStyleXfs>'
        '<cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/></cellXfs></styleSheet>',
        "xl/worksheets/sheet1.xml": f'<worksheet xmlns="{main}"><sheetData>'
        f'<row r="1">{text("A1", "ID")}{text("B1", "Birth date")}{text("C1", "First contact")}{text("D1", "Sex")}</row>'
        f'<row r="2">{text("A2", "1980010112345")}<c r="B2" s="1"><v>27759</v></c><c r="C2"><v>40000</v></c>'
        f"{text('D2', 'F')}</row></sheetData></worksheet>",
    }
    with zipfile.ZipFile(path, "w") as book:
        for name, xml in parts.items():
            book.writestr(name, '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + xml)


@pytest.mark.parametrize(
    ("date1904", "born", "seen"), [(True, "1980-01-01", "2013-07-07"), (False, "1975-12-31", "2009-07-06")]
)
def test_excel_dates_are_read_in_the_workbooks_date_system(
    tmp_path: Path, date1904: bool, born: str, seen: str
) -> None:
    source = tmp_path / "book"
    source.mkdir()
    _workbook(source / "registry.xlsx", date1904)
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        'version = 1\n[source]\nname = "x"\nkind = "excel"\n[identity]\nfield = "ID"\n[tables.patients]\n'
        'files = ["*.xlsx"]\nsheet = "Patients"\n[tables.patients.columns]\ndate_of_birth = "Birth date"\n'
        'first_contact_date = "First contact"\n[tables.patients.dates]\ndate_of_birth = "%d.%m.%Y"\n'
        'first_contact_date = "excel"\n',
        encoding="utf-8",
    )
    patients = read_tabular(load_mapping(mapping), source, tmp_path / "scratch").tables["patients"]
    # The date-typed cell is a date whatever the format says; the serial number counts from the workbook's epoch.
    assert patients.row(0, named=True) | {SOURCE_RECORD: ""} == {
        "national_id": "1980010112345", "date_of_birth": born, "first_contact_date": seen, "source": "x",
        SOURCE_RECORD: "", SOURCE_ISSUE: "",
    }  # fmt: skip
    draft = draft_tabular([source])
    assert 'date_of_birth = "excel"  # Excel dates' in draft
    assert "1980010112345" not in draft


def cells_and_headers(folder: Path) -> tuple[set[str], set[str]]:
    """Every distinct value of an export's files (as text), and its file, sheet and column names."""
    values: set[str] = set()
    names = {p.name for p in folder.iterdir()}
    frames: list[pl.DataFrame] = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".csv":
            frames.append(pl.read_csv(path.read_bytes().decode("latin-1").encode(), separator=";", infer_schema=False))
        elif path.suffix == ".parquet":
            frames.append(pl.read_parquet(path).select(pl.all().cast(pl.String)))
        else:
            with Workbooks() as books:
                sheets = books.open(path).sheetnames
                names |= set(sheets)
                frames += [books.sheet(path, sheet, "").frame for sheet in sheets]
    for frame in frames:
        names |= set(frame.columns)
        for column in frame.columns:
            values |= {v.strip() for v in frame[column].drop_nulls().unique().to_list()} - {""}
    return values, names


def printed_values(draft: str, values: set[str], allowed: set[str]) -> set[str]:
    """The cell values a draft shows: quoted anywhere, as a value map's key, or (long ones) anywhere at all."""
    keys = set(re.findall(r"^([^#\s\[][^=]*?) = ", draft, flags=re.MULTILINE))
    quoted = set(re.findall(r'"([^"]*)"', draft)) | {k.strip('"') for k in keys}
    long = {v for v in values if len(v) >= 6 and v in draft and not any(v in name for name in allowed)}
    return ({v for v in values if v in quoted} | long) - allowed


VOCABULARY_VALUES = {v for values in VOCABULARY.values() for v in values} | {"TODO"}


@pytest.mark.parametrize("name", EXPORTS)
def test_a_draft_prints_no_cell_value(exports: tuple[Path, dict[str, Path]], name: str) -> None:
    _, mappings = exports
    folder = mappings[name].with_suffix("")
    draft = draft_tabular([folder])
    values, names = cells_and_headers(folder)
    assert len(values) > 1000
    assert printed_values(draft, values, VOCABULARY_VALUES | names) == set()


def test_show_values_shows_only_the_named_column(exports: tuple[Path, dict[str, Path]]) -> None:
    _, mappings = exports
    folder = mappings["hospital-csv"].with_suffix("")
    draft = draft_tabular([folder], show_values=["Sexe"])
    assert tomllib.loads(draft)["tables"]["patients"]["values"]["sex"] == {"F": "female", "M": "male"}
    values, names = cells_and_headers(folder)
    assert printed_values(draft, values - {"F", "M"}, VOCABULARY_VALUES | names) == set()
    with pytest.raises(BadInput, match="--show-values 'Sex': no such column"):
        draft_tabular([folder], show_values=["Sex"])


@pytest.mark.parametrize("name", EXPORTS)
def test_a_draft_loads_once_its_todos_are_filled(
    exports: tuple[Path, dict[str, Path]], tmp_path: Path, name: str
) -> None:
    raw_folder, mappings = exports
    folder = mappings[name].with_suffix("")
    plain = tmp_path / "plain.toml"
    plain.write_text(draft_tabular([folder]), encoding="utf-8")
    todo = {line.split(":")[0] for line in check_mapping(plain)}
    assert todo
    assert all(".values." in key or key.endswith("centre_code") for key in todo)  # each one a TODO
    drafted = tmp_path / "drafted.toml"
    text = draft_tabular([folder], show_values=CODED[name])
    if name == "centre-parquet":  # the centre's code is in no column: the steward fills it in
        text = text.replace('centre_code = "TODO"', f'centre_code = "{CENTRE}"')
    drafted.write_text(text, encoding="utf-8")
    assert check_mapping(drafted) == []
    converted = read(drafted, tmp_path, folder)
    raw = read_raw(raw_folder)
    for table, frame in converted.tables.items():
        want = expected(raw, name, table)
        columns = [c for c in want.columns if c in frame.columns]
        assert frame.select(columns).equals(want.select(columns)), (name, table)
        assert set(want.columns) - set(columns) <= {"centre_country"}
