"""GA4GH Phenopackets v2 in: real published packets, the simulator's packets read back, malformed ones, the checker
held to json_format.Parse, and the draft mapping."""

from __future__ import annotations

import copy
import json
import re
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phenopackets import Phenopacket

from research_kit.core.errors import BadInput
from research_kit.ingest.converted import SOURCE_ISSUE, SOURCE_RECORD
from research_kit.ingest.mapping import Mapping, TableMapping
from research_kit.ingest.phenopackets_in import Checker, Refusal, draft_phenopackets, extract, read_phenopackets
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.simulator.phenopackets import age, write_phenopackets

SAMPLE = Path(__file__).parents[1] / "data" / "phenopackets-sample"
STORE = Mapping(name="store", kind="phenopackets", identity_field="id", identity_kind="registry")
SIM = Mapping(name="sim", kind="phenopackets", identity_field="subject.id", identity_kind="national")


def read(source: Path, mapping: Mapping = SIM, **kwargs: Any):  # type: ignore[no-untyped-def]
    return read_phenopackets(source, mapping, source.parent / "scratch", **kwargs)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "export"
    simulate_export(SimulationSpec(patients=250, seed=5, format="csv"), out)
    return out


@pytest.fixture(scope="module")
def packets(raw: Path) -> Path:
    out = raw.parent / "packets"
    write_phenopackets(raw, out, layout="files")
    return out


def raw_table(raw: Path, name: str) -> pl.DataFrame:
    return pl.read_csv(raw / f"{name}.csv", infer_schema=False, missing_utf8_is_empty_string=True)


# --- real published packets -------------------------------------------------------------------------------------


def test_the_real_sample_reads_whole() -> None:
    got = read(SAMPLE, STORE)
    assert (got.records_in, got.converted, got.refused) == (24, 24, [])
    assert got.balanced
    assert got.kind == "phenopackets"
    phenotypes, diagnoses, patients = got.tables["phenotypes"], got.tables["diagnoses"], got.tables["patients"]
    assert phenotypes.height == 575
    assert (phenotypes["excluded"] == "yes").sum() == 326
    assert got.facts["excluded_phenotypes_in"] == 326
    assert got.facts["observed_phenotypes_in"] == 249
    assert diagnoses.height == 24
    assert diagnoses["omim_code"].str.starts_with("OMIM:").all()
    assert (diagnoses.select("orpha_code", "icd10_code", "icd11_code", "mondo_code") == "").to_numpy().all()
    assert (diagnoses["gene_symbol"] != "").all()
    assert (diagnoses["status"] == "confirmed").all()
    assert (patients["date_of_birth"] == "").all()
    assert patients["national_id"].str.starts_with("registry:").all()
    assert patients["national_id"].n_unique() == 24  # packet ids: subject ids repeat across cohorts ("Patient 1")
    assert set(got.versions) >= {"HP", "OMIM"}
    assert " | " in got.versions["HP"]
    assert len(got.files) == 24
    assert all(len(h) == 64 for h in got.files.values())
    for frame in got.tables.values():
        assert (frame["source"] == "store").all()
        assert frame[SOURCE_RECORD].str.ends_with(".json").all()


def test_the_draft_for_the_real_sample_says_registry_ids_and_ages_and_prints_no_value() -> None:
    text = draft_phenopackets(SAMPLE)
    assert 'kind = "registry"' in text
    assert 'field = "id"' in text
    assert "subject ids repeat" in text.lower()
    assert 'dates = "ages"' in text
    assert 'vital_status = "alive"' in text
    assert 'country = "ZZ"' in text
    assert 'status = "confirmed"' in text
    assert "have no sex (none, or UNKNOWN_SEX): read as unknown" in text  # the EU common data set's unknown
    assert "no national ID" in text
    for path in SAMPLE.glob("*.json"):
        packet = json.loads(path.read_text())
        for value in (packet["id"], packet["subject"]["id"]):
            assert value not in text


# --- the simulator's packets, read back ---------------------------------------------------------------------------


def test_every_simulated_packet_is_valid_and_some_features_are_excluded(packets: Path) -> None:
    excluded, checker = 0, Checker()
    for path in sorted(packets.glob("*.json")):
        message = json_format.Parse(path.read_bytes(), Phenopacket())
        excluded += sum(f.excluded for f in message.phenotypic_features)
        checker.read(path.read_bytes())
    assert excluded > 50
    assert (checker.fast, checker.slow) == (250, 0)  # the checker never needed Parse for them


def test_the_real_sample_needs_no_parse_either() -> None:
    checker = Checker()
    for path in sorted(SAMPLE.glob("*.json")):
        checker.read(path.read_bytes())
    assert (checker.fast, checker.slow) == (24, 0)


def test_simulated_packets_read_back_to_the_raw_tables(raw: Path, packets: Path) -> None:
    got = read(packets)
    assert got.refused == []
    assert got.records_in == got.converted == 250
    patients = raw_table(raw, "patients")
    mine = got.tables["patients"]
    assert mine["national_id"].to_list() == patients["national_id"].to_list()
    for column in ("date_of_birth", "sex", "date_of_death"):
        assert mine[column].to_list() == patients[column].to_list(), column
    known = patients["vital_status"].is_in(["alive", "dead"])
    assert mine.filter(known)["vital_status"].to_list() == patients.filter(known)["vital_status"].to_list()
    assert (mine.filter(~known)["vital_status"] == "").all()  # lost to follow-up, opted out: UNKNOWN_STATUS
    assert mine["age_at_last_record"].str.starts_with("P").all()

    columns = ["national_id", "orpha_code", "status", "onset_date", "gene_symbol", "variant_hgvs"]
    assert got.tables["diagnoses"].select(columns).equals(raw_table(raw, "diagnoses").select(columns))
    assert (got.tables["diagnoses"]["excluded"] == "no").all()

    phenotypes = got.tables["phenotypes"]
    observed = phenotypes.filter(pl.col("excluded") == "no").select("national_id", "hpo_code", "observed_date")
    assert observed.equals(raw_table(raw, "phenotypes").select(observed.columns))
    ruled_out = phenotypes.filter(pl.col("excluded") == "yes")
    assert ruled_out.height > 50
    assert (ruled_out["observed_date"] == "").all()
    assert got.tables["encounters"].height == 0


def test_with_ages_no_date_is_written_and_ages_match_the_dates(raw: Path, tmp_path: Path) -> None:
    write_phenopackets(raw, tmp_path / "ages", layout="files", ages=True)
    assert "dateOfBirth" not in (tmp_path / "ages" / "sim-000001.json").read_text()
    got = read(tmp_path / "ages")
    dx = got.tables["diagnoses"]
    assert (got.tables["patients"]["date_of_birth"] == "").all()
    assert (dx["onset_date"] == "").all()
    births = dict(raw_table(raw, "patients").select("national_id", "date_of_birth").iter_rows())
    raw_dx = raw_table(raw, "diagnoses")
    for (nid, onset), onset_age, onset_class in zip(
        raw_dx.select("national_id", "onset_date").iter_rows(), dx["onset_age"], dx["onset_class"], strict=True
    ):
        born = births[nid]
        if onset == born:
            assert onset_class == "HP:0003577"
            assert onset_age == ""
        else:
            assert onset_age == age(date.fromisoformat(born), date.fromisoformat(onset))
    assert 'dates = "ages"' in draft_phenopackets(tmp_path / "ages")


@pytest.mark.slow  # a few seconds or more: make test-slow runs it
def test_folder_zip_jsonl_and_several_processes_give_the_same_tables(raw: Path, packets: Path, tmp_path: Path) -> None:
    write_phenopackets(raw, tmp_path / "p.jsonl", layout="jsonl")
    with zipfile.ZipFile(tmp_path / "p.zip", "w") as archive:
        for path in sorted(packets.glob("*.json")):
            archive.write(path, f"cases/{path.name}")
    folder = read(packets)
    others = [read(tmp_path / "p.zip"), read(tmp_path / "p.jsonl"), read(packets, workers=2)]
    for other in [*others, read(tmp_path / "p.jsonl", workers=2), read(tmp_path / "p.zip", workers=2)]:
        assert other.records_in == folder.records_in
        assert other.versions == folder.versions
        for name, frame in folder.tables.items():
            assert other.tables[name].drop(SOURCE_RECORD).equals(frame.drop(SOURCE_RECORD)), name
    assert read(tmp_path / "p.jsonl").tables["patients"][SOURCE_RECORD][:2].to_list() == ["p.jsonl:1", "p.jsonl:2"]
    assert list(read(tmp_path / "p.zip").files) == ["p.zip"]


def test_the_draft_for_simulated_packets_finds_the_national_id(packets: Path) -> None:
    text = draft_phenopackets(packets)
    assert 'field = "subject.id"' in text
    assert 'kind = "national"' in text
    assert 'dates = "dates"' in text
    assert "vital_status =" not in text  # every packet has one
    assert "UNKNOWN_STATUS" in text  # lost to follow-up, opted out
    assert not re.search(r"\d{13}", text)


# --- identity and constants ------------------------------------------------------------------------------------


def one_packet(**subject: Any) -> dict[str, Any]:
    return {
        "id": "pkt-1",
        "subject": {"id": "S1", **subject},
        "phenotypicFeatures": [{"type": {"id": "HP:0001250", "label": "Seizure"}}],
        "diseases": [{"term": {"id": "ORPHA:558", "label": "Marfan syndrome"}}],
        "metaData": {"created": "2024-01-01T00:00:00Z"},
    }


def write(folder: Path, packets: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, packet in packets.items():
        data = packet if isinstance(packet, bytes) else json.dumps(packet).encode()
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_identity_from_an_alternate_id_and_constants_fill_what_is_empty(tmp_path: Path) -> None:
    source = write(tmp_path / "in", {"a.json": one_packet(alternateIds=["MRN:77", "lu-nin:1985031404207"])})
    mapping = Mapping(
        name="lab",
        kind="phenopackets",
        identity_field="subject.alternateIds:LU-NIN",
        tables={
            "patients": TableMapping(constants={"country": "LU", "vital_status": "alive"}),
            "diagnoses": TableMapping(constants={"status": "suspected"}),
        },
    )
    got = read(source, mapping)
    patient = got.tables["patients"].row(0, named=True)
    assert patient["national_id"] == "1985031404207"
    assert (patient["country"], patient["vital_status"], patient["sex"]) == ("LU", "alive", "unknown")
    assert got.tables["diagnoses"].row(0, named=True)["status"] == "suspected"
    assert got.tables["diagnoses"].row(0, named=True)["orpha_code"] == "ORPHA:558"
    with pytest.raises(BadInput, match=r"identity\.field"):
        read(source, Mapping(name="x", kind="phenopackets", identity_field="subject.name"))
    wrong = TableMapping(constants={"pet": "y"})
    with pytest.raises(BadInput, match="not a column of patients"):
        read(source, Mapping(name="x", kind="phenopackets", identity_field="id", tables={"patients": wrong}))


def test_interpretations_give_status_gene_and_variant_or_a_row_of_their_own(tmp_path: Path) -> None:
    death = {"status": "DECEASED", "timeOfDeath": {"age": {"iso8601duration": "P3Y"}}}
    packet = one_packet(sex="MALE", vitalStatus=death)
    packet["interpretations"] = [
        {
            "id": "i1",
            "progressStatus": "IN_PROGRESS",
            "diagnosis": {
                "disease": {"id": "ORPHA:558"},
                "genomicInterpretations": [
                    {"subjectOrBiosampleId": "S1", "interpretationStatus": "CANDIDATE", "gene": {"symbol": "X"}},
                    {
                        "subjectOrBiosampleId": "S1",
                        "interpretationStatus": "CAUSATIVE",
                        "variantInterpretation": {
                            "variationDescriptor": {
                                "id": "v",
                                "geneContext": {"valueId": "HGNC:3603", "symbol": "FBN1"},
                                "expressions": [
                                    {"syntax": "hgvs.g", "value": "NC_000015.10:g.48411187G>A"},
                                    {"syntax": "hgvs.c", "value": "NM_000138.5:c.4082G>A"},
                                ],
                            }
                        },
                    },
                ],
            },
        },
        {"id": "i2", "progressStatus": "SOLVED", "diagnosis": {"disease": {"id": "OMIM:154700"}}},
    ]
    got = read(write(tmp_path / "in", {"a.json": packet}))
    rows = got.tables["diagnoses"].select("orpha_code", "omim_code", "status", "gene_symbol", "variant_hgvs").rows()
    assert rows == [
        ("ORPHA:558", "", "suspected", "FBN1", "NM_000138.5:c.4082G>A"),  # the causative call, its hgvs.c
        ("", "OMIM:154700", "confirmed", "", ""),  # an interpretation of a disease the packet does not list
    ]
    patient = got.tables["patients"].row(0, named=True)
    assert (patient["sex"], patient["vital_status"], patient["age_at_death"]) == ("male", "dead", "P3Y")


# --- malformed packets --------------------------------------------------------------------------------------------


SECRET = "1985031404207"  # an identifier that must never appear in a reason


def test_malformed_packets_are_refused_or_flagged_in_one_line_naming_the_file_and_no_value(tmp_path: Path) -> None:
    good = one_packet()
    good["subject"]["id"] = SECRET
    wrong_type = copy.deepcopy(good)
    wrong_type["phenotypicFeatures"][0]["excluded"] = SECRET
    unknown_field = copy.deepcopy(good)
    unknown_field["subject"]["nationalNumber"] = SECRET
    bad_enum = copy.deepcopy(good)
    bad_enum["subject"]["sex"] = "X" + SECRET
    unknown_prefix = copy.deepcopy(good)
    unknown_prefix["diseases"].append({"term": {"id": "DOID:" + SECRET}})
    no_subject = {k: v for k, v in good.items() if k != "subject"}
    bad_stamp = copy.deepcopy(good)
    bad_stamp["metaData"]["created"] = SECRET
    source = write(
        tmp_path / "in",
        {
            "good.json": good,
            "wrong_type.json": wrong_type,
            "unknown_field.json": unknown_field,
            "bad_enum.json": bad_enum,
            "unknown_prefix.json": unknown_prefix,
            "no_subject.json": no_subject,
            "bad_stamp.json": bad_stamp,
            "invalid.json": b'{"id": "' + SECRET.encode() + b'", "subject": ',
            "latin1.json": json.dumps(good).replace("Seizure", "Crise é").encode("latin-1"),
            "nested/twice.json": b'{"id": "a", "id": "' + SECRET.encode() + b'"}',
        },
    )
    got = read(source)
    assert got.records_in == 10
    assert got.converted == 2
    assert got.balanced
    reasons = {r.locator: r.reason for r in got.refused}
    assert set(reasons) == {
        "wrong_type.json", "unknown_field.json", "bad_enum.json", "no_subject.json", "bad_stamp.json", "invalid.json",
        "latin1.json", "nested/twice.json",
    }  # fmt: skip
    for reason in reasons.values():
        assert "\n" not in reason
        assert SECRET not in reason
        assert len(reason) < 160
    assert reasons["wrong_type.json"] == "not a valid phenopacket: not true or false at phenotypicFeatures[0].excluded"
    assert reasons["unknown_field.json"] == "not a valid phenopacket: unknown field at subject.nationalNumber"
    assert reasons["bad_enum.json"] == "not a valid phenopacket: not a value of its enum at subject.sex"
    assert reasons["bad_stamp.json"].endswith("at metaData.created")
    assert reasons["no_subject.json"] == "no identifier at subject.id"
    assert reasons["invalid.json"].startswith("not valid JSON (")
    assert "line 1" in reasons["invalid.json"]
    assert reasons["latin1.json"] == "not UTF-8 text"
    assert "twice" in reasons["nested/twice.json"]
    refused = {r.locator: r for r in got.refused}
    assert (refused["wrong_type.json"].observed_phenotypes, refused["no_subject.json"].observed_phenotypes) == (1, 1)
    flagged = got.tables["diagnoses"].filter(pl.col(SOURCE_ISSUE) != "")
    assert flagged[SOURCE_ISSUE].to_list() == ["diagnoses:unknown_code_system"]
    assert flagged[SOURCE_RECORD].to_list() == ["unknown_prefix.json"]
    assert got.facts["observed_phenotypes_in"] == 7  # 2 read; 5 refused whose JSON could be decoded


def test_a_source_that_is_no_phenopackets_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no phenopackets"):
        read(tmp_path / "empty")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(BadInput, match="not a folder"):
        read(tmp_path / "x.csv")
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    with pytest.raises(BadInput, match="zip"):
        read(tmp_path / "bad.zip")


def test_json_lines_skip_blank_lines_and_name_each_line(tmp_path: Path) -> None:
    good = json.dumps(one_packet())
    (tmp_path / "p.ndjson").write_text(f"{good}\n\n{good[:-1]}\n{good}")
    got = read(tmp_path / "p.ndjson")
    assert (got.records_in, got.converted) == (3, 2)
    assert [r.locator for r in got.refused] == ["p.ndjson:3"]
    assert got.tables["patients"][SOURCE_RECORD].to_list() == ["p.ndjson:1", "p.ndjson:4"]


# --- the checker agrees with json_format.Parse ---------------------------------------------------------------------


def outcome(checker: Checker, data: bytes) -> tuple[Any, Any]:
    """(what Parse makes of the record, what the checker makes of it): values, or None when refused."""
    try:
        expected = extract(json_format.MessageToDict(json_format.Parse(data, Phenopacket())), checker.date)
    except Exception:  # noqa: BLE001 - any refusal of Parse
        expected = None
    try:
        got = checker.read(data)
    except Refusal:
        got = None

    def values(read: Any) -> Any:
        return read and (read.subject, read.features, read.diseases, read.interpretations, read.versions)

    return values(expected), values(got)


def base_packets() -> list[dict[str, Any]]:
    """Six real packets, and one with what they lack (dates, a death, alternate ids)."""
    dated = one_packet(
        alternateIds=["LU-NIN:1985031404207"],
        dateOfBirth="1985-03-14T00:00:00Z",
        sex="FEMALE",
        vitalStatus={"status": "DECEASED", "timeOfDeath": {"timestamp": "2020-05-01T10:00:00Z"}},
    )
    dated["phenotypicFeatures"][0]["onset"] = {"timestamp": "1990-01-01T00:00:00Z"}
    dated["interpretations"] = [{"id": "i", "progressStatus": "SOLVED", "diagnosis": {"disease": {"id": "ORPHA:558"}}}]
    return [json.loads(p.read_text()) for p in sorted(SAMPLE.glob("*.json"))[:6]] + [dated]


def variants(packet: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Broken (and odd but valid) versions of a packet, each with what was done."""
    f0 = ("phenotypicFeatures", 0)

    def at(path: tuple[Any, ...], value: Any, label: str, *, delete: bool = False) -> tuple[str, Any]:
        out = copy.deepcopy(packet)
        node = out
        for step in path[:-1]:
            node = node[step] if (isinstance(node, dict) and step in node) or isinstance(node, list) else {}
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value  # where the packet has no such parent, on a detached copy: the packet as it was
        return label, out

    yield at(("subject", "id"), 7, "a number for a string")
    yield at(("subject", "sex"), "MALEISH", "an unknown enum name")
    yield at(("subject", "sex"), 1, "an enum as a number")
    yield at(("subject", "sex"), 9, "an enum number not in the enum (open enum: valid)")
    yield at(("subject", "sex"), "2", "an enum number as text")
    yield at(("subject", "sex"), True, "a bool for an enum")
    yield at(("subject", "sex"), 1.5, "a float for an enum")
    yield at(("subject", "sex"), None, "null for an enum")
    yield at(("subject", "dateOfBirth"), "2020-02-30T00:00:00Z", "an impossible date")
    yield at(("subject", "dateOfBirth"), "2019-12-31T23:30:00-01:00", "a stamp with an offset")
    yield at(("subject", "dateOfBirth"), "yesterday", "not a timestamp")
    yield at(("subject", "dateOfBirth"), 20200101, "a number for a timestamp")
    yield at(("subject", "unknownThing"), 1, "an unknown field")
    yield at(("subject", "[ext.field]"), 1, "an extension")
    yield at(("subject",), [], "a list for a message")
    yield at(("subject",), "S1", "a string for a message")
    yield at(("subject",), None, "null for a message")
    yield at(("subject", "alternateIds"), ["a:1", None], "null in a list of strings")
    yield at(("subject", "alternateIds"), "a:1", "a string for a list of strings")
    yield at(("subject", "time_at_last_encounter"), {"age": {"iso8601duration": "P1Y"}}, "the proto spelling")
    yield at(("subject", "id"), "\ud800x", "an unpaired surrogate")
    yield at(("subject", "id"), "caf\u00e9 \U0001f600", "non-ASCII text")
    yield at(("phenotypicFeatures",), {"type": {"id": "HP:1"}}, "an object for a list")
    yield at(("phenotypicFeatures",), None, "null for a list")
    yield at(("phenotypicFeatures",), [None], "null in a list of messages")
    yield at(("phenotypicFeatures",), [[]], "an empty list for a message in a list")
    yield at(("phenotypicFeatures",), [{}], "an empty message in a list")
    yield at((*f0, "excluded"), "true", "a string for a bool")
    yield at((*f0, "excluded"), 1, "a number for a bool")
    yield at((*f0, "excluded"), None, "null for a bool")
    yield at((*f0, "type", "id"), ["HP:1"], "a list for a string")
    yield at((*f0, "type", "label"), None, "null for a string")
    yield at((*f0, "type", "colour"), "red", "an unknown field in a repeated part")
    yield at((*f0, "onset"), {"age": {"iso8601duration": "P1Y"}, "timestamp": "2020-01-01T00:00:00Z"}, "a oneof twice")
    yield at((*f0, "onset"), {"age": {"iso8601duration": "P1Y"}, "timestamp": None}, "a oneof and a null member")
    yield at((*f0, "onset"), {"ageRange": {"start": {"age": {"iso8601duration": "P1Y"}}}}, "an age range")
    yield at((*f0, "onset"), {"interval": {"start": "2020-01-01T00:00:00Z", "end": "x"}}, "a bad stamp deep down")
    yield at((*f0, "evidence"), [{"evidenceCode": {"id": "ECO:1"}, "reference": {"id": "PMID:1"}}], "evidence")
    yield at(("diseases", 0, "term", "id"), "NOSUCH:1", "an unknown code system")
    yield at(("diseases", 0, "excluded"), True, "an excluded disease")
    yield at(("diseases", 0, "diseaseStage"), {"id": "x"}, "an object for a list in a part")
    yield at(("interpretations", 0, "progressStatus"), "DONE", "an unknown enum name in a part")
    yield at(("interpretations", 0, "diagnosis", "genomicInterpretations"), [], "no genomic interpretation")
    yield at(("metaData", "created"), "2020-01-01", "a date for a timestamp in metaData")
    yield at(("metaData", "resources", 0, "version"), 2025, "a number for a string in metaData")
    yield at(("metaData", "phenopacketSchemaVersion"), None, "null in metaData")
    yield at(("metaData",), None, "no metaData")
    yield at(("metaData",), {}, "an empty metaData")
    yield at(("id",), None, "no packet id")
    yield at(("phenotypicFeatures",), None, "no features", delete=True)
    both = copy.deepcopy(packet)
    both["phenotypic_features"] = both["phenotypicFeatures"][:1]
    yield "a part under both spellings", both
    merged = copy.deepcopy(packet)  # json_format merges a message given twice: status and time of death
    merged["subject"]["vitalStatus"] = {"status": "DECEASED"}
    merged["subject"]["vital_status"] = {"timeOfDeath": {"age": {"iso8601duration": "P9Y"}}}
    yield "a message under both spellings", merged
    first_bad = copy.deepcopy(merged)
    first_bad["subject"]["vitalStatus"] = {"status": "GONE"}
    yield "a bad message then a good one under the other spelling", first_bad
    snake = {("phenotypic_features" if k == "phenotypicFeatures" else k): v for k, v in packet.items()}
    yield "a part in the proto spelling", snake


def test_the_checker_agrees_with_parse_on_a_table_of_broken_records() -> None:
    checker = Checker()
    for packet in base_packets():
        assert checker.read(json.dumps(packet).encode())  # remembered valid: the broken ones must not pass for it
        for label, broken in variants(packet):
            pretty = json.dumps(broken, indent=1, ensure_ascii=False).encode(errors="surrogatepass")  # raw UTF-8
            for data in (json.dumps(broken).encode(), pretty):
                expected, got = outcome(checker, data)
                assert got == expected, label
            again = outcome(checker, json.dumps(broken).encode())  # a second time, from the memo
            assert again[1] == again[0], label
    raw = [b"", b"[]", b"null", b"{}", b"\xef\xbb\xbf{}", b'{"id": 1e400}', b'{"id": "a", "id": "b"}', b"\xff"]
    for data in raw:
        expected, got = outcome(checker, data)
        assert got == expected, data


def nested(levels: int, odd: bool) -> bytes:
    """A packet whose variation sets nest ``levels`` deep: json_format refuses messages deeper than 100. The
    innermost message lies at an even depth, or with ``odd`` at an odd one."""
    variation: dict[str, Any] = {"allele": {"sequenceLocation": {"sequenceId": "x"}}} if odd else {"text": {}}
    for _ in range(levels):
        variation = {"variationSet": {"members": [variation]}}
    descriptor = {"id": "v", "variation": variation}
    genomic = {"subjectOrBiosampleId": "S1", "variantInterpretation": {"variationDescriptor": descriptor}}
    packet = one_packet()
    packet["interpretations"] = [{"id": "i", "diagnosis": {"genomicInterpretations": [genomic]}}]
    return json.dumps(packet).encode()


def test_the_checker_keeps_json_formats_depth_limit() -> None:
    checker = Checker()
    results = []
    for levels in range(44, 48):
        for odd in (False, True):
            expected, got = outcome(checker, nested(levels, odd))
            assert got == expected, (levels, odd)
            results.append(got is not None)
    assert True in results
    assert False in results


POOL: st.SearchStrategy[Any] = st.sampled_from(
    [None, 0, 1, -1, 2.5, True, False, "", "x", "MALE", "P1Y", "HP:0001250", "2020-01-01T00:00:00Z", "2020-13-01",
     "\ud800", [], {}, [None], [{}], ["x"], {"id": "x"}, {"age": {"iso8601duration": "P1Y"}}]
)  # fmt: skip


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    packet = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(paths(packet))[1:]))
        parent = packet
        for step in path[:-1]:
            parent = parent[step]
        key, how = path[-1], draw(st.sampled_from(["value", "delete", "rename", "add"]))
        if how == "delete":
            del parent[key]
        elif how == "rename" and isinstance(key, str):
            parent[snake(key)] = parent.pop(key)
        elif how == "add" and isinstance(parent[key], dict):
            field = draw(st.sampled_from(["id", "label", "foo", "excluded", "timestamp", "age"]))
            parent[key][field] = copy.deepcopy(draw(POOL))  # the pool's lists and dicts must stay as they are
        else:
            parent[key] = copy.deepcopy(draw(POOL))
    return json.dumps(packet).encode()


BASES = base_packets()
CHECKER = Checker()  # shared across examples: what one remembers must not mislead another


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_the_checker_agrees_with_parse_on_generated_records(data: bytes) -> None:
    expected, got = outcome(CHECKER, data)
    assert got == expected
