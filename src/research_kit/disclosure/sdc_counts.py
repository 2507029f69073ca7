"""The SDC rules on counts and what stands for counts: minima and maxima, counts, proportions, survival steps.

Each rule takes a table already validated against its sidecar
(:func:`research_kit.disclosure.sdc.validate_table`) and returns its flags,
notes and the rules it applied; :mod:`research_kit.disclosure.sdc` registers
them and documents every rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from research_kit.core.config import SdcPolicy
from research_kit.disclosure.results import FAIL, REVIEW, CheckResult, Flag, result
from research_kit.outputs.sidecar import Sidecar


def numbers(series: pd.Series) -> np.ndarray:
    """A numeric column as floats, NaN where a cell is missing."""
    return series.astype("float64").to_numpy(na_value=np.nan)


def number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def count_columns(sidecar: Sidecar) -> list[str]:
    """The columns held to the count rules: every ``count`` column and the ``n_column``."""
    return list(dict.fromkeys(sidecar.columns("count") + ([sidecar.n_column] if sidecar.n_column else [])))


def min_max(frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy) -> CheckResult:
    """Every published cell of a ``min`` or ``max`` column fails."""
    flags = []
    for col in sidecar.columns("min", "max"):
        role = "minimum" if sidecar.roles[col] == "min" else "maximum"
        for row, missing in enumerate(frame[col].isna()):
            if not missing:
                flags.append(Flag("min_max", row, col, f"a {role} is an individual's value", FAIL))
    return result(flags, [], ["min_max"] if sidecar.columns("min", "max") else [])


def counts(frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy) -> CheckResult:
    """Threshold, zero and negative on every count cell (and the n column)."""
    columns = count_columns(sidecar)
    if not columns:
        return result([], [], [])
    flags: list[Flag] = []
    unit, minimum = sidecar.unit, policy.min_cell_count
    for col in columns:
        for row, v in enumerate(numbers(frame[col])):
            if math.isnan(v):
                continue
            if v < 0:
                reason = f"{number_text(v)} {unit}: a count cannot be negative, check the table"
                flags.append(Flag("negative", row, col, reason, REVIEW))
            elif v == 0 and policy.flag_zeros:
                reason = f"0 {unit}: a zero can disclose that nobody in the group has the attribute"
                flags.append(Flag("zero", row, col, reason, REVIEW))
            elif 0 < v < minimum:
                reason = f"{number_text(v)} {unit}, fewer than the minimum {minimum}"
                flags.append(Flag("threshold", row, col, reason, FAIL))
    note = f"threshold: counts of at least {minimum} {unit} in {', '.join(columns)}"
    return result(flags, [note], ["threshold", "zero"] if policy.flag_zeros else ["threshold"])


def proportions(frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy) -> CheckResult:
    """Threshold (and zero) on every share, through its row's n and the count it stands for."""
    columns = sidecar.columns("proportion")
    flags: list[Flag] = []
    for col in columns:
        if sidecar.n_column is None:
            reason = f"threshold not checked for {col}: its n is unknown (declare n_column)"
            flags.append(Flag("unchecked", None, col, reason, REVIEW))
            continue
        shares, ns = numbers(frame[col]), numbers(frame[sidecar.n_column])
        scale = 100.0 if np.nanmax(np.abs(shares), initial=0.0) > 1 else 1.0
        for row, (share, n) in enumerate(zip(shares, ns, strict=True)):
            if not (math.isnan(share) or math.isnan(n)):
                flags += _proportion_cell(row, col, share / scale, n, sidecar.unit, policy)
    return result(flags, [], ["threshold", "unchecked"] if columns else [])


def _proportion_cell(row: int, col: str, share: float, n: float, unit: str, policy: SdcPolicy) -> list[Flag]:
    minimum = policy.min_cell_count
    if 0 < n < minimum:
        reason = f"a share of {number_text(n)} {unit}, fewer than the minimum {minimum}"
        return [Flag("threshold", row, col, reason, FAIL)]
    count = round(share * n)
    if 0 < count < minimum:
        reason = f"a share of {number_text(n)} {unit} standing for {count} {unit}, fewer than the minimum {minimum}"
        return [Flag("threshold", row, col, reason, FAIL)]
    if count == 0 and n > 0 and share == 0 and policy.flag_zeros:
        reason = f"0% of {number_text(n)} {unit}: a zero can disclose that nobody in the group has the attribute"
        return [Flag("zero", row, col, reason, REVIEW)]
    return []


def survival(frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy) -> CheckResult:
    """Events per step of a survival table; its at-risk and censored counts held to the threshold."""
    unit = sidecar.unit
    specs: list[tuple[str, str, int, Callable[[str], str]]] = [
        ("survival_events", "survival_events", policy.survival_min_events, lambda v: f"{v} events at this step"),
        ("survival_at_risk", "threshold", policy.min_cell_count, lambda v: f"{v} {unit} at risk"),
        ("survival_censored", "threshold", policy.min_cell_count, lambda v: f"{v} {unit} censored at this step"),
    ]
    flags: list[Flag] = []
    rules: list[str] = []
    for role, rule, minimum, says in specs:
        for col in sidecar.columns(role):
            rules.append(rule)
            for row, v in enumerate(numbers(frame[col])):
                if not math.isnan(v) and 0 < v < minimum:
                    reason = f"{says(number_text(v))}, fewer than the minimum {minimum}"
                    flags.append(Flag(rule, row, col, reason, FAIL))
    notes = []
    if "survival_events" in rules:
        notes.append(
            f"survival: at least {policy.survival_min_events} events per step (steps with 0 events are "
            "censoring-only and not held to it)"
        )
    return result(flags, notes, rules)
