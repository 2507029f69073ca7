"""Each kind of source, read into the registry's raw tables (:class:`~research_kit.ingest.converted.Converted`).

``registry`` is the registry's own layout (patients.csv, diagnoses.csv...: what
the simulator writes); ``csv``, ``excel`` and ``parquet`` are exports read
through a mapping (:mod:`research_kit.ingest.tabular`); ``phenopackets`` and
``fhir`` have their own readers. The readers are imported when used: an
ingest of the registry's own layout never loads protobuf or pydantic models.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from research_kit.core.checksums import file_sha256
from research_kit.core.errors import BadInput
from research_kit.ingest import readers
from research_kit.ingest.converted import SOURCE_ISSUE, SOURCE_RECORD, Converted
from research_kit.ingest.mapping import Mapping
from research_kit.model.tables import SOURCE, TABLES


def convert(path: Path, mapping: Mapping, scratch: Path) -> Converted:
    """Read the source at ``path`` as its mapping says."""
    if mapping.kind == "registry":
        return read_registry(path, mapping, scratch)
    if mapping.kind in ("csv", "excel", "parquet"):
        from research_kit.ingest.tabular import read_tabular

        return read_tabular(mapping, path, scratch)
    if mapping.kind == "phenopackets":
        from research_kit.ingest.phenopackets_in import read_phenopackets

        return read_phenopackets(path, mapping, scratch)
    if mapping.kind == "fhir":
        from research_kit.ingest.fhir_in import read_fhir

        return read_fhir(path, mapping, scratch)
    raise BadInput(f"{mapping.path or path}: source.kind {mapping.kind!r} cannot be read")


def read_registry(path: Path, mapping: Mapping, scratch: Path) -> Converted:
    """The registry's own layout, read whole (it is merged with other sources): a row with more or fewer fields
    than its header gets a ``source_issue`` rather than being cut silently."""
    found = readers.find_sources([path])
    tables: dict[str, pl.DataFrame] = {}
    files: dict[str, str] = {}
    rows = 0
    for table in TABLES:
        empty_ok = table.name != "patients"
        src = readers.read_source(table, found[table.name], scratch / "text" / mapping.name, allow_empty=empty_ok)
        ragged = src.count_ragged()
        with readers.reading(src.path):
            frame = src.frame.with_row_index("_r", offset=1).collect()
        frame = frame.with_columns(
            pl.lit(mapping.name).alias(SOURCE),
            (pl.lit(f"{src.path.name}:") + pl.col("_r").cast(pl.String)).alias(SOURCE_RECORD),
            pl.when(pl.col("_r").is_in(sorted(ragged))).then(pl.lit("row:unreadable_value")).alias(SOURCE_ISSUE),
        ).drop("_r")
        tables[table.name] = frame.select(*table.columns, SOURCE_RECORD, SOURCE_ISSUE)
        files[src.path.name] = file_sha256(src.path)
        rows += frame.height
    return Converted(mapping.name, "registry", tables, records_in=rows, converted=rows, files=files)


def detect_kind(path: Path) -> str:
    """The kind of source at ``path``, from its files: what ``mapping draft`` assumes without ``--format``."""
    if path.is_dir():
        names = {p.name.lower() for p in path.iterdir() if p.is_file()}
        stems = {n.rsplit(".", 1)[0] for n in names}
        if {t.name for t in TABLES} <= stems:
            return "registry"
        suffixes = {n.rsplit(".", 1)[-1] for n in names if "." in n}
        if "ndjson" in suffixes:
            return "fhir"
        if suffixes & {"json", "jsonl"} or any(p.is_dir() for p in path.iterdir()):
            return _json_kind(next(iter(sorted(path.rglob("*.json"))), None))
        for kind, ext in (("excel", "xlsx"), ("parquet", "parquet"), ("csv", "csv")):
            if ext in suffixes:
                return kind
    suffix = path.suffix.lower()
    kinds = {".xlsx": "excel", ".parquet": "parquet", ".csv": "csv", ".ndjson": "fhir", ".zip": "phenopackets"}
    if suffix in kinds:
        return kinds[suffix]
    if suffix in (".json", ".jsonl"):
        return _json_kind(path)
    raise BadInput(f"{path}: cannot tell what kind of source this is: give --format")


def _json_kind(path: Path | None) -> str:
    if path is None:
        return "phenopackets"
    with path.open("rb") as fh:
        head = fh.read(4096)
    return "fhir" if b'"resourceType"' in head else "phenopackets"


def draft(path: Path, kind: str | None, show_values: list[str], scratch: Path | None = None) -> str:
    """A mapping proposed for the source at ``path`` (TOML), printing no value unless ``show_values`` names
    columns the steward says identify no one. ``scratch``: where a Latin-1 file's UTF-8 copy goes (inside the
    workspace's quarantine, the steward's, like the source)."""
    kind = kind or detect_kind(path)
    if kind in ("csv", "excel", "parquet"):
        from research_kit.ingest.tabular import draft_tabular

        return draft_tabular([path], kind, show_values, scratch=scratch)
    if show_values:
        raise BadInput(f"--show-values is for tabular sources (csv, excel, parquet), not {kind}")
    if kind == "phenopackets":
        from research_kit.ingest.phenopackets_in import draft_phenopackets

        return draft_phenopackets(path)
    if kind == "fhir":
        from research_kit.ingest.fhir_in import draft_fhir

        return draft_fhir(path)
    if kind == "registry":
        return REGISTRY_DRAFT.format(name=_source_name(path))
    raise BadInput(f"--format {kind!r}: use one of csv, excel, parquet, phenopackets, fhir, registry")


def _source_name(path: Path) -> str:
    import re

    name = re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-")
    return name or "registry"


REGISTRY_DRAFT = """\
# A source in the registry's own layout (patients, diagnoses, phenotypes, encounters files).
version = 1

[source]
name = "{name}"
kind = "registry"
precedence = 1  # when sources disagree on a patient's value, the lowest precedence wins

[identity]
field = "national_id"
kind = "national"
"""
