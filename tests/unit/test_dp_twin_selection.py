"""The DP twin's HPO terms: kept by their total over the chapters (held by k patients), weighed per chapter.

The noise is OpenDP's (cryptographic, unseeded); the counts are far enough from every cut that a wrong outcome
has a probability under one in a million.
"""

from __future__ import annotations

import numpy as np
import pytest

from research_kit.synth import dp_twin

CONTEXTS, CODES, K = 22, 1_000, 10
SPREAD, RARE = 0, 1  # a term 10 patients hold in every chapter; a term 9 patients hold in one


def _cells() -> np.ndarray:
    cells = np.zeros((CONTEXTS, CODES))
    cells[:, SPREAD] = 10
    cells[3, RARE] = K - 1
    cells[5, 2:40] = 200  # common terms of one chapter
    return cells


def test_a_term_spread_over_the_chapters_is_kept_where_cutting_each_cell_loses_it() -> None:
    cells = _cells()
    per_cell = dp_twin._gaussian(cells, 3, 1.0, K)
    selected = dp_twin._selected(cells, 3, 1.0, K)
    assert not per_cell.kept[:, SPREAD].any()  # 10 per cell, under k plus the noise margin
    assert selected.selection["codes_kept"] == 39  # the spread term and the 38 common ones
    assert selected.kept[:, SPREAD].any()
    assert (selected.kept[5, 2:40] > 0).all()


def test_no_term_fewer_than_k_patients_hold_is_kept_and_only_kept_terms_weigh() -> None:
    selected = dp_twin._selected(_cells(), 3, 1.0, K)
    kept_codes = selected.kept.sum(axis=0) > 0
    assert not kept_codes[RARE]
    assert not kept_codes[40:].any()  # no patient holds them
    assert selected.cut == pytest.approx(dp_twin.DENOISE * selected.scale)


def test_both_measurements_together_spend_the_part_given() -> None:
    selected = dp_twin._selected(_cells(), 3, 0.3, K)
    assert selected.rho == pytest.approx(0.3, rel=1e-6)
    assert selected.selection["rho"] == pytest.approx(0.3 * dp_twin.SELECT, rel=1e-6)
    assert sum(dp_twin.SPLIT.values()) == pytest.approx(1.0)
