"""Mapped CSV, Excel and Parquet exports read into the registry's raw tables, and drafts of their mappings.

:func:`read_tabular` reads each table of a :class:`~research_kit.ingest.mapping.Mapping`
from every file its globs match (CSV in UTF-8, UTF-8 with BOM or Latin-1,
``,`` or ``;``, decoded as :mod:`research_kit.ingest.readers` decodes it; an
Excel workbook's sheet through openpyxl; Parquet), every value as text, and:

- renames the source columns to the model's, adds the constants and
  ``source`` (the mapping's name); the identity column becomes
  ``national_id`` (``registry:<id>`` for a registry identity);
- turns dates into ISO ``YYYY-MM-DD`` with the column's format, or Excel
  serial days in the workbook's own date system (1900 or 1904); an Excel
  cell typed as a date is a date whatever the format says. A value that does
  not parse is passed on unchanged, for validation to quarantine;
- applies value maps; a non-empty value the map does not cover is passed on
  unchanged and its row gets ``source_issue`` ``<column>:unmapped_value``
  (never a default). Empty values stay empty;
- writes code columns in the model's spelling, one column per system; a
  ``curie`` column's codes go to their systems' columns by prefix (several
  per cell, ``;``, ``,`` or ``|`` between them); a code of an unknown system
  goes to no column and its row gets ``diagnoses:unknown_code_system``;
- says where each row came from: ``source_record`` = ``<file>:<row>``, the
  row numbered from 1 after the header.

A CSV row with more or fewer fields than its header is refused (a
:class:`~research_kit.ingest.converted.Refused` naming its file and row).
Everything is one Polars plan per table; the only Python loops run over
distinct code values, and over an Excel sheet's cells (openpyxl reads
cell by cell).

:func:`draft_tabular` proposes a mapping from the headers and the shapes of
the values (see its docstring); it prints no cell value unless asked.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
import unicodedata
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import polars as pl

from research_kit.core.checksums import file_sha256
from research_kit.core.errors import BadInput, MissingData, quoted
from research_kit.ingest import readers
from research_kit.ingest.converted import SOURCE_ISSUE, SOURCE_RECORD, Converted, Refused
from research_kit.ingest.mapping import (
    CURIE,
    DATE_COLUMNS,
    EXCEL_DATES,
    TABULAR_KINDS,
    TODO,
    VOCABULARY,
    Mapping,
    TableMapping,
    has_time,
)
from research_kit.model.disease_codes import PREFIXES, SYSTEMS, DiseaseCode, read_code
from research_kit.model.tables import BY_NAME, CODE_COLUMNS, REGISTRY_PREFIX, SOURCE

ROW = "__row"
ISSUE = "__issue"  # working columns of each row's issues, joined into source_issue at the end
CODE = "__code"  # working columns of the code columns' source values
WINDOWS_EPOCH = date(1899, 12, 30)  # Excel's 1900 date system (day 60 is the 29 February 1900 Lotus made up)
LAST_SERIAL = 2_958_465  # 9999-12-31 in the 1900 system
CODE_SEPARATORS = re.compile(r"[;,|]")
CURIE_SYSTEMS = ("ORPHA", "OMIM", "MONDO")  # written as CURIEs in the raw tables; ICD codes bare


@dataclass
class _File:
    """One file (or sheet) opened as text: its frame with ROW, its columns, its date system."""

    path: Path
    locator: str  # as source_record names it
    frame: pl.LazyFrame
    names: dict[str, str]  # column name, trimmed -> the frame's column
    epoch: date = WINDOWS_EPOCH
    refused: list[Refused] = field(default_factory=list)
    dated: frozenset[str] = frozenset()  # an Excel sheet's columns with cells typed as dates

    def column(self, name: str, key: str) -> pl.Expr:
        found = self.names.get(name.strip())
        if found is None:
            raise BadInput(f"{self.path}: no column {quoted(name)!r} ({key})")
        return pl.col(found)


def read_tabular(mapping: Mapping, source: Path, scratch: Path) -> Converted:
    """Read a CSV, Excel or Parquet export (a folder, or one file) through its mapping (module docstring).

    Latin-1 CSV files are transcoded into ``scratch`` first. A table absent from the mapping gives no frame.
    """
    if mapping.kind not in TABULAR_KINDS:
        raise BadInput(f"{mapping.path or mapping.name}: a {mapping.kind} mapping does not read tabular files")
    if not source.exists():
        raise MissingData(f"{source}: no such file or folder")
    folder = source if source.is_dir() else source.parent
    tables: dict[str, pl.DataFrame] = {}
    files: dict[str, str] = {}
    refused: list[Refused] = []
    with Workbooks() as books:
        for name, spec in mapping.tables.items():
            parts = []
            for path in matched_files(spec, source, f"tables.{name}.files"):
                locator = path.relative_to(folder).as_posix()
                files.setdefault(locator, file_sha256(path))
                opened = _open(mapping.kind, path, locator, spec, name, scratch / str(len(files)), books)
                refused += opened.refused
                parts.append(_shape(mapping, name, spec, opened))
            frame = _codes(pl.concat(parts, how="vertical"), name, spec)
            tables[name] = _finish(frame, name).collect()
    converted = sum(frame.height for frame in tables.values())
    return Converted(
        name=mapping.name,
        kind=mapping.kind,
        tables=tables,
        records_in=converted + len(refused),
        converted=converted,
        refused=refused,
        files=files,
        facts={"mapping_sha256": mapping.sha256} if mapping.sha256 else {},
    )


def matched_files(spec: TableMapping, source: Path, key: str) -> list[Path]:
    """The files a table's globs match, in the order given (each glob's matches sorted), each once."""
    found: list[Path] = []
    for pattern in spec.files:
        if source.is_dir():
            matches = sorted(p for p in source.glob(pattern) if p.is_file())
        else:
            matches = [source] if fnmatch(source.name, pattern) else []
        if not matches:
            raise BadInput(f"{source}: no file matches {quoted(pattern)!r} ({key})")
        found += [p for p in matches if p not in found]
    return found


def _open(
    kind: str, path: Path, locator: str, spec: TableMapping, table: str, scratch: Path, books: Workbooks
) -> _File:
    if kind == "csv":
        return _open_csv(path, locator, scratch)
    if kind == "parquet":
        return _open_parquet(path, locator)
    sheet = books.sheet(path, spec.sheet, f"tables.{table}.sheet")
    frame = sheet.frame.lazy().with_row_index(ROW, offset=1)
    return _File(path, locator, frame, _names(sheet.frame.columns), sheet.epoch, dated=sheet.dated)


def _names(columns: list[str]) -> dict[str, str]:
    return {name.strip(): name for name in columns if name != ROW}


def _open_csv(path: Path, locator: str, scratch: Path) -> _File:
    _, text_path = readers.decode_csv(path, scratch)
    frame, layout = readers.scan_csv(path, text_path)
    width = len(layout.names)
    ragged = readers.ragged_rows(layout.text_path, layout.separator, width)
    frame = frame.with_row_index(ROW, offset=1)
    if ragged:
        frame = frame.filter(~pl.col(ROW).is_in(list(ragged)))
    refused = [Refused(f"{locator}:{row}", f"{n} fields where the header has {width}") for row, n in ragged.items()]
    return _File(path, locator, frame, _names(frame.collect_schema().names()), refused=refused)


def _open_parquet(path: Path, locator: str) -> _File:
    try:
        frame = pl.scan_parquet(path)
        schema = frame.collect_schema()
    except Exception as exc:  # noqa: BLE001 - any reader failure means "not a Parquet table"
        raise BadInput(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
    texts = [_as_text(pl.col(name), dtype).alias(name) for name, dtype in schema.items() if not dtype.is_nested()]
    frame = frame.select(texts).with_row_index(ROW, offset=1)
    return _File(path, locator, frame, _names(frame.collect_schema().names()))


def _as_text(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A typed Parquet column as the text an export would hold: dates ISO, whole floats without ``.0``."""
    if dtype == pl.String:
        return column
    if dtype == pl.Date:
        return column.dt.to_string("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime):
        midnight = column.dt.time() == time(0)
        day, moment = column.dt.to_string("%Y-%m-%d"), column.dt.to_string("%Y-%m-%dT%H:%M:%S")
        return pl.when(midnight).then(day).otherwise(moment)
    if dtype.is_float():
        whole = (column == column.round(0)) & (column.abs() < 2**53)
        return pl.when(whole).then(column.cast(pl.Int64).cast(pl.String)).otherwise(column.cast(pl.String))
    return column.cast(pl.String)


class Workbooks:
    """Excel workbooks opened once for all their sheets (openpyxl reads a whole workbook's layout on opening)."""

    def __init__(self) -> None:
        self.books: dict[Path, Any] = {}

    def __enter__(self) -> Workbooks:
        return self

    def __exit__(self, *_: object) -> None:
        for book in self.books.values():
            book.close()
        self.books.clear()

    def open(self, path: Path) -> Any:
        if path not in self.books:
            from openpyxl import load_workbook  # type: ignore[import-untyped]  # no stubs; loaded only for Excel

            try:
                with warnings.catch_warnings():
                    # openpyxl warns about what it does not keep (styles, data validation): values are all we read.
                    warnings.simplefilter("ignore", UserWarning)
                    self.books[path] = load_workbook(path, read_only=True, data_only=True)
            except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken workbook
                raise BadInput(f"{path}: not a readable Excel workbook ({type(exc).__name__})") from None
        return self.books[path]

    def sheet(self, path: Path, sheet: str | None, key: str) -> Sheet:
        """A sheet (default: the first) as text columns, with the workbook's date system.

        A cell typed as a date becomes an ISO date (openpyxl reads it in the workbook's date system, 1900 or
        1904); a whole number loses its ``.0``; an empty cell is empty text. Trailing empty rows are dropped.
        """
        book = self.open(path)
        if sheet is not None and sheet not in book.sheetnames:
            raise BadInput(f"{path}: no sheet {quoted(sheet)!r} ({key}; it has {', '.join(book.sheetnames)})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            rows = (book[sheet] if sheet is not None else book.worksheets[0]).iter_rows(values_only=True)
            header = [("" if v is None else str(v)).strip() for v in next(rows, ())]
            data = list(rows)
        while header and not header[-1]:
            header.pop()
        readers.check_header(path, header)
        while data and all(v is None or v == "" for v in data[-1]):
            data.pop()
        width = len(header)
        cells = list(zip(*(tuple(row[:width]) + (None,) * (width - len(row)) for row in data), strict=True))
        columns = {name: [_cell_text(v) for v in cells[i]] if cells else [] for i, name in enumerate(header)}
        dated = frozenset(name for i, name in enumerate(header) if cells and any(isinstance(v, date) for v in cells[i]))
        return Sheet(pl.DataFrame(columns, schema=dict.fromkeys(header, pl.String)), book.epoch.date(), dated)


@dataclass(frozen=True)
class Sheet:
    """An Excel sheet read as text: its frame, its workbook's epoch (serial day 0), the columns with date cells."""

    frame: pl.DataFrame
    epoch: date
    dated: frozenset[str]


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(timespec="seconds")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def _shape(mapping: Mapping, table: str, spec: TableMapping, opened: _File) -> pl.LazyFrame:
    """One file's rows as the table's model columns, working code and issue columns, and source_record."""
    key = f"tables.{table}.columns"
    if "national_id" in spec.columns:
        identity = opened.column(spec.columns["national_id"], f"{key}.national_id")
    else:
        identity = opened.column(mapping.identity_field, "identity.field")
    if mapping.identity_kind == "registry":
        identity = identity.str.strip_chars()  # trimmed first: " P1" and "P1" are one person
        given = identity.fill_null("") != ""
        prefixed = identity.str.starts_with(REGISTRY_PREFIX)
        identity = pl.when(given & ~prefixed).then(pl.lit(REGISTRY_PREFIX) + identity).otherwise(identity)
    columns = [identity.alias("national_id")]
    issues: list[pl.Expr] = []
    for model, name in spec.columns.items():
        if model == "national_id":
            continue
        value = opened.column(name, f"{key}.{model}")
        if model in spec.dates:
            value = _date(value, spec.dates[model], opened.epoch)
        if model in spec.values:
            value, issue = _value_map(value, spec.values[model], model)
            issues.append(issue.alias(f"{ISSUE}{len(issues)}"))
        columns.append(value.alias(model))
    columns += [pl.lit(value, pl.String).alias(model) for model, value in spec.constants.items()]
    codes = [
        opened.column(name, f"tables.{table}.codes.{name}").alias(f"{CODE}{i}") for i, name in enumerate(spec.codes)
    ]
    record = pl.format("{}:{}", pl.lit(opened.locator), pl.col(ROW)).alias(SOURCE_RECORD)
    return opened.frame.select(*columns, *codes, *issues, pl.lit(mapping.name).alias(SOURCE), record)


def _date(value: pl.Expr, fmt: str, epoch: date) -> pl.Expr:
    """ISO dates from ``fmt`` (or Excel serial days from ``epoch``); a value that does not parse stays as it was."""
    given = value.str.strip_chars()
    parsed: pl.Expr
    if fmt == EXCEL_DATES:
        serial = given.cast(pl.Float64, strict=False)
        lotus = pl.when(serial < 60).then(1 if epoch == WINDOWS_EPOCH else 0).otherwise(0)
        days = serial.floor().cast(pl.Int64) + lotus
        counted = pl.when(serial.is_between(0, LAST_SERIAL)).then(pl.lit(epoch) + pl.duration(days=days))
        # A cell typed as a datetime with a time of day (a date cell is already ISO and stays as it is).
        parsed = pl.coalesce(counted, given.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False).dt.date())
    elif has_time(fmt):
        parsed = given.str.to_datetime(fmt, strict=False).dt.date()
    else:
        parsed = given.str.to_date(fmt, strict=False)
    return pl.coalesce(parsed.dt.to_string("%Y-%m-%d"), value)


def _value_map(value: pl.Expr, value_map: dict[str, str], model: str) -> tuple[pl.Expr, pl.Expr]:
    """The mapped value (unchanged when the map does not cover it) and the row's issue when it did not."""
    given = value.fill_null("").str.strip_chars()
    mapped = given.replace_strict(list(value_map), list(value_map.values()), default=None, return_dtype=pl.String)
    issue = pl.when(mapped.is_null() & (given != "")).then(pl.lit(f"{model}:unmapped_value"))
    return pl.coalesce(mapped, value), issue


def _codes(frame: pl.LazyFrame, table: str, spec: TableMapping) -> pl.LazyFrame:
    """The code columns' values, read once per distinct value, in the model's columns and spelling."""
    if not spec.codes:
        return frame
    names = [f"{CODE}{i}" for i in range(len(spec.codes))]
    distinct = frame.select(pl.col(n).drop_nulls().unique().implode() for n in names).collect()
    candidates: dict[str, list[pl.Expr]] = {}
    unknown: list[pl.Expr] = []
    for name, system in zip(names, spec.codes.values(), strict=True):
        values = [v for v in distinct[name][0].to_list() if v.strip()]
        column = pl.when(pl.col(name).str.strip_chars() != "").then(pl.col(name))
        if system != CURIE:
            spelled = {v: _spelled(found) for v in values if isinstance(found := read_code(v, system), DiseaseCode)}
            candidates.setdefault(CODE_COLUMNS[system], []).append(column.replace(spelled))
            continue
        cells = {v: _curie_cell(v) for v in values}
        for each in SYSTEMS:
            keys = [v for v, (codes, _) in cells.items() if each in codes]
            spellings = [cells[k][0][each] for k in keys]
            code = column.replace_strict(keys, spellings, default=None, return_dtype=pl.String)
            candidates.setdefault(CODE_COLUMNS[each], []).append(code)
        unknown.append(pl.col(name).is_in([v for v, (_, bad) in cells.items() if bad]))
    # Two code columns of one system: their distinct codes joined, so that validation refuses two codes in one
    # cell rather than one being dropped unseen.
    out = [_joined(exprs).alias(column) for column, exprs in candidates.items()]
    if unknown:
        issue = pl.when(pl.any_horizontal(unknown)).then(pl.lit(f"{table}:unknown_code_system"))
        out.append(issue.alias(f"{ISSUE}_codes"))
    return frame.with_columns(out).drop(names)


def _joined(exprs: list[pl.Expr]) -> pl.Expr:
    if len(exprs) == 1:
        return exprs[0]
    found = pl.concat_list(exprs).list.drop_nulls().list.unique(maintain_order=True)
    return pl.when(found.list.len() > 0).then(found.list.join(";"))


def _spelled(code: DiseaseCode) -> str:
    return code.curie if code.system in CURIE_SYSTEMS else code.code


def _curie_cell(text: str) -> tuple[dict[str, str], bool]:
    """A cell of CURIEs: each system's code in the model's spelling, and whether one had an unknown system.

    A malformed code of a known system goes to that system's column as given (validation says why); two
    codes of one system are both kept, ``;``-joined, so that validation refuses the cell rather than one being
    dropped unseen.
    """
    codes: dict[str, str] = {}
    unknown = False
    for part in (p.strip() for p in CODE_SEPARATORS.split(text)):
        if not part:
            continue
        found = read_code(part)
        if isinstance(found, DiseaseCode):
            system, spelled = found.system, _spelled(found)
        else:
            prefix, sep, _ = part.partition(":")
            named = PREFIXES.get(prefix.strip().casefold()) if sep else None
            if named is None:
                unknown = True
                continue
            system, spelled = named, part
        codes[system] = f"{codes[system]};{spelled}" if system in codes else spelled
    return codes, unknown


def _finish(frame: pl.LazyFrame, table: str) -> pl.LazyFrame:
    """The table's columns (those the mapping gives, in the model's order), source_record and source_issue."""
    names = frame.collect_schema().names()
    issues = [pl.col(n) for n in names if n.startswith(ISSUE)]
    model = [pl.col(c).fill_null("") for c in BY_NAME[table].columns if c in names]
    issue = pl.concat_str(issues, separator=";", ignore_nulls=True) if issues else pl.lit("")
    return frame.select(*model, pl.col(SOURCE_RECORD), issue.alias(SOURCE_ISSUE))


# ---------------------------------------------------------------------------------------------------------------
# Drafts: a mapping proposed from the headers and the shapes of the values, printing no value unless asked.

SAMPLE = 5_000  # distinct values per column the draft's guesses look at
SHOWN = 200  # distinct values --show-values lists at most
DATE_FORMATS = (
    "%Y-%m-%d",
    "%d/%m/%Y",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%Y/%m/%d",
    "%d/%m/%y",
    "%d.%m.%y",
    "%Y%m%d",
    "%m/%d/%Y",
)
SWAPPED = {"%d/%m/%Y": "%m/%d/%Y", "%d/%m/%y": "%m/%d/%y"}  # a day-first format a month-first one may also read
SERIALS = (1, 80_000)  # whole numbers in this range in a date column: Excel serial days
NATIONAL_ID = re.compile(r"[0-9]{13}")

# Each table's hints in a file or sheet name, and each model column's names in sources (French, German,
# English), compared after _words(): lower case, no accents, words separated by one space.
TABLE_HINTS = {
    "patients": "patient|patients|patienten|personne|personnes|person|personen|stammdaten|identite",
    "diagnoses": "diagnose|diagnoses|diagnosen|diagnostic|diagnostics|diagnosis|maladie|maladies|krankheit|disease",
    "phenotypes": "phenotype|phenotypes|phanotyp|phanotypen|symptome|symptomes|signes|hpo|merkmale|features",
    "encounters": "encounter|encounters|consultation|consultations|kontakt|kontakte|visite|visites|visit|visits|"
    "besuch|besuche|sejour|sejours|venue|venues",
}
IDENTITY_NAMES = (
    "national id|nationale id|identifiant national|numero national|matricule|matricule national|nir|ssn|"
    "nin|national identifier|national number|versichertennummer|sozialversicherungsnummer|"
    "identifikationsnummer|personennummer|patient id|pat id|patientennummer|patient number|patient nr|"
    "numero patient|numero de patient|id patient|identifiant|id"
)
COLUMN_NAMES: dict[str, dict[str, str]] = {
    "patients": {
        "first_name": "first name|firstname|given name|forename|prenom|vorname",
        "last_name": "last name|lastname|surname|family name|nom|nom de famille|nachname|familienname|name",
        "street": "street|address|adresse|rue|voie|strasse|anschrift",
        "house_number": "house number|house no|number|no|numero|numero de rue|n|hausnummer|hausnr|nr",
        "postcode": "postcode|postal code|zip|zip code|code postal|cp|postleitzahl|plz",
        "commune": "commune|municipality|city|town|localite|ville|gemeinde|ort|wohnort",
        "canton": "canton|kanton",
        "country": "country|pays|land|staat",
        "date_of_birth": "date of birth|birth date|birthdate|dob|date de naissance|naissance|ne le|geburtsdatum|"
        "geboren",
        "sex": "sex|gender|sexe|genre|geschlecht",
        "vital_status": "vital status|vital|status vital|statut vital|etat vital|vitalstatus|lebensstatus",
        "date_of_death": "date of death|death date|dod|date de deces|date du deces|deces|sterbedatum|todesdatum",
        "cross_border_insured": "cross border|cross border insured|frontalier|assure frontalier|grenzganger",
        "first_contact_date": "first contact|first contact date|date premier contact|date du premier contact|"
        "premier contact|erstkontakt|datum erstkontakt",
        "consent_reuse": "consent|consent reuse|consentement|consentement reutilisation|einwilligung|"
        "einwilligung weiterverwendung",
        "agrees_to_contact": "agrees to contact|contact ok|contact allowed|accepte d etre contacte|accepte contact|"
        "accord contact|kontakt erlaubt|kontaktaufnahme erlaubt",
        "age_at_last_record": "age|age at last record|age dernier contact|alter|alter letzter kontakt",
        "age_at_death": "age at death|age au deces|sterbealter|alter bei tod",
    },
    "diagnoses": {
        "status": "status|diagnosis status|diagnostic status|statut|statut du diagnostic|statut diagnostique|"
        "diagnosestatus",
        "excluded": "excluded|exclu|exclue|ausgeschlossen|negated",
        "onset_date": "onset|onset date|date of onset|date de debut|debut|date debut|date d apparition|beginn|"
        "erkrankungsbeginn|symptombeginn",
        "onset_age": "onset age|age at onset|age de debut|age au debut|alter bei beginn",
        "onset_class": "onset class|classe de debut|beginnklasse",
        "diagnosis_date": "diagnosis date|date of diagnosis|diagnosed|date du diagnostic|date de diagnostic|"
        "date diagnostic|diagnosedatum|datum diagnose",
        "diagnosis_age": "diagnosis age|age at diagnosis|age au diagnostic|alter bei diagnose",
        "gene_symbol": "gene|gene symbol|symbole du gene|gen|gensymbol",
        "variant_hgvs": "variant|variant hgvs|hgvs|variante|mutation",
    },
    "phenotypes": {
        "hpo_code": "hpo|hpo code|hpo term|code hpo|terme hpo|phenotype|phanotyp|merkmal",
        "excluded": "excluded|exclu|exclue|ausgeschlossen|negated|absent",
        "observed_date": "observed|observed date|date observed|seen|date|date d observation|date observation|"
        "beobachtungsdatum|datum",
        "onset_age": "onset age|age at onset|age de debut|alter bei beginn",
        "onset_class": "onset class|onset|classe de debut",
    },
    "encounters": {
        "encounter_date": "date|encounter date|visit date|date de consultation|date consultation|date de visite|"
        "kontaktdatum|besuchsdatum|datum",
        "centre_code": "centre|center|centre code|center code|code centre|site|hopital|zentrum|krankenhaus|klinik",
        "centre_country": "centre country|center country|pays du centre|pays centre|zentrumsland|land zentrum",
        "encounter_type": "type|encounter type|visit type|type de consultation|type consultation|kontaktart|"
        "besuchsart|art",
    },
}
CODE_HINTS = {
    "ORPHA": "orpha|orphanet|ordo|orphacode|code orpha",
    "OMIM": "omim|mim",
    "ICD10": "icd10|icd 10|cim10|cim 10|icd|cim|icd10 code|code cim 10",
    "ICD11": "icd11|icd 11|cim11|cim 11",
    "MONDO": "mondo",
}
CODE_NAMES = "code|codes|diagnosis|diagnose|diagnostic|disease|maladie|krankheit|diagnosis code|code diagnostic"
FLAG_NAMES = {"yes": "yes|y|oui|o|ja|j|true|vrai|wahr|1|x", "no": "no|n|non|nein|false|faux|falsch|0"}
VALUE_NAMES: dict[str, dict[str, str]] = {
    "sex": {
        "female": "f|female|woman|femme|feminin|w|weiblich|frau|2",
        "male": "m|male|man|homme|h|masculin|mannlich|maennlich|mann|1",
        "undetermined": "i|u|x|d|undetermined|indetermine|intersexe|unbestimmt|divers|9",
    },
    "vital_status": {
        "alive": "alive|living|vivant|vivante|en vie|lebend|am leben",
        "dead": "dead|deceased|decede|decedee|mort|morte|verstorben|tot",
        "lost to follow-up": "lost to follow up|lost|perdu de vue|nicht erreichbar|verloren",
        "opted out": "opted out|opt out|opposition|retrait|refus|widerspruch",
    },
    "status": {
        "confirmed": "confirmed|confirme|confirmee|bestatigt|gesichert",
        "suspected": "suspected|suspecte|suspectee|suspicion|probable|verdacht",
        "undiagnosed": "undiagnosed|non diagnostique|sans diagnostic|undiagnostiziert|ohne diagnose",
    },
    "encounter_type": {
        "outpatient": "outpatient|ambulatory|consultation|consultation externe|ambulant|ambulanz",
        "day hospital": "day hospital|hopital de jour|tagesklinik",
        "inpatient": "inpatient|hospitalisation|hospitalization|stationar",
        "teleconsultation": "teleconsultation|telekonsultation|telemedecine",
        "genetic counselling": "genetic counselling|genetic counseling|conseil genetique|genetische beratung",
        "ERN virtual consultation": "ern virtual consultation|consultation virtuelle ern|ern videosprechstunde",
    },
    **dict.fromkeys(("cross_border_insured", "consent_reuse", "agrees_to_contact", "excluded"), FLAG_NAMES),
}
MANDATORY = {t: tuple(c for c in BY_NAME[t].mandatory if c != "national_id") for t in BY_NAME}


def _words(text: str) -> str:
    """A name or label as the draft compares it: lower case, no accents, words separated by one space."""
    flat = unicodedata.normalize("NFKD", text.casefold())
    flat = "".join(c for c in flat if not unicodedata.combining(c))
    return " ".join(re.split(r"[^0-9a-z]+", flat)).strip()


@dataclass
class _Column:
    name: str  # the header, trimmed
    distinct: int  # non-empty distinct values
    sample: list[str]  # up to SAMPLE distinct non-empty values, trimmed
    dated: bool = False  # an Excel column with cells typed as dates


@dataclass
class _Part:
    """A file (or an Excel sheet) the draft read: its columns and the table it seems to feed."""

    locator: str
    sheet: str | None
    rows: int
    columns: list[_Column]
    table: str | None = None
    guessed: dict[str, str] = field(default_factory=dict)  # model column -> header
    identity: str | None = None


# A header cell that looks like a value rather than a name: it starts with a digit, or holds a run of digits (an
# identifier, a date) or a date.
VALUE_LIKE = re.compile(r"^\s*[0-9+-]|[0-9]{4,}|[0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2,4}")


def draft_tabular(
    paths: list[Path],
    fmt: str | None = None,
    show_values: list[str] | tuple[str, ...] = (),
    *,
    scratch: Path | None = None,
) -> str:
    """A draft mapping (TOML text) for the CSV, Excel or Parquet files among ``paths`` (files and folders).

    Guesses each file's (or sheet's) table from its name and columns, each column's model column from its
    name (French, German and English names), date formats and code systems from the values' shapes, whether
    the identifiers are national IDs, and value maps for coded columns (sex, flags, statuses...). **No cell
    value is printed**, except the distinct values of the columns named in ``show_values`` (headers), which the
    steward has judged non-identifying. What it cannot guess is marked ``TODO`` with a placeholder that
    ``research-kit mapping check`` refuses until it is filled in. Latin-1 CSV files are transcoded into
    ``scratch`` (a private temporary folder, removed after, when not given).
    """
    files, folder, kind = _draft_inputs(paths, fmt)
    with tempfile.TemporaryDirectory(prefix="rk-draft-") as tmp, Workbooks() as books:
        parts = [
            p
            for i, path in enumerate(files)
            for p in _profile(kind, path, folder, (scratch or Path(tmp)) / str(i), books)
        ]
    for part in parts:  # a file without a header row would have its first record printed as column names
        if any(VALUE_LIKE.search(c.name) for c in part.columns):
            raise BadInput(
                f"{part.locator}: its first row does not look like a header (a cell is a number or a date, as "
                "values are): a mapping needs named columns; add the header row to the export"
            )
    headers = {c.name for p in parts for c in p.columns}
    unknown = [name for name in show_values if name.strip() not in headers]
    if unknown:
        raise BadInput(f"--show-values {quoted(unknown[0])!r}: no such column in {', '.join(p.locator for p in parts)}")
    for part in parts:
        _guess_table(part)
    tables = _group(parts, folder)
    return _Draft(folder, kind, tables, parts, {n.strip() for n in show_values}).text()


def _draft_inputs(paths: list[Path], fmt: str | None) -> tuple[list[Path], Path, str]:
    if fmt is not None and fmt not in TABULAR_KINDS:
        raise BadInput(f"--format {quoted(fmt)!r}: a tabular draft reads {', '.join(TABULAR_KINDS)}")
    candidates: list[Path] = []
    for path in paths:
        if path.is_dir():
            candidates += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            candidates.append(path)
        else:
            raise MissingData(f"{path}: no such file or folder")
    kinds = {readers.FORMATS.get(p.suffix.lower()) for p in candidates} - {None}
    kind = fmt or (kinds.pop() if len(kinds) == 1 else "")
    if not kind:
        found = ", ".join(sorted(k for k in kinds if k)) or "none"
        raise BadInput(f"{', '.join(map(str, paths))}: formats found: {found}; choose one with --format")
    files = [p for p in candidates if readers.FORMATS.get(p.suffix.lower()) == kind]
    if not files:
        raise MissingData(f"{', '.join(map(str, paths))}: no {kind} file")
    folder = (
        paths[0]
        if len(paths) == 1 and paths[0].is_dir()
        else Path(os.path.commonpath([p.resolve().parent for p in files]))
    )
    return files, folder, kind


def _profile(kind: str, path: Path, folder: Path, scratch: Path, books: Workbooks) -> list[_Part]:
    locator = path.resolve().relative_to(folder.resolve()).as_posix()
    if kind != "excel":
        return [_profiled(_open(kind, path, locator, TableMapping(), "", scratch, books), None)]
    sheets = books.open(path).sheetnames
    parts = []
    for sheet in sheets:
        opened = _open(kind, path, locator, TableMapping(sheet=sheet), "", scratch, books)
        parts.append(_profiled(opened, sheet))
    return parts


def _profiled(opened: _File, sheet: str | None) -> _Part:
    names = list(opened.names.items())
    given = [pl.col(c).str.strip_chars().filter(pl.col(c).str.strip_chars() != "") for _, c in names]
    stats = opened.frame.select(
        pl.len().alias(ROW),
        *(v.n_unique().alias(f"n{i}") for i, v in enumerate(given)),
        *(v.unique(maintain_order=True).head(SAMPLE).implode().alias(f"s{i}") for i, v in enumerate(given)),
    ).collect()
    columns = [
        _Column(name, int(stats[f"n{i}"][0]), stats[f"s{i}"][0].to_list(), real in opened.dated)
        for i, (name, real) in enumerate(names)
    ]
    return _Part(opened.locator, sheet, int(stats[ROW][0]), columns)


def _guess_table(part: _Part) -> None:
    """The table a file or sheet feeds (its name's hint, else the most columns recognised) and its columns."""
    name = _words(part.sheet or Path(part.locator).stem)
    hinted = [t for t, hints in TABLE_HINTS.items() if set(name.split()) & set(hints.split("|"))]
    part.identity = _match(IDENTITY_NAMES, [c.name for c in part.columns], taken=set())
    guesses = {t: _guess_columns(t, part.columns, part.identity) for t in COLUMN_NAMES}
    best = max(guesses, key=lambda t: len(guesses[t]))
    part.table = hinted[0] if hinted else (best if guesses[best] else None)
    if part.table is not None:
        part.guessed = guesses[part.table]


def _guess_columns(table: str, columns: list[_Column], identity: str | None) -> dict[str, str]:
    """Model column -> header, for the headers whose name is one of the model column's names in sources."""
    out: dict[str, str] = {}
    headers = [c.name for c in columns if c.name != identity]
    for model, names in COLUMN_NAMES[table].items():
        found = _match(names, headers, taken=set(out.values()))
        if found is not None:
            out[model] = found
    return out


def _match(names: str, headers: list[str], taken: set[str]) -> str | None:
    """The first header equal to one of ``names`` (or its model spelling), else the one ending in the longest."""
    options = names.split("|")
    free = [h for h in headers if h not in taken]
    for header in free:
        if _words(header) in options:
            return header
    ends = [(len(o), h) for h in free for o in options if len(o) > 3 and _words(h).endswith(" " + o)]
    return max(ends)[1] if ends else None


def _group(parts: list[_Part], folder: Path) -> dict[str, list[_Part]]:
    """Each table's parts: those with the same header as the first one found for it (others are left out)."""
    tables: dict[str, list[_Part]] = {}
    for part in parts:
        if part.table is None:
            continue
        first = tables.setdefault(part.table, [part])[0]
        if first is part:
            continue
        if first.sheet is None and [c.name for c in first.columns] == [c.name for c in part.columns]:
            tables[part.table].append(part)
        else:
            part.table = None  # another layout (or sheet) for the table: a mapping reads one per table
    return tables


def _files_glob(parts: list[_Part], folder: Path) -> list[str]:
    """The table's files: one glob when a simple one matches exactly them, else their names."""
    names = [p.locator for p in parts]
    if len(names) == 1:
        return names
    prefix = os.path.commonprefix(names)  # noqa: RUF071 - a glob's fixed start: characters, not path parts
    suffix = os.path.commonprefix([n[::-1] for n in names])[::-1]  # noqa: RUF071
    suffix = suffix[max(0, len(prefix) + len(suffix) - min(map(len, names))) :]
    pattern = f"{glob.escape(prefix)}*{glob.escape(suffix)}"
    matched = sorted(p.relative_to(folder).as_posix() for p in folder.glob(pattern) if p.is_file())
    return [pattern] if matched == sorted(names) else names


def _date_format(column: _Column) -> tuple[str, str]:
    """A date column's format guessed from its values (never shown), and a comment."""
    if column.dated:
        return EXCEL_DATES, "Excel dates"
    if not column.sample:
        return "%Y-%m-%d", "no values to guess from"
    values = pl.Series(column.sample, dtype=pl.String)
    read = {fmt: len(values) - values.str.to_date(fmt, strict=False).null_count() for fmt in DATE_FORMATS}
    for fmt, count in read.items():
        if count == len(values):
            other = SWAPPED.get(fmt)
            check = f"every value also reads as {other}: check which" if other and read[other] == len(values) else ""
            return fmt, check
    serials = values.cast(pl.Float64, strict=False)
    if serials.null_count() == 0 and serials.is_between(*SERIALS).all():
        return EXCEL_DATES, "serial day numbers (Excel)"
    fmt = max(read, key=lambda f: read[f])
    if read[fmt] * 2 >= len(values):
        return fmt, f"{len(values) - read[fmt]} of {len(values)} distinct values do not read with it: check"
    return TODO, 'TODO: no usual format reads these values: give theirs (strptime, e.g. "%d/%m/%Y") or "excel"'


def _code_system(column: _Column) -> tuple[str, str]:
    """A code column's system, from its name and the shapes of its values (never shown), and a comment."""
    words = _words(column.name)
    hinted = [s for s, names in CODE_HINTS.items() if words in names.split("|")]
    hinted = hinted or [s for s, names in CODE_HINTS.items() if set(words.split()) & set(names.split("|"))]
    values = column.sample

    def all_read(system: str) -> bool:
        return all(isinstance(read_code(v, system), DiseaseCode) for v in values)

    if hinted and all_read(hinted[0]):
        return hinted[0], "" if values else "no values: guessed from its name"
    if values and all(codes and not bad for codes, bad in map(_curie_cell, values)):
        return CURIE, "codes with their system's prefix"
    for system in ("ICD10", "ICD11"):
        if values and all_read(system):
            return system, "from the shape of the values"
    if hinted:
        return hinted[0], f"some values do not read as {hinted[0]} codes: validation will say which"
    return TODO, f"TODO: the codes' system ({', '.join(SYSTEMS)}), or curie"


def _is_code_column(column: _Column) -> bool:
    words = _words(column.name)
    names = {n for hints in (*CODE_HINTS.values(), CODE_NAMES) for n in hints.split("|")}
    if words in names or set(words.split()) & names - {"code", "codes"}:
        return True
    return bool(column.sample) and _code_system(column)[0] in (CURIE, "ICD10", "ICD11")


def _guess_value(model: str, value: str) -> str | None:
    words = _words(value)
    for target, names in VALUE_NAMES.get(model, {}).items():
        if words == _words(target) or words in names.split("|"):
            return target
    return None


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


class _Draft:
    """The draft's TOML text, section by section."""

    def __init__(self, folder: Path, kind: str, tables: dict[str, list[_Part]], parts: list[_Part], shown: set[str]):
        self.folder, self.kind, self.tables, self.parts, self.shown = folder, kind, tables, parts, shown
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines += lines

    def text(self) -> str:
        self.add(
            f"# A draft mapping of {self.folder.name or self.folder}, from its headers and the shapes of its values.",
            "# No cell value is shown (--show-values COLUMN shows a column's). Check every line, fill in each TODO,",
            "# then: research-kit mapping check FILE",
            "version = 1",
            "",
        )
        self._source()
        for table in BY_NAME:
            if table in self.tables:
                self._table(table, self.tables[table])
        for part in self.parts:
            if part.table is None:
                where = f"{part.locator}, sheet {_string(part.sheet)}" if part.sheet else part.locator
                self.add(f"# {where}: not read (no table recognised, or another layout of a table already mapped)")
        return re.sub(r"\n{3,}", "\n\n", "\n".join(self.lines)).rstrip() + "\n"

    def _source(self) -> None:
        name = re.sub(r"[^a-z0-9_-]+", "-", _words(self.folder.stem or "source")).strip("-")[:64] or "source"
        dated = any(m in DATE_COLUMNS for parts in self.tables.values() for m in parts[0].guessed)
        aged = any(
            m.endswith("_age") or m.startswith("age_") for parts in self.tables.values() for m in parts[0].guessed
        )
        self.add("[source]", f"name = {_string(name)}", f"kind = {_string(self.kind)}", "precedence = 1")
        self.add(f'dates = "{"ages" if aged and not dated else "dates"}"', "")
        identities = [parts[0].identity for parts in self.tables.values() if parts[0].identity]
        first = self.tables.get("patients", [None])[0]
        self.identity = (first.identity if first else None) or (identities[0] if identities else None)
        samples = [
            v
            for parts in self.tables.values()
            for p in parts
            for c in p.columns
            if c.name == p.identity
            for v in c.sample
        ]
        national = all(NATIONAL_ID.fullmatch(v) for v in samples)
        self.add("[identity]")
        if self.identity is None:
            self.add(f"field = {_string(TODO)}  # TODO: the column with the person's identifier")
        else:
            self.add(f"field = {_string(self.identity)}  # guessed from its name")
        why = "its values are 13-digit national IDs" if national else "its values are not national IDs (13 digits)"
        self.add(f'kind = "{"national" if national else "registry"}"  # {why}', "")

    def _table(self, table: str, parts: list[_Part]) -> None:
        part = parts[0]
        columns = {c.name: c for c in part.columns}
        rows = sum(p.rows for p in parts)
        self.add(
            f"[tables.{table}]", f"files = [{', '.join(map(_string, _files_glob(parts, self.folder)))}]  # {rows} rows"
        )
        if part.sheet is not None:
            self.add(f"sheet = {_string(part.sheet)}")
        codes = {}
        if table == "diagnoses":
            free = [c for c in part.columns if c.name not in part.guessed.values() and c.name != part.identity]
            codes = {c.name: _code_system(c) for c in free if _is_code_column(c)}
        self.add("", f"[tables.{table}.columns]")
        if part.identity != self.identity:
            identity = part.identity or TODO
            todo = "" if part.identity else "  # TODO: the column with the person's identifier"
            self.add(f"national_id = {_string(identity)}{todo}")
        self.add(*(f"{model} = {_string(name)}" for model, name in part.guessed.items()))
        used = {*part.guessed.values(), part.identity, *codes}
        left = [_string(c.name) for c in part.columns if c.name not in used]
        if left:
            self.add(f"# not mapped: {', '.join(left)} (no model column guessed: add any that holds one)")
        missing = [m for m in MANDATORY[table] if m not in part.guessed]
        if missing:
            self.add("", f"[tables.{table}.constants]")
            for model in missing:
                self.add(f"{model} = {_string(TODO)}  # TODO: no column found: its value for every row, or a column")
        if table == "diagnoses":
            self.add("", f"[tables.{table}.codes]")
            for name, (system, note) in codes.items():
                self.add(f"{_key(name)} = {_string(system)}" + (f"  # {note}" if note else ""))
            if not codes:
                todo = '# TODO: "code column" = ORPHA, OMIM, ICD10, ICD11, MONDO or curie'
                self.add(f"{_string(TODO)} = {_string(TODO)}  {todo}")
        dates = {m: _date_format(columns[n]) for m, n in part.guessed.items() if m in DATE_COLUMNS}
        if dates:
            self.add("", f"[tables.{table}.dates]")
            self.add(*(f"{m} = {_string(fmt)}" + (f"  # {note}" if note else "") for m, (fmt, note) in dates.items()))
        for model, name in part.guessed.items():
            if model in VOCABULARY:
                self._values(table, model, columns[name])
            elif name in self.shown:
                self._shown(columns[name])
        for name in codes:
            if name in self.shown:
                self._shown(columns[name])
        self.add("")

    def _values(self, table: str, model: str, column: _Column) -> None:
        allowed = {v.casefold() for v in VOCABULARY[model]}
        if all(v.casefold() in allowed for v in column.sample):
            if column.name in self.shown:
                self._shown(column)
            return
        self.add("")
        if column.name not in self.shown:
            self.add(
                f"# {_string(column.name)}: {column.distinct} distinct values, not all in the model's spelling "
                f"(--show-values {_string(column.name)} lists them)",
                f'[tables.{table}.values.{model}]  # TODO: a line "source value" = "model value" for each '
                f"({', '.join(VOCABULARY[model])})",
            )
            return
        self.add(f"[tables.{table}.values.{model}]  # {_string(column.name)}: {column.distinct} distinct values")
        for value in sorted(column.sample)[:SHOWN]:
            target = _guess_value(model, value)
            todo = "" if target else f"  # TODO: one of {', '.join(VOCABULARY[model])}"
            self.add(f"{_key(value)} = {_string(target or TODO)}{todo}")
        if column.distinct > SHOWN:
            self.add(f"# TODO: {column.distinct - SHOWN} more values not listed")

    def _shown(self, column: _Column) -> None:
        values = ", ".join(_string(v) for v in sorted(column.sample)[:SHOWN])
        more = f" and {column.distinct - SHOWN} more" if column.distinct > SHOWN else ""
        self.add(f"# {_string(column.name)}: {column.distinct} distinct values: {values}{more}")
