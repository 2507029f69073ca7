"""Honest DP intervals: the quantile's rank error as OpenDP scales it, decimal grids, centred means, coverage.

Coverage is measured on a small synthetic frame, one row per patient, drawing
fresh answers through :func:`engine.release` (the engine's own measurement and
interval code) in a throw-away workspace, without the ledger. The truth is
computed here from the frame, independently of the engine. Only OpenDP makes
noise, and it cannot be seeded: the frame is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import polars as pl
import pytest
from opendp.accuracy import summarize_polars_measurement

from research_kit.core.workspace import Workspace, init_workspace
from research_kit.dp import columns, engine
from research_kit.dp.query import (
    Query,
    default_candidates,
    key_frame,
    make_query,
    neighbours,
    prepare,
    score_denominator,
)

REFERENCE_YEAR = 2026
PATIENTS = 1_500
YEARS = (1900, 2100)
ONSET_MEDIAN = 3.4  # between the default grid's 3.0 and 3.6 (steps of 0.6 over 0-120)
Target = tuple[float, float]  # the true figure, or the set of true quantiles [q-, q+]


def synthetic_frame(patients: int = PATIENTS, seed: int = 22) -> pl.DataFrame:
    """One row per patient: birth years far from zero, small whole numbers, onset ages in tenths of years."""
    rng = np.random.default_rng(seed)
    onset = np.round(np.clip(rng.lognormal(math.log(ONSET_MEDIAN), 1.0, patients), 0, 120), 1)
    return pl.DataFrame(
        {
            columns.IDENTIFIER: rng.permutation(patients).astype(np.uint64),
            "sex": rng.choice(["female", "male"], patients),
            "birth_year": rng.integers(1930, 2021, patients),
            "diagnoses": rng.poisson(2.0, patients),
            "onset_age_years": onset,
        }
    )


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return synthetic_frame()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A throw-away workspace: its catalog keeps the noise scales found, nothing is charged."""
    ws, _ = init_workspace(tmp_path_factory.mktemp("intervals") / "ws")
    return ws


# --- the truth, from the frame -------------------------------------------------------------------------------


def clipped(frame: pl.DataFrame, query: Query) -> np.ndarray:
    assert query.bounds is not None
    return np.clip(frame[str(query.column)].to_numpy().astype(float), *query.bounds)


def quantile_set(values: np.ndarray, alpha: float) -> Target:
    """Every alpha-quantile of ``values``: from the least v with #(x <= v) >= alpha n to the greatest v with
    #(x >= v) >= (1 - alpha) n."""
    x = np.sort(values)
    n = len(x)
    below = x[np.searchsorted(x, x, side="right") >= alpha * n]
    above = x[n - np.searchsorted(x, x, side="left") >= (1 - alpha) * n]
    return float(below.min()), float(above.max())


def truth(frame: pl.DataFrame, query: Query) -> list[Target]:
    """The true figure of each row of the answer (ungrouped, or by histogram bin)."""
    if query.kind == "count":
        return [(frame.height, frame.height)]
    if query.kind == "histogram":
        assert query.bins is not None
        counts = np.histogram(frame[str(query.column)].to_numpy(), bins=list(query.bins))[0]
        return [(float(c), float(c)) for c in counts]
    values = clipped(frame, query)
    if query.kind == "sum":
        return [(values.sum(), values.sum())]
    if query.kind == "mean":
        return [(values.mean(), values.mean())]
    assert query.alpha is not None
    return [quantile_set(frame[str(query.column)].to_numpy(), query.alpha)]


# --- drawing answers ---------------------------------------------------------------------------------------


@dataclass
class Coverage:
    hits: int = 0
    total: int = 0

    @property
    def share(self) -> float:
        return self.hits / self.total


def draw(ws: Workspace, frame: pl.DataFrame, query: Query, draws: int) -> list[pl.DataFrame]:
    """``draws`` fresh answers to ``query``, built and assembled as :func:`engine.run` does."""
    prepared = engine.prepare_release(ws, query, frame.lazy(), REFERENCE_YEAR, 0.95)
    return [engine.release(prepared) for _ in range(draws)]


def coverage(ws: Workspace, frame: pl.DataFrame, query: Query, draws: int) -> Coverage:
    """How often [lower, upper] meets the truth, over ``draws`` answers and each of their rows."""
    targets = truth(frame, query)
    result = Coverage()
    for table in draw(ws, frame, query, draws):
        for (lo, hi), (low, high) in zip(targets, table.select("lower", "upper").iter_rows(), strict=True):
            result.hits += low <= hi and high >= lo
            result.total += 1
    return result


COUNT = make_query("count", "patients", rho=0.0002)
HISTOGRAM = make_query("histogram", "patients", rho=0.0002, column_name="birth_year", bins=[1900, 1950, 1990, 2100])
SUM_SMALL = make_query("sum", "patients", rho=0.001, column_name="diagnoses", bounds=(0, 10))
SUM_YEARS = make_query("sum", "patients", rho=0.01, column_name="birth_year", bounds=YEARS)
MEAN_YEARS = make_query("mean", "patients", rho=0.01, column_name="birth_year", bounds=YEARS)
MEAN_SMALL = make_query("mean", "patients", rho=0.001, column_name="diagnoses", bounds=(0, 10))
MEAN_ONSET = make_query("mean", "diagnoses", rho=0.01, column_name="onset_age_years")  # tenths, centred on 60
ONSET_MEDIAN_Q = make_query("quantile", "diagnoses", rho=0.1, column_name="onset_age_years", alpha=0.5)
# Two-sided: an exact 95% interval (OpenDP's accuracy); one-sided: conservative by design.
TWO_SIDED = {"count": COUNT, "histogram": HISTOGRAM, "sum of small numbers": SUM_SMALL, "sum of birth years": SUM_YEARS}
ONE_SIDED = {
    "mean of birth years": MEAN_YEARS,
    "mean of small numbers": MEAN_SMALL,
    "mean of onset ages": MEAN_ONSET,
    "onset-age median": ONSET_MEDIAN_Q,
}


# --- the quantile's rank error -------------------------------------------------------------------------------


def opendp_denominator(query: Query, frame: pl.DataFrame) -> float:
    """alpha's denominator as OpenDP's own measurement scales the scores: score sensitivity / max(alpha, 1 - alpha).

    At global scale g the Gumbel noise's scale is g x the scores' sensitivity,
    max(alpha_num, alpha_den - alpha_num), which OpenDP's summary reports.
    """
    assert query.alpha is not None
    lf = prepare(query, frame.lazy())
    schema = lf.collect_schema()
    m = engine.measurement_maker(query, schema, key_frame(query, REFERENCE_YEAR, schema))(2.0)
    scale = float(summarize_polars_measurement(m)["scale"][0])
    return scale / 2.0 / max(query.alpha, 1 - query.alpha)


@pytest.mark.parametrize("alpha", [0.5, 0.9, 0.1, 1 / 3, 0.37, 0.25])
@pytest.mark.parametrize(("table", "by"), [("patients", None), ("diagnoses", "sex")])
def test_the_rank_error_scales_scores_as_opendp_does(
    frame: pl.DataFrame, alpha: float, table: str, by: str | None
) -> None:
    query = make_query("quantile", table, rho=0.1, column_name="onset_age_years" if by else "birth_year",
                       alpha=alpha, by=by)  # fmt: skip
    expected = opendp_denominator(query, frame)
    ours = score_denominator(alpha, engine.MAX_ROWS)
    assert ours == pytest.approx(expected, rel=1e-8)
    if alpha in (0.5, 0.25):
        assert ours == Fraction(alpha).denominator  # a simple fraction is used exactly
    else:
        assert ours == (2**64 - 1) // engine.MAX_ROWS
        assert expected / 10_000 > 1e6  # the old 10,000ths were 1.8 million times too coarse
    scale = 1e10
    assert engine.rank_error(scale, 201, alpha, 0.95) == pytest.approx(scale * math.log(201 / 0.05) / expected)


def rank_gaps(values: np.ndarray, candidates: tuple[float, ...], alpha: float) -> dict[float, float]:
    """Each candidate's distance in rows from the best candidate: |f(c)| - min |f|, f(c) = (1-a)#(x<c) - a#(x>c)."""
    x = np.sort(values)
    c = np.asarray(candidates)
    lt = np.searchsorted(x, c, side="left")
    gt = len(x) - np.searchsorted(x, c, side="right")
    score = np.abs((1 - alpha) * lt - alpha * gt)
    return dict(zip(candidates, score - score.min(), strict=True))


def test_the_rank_error_is_the_gap_the_mechanism_really_makes(workspace: Workspace) -> None:
    """At alpha 0.9 the chosen candidate is within rank_error rows of the best in 95% of draws, and the
    bound is not loose by orders of magnitude (the old 10,000ths made it 1.8 million times too wide)."""
    rng = np.random.default_rng(7)
    flat = pl.DataFrame({columns.IDENTIFIER: np.arange(3000, dtype=np.uint64),
                         "onset_age_years": np.round(rng.uniform(0, 120, 3000), 1)})  # fmt: skip
    query = make_query("quantile", "diagnoses", rho=0.002, column_name="onset_age_years", alpha=0.9)
    assert query.candidates is not None
    prepared = engine.prepare_release(workspace, query, flat.lazy(), REFERENCE_YEAR, 0.95)
    bound = engine.rank_error(float(prepared.summary["scale"][0]), len(query.candidates), 0.9, 0.95)
    gaps = rank_gaps(flat["onset_age_years"].to_numpy(), query.candidates, 0.9)
    drawn = np.array([gaps[engine.release(prepared)["value"][0]] for _ in range(300)])
    assert (drawn <= bound).mean() >= 0.95
    print(f"\nrank gap: 95th percentile {np.quantile(drawn, 0.95):.3g} rows, bound {bound:.3g}")
    assert np.quantile(drawn, 0.95) >= bound / 10, (np.quantile(drawn, 0.95), bound)


# --- the grid -----------------------------------------------------------------------------------------------


def decimals(x: float) -> int:
    text = repr(x)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def test_the_default_grid_is_decimal_and_public() -> None:
    onset = make_query("quantile", "diagnoses", rho=0.1, column_name="onset_age_years", alpha=0.5)
    assert onset.candidates is not None
    assert len(onset.candidates) == 201
    assert onset.candidates[6] == 3.6
    assert "3.5999999999999996" not in map(repr, onset.candidates)
    assert max(map(decimals, onset.candidates)) == 1
    # From the bounds and the column's precision only: the same grid whatever the data.
    again = make_query("quantile", "diagnoses", rho=0.5, column_name="onset_age_years", alpha=0.9, where="sex = male")
    assert again.candidates == onset.candidates
    col = columns.column("diagnoses", "onset_age_years")
    for bounds, most in (((0.0, 7.0), 3), ((0.0, 1.0), 3), ((1.5, 2.5), 3), ((0.0, 100.0), 1), ((0.1, 0.3), 6)):
        grid = default_candidates(col, bounds)
        assert len(grid) == 201
        assert grid[0] == bounds[0]
        assert grid[-1] == bounds[1]
        assert list(grid) == sorted(set(grid))
        assert max(map(decimals, grid)) <= most, (bounds, grid)
    years = make_query("quantile", "patients", rho=0.1, column_name="birth_year", alpha=0.5, bounds=YEARS)
    assert years.candidates == tuple(range(1900, 2101))


def test_a_quantile_interval_is_its_grid_cell() -> None:
    cells = neighbours((1.0, 2.0, 4.0), (0.0, 5.0))
    assert cells.rows() == [(1.0, 0.0, 2.0), (2.0, 1.0, 4.0), (4.0, 2.0, 5.0)]


# --- centred means --------------------------------------------------------------------------------------------


def test_a_mean_of_birth_years_has_noise_set_by_the_range_width(workspace: Workspace, frame: pl.DataFrame) -> None:
    prepared = engine.prepare_release(workspace, MEAN_YEARS, frame.lazy(), REFERENCE_YEAR, 0.95)
    scales = dict(zip(prepared.summary["aggregate"], prepared.summary["scale"], strict=True))
    assert scales["Sum"] == pytest.approx(100 * scales["Frame Length"])  # half the width, not 2100
    table = engine.release(prepared)
    low, high = table["lower"][0], table["upper"][0]
    assert high - low < 5  # years; the uncentred sum made it about 40


# --- coverage -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*TWO_SIDED, *ONE_SIDED])
def test_intervals_cover_the_truth_in_a_few_hundred_draws(workspace: Workspace, frame: pl.DataFrame, name: str) -> None:
    """A smoke check that fails when an interval is plainly wrong (the onset median covered 0 of 1,000)."""
    query = {**TWO_SIDED, **ONE_SIDED}[name]
    result = coverage(workspace, frame, query, 200)
    assert result.share >= 0.85, (name, result)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TWO_SIDED))
def test_exact_intervals_cover_95_percent(workspace: Workspace, frame: pl.DataFrame, name: str) -> None:
    result = coverage(workspace, frame, TWO_SIDED[name], 2000)
    print(f"\ncoverage of {name}: {result.share:.2%} of {result.total}")
    assert 0.935 <= result.share <= 0.965, (name, result)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ONE_SIDED))
def test_conservative_intervals_cover_at_least_95_percent(workspace: Workspace, frame: pl.DataFrame, name: str) -> None:
    result = coverage(workspace, frame, ONE_SIDED[name], 2000)
    print(f"\ncoverage of {name}: {result.share:.2%} of {result.total}")
    assert result.share >= 0.935, (name, result)


def rows_to_cell(values: np.ndarray, candidates: tuple[float, ...], chosen: float, target: Target) -> int:
    """Rows strictly between the chosen candidate and the grid cell holding the true quantile (0: they meet)."""
    grid = np.asarray(candidates)
    if target[1] < chosen:  # the quantile lies below: its cell's top is the least candidate above it
        return int(((values > grid[grid > target[1]].min()) & (values < chosen)).sum())
    if target[0] > chosen:
        return int(((values > chosen) & (values < grid[grid < target[0]].max())).sum())
    return 0


@pytest.mark.slow
def test_where_data_are_sparse_a_quantile_misses_by_fewer_than_rank_error_rows(
    workspace: Workspace, frame: pl.DataFrame
) -> None:
    """The 0.9-quantile at a tiny cost: the interval may miss, but only by fewer than rank_error rows."""
    query = make_query("quantile", "diagnoses", rho=0.0005, column_name="onset_age_years", alpha=0.9)
    assert query.candidates is not None
    prepared = engine.prepare_release(workspace, query, frame.lazy(), REFERENCE_YEAR, 0.95)
    bound = engine.rank_error(float(prepared.summary["scale"][0]), len(query.candidates), 0.9, 0.95)
    values = frame["onset_age_years"].to_numpy()
    target = quantile_set(values, 0.9)
    held = covered = 0
    for _ in range(2000):
        chosen, lower, upper = engine.release(prepared).row(0)
        covered += lower <= target[1] and upper >= target[0]
        held += rows_to_cell(values, query.candidates, chosen, target) <= bound
    print(f"\n0.9-quantile, rank error {bound:.3g} rows: covered {covered / 2000:.2%}, within it {held / 2000:.2%}")
    assert held / 2000 >= 0.935


def test_the_onset_median_sits_between_two_grid_points(frame: pl.DataFrame) -> None:
    """The case the check found: the true median is off the grid, so only the grid cell can cover it."""
    lo, hi = quantile_set(frame["onset_age_years"].to_numpy(), 0.5)
    assert ONSET_MEDIAN_Q.candidates is not None
    assert not any(lo <= c <= hi for c in ONSET_MEDIAN_Q.candidates), (lo, hi)
