"""Kaplan-Meier survival tables coarsened until every step may be released.

A raw Kaplan-Meier table has a step at each event time: with rare diseases
most steps hold one or two events, and each one discloses a patient's death
and its date. :func:`km_table` fits the estimate with lifelines on every
patient, then reports it only at times chosen so that, between two reported
times, there are at least ``[sdc].survival_min_events`` events and either no
censoring or at least ``[sdc].min_cell_count`` censored patients, and at
least ``min_cell_count`` patients are at risk at the start. The curve stops
where fewer remain at risk, or where the events left are too few for a step. A group with too few events for one step is
withheld (named in ``frame.attrs["withheld"]``). The estimate and its 95 %
interval at a reported time are lifelines' own, computed on all the data.

The result is the survival table the SDC rules check
(:data:`SURVIVAL_ROLES`): declare it with
``rk.outputs.table(steps, name, roles=rk.analysis.SURVIVAL_ROLES, kind="survival")``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TIME_DECIMALS = 2
SURVIVAL_ROLES = {
    "time": "survival_time",
    "at_risk": "survival_at_risk",
    "events": "survival_events",
    "censored": "survival_censored",
    "survival": "survival_estimate",
    "lower": "statistic",
    "upper": "statistic",
}


@dataclass(frozen=True)
class _Step:
    time: float
    at_risk: int
    events: int
    censored: int


def km_table(
    frame: pd.DataFrame,
    duration: str,
    event: str,
    *,
    by: str | None = None,
    min_events: int | None = None,
    min_count: int | None = None,
) -> pd.DataFrame:
    """A releasable Kaplan-Meier table of ``frame`` (one row per patient), per group of ``by`` if given.

    Columns: the ``by`` column, ``time`` (the end of each step, in the
    duration's unit), ``at_risk`` (at the step's start), ``events``,
    ``censored``, ``survival``, ``lower``, ``upper``. The thresholds default
    to the workspace policy's ``[sdc]`` (``survival_min_events``,
    ``min_cell_count``).
    """
    from lifelines import KaplanMeierFitter

    min_events, min_count = _thresholds(min_events, min_count)
    groups = [(None, frame)] if by is None else list(frame.groupby(by, observed=True, sort=True))
    parts, withheld = [], []
    for key, rows in groups:
        # Times are reported to TIME_DECIMALS places: steps are made on that grid, so no two share a time.
        durations = np.round(rows[duration].to_numpy(dtype=float), TIME_DECIMALS)
        observed = rows[event].to_numpy(dtype=bool)
        steps = _steps(durations, observed, min_events, min_count)
        if not steps:
            withheld.append(key)
            continue
        km = KaplanMeierFitter().fit(durations, observed)
        times = [0.0, *(s.time for s in steps)]
        ends = [s.time for s in steps]
        interval = km.confidence_interval_survival_function_
        # The first row is the start of follow-up, before any event (deaths at time 0 fall in the first step).
        survival = [1.0, *km.survival_function_at_times(ends).to_numpy(dtype=float)]
        lower = [1.0, *_at(interval.iloc[:, 0], ends)]
        upper = [1.0, *_at(interval.iloc[:, 1], ends)]
        part = pd.DataFrame(
            {
                "time": times,
                "at_risk": [len(rows), *(s.at_risk for s in steps)],
                "events": [0, *(s.events for s in steps)],
                "censored": [0, *(s.censored for s in steps)],
                "survival": survival,
                "lower": lower,
                "upper": upper,
            }
        )
        if by is not None:
            part.insert(0, by, key)
        parts.append(part)
    columns = ([] if by is None else [by]) + list(SURVIVAL_ROLES)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    out.attrs["withheld"] = withheld
    return out


def _thresholds(min_events: int | None, min_count: int | None) -> tuple[int, int]:
    if min_events is None or min_count is None:
        from research_kit.tiers import current_policy

        sdc = current_policy().sdc
        min_events = sdc.survival_min_events if min_events is None else min_events
        min_count = sdc.min_cell_count if min_count is None else min_count
    return int(min_events), int(min_count)


def _steps(durations: np.ndarray, observed: np.ndarray, min_events: int, min_count: int) -> list[_Step]:
    """Steps of at least ``min_events`` events and 0 or ``min_count``+ censored, while ``min_count`` are at risk."""
    if len(durations) == 0:
        return []
    order = np.argsort(durations, kind="stable")
    durations, observed = durations[order], observed[order]
    times = np.unique(durations)
    events = np.array([np.sum(observed[durations == t]) for t in times])
    removed = np.array([np.sum(durations == t) for t in times])
    at_risk = len(durations) - np.concatenate([[0], np.cumsum(removed)[:-1]])
    steps: list[_Step] = []
    start_risk, acc_events, acc_censored = len(durations), 0, 0
    for t, e, r, risk in zip(times, events, removed, at_risk, strict=True):
        if risk < min_count:
            break  # the curve stops: too few left at risk for the next step to start
        acc_events += int(e)
        acc_censored += int(r - e)
        if acc_events >= min_events and (acc_censored == 0 or acc_censored >= min_count):
            steps.append(_Step(float(t), int(start_risk), acc_events, acc_censored))
            start_risk, acc_events, acc_censored = start_risk - acc_events - acc_censored, 0, 0
    # What is left after the last step is too small to release as a step of its own: the curve stops there.
    return steps


def _at(series: pd.Series, times: list[float]) -> np.ndarray:
    """A step function's values at ``times`` (the last value at or before each)."""
    index = series.index.to_numpy(dtype=float)
    positions = np.searchsorted(index, times, side="right") - 1
    return series.to_numpy(dtype=float)[np.clip(positions, 0, len(index) - 1)]
