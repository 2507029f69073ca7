"""DP answers: honest intervals, bounded contributions, public keys only, previews, replays and tiers."""

from __future__ import annotations

import json
from pathlib import Path

import opendp.prelude as dp
import polars as pl
import pytest
from tests.conftest import grant
from tests.integration.dp.conftest import Registry, copy_extract

import research_kit as rk
from research_kit.core.errors import BadInput, MissingData, PolicyRefusal
from research_kit.dp import columns, engine, ledger
from research_kit.dp.query import make_query
from research_kit.tiers import TWIN_MANIFEST


def test_95_percent_intervals_cover_the_truth_95_percent_of_the_time(registry: Registry) -> None:
    ws, source, study = registry.ws, registry.source, "coverage"
    grant(ws, study, 2.0)
    frame = columns.build_view(source.folder, "patients", source.reference_year)
    truth = dict(frame.group_by("birth_year").len().iter_rows())
    truth_sum = dict(frame.group_by("birth_year").agg(pl.col("diagnoses").clip(0, 5).sum()).iter_rows())
    hits = total = sum_hits = sum_total = 0
    for i in range(10):  # 10 releases x 127 birth years of counts, and as many of sums
        cohort = f"birth_year >= {1800 + i}"  # every patient: the truth stays the same
        count = engine.run(ws, make_query("count", "patients", rho=0.002, by="birth_year", where=cohort),
                           study=study, source=source)  # fmt: skip
        assert count.table is not None
        for year, _, lower, upper in count.table.iter_rows():
            hits += lower <= truth.get(year, 0) <= upper
            total += 1
        summed = engine.run(
            ws, make_query("sum", "patients", rho=0.002, by="birth_year", where=cohort, column_name="diagnoses",
                           bounds=(0, 5)), study=study, source=source,
        )  # fmt: skip
        assert summed.table is not None
        for year, _, lower, upper in summed.table.iter_rows():
            sum_hits += lower <= truth_sum.get(year, 0) <= upper
            sum_total += 1
    assert 0.93 <= hits / total <= 0.97, hits / total
    assert 0.93 <= sum_hits / sum_total <= 0.97, sum_hits / sum_total


def test_quantile_rank_error_holds(registry: Registry) -> None:
    ws, source, study = registry.ws, registry.source, "quantiles"
    grant(ws, study, 2.0)
    frame = columns.build_view(source.folder, "patients", source.reference_year)
    ages = frame["age"].sort()
    within = 0
    runs = 20
    for i in range(runs):
        query = make_query("quantile", "patients", rho=0.02, column_name="age", alpha=0.5, bounds=(0, 120),
                           where=f"birth_year >= {1800 + i}")  # fmt: skip
        answer = engine.run(ws, query, study=study, source=source)
        assert answer.rank_error is not None
        assert answer.table is not None
        chosen = answer.value
        below = int((ages < chosen).sum())
        best = min(abs(int((ages < c).sum()) - 0.5 * ages.len()) for c in range(121))
        within += abs(below - 0.5 * ages.len()) <= best + answer.rank_error
    assert within / runs >= 0.95


def _heavy_patient(registry: Registry, folder: Path) -> tuple[engine.Source, str]:
    """A copy of the extract with one more patient, who has 50 encounters, all of one type.

    The privacy unit is a patient added or removed (every row of one pseudonym): the bound holds between the
    extract and this copy. (Changing an existing patient's rows is two such steps, and may move twice as much.)
    """
    source = copy_extract(registry, folder, "heavy", "heavy-hash")
    patients = pl.read_parquet(folder / "patients.parquet")
    encounters = pl.read_parquet(folder / "encounters.parquet")
    new = "f" * len(encounters["pseudonym"][0])
    assert new not in set(patients["pseudonym"])
    patients.head(1).with_columns(pl.lit(new).alias("pseudonym")).pipe(
        lambda row: pl.concat([patients, row])
    ).write_parquet(folder / "patients.parquet")
    extra = pl.concat([encounters.head(1)] * 50).with_columns(
        pl.lit(new).alias("pseudonym"), pl.lit("inpatient").alias("encounter_type")
    )
    pl.concat([encounters, extra]).write_parquet(folder / "encounters.parquet")
    return source, new


@pytest.mark.slow  # ~13 s
def test_a_patient_with_50_rows_moves_a_count_by_at_most_the_bound(registry: Registry, tmp_path: Path) -> None:
    ws, study = registry.ws, "bounding"
    grant(ws, study, 900_000.0)
    heavy, _ = _heavy_patient(registry, tmp_path / "heavy")
    # rho so large that the noise rounds to nothing: the released counts are the bounded truth.
    for per_group, max_groups in ((1, 1), (2, 3)):
        query = make_query("count", "encounters", rho=100_000.0, by="encounter_type", per_group=per_group,
                           max_groups=max_groups)  # fmt: skip
        base = engine.run(ws, query, study=study, source=registry.source).table
        more = engine.run(ws, query, study=study, source=heavy).table
        assert base is not None
        assert more is not None
        moves = (more["value"] - base["value"]).abs()
        assert moves.max() <= per_group
        assert moves.sum() <= per_group * max_groups
    total = make_query("count", "encounters", rho=100_000.0, per_group=3)
    base_n = engine.run(ws, total, study=study, source=registry.source).value
    more_n = engine.run(ws, total, study=study, source=heavy).value
    assert 0 <= more_n - base_n <= 3


def test_groups_are_exactly_the_public_key_set(registry: Registry, tmp_path: Path) -> None:
    ws, study = registry.ws, "keys"
    grant(ws, study, 1.0)
    odd = copy_extract(registry, tmp_path / "odd", "odd", "odd-hash")
    patients = pl.read_parquet(tmp_path / "odd" / "patients.parquet")
    patients.with_columns(pl.lit("Atlantis").alias("canton")).write_parquet(tmp_path / "odd" / "patients.parquet")
    answer = engine.run(ws, make_query("count", "patients", rho=0.01, by="canton"), study=study, source=odd)
    assert answer.table is not None
    expected = columns.public_keys("patients", "canton", 2026)
    assert answer.table["canton"].to_list() == expected
    assert "Atlantis" not in answer.table["canton"].to_list()
    orpha = engine.run(ws, make_query("count", "diagnoses", rho=0.01, by="orpha_code"), study=study, source=odd)
    assert orpha.table is not None
    assert set(orpha.table["orpha_code"]) == set(columns.public_keys("diagnoses", "orpha_code", 2026))
    assert orpha.table.height > 4000  # every ORPHA code, held or not


def test_preview_spends_nothing_and_replays_are_free(registry: Registry, tmp_path: Path) -> None:
    ws, source, study = registry.ws, registry.source, "replays"
    grant(ws, study, 1.0)
    query = make_query("mean", "diagnoses", rho=0.05, column_name="onset_age_years", by="sex")
    preview = engine.run(ws, query, study=study, source=source, preview=True)
    assert preview.table is None
    assert preview.rho == pytest.approx(0.05)
    assert preview.scale > 0
    assert ledger.balance(ws, study).spent == 0
    first = engine.run(ws, query, study=study, source=source)
    spent = ledger.balance(ws, study).spent
    again = engine.run(ws, query, study=study, source=source)
    assert again.replayed
    assert ledger.balance(ws, study).spent == spent
    assert first.table is not None
    assert again.table is not None
    assert again.table.equals(first.table)
    newer = copy_extract(registry, tmp_path / "e2", "e2", "another-content-hash")
    reused = engine.run(ws, query, study=study, source=newer, reuse=True)
    assert reused.reused_from == "e1"
    assert ledger.balance(ws, study).spent == spent
    fresh = engine.run(ws, query, study=study, source=newer)
    assert not fresh.replayed
    assert ledger.balance(ws, study).spent > spent


def test_the_noise_scale_is_searched_once_per_shape(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, source, study = registry.ws, registry.source, "calibration"
    grant(ws, study, 1.0)
    searches = []
    real_search = dp.binary_search_param

    def counting(*args: object, **kwargs: object) -> object:
        searches.append(1)
        return real_search(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dp, "binary_search_param", counting)
    engine._SCALES.clear()
    for i in range(3):
        query = make_query("count", "diagnoses", rho=0.0123, by="disease_group", where=f"diagnosis_year >= {1950 + i}")
        engine.run(ws, query, study=study, source=source)
    assert len(searches) == 1
    engine._SCALES.clear()  # a new process: the scale comes from the catalog
    engine.run(ws, make_query("count", "diagnoses", rho=0.0123, by="status"), study=study, source=source)
    assert len(searches) == 1


def test_a_notebook_reads_the_twin_and_charges_the_sandbox(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = registry.ws
    monkeypatch.setenv("RESEARCH_KIT_HOME", str(ws.root))
    monkeypatch.setenv("RESEARCH_KIT_STUDY", "sandboxed")
    monkeypatch.delenv("RESEARCH_KIT_TIER", raising=False)
    with pytest.raises(MissingData, match="no synthetic twin"):
        rk.dp.count("patients", by="sex")
    twin = ws.synthetic_dir / "e1-twin"
    copy_extract(registry, twin, "twin", "twin-hash")
    manifest = {"extract": "e1", "content_hash": "twin-hash", "reference_year": 2026, "published_at": "2026-11-25"}
    (twin / TWIN_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    answer = rk.dp.count("patients", by="sex")
    assert answer.tier == "sandbox"
    assert answer.source == "twin:e1-twin"
    assert ledger.balance(ws, "sandboxed", "sandbox").spent > 0
    assert ledger.balance(ws, "sandboxed", "real").spent == 0
    monkeypatch.setenv("RESEARCH_KIT_TIER", "real")
    grant(ws, "sandboxed", 0.5)
    real = rk.dp.count("patients", by="sex")
    assert real.tier == "real"
    assert real.source == "e1"
    # Under the runner a notebook spends its own pipeline's budget, never another study's.
    grant(ws, "other-study", 0.5)
    with pytest.raises(PolicyRefusal, match="this pipeline's queries are charged to its study 'sandboxed'"):
        rk.dp.count("patients", by="sex", study="other-study")
    assert ledger.balance(ws, "other-study").spent == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "count", "table": "visits"}, "no table 'visits'"),
        ({"kind": "count", "table": "patients", "by": ["age"]}, "numeric and has no public key set"),
        ({"kind": "sum", "table": "patients"}, "needs a numeric column"),
        ({"kind": "mean", "table": "patients", "column_name": "sex"}, "not numeric"),
        ({"kind": "count", "table": "patients", "where": "sex ~ female"}, "write 'column OP value'"),
        ({"kind": "count", "table": "patients", "where": "birth_year >= soon"}, "not a int value"),
        ({"kind": "quantile", "table": "patients", "column_name": "age"}, "needs a level"),
        ({"kind": "histogram", "table": "patients", "column_name": "age", "bins": [10, 5]}, "increasing"),
        ({"kind": "count", "table": "diagnoses", "by": ["orpha_code", "icd10_code"]}, "the most is"),
    ],
)
def test_bad_queries_get_a_one_line_reason(kwargs: dict[str, object], message: str, registry: Registry) -> None:
    kind, table = str(kwargs.pop("kind")), str(kwargs.pop("table"))

    def ask() -> None:
        query = make_query(kind, table, rho=0.01, **kwargs)  # type: ignore[arg-type]
        engine.run(registry.ws, query, study="errors", source=registry.source, preview=True)

    with pytest.raises(BadInput, match=message) as info:
        ask()
    assert "\n" not in str(info.value)


def test_a_cost_given_as_a_bad_epsilon_is_one_line(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESEARCH_KIT_HOME", str(registry.ws.root))
    with pytest.raises(BadInput, match="epsilon must be more than 0, not -1"):
        rk.dp.count("patients", study="errors", epsilon=-1, tier="real")
    with pytest.raises(BadInput, match="rho must be more than 0, not 0"):
        rk.dp.count("patients", study="errors", rho=0, tier="real")
