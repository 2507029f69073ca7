"""Source mappings: a declarative TOML file that says how one source becomes the registry's raw tables.

A mapping names the source (each row's ``source``), its kind and precedence,
where the person's identifier is, and for each raw table of
:mod:`research_kit.model.tables` it feeds: the files (globs, several files
may feed one table; an Excel workbook's sheet), the model columns read from
source columns, date formats, value maps, code columns and constants::

    version = 1
    [source]
    name = "chl"            # each row's source; a-z, 0-9, _ and - only
    kind = "csv"            # csv | excel | parquet | phenopackets | fhir
    precedence = 1          # when sources disagree on a patient's value, the lowest wins
    dates = "dates"         # or "ages": the source has no dates, ages stand in for them
    [identity]
    field = "Matricule"     # the source column with the person's identifier
    kind = "national"       # or "registry": values become registry:<id>
    [tables.patients]
    files = ["patients*.csv"]
    [tables.patients.columns]       # model column = "source column"
    date_of_birth = "Date de naissance"
    [tables.patients.dates]         # model column = strptime format, or "excel" (serial days)
    date_of_birth = "%d/%m/%Y"
    [tables.patients.values.sex]    # "source value" = "model value"
    M = "male"
    [tables.patients.constants]     # model column = the value of every row
    country = "LU"
    [tables.diagnoses.codes]        # "source column" = ORPHA | OMIM | ICD10 | ICD11 | MONDO | curie
    "Code Orpha" = "ORPHA"

A phenopackets or FHIR mapping has [source], [identity] and only constants
and values under its tables; its identity field is a phenopacket path
(``id``, ``subject.id``, ``subject.alternateIds:<PREFIX>``) or a FHIR
identifier system URI.

:func:`check_mapping` names every mistake, one line each, with its TOML key
(unknown keys too: a typo must never be silently ignored); the draft's
placeholders (``"TODO"``, an empty value map) are mistakes until filled in.
:func:`load_mapping` refuses a mapping with any mistake.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from research_kit.core.errors import BadInput, MissingData, quoted
from research_kit.model.disease_codes import SYSTEMS
from research_kit.model.onsets import ONSET_CLASSES
from research_kit.model.tables import (
    BY_NAME,
    CODE_COLUMNS,
    DIAGNOSIS_STATUSES,
    ENCOUNTER_TYPES,
    SEX_VALUES,
    SOURCE,
    TABLE_NAMES,
    TABLES,
    VITAL_STATUSES,
)

KINDS = ("registry", "csv", "excel", "parquet", "phenopackets", "fhir")
TABULAR_KINDS = ("csv", "excel", "parquet")  # read by research_kit.ingest.tabular, table by table
IDENTITY_KINDS = ("national", "registry")
DATE_MODES = ("dates", "ages")  # "ages": the source has no dates; ages (ISO 8601 durations) stand in for them
VERSION = 1
EXCEL_DATES = "excel"  # a date column given as Excel serial days (in the workbook's own date system)
CURIE = "curie"  # a code column whose values carry their system's prefix (ORPHA:558), systems mixed
TODO = "TODO"  # the draft's placeholder: check flags it until the steward fills it in
NAME = re.compile(r"[a-z0-9_-]{1,64}")

FLAGS = ("yes", "no")
# The values the model allows in each coded column: a value map or a constant must land on one of them.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "sex": SEX_VALUES,
    "vital_status": VITAL_STATUSES,
    "status": DIAGNOSIS_STATUSES,
    "encounter_type": ENCOUNTER_TYPES,
    "cross_border_insured": FLAGS,
    "consent_reuse": FLAGS,
    "agrees_to_contact": FLAGS,
    "excluded": FLAGS,
    "onset_class": tuple(ONSET_CLASSES),
}
DATE_COLUMNS = frozenset(c for t in TABLES for c in t.columns if c.endswith("_date") or c.startswith("date_of_"))

TOP_KEYS = ("version", "source", "identity", "tables")
SOURCE_KEYS = ("name", "kind", "precedence", "dates")
IDENTITY_KEYS = ("field", "kind")
TABLE_KEYS = ("files", "sheet", "columns", "dates", "values", "codes", "constants")
# All a phenopackets or FHIR mapping says about a table: what its reader applies.
RECORD_KEYS: dict[str, tuple[str, ...]] = {"phenopackets": ("constants",), "fhir": ("constants", "values")}
FHIR_VALUE_MAPS = {"patients": "sex", "diagnoses": "status", "encounters": "encounter_type"}  # coded, not coding
PHENOPACKET_FIELDS = ("id", "subject.id")
ALTERNATE_ID = "subject.alternateIds:"
URI = re.compile(r"(https?://|urn:)\S+")

# strptime directives a date format may use (those Python and Polars read alike), and the date parts it needs.
DIRECTIVES = frozenset("YymbBhdejHMSfpIaATFD%")
YEARS, MONTHS, DAYS = frozenset("YyFD"), frozenset("mbBhFD"), frozenset("deFD")
TIME_DIRECTIVES = frozenset("HMSfpIT")


@dataclass(frozen=True)
class TableMapping:
    """How one raw table is read from the source."""

    files: tuple[str, ...] = ()  # globs relative to the source folder; several files may feed one table
    sheet: str | None = None  # an Excel file's sheet (default: the first)
    columns: dict[str, str] = field(default_factory=dict)  # model column -> source column
    dates: dict[str, str] = field(default_factory=dict)  # model column -> strptime format, or "excel" (serial days)
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # model column -> {source value: model value}
    codes: dict[str, str] = field(default_factory=dict)  # source column -> code system (ORPHA...), or "curie"
    constants: dict[str, str] = field(default_factory=dict)  # model column -> value for every row


@dataclass(frozen=True)
class Mapping:
    """A source mapping, read and checked (:func:`load_mapping`)."""

    name: str  # the source's name: each row's ``source`` in the extract, and in merges
    kind: str  # one of KINDS
    precedence: int = 1  # when sources disagree on a patient's value, the lowest precedence wins
    identity_field: str = "national_id"  # where the person's identifier is (a column, or a phenopacket/FHIR path)
    identity_kind: str = "national"  # one of IDENTITY_KINDS
    dates: str = "dates"  # one of DATE_MODES
    tables: dict[str, TableMapping] = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""  # of the mapping file's bytes: goes into the manifest


def default_mapping(kind: str, name: str | None = None) -> Mapping:
    """The mapping used when none is given: the registry's own layout, or a source kind's usual fields."""
    identity = {"phenopackets": "subject.id", "fhir": "http://example.org/fhir/sid/national-id"}.get(
        kind, "national_id"
    )
    return Mapping(name=name or kind, kind=kind, identity_field=identity)


def load_mapping(path: Path) -> Mapping:
    """Read and check a mapping file; any mistake is a :class:`BadInput` naming the first (and how many more)."""
    mapping, problems = _parse(path)
    if problems:
        more = f" ({len(problems) - 1} more: run research-kit mapping check {path})" if len(problems) > 1 else ""
        raise BadInput(f"{path}: {problems[0]}{more}")
    assert mapping is not None  # no problem means it was built
    return mapping


def check_mapping(path: Path) -> list[str]:
    """Every mistake of a mapping file, one line each, starting with its TOML key; empty when it is good."""
    return _parse(path)[1]


def date_format_problem(fmt: str) -> str | None:
    """Why ``fmt`` is not a date format a mapping may give (None when it is one)."""
    if fmt == EXCEL_DATES:
        return None
    used = re.findall(r"%(.)", fmt)
    if not used or any(d not in DIRECTIVES for d in used) or fmt.replace("%%", "").endswith("%"):
        return f'"{quoted(fmt)}" is not a date format (e.g. "%d/%m/%Y", or "excel" for serial days)'
    found = set(used)
    if not (found & YEARS and ((found & MONTHS and found & DAYS) or "j" in found)):
        return f'"{quoted(fmt)}" is not a date format: it needs a year, a month and a day'
    return None


def has_time(fmt: str) -> bool:
    """Whether a date format reads a time of day too (the date is then the day the time falls in)."""
    return bool(set(re.findall(r"%(.)", fmt)) & TIME_DIRECTIVES)


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{key}: {message}")

    def unknown(self, key: str, value: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for extra in value:
            if extra not in allowed:
                self.add(f"{key}.{extra}" if key else extra, f"unknown key (use {', '.join(allowed)})")


def _parse(path: Path) -> tuple[Mapping | None, list[str]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MissingData(f"{path}: no such mapping file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: a folder, not a mapping file") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, ["(file): not UTF-8 text"]
    except tomllib.TOMLDecodeError as exc:
        return None, [f"(file): not valid TOML: {exc}"]
    problems = _Problems()
    mapping = _mapping(doc, problems)
    if mapping is None:
        return None, problems.items
    return replace(mapping, path=path, sha256=hashlib.sha256(raw).hexdigest()), problems.items


def _mapping(doc: dict[str, Any], problems: _Problems) -> Mapping | None:
    problems.unknown("", doc, TOP_KEYS)
    if "version" not in doc:
        problems.add("version", f"missing (write version = {VERSION})")
    elif doc["version"] != VERSION or isinstance(doc["version"], bool):
        problems.add(
            "version", f"{_shown(doc['version'])} is not a mapping version this research-kit reads ({VERSION})"
        )
    source = _section(doc, "source", problems, required=True)
    problems.unknown("source", source, SOURCE_KEYS)
    name = _text(source, "name", "source", problems, required=True)
    if name and not NAME.fullmatch(name):
        problems.add("source.name", f'"{quoted(name)}" is not a source name (a-z, 0-9, _ and - only)')
    kind = _choice(source, "kind", "source", KINDS, problems, required=True)
    precedence = source.get("precedence", 1)
    if isinstance(precedence, bool) or not isinstance(precedence, int) or precedence < 1:
        problems.add("source.precedence", f"{_shown(precedence)} is not a positive whole number")
        precedence = 1
    dates = _choice(source, "dates", "source", DATE_MODES, problems) or "dates"
    default = default_mapping(kind or "csv")
    identity = _section(doc, "identity", problems)
    problems.unknown("identity", identity, IDENTITY_KEYS)
    identity_field = _text(identity, "field", "identity", problems) or default.identity_field
    identity_kind = _choice(identity, "kind", "identity", IDENTITY_KINDS, problems) or "national"
    if kind:
        _check_identity_field(kind, identity_field, problems)
    tables_doc = _section(doc, "tables", problems)
    tables: dict[str, TableMapping] = {}
    for table, spec in tables_doc.items():
        key = f"tables.{table}"
        if table not in TABLE_NAMES:
            problems.add(key, f"unknown table (use {', '.join(TABLE_NAMES)})")
        elif not isinstance(spec, dict):
            problems.add(key, "must be a table of settings ([tables.NAME])")
        else:  # an unknown kind: the table is still checked, as far as it can be without one
            tables[table] = _table(table, spec, kind, identity_field, problems)
    if kind in TABULAR_KINDS and not tables_doc:
        problems.add("tables", "missing: a [tables.NAME] section for each table the source feeds")
    if not name or not kind:
        return None
    return Mapping(name, kind, precedence, identity_field, identity_kind, dates, tables)


def _check_identity_field(kind: str, value: str, problems: _Problems) -> None:
    if kind == "phenopackets" and value not in PHENOPACKET_FIELDS:
        prefix = value.removeprefix(ALTERNATE_ID)
        if not value.startswith(ALTERNATE_ID) or not prefix.strip():
            shown = ", ".join([*PHENOPACKET_FIELDS, ALTERNATE_ID + "<PREFIX>"])
            problems.add("identity.field", f'"{quoted(value)}" is not a phenopacket identifier field (use {shown})')
    elif kind == "fhir" and not URI.fullmatch(value):
        problems.add("identity.field", f'"{quoted(value)}" is not an identifier system URI (http://..., urn:...)')


def _table(table: str, spec: dict[str, Any], kind: str, identity: str, problems: _Problems) -> TableMapping:
    key = f"tables.{table}"
    columns_of = BY_NAME[table].columns
    tabular = kind in TABULAR_KINDS or not kind
    problems.unknown(key, spec, TABLE_KEYS)
    if kind == "registry":  # what check accepts is applied: a registry mapping reads the layout as it is
        for extra in spec:
            problems.add(
                f"{key}.{extra}", "a registry mapping reads the registry's own layout as it is: no table settings"
            )
    elif not tabular:
        for extra in spec:
            if extra in TABLE_KEYS and extra not in RECORD_KEYS.get(kind, ()):
                allowed = " and ".join(RECORD_KEYS.get(kind, ()))
                problems.add(f"{key}.{extra}", f"a {kind} mapping takes only {allowed} for a table")
        if kind == "fhir" and isinstance(spec.get("values"), dict):
            for column in spec["values"]:
                if column != FHIR_VALUE_MAPS.get(table):
                    what = FHIR_VALUE_MAPS.get(table)
                    problems.add(
                        f"{key}.values.{column}",
                        f"a FHIR mapping maps the values of {what} only"
                        if what
                        else "a FHIR mapping maps no value here",
                    )
    files: tuple[str, ...] = ()
    if tabular and (kind or "files" in spec):
        files = _files(spec.get("files"), f"{key}.files", problems)
    sheet = spec.get("sheet")
    if sheet is not None and not (isinstance(sheet, str) and sheet.strip()):
        problems.add(f"{key}.sheet", "must be the name of a sheet")
        sheet = None
    elif sheet is not None and kind and kind != "excel":
        problems.add(f"{key}.sheet", f"only an Excel source has sheets, not a {kind} source")
    columns = _strings(spec, "columns", key, problems)
    for model, source in columns.items():
        where = f"{key}.columns.{model}"
        if model not in columns_of:
            problems.add(where, f"no column {quoted(model)!r} in table {table}")
        elif model == SOURCE:
            problems.add(where, "every row's source is the mapping's source.name, not a column")
        elif model in CODE_COLUMNS.values():
            problems.add(where, f'codes are read through [{key}.codes] ("source column" = "ORPHA" ...)')
        _no_todo(where, source, problems)
    constants = _strings(spec, "constants", key, problems)
    for model, value in constants.items():
        where = f"{key}.constants.{model}"
        if model not in columns_of:
            problems.add(where, f"no column {quoted(model)!r} in table {table}")
        elif model in ("national_id", SOURCE):
            problems.add(where, f"{model} cannot be a constant (it comes from [identity] and source.name)")
        elif model in columns:
            problems.add(where, f"also read from a column (columns.{model}): give one or the other")
        elif model in VOCABULARY and value not in VOCABULARY[model]:
            problems.add(where, _not_allowed(value, model))
        elif model in DATE_COLUMNS and value and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            problems.add(where, f'"{quoted(value)}" is not an ISO date (YYYY-MM-DD)')
        _no_todo(where, value, problems)
    dates = _strings(spec, "dates", key, problems)
    for model, fmt in dates.items():
        where = f"{key}.dates.{model}"
        if model not in DATE_COLUMNS or model not in columns_of:
            problems.add(where, f"{quoted(model)!r} is not a date column of table {table}")
        elif tabular and model not in columns:
            problems.add(where, f"no source column for it: add {key}.columns.{model}")
        if (why := date_format_problem(fmt)) is not None:
            problems.add(where, why)
    values = _value_maps(spec, key, columns_of, columns, dates, tabular, problems)
    codes = _strings(spec, "codes", key, problems)
    if codes and table != "diagnoses":
        problems.add(f"{key}.codes", "only diagnoses have disease codes")
    for source, system in codes.items():
        if system not in (*SYSTEMS, CURIE):
            problems.add(
                f"{key}.codes.{source}", f'"{quoted(system)}" is not a code system (use {", ".join(SYSTEMS)} or curie)'
            )
    bare = [s for s in codes.values() if s in SYSTEMS]
    for system in sorted({s for s in bare if bare.count(s) > 1}):
        problems.add(f"{key}.codes", f"two columns of {system} codes (a diagnosis has one code per system)")
    if tabular and not columns.get("national_id", identity).strip():
        problems.add(f"{key}.columns.national_id", "empty: name the column with the person's identifier")
    return TableMapping(files, sheet, columns, dates, values, codes, constants)


def _value_maps(
    spec: dict[str, Any],
    key: str,
    columns_of: tuple[str, ...],
    columns: dict[str, str],
    dates: dict[str, str],
    tabular: bool,
    problems: _Problems,
) -> dict[str, dict[str, str]]:
    maps = _section(spec, "values", problems, key)
    out: dict[str, dict[str, str]] = {}
    for model, value_map in maps.items():
        where = f"{key}.values.{model}"
        if model not in columns_of:
            problems.add(where, f"no column {quoted(model)!r} in table {key.split('.')[-1]}")
            continue
        if model in ("national_id", SOURCE):
            problems.add(where, f"{model} takes no value map")
            continue
        if tabular and model not in columns:
            problems.add(where, f"no source column for it: add {key}.columns.{model}")
        if model in dates:
            problems.add(where, f"also has a date format ({key}.dates.{model}): give one or the other")
        if not isinstance(value_map, dict):
            problems.add(where, 'must be a table of "source value" = "model value"')
            continue
        if not value_map:
            problems.add(where, 'empty: list each source value ("source value" = "model value")')
        out[model] = {}
        for given, target in value_map.items():
            entry = f"{where}.{given}" if given else f'{where}.""'
            if not isinstance(target, str):
                problems.add(entry, f"must be a text value, not {_shown(target)}")
            elif not given.strip():
                problems.add(entry, "an empty value is never mapped (it stays empty)")
            elif model in VOCABULARY and target not in VOCABULARY[model]:
                problems.add(entry, _not_allowed(target, model))
            else:
                _no_todo(entry, target, problems)
                out[model][given.strip()] = target
    return out


def _shown(value: object) -> str:
    """A value of the mapping file as a message shows it: text in double quotes, anything else as TOML wrote it."""
    return f'"{quoted(value)}"' if isinstance(value, str) else quoted(value)


def _not_allowed(value: str, column: str) -> str:
    if value == TODO:
        return "still a TODO placeholder: fill it in"
    return f'"{quoted(value)}" is not a value of {column} (use {", ".join(VOCABULARY[column])})'


def _no_todo(key: str, value: str, problems: _Problems) -> None:
    if value.strip() == TODO:
        problems.add(key, "still a TODO placeholder: fill it in")


def _section(
    doc: dict[str, Any], name: str, problems: _Problems, parent: str = "", *, required: bool = False
) -> dict[str, Any]:
    key = f"{parent}.{name}" if parent else name
    if name not in doc:
        if required:
            problems.add(key, f"missing: a [{key}] section")
        return {}
    value = doc[name]
    if not isinstance(value, dict):
        problems.add(key, f"must be a table ([{key}])")
        return {}
    return value


def _strings(spec: dict[str, Any], name: str, parent: str, problems: _Problems) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in _section(spec, name, problems, parent).items():
        if isinstance(value, str) and (value.strip() or name == "constants"):
            out[key] = value
        else:
            problems.add(f"{parent}.{name}.{key}", f"must be a non-empty text value, not {_shown(value)}")
    return out


def _text(section: dict[str, Any], name: str, parent: str, problems: _Problems, *, required: bool = False) -> str:
    key = f"{parent}.{name}"
    value = section.get(name)
    if value is None:
        if required:
            problems.add(key, "missing")
        return ""
    if not isinstance(value, str) or not value.strip():
        problems.add(key, f"must be a non-empty text value, not {_shown(value)}")
        return ""
    _no_todo(key, value, problems)
    return value


def _choice(
    section: dict[str, Any],
    name: str,
    parent: str,
    allowed: tuple[str, ...],
    problems: _Problems,
    *,
    required: bool = False,
) -> str:
    value = _text(section, name, parent, problems, required=required)
    if value and value != TODO and value not in allowed:
        problems.add(f"{parent}.{name}", f'"{quoted(value)}" is not one of {", ".join(allowed)}')
        return ""
    return "" if value == TODO else value


def _files(value: Any, key: str, problems: _Problems) -> tuple[str, ...]:
    if value is None:
        problems.add(key, 'missing: the files that feed the table (e.g. ["patients*.csv"])')
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        problems.add(key, 'must be a list of file names or globs (e.g. ["patients*.csv"])')
        return ()
    for pattern in value:
        if pattern.startswith(("/", "~")) or ".." in Path(pattern).parts:
            problems.add(key, f'"{quoted(pattern)}" must be relative to the source folder, inside it')
        _no_todo(key, pattern, problems)
    return tuple(value)
