"""The SDC rules on magnitudes (sums, means, medians, quantiles, standard deviations): threshold on their n,
dominance and p% on their contributions.

:mod:`research_kit.disclosure.sdc` registers :func:`magnitudes` and documents
every rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from research_kit.core.config import SdcPolicy
from research_kit.disclosure.results import FAIL, REVIEW, CheckResult, Flag, result
from research_kit.disclosure.sdc_counts import number_text, numbers
from research_kit.outputs.sidecar import MAGNITUDE_ROLES, Contribution, Sidecar

DOMINANCE_ROLES = frozenset({"sum", "mean"})  # linear aggregations, as in ACRO's ontology
_TOLERANCE = 1e-9


def magnitudes(frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy) -> CheckResult:
    """Threshold on every magnitude cell's n; dominance and p% on the sums' and means' contributions."""
    columns = sidecar.columns(*MAGNITUDE_ROLES)
    ns = numbers(frame[sidecar.n_column]) if sidecar.n_column is not None else None
    flags: list[Flag] = []
    dominance = [c for c in columns if sidecar.roles[c] in DOMINANCE_ROLES]
    for col in columns:
        flags += _magnitude_column(col, numbers(frame[col]), ns, sidecar, policy)
    notes = []
    if dominance:
        notes.append(
            f"dominance (n={policy.dominance_n}, k={policy.dominance_k:g}%) and p% (p={policy.p_percent:g}%) "
            f"in {', '.join(dominance)}"
        )
    rules = ["threshold", "unchecked"] if columns else []
    if dominance:
        rules += ["dominance", "p_percent", "negative"]
    return result(flags, notes, rules)


def _magnitude_column(
    col: str, values: np.ndarray, ns: np.ndarray | None, sidecar: Sidecar, policy: SdcPolicy
) -> list[Flag]:
    cells: Sequence[Contribution | None] = sidecar.contributions.get(col) or [None] * len(values)
    published = [row for row, v in enumerate(values) if not math.isnan(v)]
    flags = _magnitude_threshold(col, published, cells, ns, sidecar, policy)
    if sidecar.roles[col] in DOMINANCE_ROLES:
        flags += _magnitude_dominance(col, published, cells, policy)
    return flags


def _magnitude_threshold(
    col: str,
    published: list[int],
    cells: Sequence[Contribution | None],
    ns: np.ndarray | None,
    sidecar: Sidecar,
    policy: SdcPolicy,
) -> list[Flag]:
    role, minimum, unit = sidecar.roles[col], policy.min_cell_count, sidecar.unit
    flags: list[Flag] = []
    unknown = 0
    for row in published:
        n: float | None = ns[row] if ns is not None and not math.isnan(ns[row]) else None
        contribution = cells[row]
        if n is None and contribution is not None:
            n = contribution.n
        if n is None:
            unknown += 1
        elif 0 < n < minimum:
            reason = f"{role} of {number_text(n)} {unit}, fewer than the minimum {minimum}"
            flags.append(Flag("threshold", row, col, reason, FAIL))
    if unknown:
        reason = f"threshold not checked for {unknown} of {len(published)} cells of {col}: their n is unknown"
        flags.append(Flag("unchecked", None, col, reason + " (declare n_column)", REVIEW))
    return flags


def _magnitude_dominance(
    col: str, published: list[int], cells: Sequence[Contribution | None], policy: SdcPolicy
) -> list[Flag]:
    flags: list[Flag] = []
    missing = 0
    for row in published:
        contribution = cells[row]
        if contribution is None:
            missing += 1
            continue
        flags += [Flag(rule, row, col, why, sev) for rule, why, sev in contribution_flags(contribution, policy)]
    if missing:
        reason = (
            f"dominance and p% not checked for {missing} of {len(published)} cells of {col}: no contributions "
            "(declare the output with source= to enable them)"
        )
        flags.append(Flag("unchecked", None, col, reason, REVIEW))
    return flags


def contribution_flags(cell: Contribution, policy: SdcPolicy) -> list[tuple[str, str, str]]:
    """The dominance and p% findings for one magnitude cell: (rule, reason, severity) triples."""
    top = sorted(cell.top, key=abs, reverse=True)
    if cell.n <= 0:
        return []
    if _has_negative(cell, top):
        return [("negative", "negative values among the contributors: dominance and p% are not defined", REVIEW)]
    if cell.total <= 0:
        if not policy.flag_zeros:
            return []
        return [("zero", "every contributor's value is 0: the figure discloses each of them", REVIEW)]
    return [*_dominance(cell, top, policy), *_p_percent(cell, top, policy)]


def _has_negative(cell: Contribution, top: list[float]) -> bool:
    if any(v < 0 for v in top):
        return True
    rest = cell.total - sum(top)  # the contributions not kept; below 0 only if some are negative
    return len(top) < cell.n and rest < -_TOLERANCE * max(1.0, abs(cell.total))


def _dominance(cell: Contribution, top: list[float], policy: SdcPolicy) -> list[tuple[str, str, str]]:
    n = min(policy.dominance_n, cell.n)
    if len(top) < n:
        return [("unchecked", f"dominance not checked: only {len(top)} largest contributions were kept", REVIEW)]
    share = sum(top[:n]) / cell.total
    if share <= policy.dominance_k / 100:
        return []
    who = "the largest contributor holds" if n == 1 else f"the {n} largest contributors hold"
    return [("dominance", f"{who} {share * 100:.1f}% of the total, more than {policy.dominance_k:g}%", FAIL)]


def _p_percent(cell: Contribution, top: list[float], policy: SdcPolicy) -> list[tuple[str, str, str]]:
    if cell.n == 1:
        return [("p_percent", "a single contributor: the figure is that contributor's own value", FAIL)]
    if len(top) < 2:
        return [("unchecked", "p% not checked: the second largest contribution was not kept", REVIEW)]
    largest, second = top[0], top[1]
    closeness = (cell.total - (largest + second)) / largest
    if closeness >= policy.p_percent / 100:
        return []
    reason = (
        f"the second largest contributor could estimate the largest to within {closeness * 100:.1f}%, "
        f"closer than {policy.p_percent:g}%"
    )
    return [("p_percent", reason, FAIL)]
