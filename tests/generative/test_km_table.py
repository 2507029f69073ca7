"""Whatever the data, a Kaplan-Meier table from rk.analysis.km_table holds no step the survival rules refuse."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import research_kit as rk

patients = st.lists(
    st.tuples(st.integers(min_value=0, max_value=240), st.booleans()),  # months of follow-up, died
    min_size=0,
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(rows=patients, min_events=st.integers(1, 12), min_count=st.integers(1, 12))
def test_every_released_step_meets_the_thresholds(
    rows: list[tuple[int, bool]], min_events: int, min_count: int
) -> None:
    frame = pd.DataFrame(rows, columns=["months", "died"]).assign(years=lambda f: f["months"] / 12)
    table = rk.analysis.km_table(frame, "years", "died", min_events=min_events, min_count=min_count)
    if table.empty:  # not even one step could be released
        assert table.attrs["withheld"] == [None]
        assert list(table.columns) == list(rk.analysis.SURVIVAL_ROLES)
        return
    first, steps = table.iloc[0], table.iloc[1:]
    assert (first["time"], first["at_risk"], first["survival"]) == (0.0, len(frame), 1.0)
    assert (steps["events"] >= min_events).all()
    assert ((steps["censored"] == 0) | (steps["censored"] >= min_count)).all()
    assert (steps["at_risk"] >= min_count).all()
    assert steps["time"].is_monotonic_increasing
    assert steps["time"].is_unique
    assert steps["at_risk"].iloc[0] == len(frame)
    # Each step starts with those the step before left at risk.
    left = (
        table["at_risk"].iloc[1:-1].to_numpy()
        - steps["events"].iloc[:-1].to_numpy()
        - steps["censored"].iloc[:-1].to_numpy()
    )
    assert (left == steps["at_risk"].iloc[1:].to_numpy()).all()
    assert steps["events"].sum() <= frame["died"].sum()
