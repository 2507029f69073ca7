"""Source mappings: a declarative TOML file that says how one source becomes the registry's raw tables.

(The loader, checker, tabular reader and draft are filled in below this contract.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("registry", "csv", "excel", "parquet", "phenopackets", "fhir")
IDENTITY_KINDS = ("national", "registry")
DATE_MODES = ("dates", "ages")  # "ages": the source has no dates; ages (ISO 8601 durations) stand in for them


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
    identity = {"phenopackets": "subject.id", "fhir": "http://example.org/fhir/sid/national-id"}.get(kind, "national_id")
    return Mapping(name=name or kind, kind=kind, identity_field=identity)
