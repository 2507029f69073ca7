"""What every source reader hands the ingest: the registry's raw tables, and an account of the records read.

A source that is not in the registry's own layout (a mapped CSV, Excel or
Parquet export, a folder of phenopackets, a FHIR bundle) is first turned into
the raw tables of :mod:`research_kit.model.tables` (every column text, as an
export), so that one set of rules validates every source. The reader does
not judge values: a value it cannot read (a date not in the mapping's format,
an age that is not a duration) is passed on as it was, and the ingest's
validation quarantines its row with the reason. What a reader itself refuses
are whole records it cannot turn into rows at all (a phenopacket that is not
valid JSON or not a valid Phenopacket, a FHIR resource of an unknown type, a
record with no identifier): those are :class:`Refused`, each with its
locator (file, line or index, never a value from it) and a one-line reason.

A row's ``source_issue`` column (text; empty for most rows) names problems
the reader found that validation cannot see: ``sex:unmapped_value`` (a value
map of the mapping did not cover the value; the value is passed on as it
was, never defaulted), ``diagnoses:unknown_code_system`` and so on, ``;``-
separated. Validation quarantines such a row with ``source:<issue>``.
``source_record`` (text) says where the row came from (``cases/P1.json``,
``hospital_a.csv:12``), for the quarantine.

The accounting is exact: ``records_in == converted + len(refused)``; each
table's rows are counted again by the ingest's reconciliation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

SOURCE_ISSUE = "source_issue"
SOURCE_RECORD = "source_record"
# What a reader may report in ``source_issue``, after "field:" (validation has one rule per kind).
ISSUES = ("unmapped_value", "unknown_code_system", "unreadable_value")


class DuplicateKey(ValueError):
    """A JSON object that names one key twice: which value a reader takes is not defined, so it is refused."""


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook`` for records of a source: a key given twice is refused."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise DuplicateKey("an element is given twice")
    return out


@dataclass(frozen=True)
class Refused:
    """A whole record a reader could not turn into rows: where it was, and why (one line, no value quoted)."""

    locator: str
    reason: str
    observed_phenotypes: int = 0  # what it held, so that the phenotypes' reconciliation stays exact
    excluded_phenotypes: int = 0


@dataclass
class Converted:
    """One source read into the registry's raw tables.

    ``tables`` maps a table name to a frame of text columns, a subset of the
    table's columns (a missing optional column is read empty) plus
    ``source_record`` and ``source_issue``. ``kind`` is the source's kind
    (``csv``, ``excel``, ``parquet``, ``phenopackets``, ``fhir``, ``registry``);
    ``records_in`` what the source held (rows, phenopackets, resources);
    ``versions`` the ontology versions the source declares (a phenopacket's
    ``metaData.resources``: prefix -> version).
    """

    name: str
    kind: str
    tables: dict[str, pl.DataFrame]
    records_in: int
    converted: int
    refused: list[Refused] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # file (relative to the source) -> SHA-256
    facts: dict[str, Any] = field(default_factory=dict)  # anything else the manifest should record

    @property
    def balanced(self) -> bool:
        return self.records_in == self.converted + len(self.refused)
