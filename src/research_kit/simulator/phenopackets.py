"""A simulated raw export written as GA4GH Phenopackets v2: one packet per patient, as a genetics lab sends them.

:func:`write_phenopackets` reads a raw export in the registry's own layout
(``patients``, ``diagnoses``, ``phenotypes``, ``encounters`` as CSV or
Parquet, what :func:`~research_kit.simulator.export.simulate_export` writes)
and writes each patient as a phenopacket:

- ``subject``: ``id`` is the patient's ``national_id``; ``dateOfBirth``;
  ``sex`` (female, male, undetermined -> ``FEMALE``, ``MALE``,
  ``OTHER_SEX``); ``vitalStatus`` (alive -> ``ALIVE``, dead -> ``DECEASED``
  with ``timeOfDeath``, lost to follow-up and opted out -> ``UNKNOWN_STATUS``);
  ``timeAtLastEncounter``: the age at the last encounter (at death for a
  patient who died before it);
- ``diseases``: one per diagnosis, the ORPHA code as the term (ICD-10 and
  the diagnosis date have no place in a phenopacket), its onset date;
- ``interpretations``: one per diagnosis, naming its disease; the status
  becomes the progress status (confirmed -> ``SOLVED``, suspected ->
  ``IN_PROGRESS``, undiagnosed -> ``UNSOLVED``), a gene and variant a
  causative genomic interpretation (HGVS ``hgvs.c``);
- ``phenotypicFeatures``: each phenotype, its observation date as onset
  (a feature is first known when observed); and **excluded features**, which
  the raw export never has: 0 to 3 common clinical features per patient,
  ruled out, chosen by a generator of fixed seed (:data:`EXCLUDED_SEED`)
  over the patients in the export's order, never one the patient has. The
  same export always gives the same packets.
- ``metaData``: the ontologies' resources and versions, a fixed ``created``.

With ``ages=True`` no date is written: no date of birth; onsets, the time of
death and the time at last encounter become ages (ISO 8601 durations, years
and months, or days under a month, as the GA4GH phenopacket-store writes
them); a disease that began at birth gets the HPO onset class "Congenital
onset" instead.

The packets are built as plain dicts (for speed: 100,000 in well under a
minute) in the JSON shape of ``json_format.MessageToDict``; a sample of every
run (the first packet and every 1,000th) is parsed back with the
``phenopackets`` package's ``json_format`` and a broken one stops the run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from research_kit.core.errors import BadInput, MissingData
from research_kit.model.codes import UNDIAGNOSED_ORPHA, load_code_systems, orpha_id
from research_kit.simulator.export import mark_simulated
from research_kit.simulator.simulate import AS_OF

Layout = Literal["files", "jsonl"]
LAYOUTS: tuple[str, ...] = ("files", "jsonl")
SCHEMA_VERSION = "2.0.2"
EXCLUDED_SEED = 20_240_426
EXCLUDED_P = (0.55, 0.25, 0.12, 0.08)  # P(0, 1, 2, 3 excluded features) per patient
# Common clinical features, ruled out in the simulated packets (HPO id, label).
EXCLUDABLE: tuple[tuple[str, str], ...] = (
    ("HP:0001250", "Seizure"),
    ("HP:0001263", "Global developmental delay"),
    ("HP:0001252", "Hypotonia"),
    ("HP:0000252", "Microcephaly"),
    ("HP:0004322", "Short stature"),
    ("HP:0001249", "Intellectual disability"),
    ("HP:0000365", "Hearing impairment"),
    ("HP:0000505", "Visual impairment"),
    ("HP:0001627", "Abnormal heart morphology"),
    ("HP:0000077", "Abnormality of the kidney"),
    ("HP:0002019", "Constipation"),
    ("HP:0001508", "Failure to thrive"),
)
SEX = {"female": "FEMALE", "male": "MALE", "undetermined": "OTHER_SEX"}
VITAL = {"alive": "ALIVE", "dead": "DECEASED", "lost to follow-up": "UNKNOWN_STATUS", "opted out": "UNKNOWN_STATUS"}
PROGRESS = {"confirmed": "SOLVED", "suspected": "IN_PROGRESS", "undiagnosed": "UNSOLVED"}
UNDIAGNOSED_LABEL = "Rare disorder without a determined diagnosis after full investigation"
CONGENITAL = {"id": "HP:0003577", "label": "Congenital onset"}
SAMPLE_EVERY = 1000  # every n-th packet is checked with json_format
_TABLES = ("patients", "diagnoses", "phenotypes", "encounters")


def write_phenopackets(raw_folder: Path, out: Path, *, layout: Layout, ages: bool = False) -> int:
    """Write the raw export in ``raw_folder`` as phenopackets; return how many (one per patient).

    ``layout="files"``: ``out`` is a new folder of ``<packet id>.json`` files
    (indented, as published collections are). ``layout="jsonl"``: ``out`` is a
    new JSON-lines file, one packet per line. Nothing appears under ``out``
    until everything is written. File names and packet ids are numbered
    (``sim-000001``), never built from an identifier.
    """
    if layout not in LAYOUTS:
        raise BadInput(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if out.exists():
        raise BadInput(f"{out}: already exists (choose another path)")
    frames = {name: _read_table(raw_folder, name) for name in _TABLES}
    packets = _packets(frames, ages=ages)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    try:
        count = _write_files(packets, tmp) if layout == "files" else _write_jsonl(packets, tmp)
        os.replace(tmp, out)
        # The mark sits beside the source, never in it (a reader of the folder would take it for a record).
        mark_simulated(out.parent, sorted(p for p in out.rglob("*.json")) if out.is_dir() else [out])
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    return count


def _read_table(folder: Path, name: str) -> pl.DataFrame:
    for suffix in (".parquet", ".csv"):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            if suffix == ".csv":
                return pl.read_csv(path, infer_schema=False, missing_utf8_is_empty_string=True)
            frame = pl.read_parquet(path)
            return frame.select(pl.col(c).cast(pl.String).fill_null("") for c in frame.columns)
    raise MissingData(f"{folder}: no {name}.parquet or {name}.csv (a raw export the simulator wrote?)")


def _write_files(packets: Iterator[tuple[str, dict[str, Any]]], folder: Path) -> int:
    folder.mkdir(mode=0o700)
    count = 0
    for packet_id, packet in packets:
        (folder / f"{packet_id}.json").write_text(json.dumps(packet, indent=2, ensure_ascii=False), encoding="utf-8")
        count += 1
    return count


def _write_jsonl(packets: Iterator[tuple[str, dict[str, Any]]], path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for _, packet in packets:
            fh.write(json.dumps(packet, ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")
            count += 1
    return count


def _with(frame: pl.DataFrame, *names: str) -> pl.DataFrame:
    """The frame, with empty text columns for those of ``names`` the export left out (optional columns)."""
    return frame.with_columns(pl.lit("").alias(n) for n in names if n not in frame.columns)


def _grouped(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """One row per patient, with the patient's diagnoses and phenotypes as lists and the last encounter date."""
    dx = _with(frames["diagnoses"], "onset_age", "onset_class", "excluded")
    ph = _with(frames["phenotypes"], "onset_age", "onset_class", "excluded")
    diagnoses = dx.group_by("national_id", maintain_order=True).agg(
        pl.col("orpha_code").alias("dx_code"),
        pl.col("status").alias("dx_status"),
        pl.col("onset_date").alias("dx_onset"),
        pl.col("onset_age").alias("dx_onset_age"),
        pl.col("onset_class").alias("dx_onset_class"),
        pl.col("excluded").alias("dx_excluded"),
        pl.col("gene_symbol").alias("dx_gene"),
        pl.col("variant_hgvs").alias("dx_variant"),
    )
    phenotypes = ph.group_by("national_id", maintain_order=True).agg(
        pl.col("hpo_code").alias("ph_code"),
        pl.col("observed_date").alias("ph_date"),
        pl.col("onset_age").alias("ph_onset_age"),
        pl.col("onset_class").alias("ph_onset_class"),
        pl.col("excluded").alias("ph_excluded"),
    )
    last_seen = frames["encounters"].group_by("national_id").agg(pl.col("encounter_date").max().alias("last_encounter"))
    patients = _with(frames["patients"], "age_at_last_record").select(
        "national_id", "date_of_birth", "sex", "vital_status", "date_of_death", "age_at_last_record"
    )
    return (
        patients.join(diagnoses, on="national_id", how="left", maintain_order="left")
        .join(phenotypes, on="national_id", how="left", maintain_order="left")
        .join(last_seen, on="national_id", how="left", maintain_order="left")
    )


def _packets(frames: dict[str, pl.DataFrame], *, ages: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    from google.protobuf import json_format  # protobuf is loaded only when packets are written
    from phenopackets import Phenopacket

    codes = load_code_systems()
    hpo_labels = {f"HP:{n:07d}": name for n, name in codes.hpo_names.items()}
    disease_labels = {orpha_id(d.orpha): d.name for d in codes.diseases}
    disease_labels[orpha_id(UNDIAGNOSED_ORPHA)] = UNDIAGNOSED_LABEL
    meta = _meta_data(codes.versions.get("hpo", ""))
    grouped = _grouped(frames)
    rng = np.random.default_rng(EXCLUDED_SEED)
    n_excluded = rng.choice(len(EXCLUDED_P), size=grouped.height, p=EXCLUDED_P)
    picks = rng.integers(0, len(EXCLUDABLE), size=(grouped.height, 6))
    for i, row in enumerate(grouped.iter_rows(named=True)):
        packet_id = f"sim-{i + 1:06d}"
        builder = _Builder(row, ages=ages)
        packet: dict[str, Any] = {"id": packet_id, "subject": builder.subject()}
        features = builder.features(hpo_labels)
        features += _excluded(features, int(n_excluded[i]), picks[i])
        if features:
            packet["phenotypicFeatures"] = features
        diseases, interpretations = builder.diseases(disease_labels, packet_id)
        if interpretations:
            packet["interpretations"] = interpretations
        if diseases:
            packet["diseases"] = diseases
        packet["metaData"] = meta
        if i % SAMPLE_EVERY == 0:
            json_format.ParseDict(packet, Phenopacket())  # raises on a broken packet: a bug here
        yield packet_id, packet


def _meta_data(hpo_version: str) -> dict[str, Any]:
    return {
        "created": f"{AS_OF.isoformat()}T00:00:00Z",
        "createdBy": "research-kit simulate",
        "resources": [
            {
                "id": "hp",
                "name": "human phenotype ontology",
                "url": "http://purl.obolibrary.org/obo/hp.owl",
                "version": hpo_version,
                "namespacePrefix": "HP",
                "iriPrefix": "http://purl.obolibrary.org/obo/HP_",
            },
            {
                "id": "ordo",
                "name": "Orphanet Rare Disease Ontology",
                "url": "http://www.orpha.net/ontologies/ordo.owl",
                "version": f"hpo-annotations-{hpo_version}",
                "namespacePrefix": "ORPHA",
                "iriPrefix": "http://www.orpha.net/ORDO/Orphanet_",
            },
        ],
        "phenopacketSchemaVersion": SCHEMA_VERSION,
    }


def _excluded(features: list[dict[str, Any]], count: int, picks: np.ndarray) -> list[dict[str, Any]]:
    """``count`` common features ruled out, none the patient has."""
    have = {f["type"]["id"] for f in features}
    out: list[dict[str, Any]] = []
    for k in picks:
        if len(out) == count:
            break
        term, label = EXCLUDABLE[int(k)]
        if term not in have:
            have.add(term)
            out.append({"type": {"id": term, "label": label}, "excluded": True})
    return out


def _timestamp(day: str) -> str:
    return f"{day}T00:00:00Z"


def age(born: date, when: date) -> str:
    """The age at ``when`` of a person born on ``born``, as the phenopacket-store writes it.

    >>> age(date(2000, 5, 20), date(2037, 6, 1)), age(date(2000, 5, 20), date(2006, 8, 19)), age(date(2000, 5, 20), date(2000, 6, 2))
    ('P37Y', 'P6Y2M', 'P13D')
    """  # noqa: E501
    months = (when.year - born.year) * 12 + when.month - born.month - (when.day < born.day)
    if months <= 0:
        return f"P{max((when - born).days, 0)}D"
    years, months = divmod(months, 12)
    return "P" + (f"{years}Y" if years else "") + (f"{months}M" if months else "")


class _Builder:
    """One patient's packet parts, from the grouped row."""

    def __init__(self, row: dict[str, Any], *, ages: bool) -> None:
        self.row, self.ages = row, ages
        dob = row["date_of_birth"]
        self.born = date.fromisoformat(dob) if dob else None

    def when(self, day: str, onset_age: str = "", onset_class: str = "") -> dict[str, Any] | None:
        """A TimeElement: the date (or, with ages, the age at it); else an age or class the export gave."""
        if day:
            if not self.ages:
                return {"timestamp": _timestamp(day)}
            if self.born is not None:
                return {"age": {"iso8601duration": age(self.born, date.fromisoformat(day))}}
        if onset_age:
            return {"age": {"iso8601duration": onset_age}}
        if onset_class:
            return {"ontologyClass": {"id": onset_class, "label": ""}}
        return None

    def subject(self) -> dict[str, Any]:
        row = self.row
        subject: dict[str, Any] = {"id": row["national_id"]}
        if row["date_of_birth"] and not self.ages:
            subject["dateOfBirth"] = _timestamp(row["date_of_birth"])
        last = row["last_encounter"] or ""
        if row["date_of_death"] and (not last or row["date_of_death"] < last):
            last = row["date_of_death"]
        if last and self.born is not None:
            subject["timeAtLastEncounter"] = {"age": {"iso8601duration": age(self.born, date.fromisoformat(last))}}
        elif row["age_at_last_record"]:
            subject["timeAtLastEncounter"] = {"age": {"iso8601duration": row["age_at_last_record"]}}
        status = VITAL.get(row["vital_status"])
        if status:
            vital: dict[str, Any] = {"status": status}
            death = self.when(row["date_of_death"]) if status == "DECEASED" else None
            if death:
                vital["timeOfDeath"] = death
            subject["vitalStatus"] = vital
        sex = SEX.get(row["sex"])
        if sex:
            subject["sex"] = sex
        return subject

    def features(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        row, out = self.row, []
        for code, day, onset_age, onset_class, excluded in zip(
            row["ph_code"] or (), row["ph_date"] or (), row["ph_onset_age"] or (), row["ph_onset_class"] or (),
            row["ph_excluded"] or (), strict=True,
        ):  # fmt: skip
            feature: dict[str, Any] = {"type": {"id": code, "label": labels.get(code, "")}}
            if excluded == "yes":
                feature["excluded"] = True
            onset = self.when(day, onset_age, onset_class)
            if onset:
                feature["onset"] = onset
            out.append(feature)
        return out

    def diseases(self, labels: dict[str, str], packet_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        row = self.row
        diseases: list[dict[str, Any]] = []
        interpretations: list[dict[str, Any]] = []
        for k, (code, status, day, onset_age, onset_class, excluded, gene, variant) in enumerate(
            zip(
                row["dx_code"] or (), row["dx_status"] or (), row["dx_onset"] or (), row["dx_onset_age"] or (),
                row["dx_onset_class"] or (), row["dx_excluded"] or (), row["dx_gene"] or (), row["dx_variant"] or (),
                strict=True,
            )
        ):  # fmt: skip
            term = {"id": code, "label": labels.get(code, "")}
            disease: dict[str, Any] = {"term": term}
            if excluded == "yes":
                disease["excluded"] = True
            if self.ages and day and day == row["date_of_birth"]:
                disease["onset"] = {"ontologyClass": CONGENITAL}
            elif onset := self.when(day, onset_age, onset_class):
                disease["onset"] = onset
            diseases.append(disease)
            diagnosis: dict[str, Any] = {"disease": term}
            if gene:
                diagnosis["genomicInterpretations"] = [_genomic(row["national_id"], gene, variant)]
            progress = PROGRESS.get(status, "UNKNOWN_PROGRESS")
            interpretations.append({"id": f"{packet_id}-{k + 1}", "progressStatus": progress, "diagnosis": diagnosis})
        return diseases, interpretations


def _genomic(subject_id: str, gene: str, variant: str) -> dict[str, Any]:
    descriptor: dict[str, Any] = {"id": f"{gene}:{variant}" if variant else gene, "geneContext": {"symbol": gene}}
    if variant:
        descriptor["expressions"] = [{"syntax": "hgvs.c", "value": variant}]
    descriptor["moleculeContext"] = "genomic"
    return {
        "subjectOrBiosampleId": subject_id,
        "interpretationStatus": "CAUSATIVE",
        "variantInterpretation": {"acmgPathogenicityClassification": "PATHOGENIC", "variationDescriptor": descriptor},
    }
