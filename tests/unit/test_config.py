from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from research_kit.core.config import Policy, load_policy, policy_from_dict, render_policy
from research_kit.core.errors import BadInput, MissingData


def test_rendered_defaults_read_back_as_the_defaults() -> None:
    assert policy_from_dict(tomllib.loads(render_policy())) == Policy()


def test_every_key_is_documented_in_the_rendered_file() -> None:
    text = render_policy()
    for section, values in Policy().as_dict().items():
        assert f"[{section}]" in text
        for key in values:
            line_no = next(i for i, line in enumerate(text.splitlines()) if line.startswith(f"{key} = "))
            assert text.splitlines()[line_no - 1].startswith("# "), f"{section}.{key} has no comment"


def test_edited_values_are_read(tmp_path: Path) -> None:
    (tmp_path / "research-kit.toml").write_text("[sdc]\nmin_cell_count = 5\n[pseudonymise]\nbirth_date = 'year'\n")
    policy = load_policy(tmp_path)
    assert policy.sdc.min_cell_count == 5
    assert policy.pseudonymise.birth_date == "year"
    assert policy.sdc.dominance_k == 90.0  # untouched keys keep their defaults


def test_an_integer_where_a_float_is_expected_is_accepted_as_float() -> None:
    policy = policy_from_dict({"dp": {"default_study_rho": 2}})
    assert policy.dp.default_study_rho == 2.0
    assert isinstance(policy.dp.default_study_rho, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sdcc": {}}, r"unknown section \[sdcc\]"),
        ({"sdc": {"min_cel_count": 3}}, r"unknown key \[sdc\]\.min_cel_count"),
        ({"sdc": {"min_cell_count": "ten"}}, r"\[sdc\]\.min_cell_count must be a whole number, got 'ten'"),
        ({"sdc": {"min_cell_count": 0}}, r"\[sdc\]\.min_cell_count must be >= 1"),
        ({"sdc": {"flag_zeros": 1}}, r"\[sdc\]\.flag_zeros must be true or false"),
        ({"ingest": {"max_quarantine_rate": 1.5}}, r"\[ingest\]\.max_quarantine_rate must be <= 1.0"),
        ({"pseudonymise": {"birth_date": "day"}}, r"\[pseudonymise\]\.birth_date must be one of 'year', 'year-month'"),
        ({"risk": {"quasi_identifiers": "sex"}}, r"\[risk\]\.quasi_identifiers must be a list of strings"),
        ({"sdc": 3}, r"\[sdc\] must be a table of settings"),
    ],
)
def test_a_bad_policy_names_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        policy_from_dict(data)


def test_a_policy_that_is_not_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "research-kit.toml").write_text("[sdc\nmin_cell_count = 5\n")
    with pytest.raises(BadInput, match=r"research-kit\.toml: not valid TOML"):
        load_policy(tmp_path)


def test_a_missing_policy_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(MissingData, match="run 'research-kit init'"):
        load_policy(tmp_path)
