"""rk.outputs writes files and sidecars the checks can read; the gates stop what must never reach a reviewer."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import research_kit as rk
from research_kit.core.config import OutputsPolicy
from research_kit.core.errors import BadInput
from research_kit.disclosure.gates import gate
from research_kit.model.national_id import is_valid
from research_kit.outputs import sidecar as sc

POLICY = OutputsPolicy()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESEARCH_KIT_TIER", raising=False)
    monkeypatch.setenv("RESEARCH_KIT_STUDY", "s9")


def test_a_table_names_its_counts_and_labels() -> None:
    frame = pd.DataFrame({"group": ["a", "b"], "year": [2020, 2021], "n": [12, 30]})
    path = rk.outputs.table(frame, "by_group", counts=["n"], labels=["year"], population="all patients")
    assert path == Path("by_group.csv")
    assert pd.read_csv(path).equals(frame)
    car = sc.read(path)
    assert car is not None
    assert car.roles == {"group": "label", "year": "label", "n": "count"}
    assert (car.kind, car.type, car.population, car.study, car.rows) == ("frequency", "table", "all patients", "s9", 2)
    assert not list(Path().glob(".*tmp*"))  # written by rename


def test_an_unnamed_number_is_refused_in_one_line() -> None:
    frame = pd.DataFrame({"group": ["a"], "n": [12], "mystery": [3.5]})
    with pytest.raises(BadInput, match="numeric column 'mystery' has no role"):
        rk.outputs.table(frame, "t", counts=["n"])
    with pytest.raises(BadInput, match="no column 'm'"):
        rk.outputs.table(frame, "t", counts=["m"])
    assert not Path("t.csv").exists()


def test_magnitude_tables_keep_the_largest_contributions_of_each_cell() -> None:
    rows = pd.DataFrame({"group": ["a"] * 3 + ["b"] * 2, "cost": [5.0, 100.0, 1.0, 7.0, 8.0]})
    table = rows.groupby("group", as_index=False).agg(cost=("cost", "sum"), n=("cost", "size"))
    rk.outputs.table(table, "cost", sums=["cost"], n="n", source=rows)
    car = sc.read(Path("cost.csv"))
    assert car is not None
    assert car.kind == "magnitude"
    assert car.contributions["cost"] == [
        sc.Contribution(3, 106.0, (100.0, 5.0, 1.0)),
        sc.Contribution(2, 15.0, (8.0, 7.0)),
    ]


def test_models_from_three_libraries_carry_their_degrees_of_freedom() -> None:
    import statsmodels.api as sm
    from lifelines import CoxPHFitter, KaplanMeierFitter
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    ols = sm.OLS(x @ [1.0, 2.0] + rng.normal(size=60), sm.add_constant(x)).fit()
    rk.outputs.model(ols, "ols")
    facts = sc.read(Path("ols.csv")).model  # type: ignore[union-attr]
    assert facts is not None
    assert (facts.library, facts.n_obs, facts.df_resid) == ("statsmodels", 60, 57.0)
    assert list(pd.read_csv("ols.csv").columns) == [
        "term", "estimate", "std_error", "statistic", "p_value", "ci_lower", "ci_upper",
    ]  # fmt: skip
    frame = pd.DataFrame({"t": rng.exponential(5, 80), "e": rng.integers(0, 2, 80), "age": rng.normal(50, 9, 80)})
    rk.outputs.model(CoxPHFitter().fit(frame, "t", "e"), "cox")
    cox = sc.read(Path("cox.csv")).model  # type: ignore[union-attr]
    assert cox is not None
    assert cox.n_events == int(frame["e"].sum())
    assert cox.df_resid == cox.n_events - 1
    rk.outputs.model(KaplanMeierFitter().fit(frame["t"], frame["e"]), "km")
    km = sc.read(Path("km.csv"))
    assert km is not None
    assert km.kind == "survival"
    assert km.roles["events"] == "survival_events"
    clf = LogisticRegression().fit(pd.DataFrame(x, columns=["a", "b"]), rng.integers(0, 2, 60))
    with pytest.raises(BadInput, match="give n="):
        rk.outputs.model(clf, "lr")
    rk.outputs.model(clf, "lr", n=60)
    assert sc.read(Path("lr.csv")).model.df_resid == 57.0  # type: ignore[union-attr]


def test_a_dp_answer_is_declared_with_its_guarantee() -> None:
    import polars as pl

    from research_kit.dp.answer import Answer

    answer = Answer(
        query={"kind": "count", "by": ["sex"]}, description="count of patients by sex", study="s9", tier="sandbox",
        source="twin:e1", mechanism="discrete Gaussian", scale=3.0, rho=0.01, epsilon=0.59, delta=1e-7,
        confidence=0.95, table=pl.DataFrame({"sex": ["female", "male"], "value": [4, 120], "lower": [-2, 114],
                                             "upper": [10, 126]}),
    )  # fmt: skip
    rk.outputs.table(answer, "by_sex")
    car = sc.read(Path("by_sex.csv"))
    assert car is not None
    assert car.roles == {"sex": "label", "value": "count", "lower": "statistic", "upper": "statistic"}
    assert car.dp == sc.DpFacts("discrete Gaussian", 0.01, 0.59, 1e-7, 3.0, ("count of patients by sex",))


def test_a_dp_table_is_never_compared_for_differencing_but_exact_tables_are() -> None:
    import polars as pl

    from research_kit.core.config import Policy
    from research_kit.disclosure.checks import DP_DIFFERENCING_NOTE, Item, check_items
    from research_kit.dp.answer import Answer

    noisy = Answer(
        query={"kind": "count", "by": ["sex"]}, description="count of patients by sex", study="s9", tier="real",
        source="e1", mechanism="discrete Gaussian", scale=3.0, rho=0.01, epsilon=0.59, delta=1e-7,
        confidence=0.95, table=pl.DataFrame({"sex": ["female", "male"], "value": [103, 118], "lower": [97, 112],
                                             "upper": [109, 124]}),
    )  # fmt: skip
    rk.outputs.table(noisy, "dp_by_sex")
    rk.outputs.table(pd.DataFrame({"sex": ["female", "male"], "n": [100, 120]}), "by_sex", counts=["n"])
    rk.outputs.table(pd.DataFrame({"sex": ["female", "male"], "n": [104, 120]}), "by_sex_again", counts=["n"])
    items = [Item(f"a/{n}", Path(f"{n}.csv"), "moderately_sensitive") for n in ("dp_by_sex", "by_sex", "by_sex_again")]
    dp_item, exact, again = check_items(items, [], Policy())
    assert dp_item.differencing == ()  # 103 against 100 is noise, not a group of 3
    assert dp_item.sdc is not None
    assert DP_DIFFERENCING_NOTE in dp_item.sdc.notes
    assert [(d.other, d.difference) for d in exact.differencing] == [("a/by_sex_again", 4)]
    assert again.status == "fail"


def test_a_figure_is_saved_with_its_source() -> None:
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    path = rk.outputs.figure(fig, "trend", source="by_group")
    plt.close(fig)
    assert path.read_bytes().startswith(b"\x89PNG")
    car = sc.read(path)
    assert car is not None
    assert (car.type, car.source) == ("figure", "by_group")
    with pytest.raises(BadInput, match=r"not a usable|relative"):
        rk.outputs.figure(fig, "../escape")


def _table(name: str, frame: pd.DataFrame) -> Path:
    path = Path(name)
    frame.to_csv(path, index=False)
    return path


def test_gates_pass_a_clean_table() -> None:
    path = _table("ok.csv", pd.DataFrame({"group": ["a", "b"], "n": [12, 30]}))
    assert gate(path, "moderately_sensitive", None, POLICY).passed


def test_gates_name_each_reason_never_the_value() -> None:
    national = next(f"19850615123{i}{j}" for i in range(10) for j in range(10) if is_valid(f"19850615123{i}{j}"))
    pseudonym = "0123456789abcdef0123456789abcdef"
    path = _table("bad.csv", pd.DataFrame({"patient_id": ["x"], "code": [national], "other": [pseudonym]}))
    reasons = gate(path, "moderately_sensitive", None, POLICY).reasons
    assert "column 'patient_id' is named like an identifier" in reasons
    assert "column 'code' holds a value matching the national-ID pattern" in reasons
    assert "column 'other' holds values shaped like pseudonyms" in reasons
    assert not any(national in r or pseudonym in r for r in reasons)
    # A 13-digit number that is not a valid national ID (a count, a code) passes.
    assert gate(_table("n.csv", pd.DataFrame({"n": ["1234567890123"]})), "moderately_sensitive", None, POLICY).passed


def test_gates_on_type_size_rows_and_declaration() -> None:
    small = OutputsPolicy(max_file_mb=0.0001, max_table_rows=3)
    path = _table("big.csv", pd.DataFrame({"group": list("abcd"), "n": [10, 11, 12, 13]}))
    assert gate(path, "moderately_sensitive", None, OutputsPolicy(max_table_rows=3)).reasons == (
        "4 rows, over the limit of 3",
    )
    assert "over the limit of" in gate(path, "moderately_sensitive", None, small).reasons[0]
    assert gate(path, "highly_sensitive", None, POLICY).reasons[0].startswith("declared highly_sensitive")
    parquet = Path("x.parquet")
    parquet.write_bytes(b"PAR1")
    assert "file type .parquet is not allowed" in gate(parquet, "moderately_sensitive", None, POLICY).reasons[0]
    figure = Path("f.png")
    figure.write_bytes(b"\x89PNG")
    assert (
        "drawn from a highly_sensitive table"
        in gate(figure, "moderately_sensitive", None, POLICY, source_sensitivity="highly_sensitive").reasons
    )
    text = Path("notes.txt")
    text.write_text("fine\nthe patient 0123456789abcdef0123456789abcdef\n")
    assert gate(text, "moderately_sensitive", None, POLICY).reasons == ("line 2 holds a value shaped like a pseudonym",)


def test_sidecars_round_trip_and_refuse_what_is_not_one() -> None:
    car = sc.Sidecar("t", "t.csv", "table", "frequency", {"g": "label", "n": "count"}, dp=sc.DpFacts("g", 1, 2, 3, 4))
    path = Path("t.csv")
    path.write_text("g,n\n")
    sc.write(path, car)
    assert sc.read(path) == sc.Sidecar(**{**car.__dict__, "dp": sc.DpFacts("g", 1, 2, 3, 4, ())})
    sc.sidecar_path(path).write_text(json.dumps({"format": "other"}))
    with pytest.raises(BadInput, match="not a research-kit output sidecar"):
        sc.read(path)
