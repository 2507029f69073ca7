"""On the same tables and settings our threshold, dominance and p% flags agree with ACRO's (1.0.2).

ACRO builds crosstabs from seeded microdata (small groups, heavy-tailed
values); we build the same table with pandas, its sidecar with the
contributions behind each cell, and check it. Every deliberate difference
(documented in :mod:`research_kit.disclosure.sdc`) is mapped explicitly in the
comparison and has its own test. Our records are also written as ACRO's
``results.json`` and read back with ACRO's own loader.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import acro
import numpy as np
import pandas as pd
import pytest
from acro.record import load_records
from acro.version import __version__ as acro_version

from research_kit.core.config import SdcPolicy
from research_kit.disclosure.sdc import CheckResult, Flag, check_model, check_table
from research_kit.disclosure.sdc import result as check_result
from research_kit.outputs.sidecar import TOP_KEPT, Contribution, ModelFacts, Sidecar
from research_kit.review.acro_format import ACRO_VERSION, acro_record, acro_results

LabelPair = tuple[str, str]
# ACRO 1.0.2 aggregates with numpy callables (np.sum, np.max), which pandas 2.x warns about.
pytestmark = pytest.mark.filterwarnings(r"ignore:The provided callable .* is currently using:FutureWarning")
POLICIES = [
    SdcPolicy(),
    SdcPolicy(min_cell_count=5, dominance_n=3, dominance_k=80.0, p_percent=20.0, flag_zeros=False),
]


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An ACRO session working in tmp_path, its logging silenced; configure it with :func:`configure`."""
    monkeypatch.chdir(tmp_path)
    loggers = [logging.getLogger(name) for name in ("acro", "acro:records")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    yield acro.ACRO(suppress=False)
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def configure(session: Any, policy: SdcPolicy) -> None:
    """ACRO reads its thresholds from its config dict (default.yaml's keys): set them to our policy's."""
    session.config.update(
        safe_threshold=policy.min_cell_count,
        safe_nk_n=policy.dominance_n,
        safe_nk_k=policy.dominance_k / 100,
        safe_pratio_p=policy.p_percent / 100,
        zeros_are_disclosive=policy.flag_zeros,
    )


def microdata(seed: int, n: int = 160) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.choice(["a1", "a2", "a3", "a4"], n, p=[0.45, 0.3, 0.17, 0.08]),
            "b": rng.choice(["b1", "b2", "b3", "b4", "b5"], n, p=[0.4, 0.25, 0.2, 0.1, 0.05]),
            "v": rng.pareto(1.1, n) * 100 + rng.exponential(5, n),  # heavy tail: some cells are dominated
        }
    )


def our_table(data: pd.DataFrame) -> tuple[pd.DataFrame, Sidecar]:
    """Every (a, b) cell of the data, as a long table: count, sum and mean, with their contributions."""
    rows: list[dict[str, Any]] = []
    cells: list[Contribution | None] = []
    for a in sorted(data["a"].unique()):
        for b in sorted(data["b"].unique()):
            values = data.loc[(data["a"] == a) & (data["b"] == b), "v"]
            n = len(values)
            rows.append({"a": a, "b": b, "n": n, "total": values.sum() if n else np.nan, "mean": values.mean()})
            top = tuple(sorted(values.tolist(), key=abs, reverse=True)[:TOP_KEPT])
            cells.append(Contribution(n, float(values.sum()), top) if n else None)
    frame = pd.DataFrame(rows)
    roles = {"a": "label", "b": "label", "n": "count", "total": "sum", "mean": "mean"}
    sidecar = Sidecar(
        name="t",
        file="t.csv",
        type="table",
        kind="magnitude",
        roles=roles,
        n_column="n",
        contributions={"total": cells, "mean": cells},
        rows=len(frame),
    )
    return frame, sidecar


def acro_flags(session: Any, table: pd.DataFrame) -> dict[str, set[LabelPair]]:
    """The cells of ACRO's latest output flagged by each check, by their labels."""
    record = session.results.get_index(-1)
    return {
        check: {(table.index[i], table.columns[j]) for i, j in positions}
        for check, positions in record.sdc["cells"].items()
    }


def our_flags(result: CheckResult, frame: pd.DataFrame, rule: str, column: str) -> set[LabelPair]:
    return {
        (frame.at[row, "a"], frame.at[row, "b"])
        for (row, col), flags in result.cells().items()
        if col == column and any(f.rule == rule for f in flags)
    }


@pytest.mark.parametrize("policy", POLICIES, ids=["default", "custom"])
@pytest.mark.parametrize("seed", range(4))
def test_threshold_dominance_and_p_percent_agree_with_acro(session: Any, policy: SdcPolicy, seed: int) -> None:
    configure(session, policy)
    data = microdata(seed)
    theirs = {"n": acro_flags(session, session.crosstab(data["a"], data["b"]))}
    for column, aggfunc in (("total", "sum"), ("mean", "mean")):
        table = session.crosstab(data["a"], data["b"], values=data["v"], aggfunc=aggfunc)
        theirs[column] = acro_flags(session, table)
    frame, sidecar = our_table(data)
    ours = check_table(frame, sidecar, policy)
    empty = {(frame.at[r, "a"], frame.at[r, "b"]) for r in frame.index if frame.at[r, "n"] == 0}

    # Differences 1 and 2: ACRO counts an empty cell as below the threshold, in every table; we flag it for
    # review on the count (zero rule) and leave the empty sum and mean cells alone.
    assert theirs["n"]["MinimumThresholdCheck"] == our_flags(ours, frame, "threshold", "n") | empty
    assert theirs["n"]["PresenceOfZeroCheck"] == our_flags(ours, frame, "zero", "n")
    for column in ("total", "mean"):
        assert theirs[column]["MinimumThresholdCheck"] == our_flags(ours, frame, "threshold", column) | empty
        assert theirs[column]["NKCheck"] == our_flags(ours, frame, "dominance", column)
        assert theirs[column]["PPercentCheck"] == our_flags(ours, frame, "p_percent", column)

    # not vacuous: some cells are dominated, and some large cells pass every rule
    large = {(frame.at[r, "a"], frame.at[r, "b"]) for r in frame.index if frame.at[r, "n"] >= policy.min_cell_count}
    assert our_flags(ours, frame, "dominance", "total")
    assert our_flags(ours, frame, "p_percent", "total")
    assert large - our_flags(ours, frame, "dominance", "total") - our_flags(ours, frame, "p_percent", "total")


def test_some_well_populated_cells_are_dominated() -> None:
    frame, sidecar = our_table(microdata(0))
    ours = check_table(frame, sidecar, SdcPolicy())
    dominated = our_flags(ours, frame, "dominance", "total")
    assert any(frame.loc[(frame["a"] == a) & (frame["b"] == b), "n"].item() >= 10 for a, b in dominated)


# --- deliberate differences ------------------------------------------------------------------------------------


def microdata_of(cells: dict[LabelPair, list[float]]) -> pd.DataFrame:
    rows = [(a, b, v) for (a, b), values in cells.items() for v in values]
    return pd.DataFrame(rows, columns=["a", "b", "v"])


BIG = [10.0 + i for i in range(12)]  # twelve similar values: passes every rule


def test_difference_zero_cells_are_for_review_where_acro_fails_them(session: Any) -> None:
    configure(session, SdcPolicy())
    data = microdata_of({("x", "p"): BIG, ("x", "q"): BIG, ("y", "p"): BIG})  # (y, q) is empty: a zero
    table = session.crosstab(data["a"], data["b"])
    theirs = acro_flags(session, table)
    assert ("y", "q") in theirs["MinimumThresholdCheck"]
    assert ("y", "q") in theirs["PresenceOfZeroCheck"]
    assert session.results.get_index(-1).status == "fail"
    frame, sidecar = our_table(data)
    ours = check_table(frame, sidecar, SdcPolicy())
    assert our_flags(ours, frame, "zero", "n") == {("y", "q")}
    assert our_flags(ours, frame, "threshold", "n") == set()
    assert ours.status == "review"


def test_difference_dominance_at_exactly_k_percent_fails_in_acro_only(session: Any) -> None:
    configure(session, SdcPolicy())
    exactly = [45.0, 45.0, 10.0] + [0.0] * 9  # the two largest hold 90% of 100
    data = microdata_of({("x", "p"): exactly, ("x", "q"): BIG, ("y", "p"): BIG, ("y", "q"): BIG})
    table = session.crosstab(data["a"], data["b"], values=data["v"], aggfunc="sum")
    assert acro_flags(session, table)["NKCheck"] == {("x", "p")}
    frame, sidecar = our_table(data)
    assert our_flags(check_table(frame, sidecar, SdcPolicy()), frame, "dominance", "total") == set()


def test_difference_negative_values_leave_other_cells_checked(session: Any) -> None:
    configure(session, SdcPolicy())
    dominated = [1000.0] + [1.0] * 11
    negative = [*BIG[:-1], -15.0]
    data = microdata_of({("x", "p"): dominated, ("x", "q"): negative, ("y", "p"): BIG, ("y", "q"): BIG})
    table = session.crosstab(data["a"], data["b"], values=data["v"], aggfunc="sum")
    theirs = acro_flags(session, table)
    assert theirs["NKCheck"] == {("x", "q")} == theirs["PPercentCheck"]  # only the negative cell, for review
    assert session.results.get_index(-1).sdc["summary"]["NKCheck"] == 1
    frame, sidecar = our_table(data)
    ours = check_table(frame, sidecar, SdcPolicy())
    assert our_flags(ours, frame, "negative", "total") == {("x", "q")}
    assert our_flags(ours, frame, "dominance", "total") == {("x", "p")}  # still checked


def test_difference_an_all_zero_cell_is_for_review_where_acro_fails_its_p_percent(session: Any) -> None:
    configure(session, SdcPolicy())
    data = microdata_of({("x", "p"): [0.0] * 12, ("x", "q"): BIG, ("y", "p"): BIG, ("y", "q"): BIG})
    table = session.crosstab(data["a"], data["b"], values=data["v"], aggfunc="sum")
    assert acro_flags(session, table)["PPercentCheck"] == {("x", "p")}
    frame, sidecar = our_table(data)
    ours = check_table(frame, sidecar, SdcPolicy())
    assert our_flags(ours, frame, "p_percent", "total") == set()
    assert our_flags(ours, frame, "zero", "total") == {("x", "p")}


def test_difference_every_maximum_fails_where_acro_checks_counts_only(session: Any) -> None:
    configure(session, SdcPolicy())
    data = microdata_of({("x", "p"): BIG, ("x", "q"): BIG, ("y", "p"): BIG, ("y", "q"): BIG})
    session.crosstab(data["a"], data["b"], values=data["v"], aggfunc="max")
    assert session.results.get_index(-1).status == "pass"
    frame = data.groupby(["a", "b"], as_index=False).agg(n=("v", "size"), oldest=("v", "max"))
    roles = {"a": "label", "b": "label", "n": "count", "oldest": "max"}
    sidecar = Sidecar(name="t", file="t.csv", type="table", kind="descriptive", roles=roles)
    assert our_flags(check_table(frame, sidecar, SdcPolicy()), frame, "min_max", "oldest") == {
        ("x", "p"),
        ("x", "q"),
        ("y", "p"),
        ("y", "q"),
    }


def test_residual_degrees_of_freedom_agree_with_acro(session: Any) -> None:
    configure(session, SdcPolicy())
    rng = np.random.default_rng(3)
    for n_obs in (13, 12):  # df_resid 10 passes, 9 fails, in both
        x = pd.DataFrame({"const": 1.0, "x1": rng.normal(size=n_obs), "x2": rng.normal(size=n_obs)})
        y = pd.Series(x["x1"] * 2 + rng.normal(size=n_obs), name="y")
        fitted = session.ols(y, x)
        theirs = session.results.get_index(-1).status
        facts = ModelFacts("statsmodels", "OLS", n_obs, float(fitted.df_model), float(fitted.df_resid))
        sidecar = Sidecar(name="m", file="m.txt", type="model", kind="model", model=facts)
        assert check_model(sidecar, SdcPolicy()).status == theirs


# --- results.json ------------------------------------------------------------------------------------------------


def test_our_results_json_loads_with_acros_reader_and_round_trips(tmp_path: Path) -> None:
    data = microdata(0)
    frame, sidecar = our_table(data)
    result = check_table(frame, sidecar, SdcPolicy())
    folder = tmp_path / "results"
    folder.mkdir()
    frame.to_csv(folder / "output_0_0.csv", index=False)
    pd.DataFrame({"term": ["const", "x"], "coef": [0.1, 1.5]}).to_csv(folder / "output_1_0.csv", index=False)
    facts = ModelFacts("statsmodels", "OLS", 12, 2.0, 9.0)
    model = Sidecar(name="m", file="output_1_0.csv", type="model", kind="model", model=facts)
    common = {
        "comments": ["by sex"],
        "exception": "",
        "timestamp": "2026-01-02T03:04:05",
        "command": "rk.outputs.table",
    }
    records = {
        "output_0": acro_record("output_0", ["output_0_0.csv"], sidecar, result, frame, status=result.status, **common),
        "output_1": acro_record(
            "output_1", ["output_1_0.csv"], model, check_model(model, SdcPolicy()), None, status="fail", **common
        ),
    }
    written = acro_results(records, version=ACRO_VERSION)
    (folder / "results.json").write_text(json.dumps(written, indent=4))

    loaded = load_records(str(folder))
    table = loaded.get("output_0")
    assert (table.status, table.output_type, table.timestamp, table.comments) == (
        "fail",
        "table",
        "2026-01-02T03:04:05",
        ["by sex"],
    )
    assert table.sdc == records["output_0"]["files"][0]["sdc"]
    assert table.output[0].shape == frame.shape
    assert loaded.get("output_1").properties == {"method": "OLS", "dof": 9}

    again = tmp_path / "again"
    again.mkdir()
    loaded.finalise_json(str(again))  # ACRO writes the loaded records out again: the same results
    reread = json.loads((again / "results.json").read_text())
    assert reread["version"] == written["version"] == acro_version
    assert reread["results"] == written["results"]


def test_a_record_has_acros_keys_and_encodings() -> None:
    frame = pd.DataFrame({"group": ["a", "b", "c"], "n": [3, 0, 40]})
    sidecar = Sidecar(name="t", file="t.csv", type="table", kind="frequency", roles={"group": "label", "n": "count"})
    result = check_table(frame, sidecar, SdcPolicy())
    record = acro_record(
        "output_3",
        ["t.csv"],
        sidecar,
        result,
        frame,
        status="fail",
        comments=[],
        exception="",
        timestamp="t",
        command="c",
    )
    assert list(record) == [
        "uid",
        "status",
        "type",
        "properties",
        "files",
        "outcome",
        "command",
        "summary",
        "timestamp",
        "comments",
        "exception",
        "fair",
    ]
    assert record["properties"] == {"method": "frequency", "mitigation": "none"}
    sdc = record["files"][0]["sdc"]
    assert sdc["cells"]["MinimumThresholdCheck"] == [[0, 1]]
    assert sdc["cells"]["PresenceOfZeroCheck"] == [[1, 1]]
    assert sdc["summary"] == {"MinimumThresholdCheck": 1, "PresenceOfZeroCheck": 1}
    assert record["summary"].splitlines()[:3] == [
        "frequency : fail",
        "MinimumThresholdCheck: fail - 1 cells may need suppressing.",
        "PresenceOfZeroCheck: review - 1 cells need a reviewer's look.",
    ]
    assert record["outcome"]["n"] == {"0": "MinimumThresholdCheck; ", "1": "PresenceOfZeroCheck; ", "2": "ok"}
    assert record["outcome"]["group"] == {"0": "ok", "1": "ok", "2": "ok"}
    assert record["fair"]["check_status"]["MinimumThresholdCheck"] == "fail"
    assert record["fair"]["check_status"]["PresenceOfZeroCheck"] == "review"


def test_flags_on_no_cell_of_the_table_go_to_the_summary() -> None:
    frame = pd.DataFrame({"group": ["a", "b"], "n": [30, 40]})
    sidecar = Sidecar(name="t", file="t.csv", type="table", kind="frequency", roles={"group": "label", "n": "count"})
    flags = [
        Flag("differencing", None, None, "differs from t2.csv by 3 patients", "fail"),
        Flag("threshold", 7, "n", "4 patients, fewer than the minimum 10", "fail"),  # a row this table lacks
    ]
    record = acro_record(
        "output_0",
        ["t.csv"],
        sidecar,
        check_result(flags, [], []),
        frame,
        status="fail",
        comments=[],
        exception="",
        timestamp="t",
        command="c",
    )
    sdc = record["files"][0]["sdc"]
    assert sdc["summary"] == {"PresenceOfLinkedTableCheck": 0, "MinimumThresholdCheck": 0}
    assert record["outcome"]["n"] == {"0": "ok", "1": "ok"}
    assert "PresenceOfLinkedTableCheck: fail - differs from t2.csv by 3 patients" in record["summary"]
    assert "MinimumThresholdCheck: fail (n) - 4 patients, fewer than the minimum 10" in record["summary"]
