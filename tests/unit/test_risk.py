"""Re-identification risk and k-anonymity enforcement, on tables small enough to check by hand."""

from __future__ import annotations

import functools
import json
import random

import polars as pl
import pytest

from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.model.geography import CANTONS
from research_kit.pseudonymise.population import SOURCE, age_band, load_population
from research_kit.pseudonymise.risk import HIERARCHIES, Enforcement, RiskReport, assess, enforce_k


def ten_records() -> pl.DataFrame:
    """Classes of sizes 1, 2, 3 and 4 on (birth_year, sex); the size-4 class has a null year."""
    return pl.DataFrame(
        {
            "birth_year": [1950, 1960, 1960, 1970, 1970, 1970, None, None, None, None],
            "sex": ["female", "male", "male", "female", "female", "female", "male", "male", "male", "male"],
            "orpha": ["A", "A", "B", "A", "A", "B", "C", "C", "C", "C"],
        }
    )


def test_prosecutor_and_marketer_risk_of_classes_of_sizes_1_to_4() -> None:
    report = assess(
        ten_records(), quasi_identifiers=["birth_year", "sex"], sensitive="orpha", k_target=3, risk_threshold=0.2
    )
    assert report.records == 10
    assert report.quasi_identifiers == ("birth_year", "sex")
    assert report.classes == 4  # the four null years form one class
    assert report.k == 1
    assert report.records_below_k == 3  # the classes of sizes 1 and 2
    assert report.prosecutor_highest == 1.0
    assert report.prosecutor_average == pytest.approx(0.4)
    assert report.prosecutor_at_risk == 1.0  # 1, 1/2, 1/3 and 1/4 all exceed 0.2
    assert report.marketer == pytest.approx(0.4)
    assert report.class_sizes == {1: 1, 2: 1, 3: 1, 4: 1}
    assert report.journalist_highest is None
    assert report.journalist_average is None
    assert report.journalist_at_risk is None
    assert report.outside_population == 0


def test_the_at_risk_share_counts_records_strictly_above_the_threshold() -> None:
    records = ten_records()
    at_03 = assess(records, quasi_identifiers=["birth_year", "sex"], sensitive="orpha", k_target=3, risk_threshold=0.3)
    assert at_03.prosecutor_at_risk == pytest.approx(6 / 10)  # classes of sizes 1, 2, 3
    at_025 = assess(
        records, quasi_identifiers=["birth_year", "sex"], sensitive="orpha", k_target=3, risk_threshold=0.25
    )
    assert at_025.prosecutor_at_risk == pytest.approx(6 / 10)  # 1/4 is not above 0.25


def test_distinct_l_diversity_is_the_fewest_sensitive_values_in_any_class() -> None:
    records = pl.DataFrame(
        {
            "sex": ["female"] * 3 + ["male"] * 4,
            "orpha": ["A", "B", "C", "A", "A", None, "B"],  # null counts as a value: the men have 3
        }
    )
    report = assess(records, quasi_identifiers=["sex"], sensitive="orpha", k_target=3, risk_threshold=0.3)
    assert report.l_diversity == 3
    assert report.k == 3
    assert report.records_below_k == 0
    assert report.prosecutor_at_risk == pytest.approx(3 / 7)  # 1/3 > 0.3, 1/4 is not

    report = assess(ten_records(), quasi_identifiers=["sex"], sensitive="orpha", k_target=3, risk_threshold=0.2)
    assert report.l_diversity == 2  # women: A, B; men: A, B, C


def journalist_case() -> tuple[pl.DataFrame, pl.DataFrame]:
    records = pl.DataFrame(
        {
            "canton": ["Wiltz", "Wiltz", "Wiltz", "Vianden", None],
            "sex": ["female", "female", "male", "female", "male"],
            "orpha": ["x", "y", "x", "x", "z"],
        }
    )
    population = pl.DataFrame(
        {
            "canton": ["Wiltz", "Wiltz", "Vianden", "Vianden"],
            "sex": ["female", "male", "female", "male"],
            "population": [1, 4, 10, 12],  # 1 woman in Wiltz, fewer than the registry's 2: F is taken as 2
        }
    )
    return records, population


def journalist_report() -> RiskReport:
    records, population = journalist_case()
    return assess(
        records,
        quasi_identifiers=["canton", "sex"],
        sensitive="orpha",
        k_target=2,
        risk_threshold=0.2,
        population=population,
        population_keys=["canton", "sex"],
    )


def test_journalist_risk_against_a_hand_made_population() -> None:
    report = journalist_report()
    # Per record 1/F: 1/2, 1/2 (clamped to f), 1/4, 1/10, and 1/1 for the man abroad (prosecutor risk).
    assert report.outside_population == 1
    assert report.journalist_highest == 1.0
    assert report.journalist_average == pytest.approx((0.5 + 0.5 + 0.25 + 0.1 + 1.0) / 5)
    assert report.journalist_at_risk == pytest.approx(4 / 5)
    assert report.prosecutor_average == pytest.approx(4 / 5)
    assert report.l_diversity == 1
    assert report.class_sizes == {1: 3, 2: 1}


def test_journalist_risk_with_the_shipped_population_and_an_age_band() -> None:
    records = pl.DataFrame(
        {
            "canton": ["Luxembourg", "Luxembourg", "Vianden", None],
            "sex": ["female", "female", "undetermined", "male"],
            "age": [40, 42, 3, 50],
            "orpha": ["558", "558", "79", "98"],
        }
    ).with_columns(age_band=age_band(pl.col("age")))
    report = assess(
        records,
        quasi_identifiers=["canton", "sex", "age_band"],
        sensitive="orpha",
        k_target=2,
        risk_threshold=0.2,
        population=load_population(),
        population_keys=["canton", "sex", "age_band"],
    )
    assert report.outside_population == 2  # sex "undetermined", and no canton
    assert report.journalist_highest == 1.0  # those two keep their prosecutor risk of 1
    assert report.journalist_at_risk == pytest.approx(2 / 4)
    assert report.journalist_average is not None
    assert report.journalist_average < report.prosecutor_average


def test_population_errors_name_the_problem() -> None:
    records, population = journalist_case()
    measure = functools.partial(
        assess, records, quasi_identifiers=["canton", "sex"], sensitive="orpha", k_target=2, risk_threshold=0.2
    )
    keys = ["canton", "sex"]
    with pytest.raises(BadInput, match="population_keys"):
        measure(population=population)
    with pytest.raises(BadInput, match="without a population"):
        measure(population_keys=keys)
    with pytest.raises(BadInput, match="more than one row"):
        measure(population=pl.concat([population, population]), population_keys=keys)
    with pytest.raises(BadInput, match="'canton' is Int32"):
        measure(population=population.with_columns(canton=pl.lit(1)), population_keys=keys)
    with pytest.raises(BadInput, match="'population'"):
        measure(population=population.drop("population"), population_keys=keys)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"quasi_identifiers": ["postcode"]}, "'postcode'"),
        ({"sensitive": "icd10"}, "'icd10'"),
        ({"quasi_identifiers": []}, "at least one"),
        ({"quasi_identifiers": "sex"}, "not one string"),
        ({"k_target": 0}, "k_target"),
        ({"risk_threshold": 1.5}, "risk_threshold"),
    ],
)
def test_bad_arguments_are_user_errors(change: dict[str, object], match: str) -> None:
    kwargs: dict[str, object] = {
        "quasi_identifiers": ["sex"],
        "sensitive": "orpha",
        "k_target": 2,
        "risk_threshold": 0.2,
    }
    with pytest.raises(BadInput, match=match):
        assess(ten_records(), **(kwargs | change))  # type: ignore[arg-type]


def test_an_empty_extract_is_refused() -> None:
    with pytest.raises(BadInput, match="no records"):
        assess(ten_records().clear(), quasi_identifiers=["sex"], sensitive="orpha", k_target=2, risk_threshold=0.2)


def test_the_report_round_trips_through_json() -> None:
    report = journalist_report()
    as_dict = report.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["class_sizes"] == {"1": 3, "2": 1}
    assert as_dict["quasi_identifiers"] == ["canton", "sex"]


# --- Generalisation hierarchies -----------------------------------------------------------------


def levels_of(column: str, value: object) -> list[object]:
    frame = pl.DataFrame({column: [value]})
    return [frame.with_columns(step(pl.col(column)).alias(column))[column].item() for step in HIERARCHIES[column]]


def test_the_shipped_hierarchies() -> None:
    assert levels_of("birth_year", 1983) == [1983, "1980-1984", "1980-1989", "1980-1999"]
    assert levels_of("birth_year", 2000) == [2000, "2000-2004", "2000-2009", "2000-2019"]
    assert levels_of("birth_month", 5) == [5, "Q2", None]
    assert levels_of("birth_month", 12) == [12, "Q4", None]
    assert levels_of("sex", "undetermined") == ["undetermined", "any"]
    assert levels_of("canton", "Capellen") == ["Capellen", "Centre", "LU"]
    assert levels_of("canton", "Esch-sur-Alzette") == ["Esch-sur-Alzette", "South", "LU"]
    assert levels_of("canton", "Vianden") == ["Vianden", "North", "LU"]
    assert levels_of("canton", "Remich") == ["Remich", "East", "LU"]
    assert levels_of("country", "BE") == ["BE"]


def test_nulls_stay_null_people_abroad_are_not_residents() -> None:
    frame = pl.DataFrame({"canton": [None]}, schema={"canton": pl.String})
    assert [frame.select(step(pl.col("canton")))["canton"].item() for step in HIERARCHIES["canton"]] == [None] * 3


def test_the_region_map_covers_every_canton() -> None:
    frame = pl.DataFrame({"canton": list(CANTONS)})
    regions = frame.select(HIERARCHIES["canton"][1](pl.col("canton")))["canton"]
    assert regions.null_count() == 0
    assert set(regions) == {"North", "East", "Centre", "South"}


# --- enforce_k ------------------------------------------------------------------------------------


def six_records() -> pl.DataFrame:
    """Pairs once years are in 5-year bands: (1980-1984, f), (1980-1984, m), (1990-1994, f)."""
    return pl.DataFrame(
        {
            "birth_year": [1980, 1981, 1982, 1983, 1990, 1991],
            "sex": ["female", "female", "male", "male", "female", "female"],
            "orpha": ["A", "B", "A", "B", "A", "B"],
        }
    )


def test_enforce_k_picks_the_least_generalisation_that_works() -> None:
    done = enforce_k(
        six_records(),
        quasi_identifiers=["birth_year", "sex"],
        sensitive="orpha",
        k_target=2,
        risk_threshold=0.5,
        max_suppression=0.0,
    )
    assert done.levels == {"birth_year": 1, "sex": 0}  # years in 5-year bands: loss (1/3 + 0) / 2
    assert done.precision_lost == pytest.approx(1 / 6)
    assert done.rows_suppressed == 0
    assert done.records["birth_year"].to_list() == ["1980-1984"] * 4 + ["1990-1994"] * 2
    assert done.report.k == 2
    assert done.report.l_diversity == 2


def enforce_with_an_outlier(*, max_suppression: float) -> Enforcement:
    """Six records that reach k=2 at 5-year bands, plus one born in 2005."""
    records = pl.concat([six_records(), pl.DataFrame({"birth_year": [2005], "sex": ["male"], "orpha": ["C"]})])
    return enforce_k(
        records,
        quasi_identifiers=["birth_year", "sex"],
        sensitive="orpha",
        k_target=2,
        risk_threshold=0.5,
        max_suppression=max_suppression,
    )


def test_enforce_k_suppresses_an_outlier_within_the_allowance() -> None:
    done = enforce_with_an_outlier(max_suppression=0.15)  # 1 of 7 records may go
    assert done.levels == {"birth_year": 1, "sex": 0}
    assert done.rows_suppressed == 1
    assert done.records.height == 6
    assert "C" not in done.records["orpha"].to_list()
    assert done.report.k >= 2


def test_enforce_k_falls_back_to_the_top_levels_when_nothing_is_within_the_allowance() -> None:
    done = enforce_with_an_outlier(max_suppression=0.0)
    assert done.levels == {"birth_year": 3, "sex": 1}
    assert done.precision_lost == 1.0
    assert done.rows_suppressed == 1  # 2000-2019 holds one person, whatever the level
    assert done.report.k == 6


def registry_like(n: int, seed: int) -> pl.DataFrame:
    """Random patients; one in ten lives abroad (no canton, another country)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        abroad = rng.random() < 0.1
        rows.append(
            {
                "birth_year": rng.randint(1940, 2020),
                "birth_month": rng.choice([*range(1, 13), None]),
                "sex": rng.choice(["female", "male"] * 10 + ["undetermined"]),
                "canton": None if abroad else rng.choice([*CANTONS, "Luxembourg", "Esch-sur-Alzette"]),
                "country": rng.choice(["FR", "BE", "DE"]) if abroad else "LU",
                "orpha": rng.choice(["558", "79", "98", "586"]),
            }
        )
    schema = {"birth_year": pl.Int64, "birth_month": pl.Int64} | dict.fromkeys(
        ["sex", "canton", "country", "orpha"], pl.String
    )
    return pl.DataFrame(rows, schema=schema)


def test_enforce_k_on_a_registry_like_extract_is_k_anonymous_and_deterministic() -> None:
    records = registry_like(2000, seed=11)
    enforce = functools.partial(
        enforce_k,
        quasi_identifiers=["birth_year", "birth_month", "sex", "canton", "country"],
        sensitive="orpha",
        k_target=5,
        risk_threshold=0.2,
    )
    first = enforce(records)
    again = enforce(records.sample(fraction=1.0, shuffle=True, seed=3))

    assert first.report.k >= 5
    assert first.report.records_below_k == 0
    assert first.rows_suppressed <= 0.05 * records.height
    assert first.records.height == records.height - first.rows_suppressed
    assert 0.0 <= first.precision_lost <= 1.0
    assert first.levels["country"] == 0
    # The same extract in another row order gets the same levels and suppresses the same number of rows.
    assert again.levels == first.levels
    assert again.rows_suppressed == first.rows_suppressed
    assert enforce(records).records.equals(first.records)


def test_enforce_k_rejects_what_it_cannot_generalise() -> None:
    records = pl.DataFrame({"canton": ["Wiltz", "Atlantis"], "orpha": ["1", "2"]})
    with pytest.raises(BadInput, match="'canton' holds a value"):
        enforce_k(records, quasi_identifiers=["canton"], sensitive="orpha", k_target=2, risk_threshold=0.2)
    records = pl.DataFrame({"postcode": ["1009", "1010"], "orpha": ["1", "2"]})
    with pytest.raises(BadInput, match="no generalisation hierarchy"):
        enforce_k(records, quasi_identifiers=["postcode"], sensitive="orpha", k_target=2, risk_threshold=0.2)


def test_enforce_k_refuses_when_every_record_would_go() -> None:
    records = pl.DataFrame({"sex": ["female", "male"], "orpha": ["1", "2"]})
    with pytest.raises(PolicyRefusal, match="k=3"):
        enforce_k(records, quasi_identifiers=["sex"], sensitive="orpha", k_target=3, risk_threshold=0.2)


# --- Population reference -------------------------------------------------------------------------


def test_the_shipped_population_table() -> None:
    population = load_population()
    assert population.height == 432
    assert population.columns == ["canton", "sex", "age_band", "population"]
    assert set(population["canton"]) == set(CANTONS)
    assert set(population["sex"]) == {"female", "male"}
    assert population["age_band"].n_unique() == 18
    assert not population.select(pl.struct("canton", "sex", "age_band").is_duplicated().any()).item()
    assert 600_000 <= population["population"].sum() <= 700_000
    assert population["population"].min() > 0  # type: ignore[operator]
    assert "approximate" in SOURCE.lower()


def test_age_bands_at_their_edges() -> None:
    ages = pl.DataFrame({"age": [0, 4, 5, 84, 85, 101, -1, None]}, schema={"age": pl.Int64})
    labels = ages.select(age_band(pl.col("age")))["age"].to_list()
    assert labels == ["0-4", "0-4", "5-9", "80-84", "85+", "85+", None, None]
    assert set(labels[:6]) <= set(load_population()["age_band"])
