"""A simulated raw export reshaped as real sources deliver theirs, each with the mapping that reads it back.

:func:`write_reshaped` rewrites the simulator's raw export (``patients``,
``diagnoses``, ``phenotypes``, ``encounters``, in the registry's own layout)
three ways, for the tests and the demo of source mappings
(:mod:`research_kit.ingest.mapping`):

``hospital-csv``
    a hospital's CSV export: French column names, ``;`` between fields,
    Latin-1, dates ``DD/MM/YYYY``, sex ``M``/``F``/``I``, flags ``oui``/``non``,
    statuses and encounter types in French, ORPHA and ICD-10 codes bare in
    their own columns;
``workbook``
    one Excel workbook in the **1904 date system**, a sheet per table, German
    column names and labels: the patients' and phenotypes' dates are real
    Excel dates, the diagnoses' and encounters' are serial day numbers; a
    diagnosis's codes are CURIEs of mixed systems and spellings in one column;
``centre-parquet``
    one centre's Parquet files with typed columns (dates, booleans, integer
    identifiers and sex codes): two files feed the patients table (split by
    rows), the encounters are that centre's only and its code is a constant
    of the mapping, and OMIM codes have their own column.

Each export carries exactly what the raw export has (the raw layout has no
OMIM codes: that column is empty; the centre's export holds its own encounters
only), so that reading it back through its mapping gives the raw tables again.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from research_kit.core.errors import MissingData
from research_kit.model.tables import DIAGNOSIS_STATUSES, ENCOUNTER_TYPES, SEXES, TABLES, VITAL_STATUSES
from research_kit.simulator.export import mark_simulated

EPOCH_1904 = date(1904, 1, 1)
CENTRE = "LU-CHL"  # the centre whose Parquet export is written (its encounters only)
CENTRE_COUNTRY = "LU"
FLAGS = ("yes", "no")

# The hospital's French labels, in the order of the model's values.
FR_SEXES = dict(zip(SEXES, ("F", "M", "I"), strict=True))
FR_FLAGS = dict(zip(FLAGS, ("oui", "non"), strict=True))
FR_VITAL = dict(zip(VITAL_STATUSES, ("vivant", "décédé", "perdu de vue", "opposition"), strict=True))
FR_STATUS = dict(zip(DIAGNOSIS_STATUSES, ("confirmé", "suspecté", "non diagnostiqué"), strict=True))
FR_ENCOUNTERS = dict(
    zip(
        ENCOUNTER_TYPES,
        ("consultation", "hôpital de jour", "hospitalisation", "téléconsultation", "conseil génétique",
         "consultation virtuelle ERN"),
        strict=True,
    )
)  # fmt: skip
DE_SEXES = dict(zip(SEXES, ("weiblich", "männlich", "unbestimmt"), strict=True))
DE_FLAGS = dict(zip(FLAGS, ("ja", "nein"), strict=True))
DE_VITAL = dict(zip(VITAL_STATUSES, ("lebend", "verstorben", "nicht erreichbar", "Widerspruch"), strict=True))
DE_STATUS = dict(zip(DIAGNOSIS_STATUSES, ("bestätigt", "Verdacht", "undiagnostiziert"), strict=True))
DE_ENCOUNTERS = dict(
    zip(
        ENCOUNTER_TYPES,
        ("ambulant", "Tagesklinik", "stationär", "Telekonsultation", "genetische Beratung", "ERN-Videosprechstunde"),
        strict=True,
    )
)
PQ_SEXES = dict(zip(SEXES, ("2", "1", "9"), strict=True))  # ISO/IEC 5218 codes, as integers
PQ_FLAGS = dict(zip(FLAGS, ("true", "false"), strict=True))  # booleans (as text where a faulty value stays)
BOOLEANS = {"true": True, "false": False}

HOSPITAL_COLUMNS = {
    "patients": {
        "national_id": "Matricule", "first_name": "Prénom", "last_name": "Nom", "street": "Rue",
        "house_number": "Numéro", "postcode": "Code postal", "commune": "Localité", "canton": "Canton",
        "country": "Pays", "date_of_birth": "Date de naissance", "sex": "Sexe", "vital_status": "Statut vital",
        "date_of_death": "Date de décès", "cross_border_insured": "Frontalier",
        "first_contact_date": "Date premier contact", "consent_reuse": "Consentement réutilisation",
        "agrees_to_contact": "Accepte d'être contacté",
    },
    "diagnoses": {
        "national_id": "Matricule", "status": "Statut du diagnostic", "onset_date": "Date de début",
        "diagnosis_date": "Date du diagnostic", "gene_symbol": "Gène", "variant_hgvs": "Variant",
    },
    "phenotypes": {"national_id": "Matricule", "hpo_code": "Code HPO", "observed_date": "Date d'observation"},
    "encounters": {
        "national_id": "Matricule", "encounter_date": "Date de consultation", "centre_code": "Code centre",
        "centre_country": "Pays du centre", "encounter_type": "Type de consultation",
    },
}  # fmt: skip
HOSPITAL_FILES = {"patients": "patients", "diagnoses": "diagnostics", "phenotypes": "phenotypes",
                  "encounters": "consultations"}  # fmt: skip
HOSPITAL_CODES = {"Code Orpha": ("orpha_code", "ORPHA"), "CIM-10": ("icd10_code", "ICD10")}

WORKBOOK_SHEETS = {"patients": "Patienten", "diagnoses": "Diagnosen", "phenotypes": "Phänotypen",
                   "encounters": "Kontakte"}  # fmt: skip
WORKBOOK_COLUMNS = {
    "patients": {
        "national_id": "Versichertennummer", "first_name": "Vorname", "last_name": "Nachname",
        "street": "Straße", "house_number": "Hausnummer", "postcode": "Postleitzahl", "commune": "Wohnort",
        "canton": "Kanton", "country": "Land", "date_of_birth": "Geburtsdatum", "sex": "Geschlecht",
        "vital_status": "Vitalstatus", "date_of_death": "Sterbedatum", "cross_border_insured": "Grenzgänger",
        "first_contact_date": "Erstkontakt", "consent_reuse": "Einwilligung Weiterverwendung",
        "agrees_to_contact": "Kontakt erlaubt",
    },
    "diagnoses": {
        "national_id": "Versichertennummer", "status": "Diagnosestatus", "onset_date": "Beginn",
        "diagnosis_date": "Diagnosedatum", "gene_symbol": "Gen", "variant_hgvs": "Variante",
    },
    "phenotypes": {"national_id": "Versichertennummer", "hpo_code": "HPO", "observed_date": "Beobachtungsdatum"},
    "encounters": {
        "national_id": "Versichertennummer", "encounter_date": "Kontaktdatum", "centre_code": "Zentrum",
        "centre_country": "Zentrumsland", "encounter_type": "Kontaktart",
    },
}  # fmt: skip
WORKBOOK_CODES = "Diagnose"
NUMBERS = ("national_id", "house_number", "postcode")  # written as numbers where they are digits
SERIAL_SHEETS = ("diagnoses", "encounters")  # dates as serial day numbers; the other sheets' are Excel dates

PARQUET_COLUMNS = {
    "patients": {
        "national_id": "pat_id", "first_name": "given_name", "last_name": "surname", "street": "street",
        "house_number": "house_no", "postcode": "zip", "commune": "city", "canton": "canton", "country": "country",
        "date_of_birth": "dob", "sex": "sex", "vital_status": "vital", "date_of_death": "dod",
        "cross_border_insured": "cross_border", "first_contact_date": "first_contact",
        "consent_reuse": "consent_reuse", "agrees_to_contact": "contact_ok",
    },
    "diagnoses": {
        "national_id": "pat_id", "status": "status", "onset_date": "onset", "diagnosis_date": "diagnosed",
        "gene_symbol": "gene", "variant_hgvs": "hgvs",
    },
    "phenotypes": {"national_id": "pat_id", "hpo_code": "hpo", "observed_date": "seen"},
    "encounters": {"national_id": "pat_id", "encounter_date": "date", "encounter_type": "type"},
}  # fmt: skip
PARQUET_CODES = {"orpha": ("orpha_code", "ORPHA"), "omim": ("omim_code", "OMIM"), "icd10": ("icd10_code", "ICD10")}
PARQUET_FILES = {"patients": "patients_part*.parquet", "diagnoses": "diagnoses.parquet",
                 "phenotypes": "phenotypes.parquet", "encounters": "encounters_chl.parquet"}  # fmt: skip
FLAG_COLUMNS = ("cross_border_insured", "consent_reuse", "agrees_to_contact")
LABELS = {"sex", "vital_status", "status", "encounter_type", *FLAG_COLUMNS}


def write_reshaped(raw_folder: Path, out_folder: Path) -> dict[str, Path]:
    """Write the three reshaped exports of a raw export under ``out_folder``; their names -> mapping files.

    Each export is the folder ``out_folder/NAME``, its mapping ``out_folder/NAME.toml`` (beside it, so that
    a draft of the folder sees the export only). An existing export of that name is replaced.
    """
    raw = read_raw(raw_folder)
    out_folder.mkdir(parents=True, exist_ok=True)
    writers = {"hospital-csv": _hospital_csv, "workbook": _workbook, "centre-parquet": _centre_parquet}
    out: dict[str, Path] = {}
    for name, write in writers.items():
        folder = out_folder / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        mapping = write(raw, folder)
        mark_simulated(out_folder, sorted(p for p in folder.rglob("*") if p.is_file()))
        path = out_folder / f"{name}.toml"
        path.write_text(toml(mapping), encoding="utf-8")
        out[name] = path
    return out


def read_raw(folder: Path) -> dict[str, pl.DataFrame]:
    """The raw export's tables as text (empty for a missing value), from CSV (UTF-8 or Latin-1) or Parquet."""
    out = {}
    for table in TABLES:
        csv, parquet = folder / f"{table.name}.csv", folder / f"{table.name}.parquet"
        if parquet.is_file():
            frame = pl.read_parquet(parquet)
        elif csv.is_file():
            data = csv.read_bytes()
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
            frame = pl.read_csv(text.encode("utf-8"), infer_schema=False, missing_utf8_is_empty_string=True)
        else:
            raise MissingData(f"{folder}: no {table.name}.csv or {table.name}.parquet")
        out[table.name] = frame.select(pl.all().cast(pl.String).fill_null(""))
    return out


def _relabel(frame: pl.DataFrame, labels: dict[str, dict[str, str]]) -> pl.DataFrame:
    """Coded columns in a source's own labels (a value without a label, such as an empty one, stays)."""
    return frame.with_columns(pl.col(c).replace(m) for c, m in labels.items() if c in frame.columns)


def _date_text(column: str, fmt: str) -> pl.Expr:
    return pl.col(column).str.to_date("%Y-%m-%d", strict=False).dt.to_string(fmt).fill_null(pl.col(column))


def _bare(column: str) -> pl.Expr:
    return pl.col(column).str.replace(r"^[A-Za-z]+:", "")


def _hospital_csv(raw: dict[str, pl.DataFrame], folder: Path) -> dict[str, Any]:
    labels = {"sex": FR_SEXES, "vital_status": FR_VITAL, "status": FR_STATUS, "encounter_type": FR_ENCOUNTERS,
              **dict.fromkeys(FLAG_COLUMNS, FR_FLAGS)}  # fmt: skip
    tables: dict[str, Any] = {}
    for table, columns in HOSPITAL_COLUMNS.items():
        frame = _relabel(raw[table], labels)
        dates = [c for c in columns if c.endswith("_date") or c.startswith("date_of_")]
        frame = frame.with_columns(_date_text(c, "%d/%m/%Y") for c in dates)
        selected = [pl.col(m).alias(s) for m, s in columns.items()]
        if table == "diagnoses":
            selected[1:1] = [_bare(m).alias(s) for s, (m, _) in HOSPITAL_CODES.items()]
        out = frame.select(selected)
        name = f"{HOSPITAL_FILES[table]}.csv"
        (folder / name).write_bytes(out.write_csv(separator=";").encode("latin-1"))
        spec: dict[str, Any] = {"files": [name], "columns": {m: s for m, s in columns.items() if m != "national_id"}}
        spec["dates"] = dict.fromkeys(dates, "%d/%m/%Y")
        spec["values"] = {c: _inverse(labels[c]) for c in columns if c in labels}
        if table == "diagnoses":
            spec["codes"] = {s: system for s, (_, system) in HOSPITAL_CODES.items()}
        tables[table] = {k: v for k, v in spec.items() if v}
    return _mapping("hospital-csv", "csv", "Matricule", tables, precedence=1)


def _workbook(raw: dict[str, pl.DataFrame], folder: Path) -> dict[str, Any]:
    from openpyxl import Workbook  # type: ignore[import-untyped]  # no stubs; loaded only when writing Excel
    from openpyxl.utils.datetime import CALENDAR_MAC_1904  # type: ignore[import-untyped]

    labels = {"sex": DE_SEXES, "vital_status": DE_VITAL, "status": DE_STATUS, "encounter_type": DE_ENCOUNTERS,
              **dict.fromkeys(FLAG_COLUMNS, DE_FLAGS)}  # fmt: skip
    book = Workbook(write_only=True)
    book.epoch = CALENDAR_MAC_1904
    tables: dict[str, Any] = {}
    for table, columns in WORKBOOK_COLUMNS.items():
        frame = _relabel(raw[table], labels)
        dates = [c for c in columns if c.endswith("_date") or c.startswith("date_of_")]
        if table in SERIAL_SHEETS:
            days = [
                (pl.col(c).str.to_date("%Y-%m-%d", strict=False) - pl.lit(EPOCH_1904)).dt.total_days() for c in dates
            ]
            frame = frame.with_columns(days)
        else:
            frame = frame.with_columns(pl.col(c).str.to_date("%Y-%m-%d", strict=False) for c in dates)
        selected = [pl.col(m).alias(s) for m, s in columns.items()]
        if table == "diagnoses":
            selected.insert(1, _mixed_curies().alias(WORKBOOK_CODES))
        out = frame.select(selected)
        sheet = book.create_sheet(WORKBOOK_SHEETS[table])
        sheet.append(out.columns)
        numeric = [table == "patients" and name in (columns[m] for m in NUMBERS) for name in out.columns]
        for row in out.iter_rows():
            sheet.append([_cell(v, number) for v, number in zip(row, numeric, strict=True)])
        spec: dict[str, Any] = {"files": ["registre.xlsx"], "sheet": WORKBOOK_SHEETS[table]}
        spec["columns"] = {m: s for m, s in columns.items() if m != "national_id"}
        spec["dates"] = dict.fromkeys(dates, "excel")
        spec["values"] = {c: _inverse(labels[c]) for c in columns if c in labels}
        if table == "diagnoses":
            spec["codes"] = {WORKBOOK_CODES: "curie"}
        tables[table] = {k: v for k, v in spec.items() if v}
    book.save(folder / "registre.xlsx")
    return _mapping("workbook", "excel", "Versichertennummer", tables, precedence=2)


def _cell(value: Any, number: bool) -> Any:
    """A value as a spreadsheet cell: empty is none; ``number``: digits become a number, as spreadsheets make them."""
    if value == "":
        return None
    if number and isinstance(value, str) and re.fullmatch(r"[1-9][0-9]{0,14}", value):
        return int(value)
    return value


def _mixed_curies() -> pl.Expr:
    """Each diagnosis's codes in one cell, in the spellings sources use (ORPHA:, Orphanet:, ICD10:, ICD-10:)."""
    n = pl.int_range(pl.len())
    orpha = pl.when(n % 2 == 0).then(pl.lit("ORPHA:")).otherwise(pl.lit("Orphanet:")) + _bare("orpha_code")
    icd = pl.when(n % 3 == 0).then(pl.lit("ICD-10:")).otherwise(pl.lit("ICD10:")) + pl.col("icd10_code")
    separator = pl.when(n % 2 == 0).then(pl.lit("; ")).otherwise(pl.lit(" | "))
    parts = [pl.when(pl.col("orpha_code") != "").then(orpha), pl.when(pl.col("icd10_code") != "").then(icd)]
    return pl.concat_str(parts, separator="\x00", ignore_nulls=True).str.replace("\x00", separator)


def _centre_parquet(raw: dict[str, pl.DataFrame], folder: Path) -> dict[str, Any]:
    labels = {"sex": PQ_SEXES, **dict.fromkeys(FLAG_COLUMNS, PQ_FLAGS)}
    encounters = raw["encounters"].filter(pl.col("centre_code") == CENTRE)
    tables: dict[str, Any] = {}
    for table, columns in PARQUET_COLUMNS.items():
        frame = _relabel(encounters if table == "encounters" else raw[table], labels)
        if table == "diagnoses":
            frame = frame.with_columns(_bare("orpha_code").alias("orpha"), pl.col("icd10_code").alias("icd10"))
        dates = [c for c in columns if c.endswith("_date") or c.startswith("date_of_")]
        typed = {c: pl.col(c).str.to_date("%Y-%m-%d", strict=False) for c in dates}
        typed |= {c: pl.col(c).replace_strict(BOOLEANS, default=None) for c in FLAG_COLUMNS if c in columns}
        typed |= {"national_id": pl.col("national_id").cast(pl.Int64, strict=False)}
        typed |= {"sex": pl.col("sex").cast(pl.Int8, strict=False)} if "sex" in columns else {}
        typed |= {"orpha": pl.col("orpha").cast(pl.Int64, strict=False)} if table == "diagnoses" else {}
        frame = frame.with_columns(_typed(frame, column, expr) for column, expr in typed.items())
        selected = [pl.col(m).alias(s) for m, s in columns.items()]
        if table == "diagnoses":
            selected[1:1] = [pl.col("orpha"), pl.lit(None, pl.String).alias("omim"), pl.col("icd10")]
        out = frame.select(selected)
        out = out.with_columns(pl.col(pl.String).replace("", None))
        if table == "patients":
            half = (out.height + 1) // 2
            out.head(half).write_parquet(folder / "patients_part1.parquet")
            out.slice(half).write_parquet(folder / "patients_part2.parquet")
        else:
            out.write_parquet(folder / PARQUET_FILES[table])
        spec: dict[str, Any] = {"files": [PARQUET_FILES[table]]}
        spec["columns"] = {m: s for m, s in columns.items() if m != "national_id"}
        spec["values"] = {c: _inverse(labels[c]) for c in columns if c in labels}
        if table == "diagnoses":
            spec["codes"] = {s: system for s, (_, system) in PARQUET_CODES.items()}
        if table == "encounters":
            spec["constants"] = {"centre_code": CENTRE, "centre_country": CENTRE_COUNTRY}
        tables[table] = {k: v for k, v in spec.items() if v}
    return _mapping("centre-parquet", "parquet", "pat_id", tables, precedence=3)


def _typed(frame: pl.DataFrame, column: str, typed: pl.Expr) -> pl.Expr:
    """``typed`` when it keeps every value of the column, else the column as text (a faulty value stays as it is)."""
    lost = frame.select((typed.is_null() & (pl.col(column) != "")).any()).item()
    return pl.col(column) if lost else typed.alias(column)


def _inverse(labels: dict[str, str]) -> dict[str, str]:
    return {label: value for value, label in labels.items()}


def _mapping(name: str, kind: str, identity: str, tables: dict[str, Any], *, precedence: int) -> dict[str, Any]:
    return {
        "version": 1,
        "source": {"name": name, "kind": kind, "precedence": precedence, "dates": "dates"},
        "identity": {"field": identity, "kind": "national"},
        "tables": tables,
    }


def toml(doc: dict[str, Any], prefix: str = "") -> str:
    """A mapping as TOML: plain values first, then each table (``[a.b]``), recursively."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    text = "\n".join(lines) + ("\n" if lines else "")
    for key, value in doc.items():
        if isinstance(value, dict):
            name = f"{prefix}.{_key(key)}" if prefix else _key(key)
            if any(not isinstance(v, dict) for v in value.values()) or not value:
                text += f"\n[{name}]\n"
            text += toml(value, name)
    return text


def _key(key: str) -> str:
    return (
        key
        if key.replace("_", "").replace("-", "").isalnum() and key.isascii()
        else json.dumps(key, ensure_ascii=False)
    )


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)
