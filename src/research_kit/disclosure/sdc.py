"""Statistical disclosure control of declared outputs: the rules, cell by cell.

An output's table and its sidecar (:mod:`research_kit.outputs.sidecar`) are
checked against the workspace's :class:`~research_kit.core.config.SdcPolicy`; every
threshold comes from the policy. Each flagged cell carries all its reasons
(:meth:`CheckResult.cells`); a flag is ``fail`` (disclosive: mitigate or
refuse) or ``review`` (a reviewer must look).

Rules (``m`` is ``min_cell_count``):

threshold
    A ``count`` cell (and the ``n_column``) with ``0 < value < m`` fails. A
    magnitude cell (sum, mean, median, quantile, std) or a proportion fails when
    its n (the row's ``n_column``, else its :class:`Contribution`'s n) is
    ``0 < n < m``; a proportion also fails when the count it stands for
    (share × n, read as a percentage when the column holds values above 1) is
    ``0 < count < m``. Survival tables: at-risk and censored counts follow
    the same rule.
zero
    A count cell equal to 0 gets a review flag when ``flag_zeros`` is set (a
    zero can disclose that nobody in a group has an attribute); so do a share
    of 0 % and a magnitude cell whose contributors are all 0.
dominance (n, k)
    For ``sum`` and ``mean`` cells with a contribution: the n largest
    contributors hold more than k % of the cell's total -> fail.
p_percent
    For the same cells: with x1, x2 the two largest contributions,
    ``(total - (x1 + x2)) / x1 < p / 100`` -> fail: the second largest
    contributor could estimate the largest to within p %. One contributor
    always fails (the figure is that contributor's value).
unchecked
    A ``sum``/``mean`` column with cells lacking a contribution gets one review
    flag saying dominance and p% could not be checked (declare the output with
    ``source=`` to enable them); a magnitude or proportion column whose n is
    unknown gets one saying the threshold could not be checked.
negative
    A contribution with negative values: dominance and p% are not defined,
    review (as ACRO does). A negative count in a non-DP table: review. A
    contribution keeps only its largest values, so a negative value is seen
    when it is among them or when it makes the rest sum below zero; one that
    is not seen lowers the total, which makes dominance and p% stricter,
    never looser.
min_max
    Every cell of a ``min`` or ``max`` column fails: it is an individual's value.
survival_events
    Each step of a survival table must hold at least ``survival_min_events``
    events. A step with 0 events is a censoring-only step: the estimate does
    not move there and no event is disclosed, so the events rule does not
    apply to it (its censored count is still a count, see threshold); zeros in
    survival columns are not flagged.
residual_df
    A model's residual degrees of freedom must be at least ``min_residual_df``
    (``n_obs - df_model - 1`` when the library gave none; ``n_obs - df_model``
    for lifelines, which fits no intercept); a lifelines model must also rest on
    at least ``survival_min_events`` events.

Missing values (cells already suppressed, NaN) are never flagged. An output
built from DP answers (``sidecar.dp``) has its threshold, zero, dominance, p%
and survival rules waived, with a note naming the guarantee: no figure then
discloses an individual beyond it. Minima and maxima still fail.

Reasons name the figure and the limit but never an individual's value: a
dominance flag states the share held by the largest contributors, a p% flag
how close the estimate of the largest would come, in percent.

Deliberate differences from ACRO 1.0.2 (each tested in
``tests/outputs/test_acro_crosscheck.py``):

1. Zeros. ACRO's MinimumThresholdCheck counts a 0 cell as below the threshold
   (``count < threshold``) and its PresenceOfZeroCheck fails it; here a zero is
   a review flag only, never a threshold fail.
2. Empty magnitude cells. ACRO's threshold flags a sum/mean cell with no
   contributors (count 0); here such a cell is missing (nothing is published)
   and the zero is flagged on the row's count.
3. Dominance at exactly k %. ACRO fails ``top_n / total >= k``; here only more
   than k % fails, as the policy words it ("may not hold more than k percent").
4. Negative values. When any cell of a table has a negative contribution ACRO
   reports only those cells, for review, and checks dominance nowhere; here the
   cell with negatives is flagged for review and every other cell is checked.
5. All-zero magnitude cells. ACRO's p% rule fails them (its ratio keeps the 0
   remainder when the largest value is 0); here they get the zero review flag.
6. Minima and maxima. ACRO 1.0.2 checks a table of them for threshold and
   zeros only; here every cell fails.

Like ACRO, dominance and p% apply to sums and means only (linear
aggregations): medians, quantiles and standard deviations get the threshold
rule on their n.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from research_kit.core.config import SdcPolicy
from research_kit.core.errors import BadInput
from research_kit.outputs.sidecar import MAGNITUDE_ROLES, ROLES, Contribution, DpFacts, Sidecar

FAIL = "fail"
REVIEW = "review"
RULES = (
    "threshold",
    "zero",
    "dominance",
    "p_percent",
    "negative",
    "min_max",
    "survival_events",
    "residual_df",
    "unchecked",
)
DOMINANCE_ROLES = frozenset({"sum", "mean"})  # linear aggregations, as in ACRO's ontology
NUMERIC_ROLES = frozenset(
    {"count", "proportion", "survival_at_risk", "survival_events", "survival_censored"} | MAGNITUDE_ROLES
)
DP_WAIVED = ("threshold", "zero", "dominance", "p_percent", "survival_events")
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Flag:
    rule: str  # one of RULES
    row: int | None  # row index in the table file (0-based), None for whole-output flags
    column: str | None
    reason: str  # one human line naming the figure and the limit
    severity: str  # FAIL | REVIEW


@dataclass(frozen=True)
class CheckResult:
    status: str  # "fail" if any fail flag, else "review" if any review flag, else "pass"
    flags: tuple[Flag, ...]
    notes: tuple[str, ...]  # output-level lines: what was checked, DP guarantee taken into account
    rules: tuple[str, ...] = ()  # the rules applied to this output, flagged or not

    def cells(self) -> dict[tuple[int, str], list[Flag]]:
        """Flagged cells, each with all its reasons."""
        out: dict[tuple[int, str], list[Flag]] = {}
        for flag in self.flags:
            if flag.row is not None and flag.column is not None:
                out.setdefault((flag.row, flag.column), []).append(flag)
        return out

    def failed_cells(self) -> set[tuple[int, str]]:
        return {key for key, flags in self.cells().items() if any(f.severity == FAIL for f in flags)}


def result(flags: Iterable[Flag], notes: Iterable[str], rules: Iterable[str]) -> CheckResult:
    """A check's result: its status from the most severe flag, its rules listed once each."""
    flags = tuple(flags)
    severities = {f.severity for f in flags}
    status = FAIL if FAIL in severities else REVIEW if REVIEW in severities else "pass"
    return CheckResult(status, flags, tuple(notes), tuple(dict.fromkeys(rules)))


# --- dispatch ----------------------------------------------------------------------------------------------


def check(frame: pd.DataFrame | None, sidecar: Sidecar, policy: SdcPolicy) -> CheckResult:
    """Check one output by its type: a table, a model, a figure (through its data) or free text."""
    if sidecar.type == "model" or sidecar.kind == "model":
        return check_model(sidecar, policy)
    if sidecar.type == "table":
        if frame is None:
            raise BadInput(f"{sidecar.file}: a table output needs its table to be checked")
        return check_table(frame, sidecar, policy)
    if sidecar.type == "figure" and frame is not None and sidecar.roles:
        return check_table(frame, sidecar, policy)
    if sidecar.type == "figure":
        where = f"the table it draws ({sidecar.source})" if sidecar.source else "its data (declare it with source=)"
        reason = f"a figure is checked through {where}: a reviewer must look at it"
    else:
        reason = "free text cannot be checked automatically: a reviewer must read it"
    return result([Flag("unchecked", None, None, reason, REVIEW)], [], ["unchecked"])


# --- tables ------------------------------------------------------------------------------------------------


def check_table(frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy) -> CheckResult:
    """Apply every table rule to ``frame`` as its sidecar describes it."""
    validate_table(frame, sidecar)
    values = {col: _numbers(frame[col]) for col in frame.columns if sidecar.roles.get(col) in NUMERIC_ROLES}
    if sidecar.n_column is not None:
        values[sidecar.n_column] = _numbers(frame[sidecar.n_column])
    flags: list[Flag] = list(_min_max(frame, sidecar))
    rules = ["min_max"] if sidecar.columns("min", "max") else []
    notes: list[str] = []
    if sidecar.dp is not None:
        notes.append(_dp_note(sidecar.dp))
        return result(flags, notes, rules)
    for check_rule in (_counts, _proportions, _magnitudes, _survival):
        new_flags, new_notes, new_rules = check_rule(values, sidecar, policy)
        flags += new_flags
        notes += new_notes
        rules += new_rules
    return result(flags, notes, rules)


def validate_table(frame: pd.DataFrame, sidecar: Sidecar) -> None:
    """Raise :class:`BadInput`, naming the output file and the column, when the sidecar does not fit the table."""
    where = sidecar.file
    for col, role in sidecar.roles.items():
        if role not in ROLES:
            raise BadInput(f"{where}: column {col!r} has an unknown role {role!r}")
        if col not in frame.columns:
            raise BadInput(f"{where}: column {col!r} ({role}) is in the sidecar but not in the table")
    for col in frame.columns:
        if col not in sidecar.roles:
            raise BadInput(f"{where}: column {col!r} has no role in the sidecar")
    if sidecar.n_column is not None and sidecar.n_column not in frame.columns:
        raise BadInput(f"{where}: n_column {sidecar.n_column!r} is not in the table")
    numeric = [c for c, r in sidecar.roles.items() if r in NUMERIC_ROLES] + [sidecar.n_column or ""]
    for col in filter(None, numeric):
        if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            raise BadInput(f"{where}: column {col!r} ({sidecar.roles.get(col, 'n')}) is not numeric")
    for col, cells in sidecar.contributions.items():
        if sidecar.roles.get(col) not in MAGNITUDE_ROLES:
            raise BadInput(f"{where}: column {col!r} has contributions but is not a magnitude column")
        if len(cells) != len(frame):
            raise BadInput(f"{where}: column {col!r} has {len(cells)} contributions for {len(frame)} rows")


def _numbers(series: pd.Series) -> np.ndarray:
    return series.astype("float64").to_numpy(na_value=np.nan)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _dp_note(dp: DpFacts) -> str:
    return (
        f"DP answers ({dp.mechanism}, rho={dp.rho:g}, epsilon={dp.epsilon:g} at delta={dp.delta:g}): the "
        f"{', '.join(DP_WAIVED)} rules were waived, no figure discloses an individual beyond that guarantee; "
        "minima and maxima are still refused"
    )


def _min_max(frame: pd.DataFrame, sidecar: Sidecar) -> Iterable[Flag]:
    for col in sidecar.columns("min", "max"):
        role = "minimum" if sidecar.roles[col] == "min" else "maximum"
        for row, missing in enumerate(frame[col].isna()):
            if not missing:
                yield Flag("min_max", row, col, f"a {role} is an individual's value", FAIL)


_Rule = tuple[list[Flag], list[str], list[str]]


def count_columns(sidecar: Sidecar) -> list[str]:
    """The columns held to the count rules: every ``count`` column and the ``n_column``."""
    return list(dict.fromkeys(sidecar.columns("count") + ([sidecar.n_column] if sidecar.n_column else [])))


def _counts(values: dict[str, np.ndarray], sidecar: Sidecar, policy: SdcPolicy) -> _Rule:
    columns = count_columns(sidecar)
    if not columns:
        return [], [], []
    flags: list[Flag] = []
    unit, minimum = sidecar.unit, policy.min_cell_count
    for col in columns:
        for row, v in enumerate(values[col]):
            if math.isnan(v):
                continue
            if v < 0:
                reason = f"{_num(v)} {unit}: a count cannot be negative, check the table"
                flags.append(Flag("negative", row, col, reason, REVIEW))
            elif v == 0 and policy.flag_zeros:
                reason = f"0 {unit}: a zero can disclose that nobody in the group has the attribute"
                flags.append(Flag("zero", row, col, reason, REVIEW))
            elif 0 < v < minimum:
                flags.append(Flag("threshold", row, col, f"{_num(v)} {unit}, fewer than the minimum {minimum}", FAIL))
    note = f"threshold: counts of at least {minimum} {unit} in {', '.join(columns)}"
    return flags, [note], ["threshold", "zero"] if policy.flag_zeros else ["threshold"]


def _proportions(values: dict[str, np.ndarray], sidecar: Sidecar, policy: SdcPolicy) -> _Rule:
    columns = sidecar.columns("proportion")
    flags: list[Flag] = []
    for col in columns:
        if sidecar.n_column is None:
            reason = f"threshold not checked for {col}: its n is unknown (declare n_column)"
            flags.append(Flag("unchecked", None, col, reason, REVIEW))
            continue
        shares, ns = values[col], values[sidecar.n_column]
        scale = 100.0 if np.nanmax(np.abs(shares), initial=0.0) > 1 else 1.0
        for row, (share, n) in enumerate(zip(shares, ns, strict=True)):
            if not (math.isnan(share) or math.isnan(n)):
                flags += _proportion_cell(row, col, share / scale, n, sidecar.unit, policy)
    return flags, [], ["threshold", "unchecked"] if columns else []


def _proportion_cell(row: int, col: str, share: float, n: float, unit: str, policy: SdcPolicy) -> list[Flag]:
    minimum = policy.min_cell_count
    if 0 < n < minimum:
        return [Flag("threshold", row, col, f"a share of {_num(n)} {unit}, fewer than the minimum {minimum}", FAIL)]
    count = round(share * n)
    if 0 < count < minimum:
        reason = f"a share of {_num(n)} {unit} standing for {count} {unit}, fewer than the minimum {minimum}"
        return [Flag("threshold", row, col, reason, FAIL)]
    if count == 0 and n > 0 and share == 0 and policy.flag_zeros:
        reason = f"0% of {_num(n)} {unit}: a zero can disclose that nobody in the group has the attribute"
        return [Flag("zero", row, col, reason, REVIEW)]
    return []


def _magnitudes(values: dict[str, np.ndarray], sidecar: Sidecar, policy: SdcPolicy) -> _Rule:
    columns = sidecar.columns(*MAGNITUDE_ROLES)
    flags: list[Flag] = []
    dominance = [c for c in columns if sidecar.roles[c] in DOMINANCE_ROLES]
    for col in columns:
        flags += _magnitude_column(col, values, sidecar, policy)
    notes = []
    if dominance:
        notes.append(
            f"dominance (n={policy.dominance_n}, k={policy.dominance_k:g}%) and p% (p={policy.p_percent:g}%) "
            f"in {', '.join(dominance)}"
        )
    rules = ["threshold", "unchecked"] if columns else []
    if dominance:
        rules += ["dominance", "p_percent", "negative"]
    return flags, notes, rules


def _magnitude_column(col: str, values: dict[str, np.ndarray], sidecar: Sidecar, policy: SdcPolicy) -> list[Flag]:
    cells: Sequence[Contribution | None] = sidecar.contributions.get(col) or [None] * len(values[col])
    published = [row for row, v in enumerate(values[col]) if not math.isnan(v)]
    flags = _magnitude_threshold(col, published, cells, values, sidecar, policy)
    if sidecar.roles[col] in DOMINANCE_ROLES:
        flags += _magnitude_dominance(col, published, cells, policy)
    return flags


def _magnitude_threshold(
    col: str,
    published: list[int],
    cells: Sequence[Contribution | None],
    values: dict[str, np.ndarray],
    sidecar: Sidecar,
    policy: SdcPolicy,
) -> list[Flag]:
    role, minimum, unit = sidecar.roles[col], policy.min_cell_count, sidecar.unit
    ns = values.get(sidecar.n_column or "")
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
            reason = f"{role} of {_num(n)} {unit}, fewer than the minimum {minimum}"
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


def _survival(values: dict[str, np.ndarray], sidecar: Sidecar, policy: SdcPolicy) -> _Rule:
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
            for row, v in enumerate(values[col]):
                if not math.isnan(v) and 0 < v < minimum:
                    flags.append(Flag(rule, row, col, f"{says(_num(v))}, fewer than the minimum {minimum}", FAIL))
    notes = []
    if "survival_events" in rules:
        notes.append(
            f"survival: at least {policy.survival_min_events} events per step (steps with 0 events are "
            "censoring-only and not held to it)"
        )
    return flags, notes, rules


# --- models ------------------------------------------------------------------------------------------------


def check_model(sidecar: Sidecar, policy: SdcPolicy) -> CheckResult:
    """Residual degrees of freedom of a fitted model; for lifelines models, their number of events too."""
    model = sidecar.model
    if model is None:
        raise BadInput(f"{sidecar.file}: a model output without its model facts in the sidecar")
    flags: list[Flag] = []
    notes: list[str] = []
    rules = ["residual_df"]
    df_resid = model.df_resid
    if df_resid is None and model.df_model is not None:
        intercept = 0 if model.library == "lifelines" else 1
        df_resid = model.n_obs - model.df_model - intercept
        notes.append(f"residual degrees of freedom derived as n_obs - df_model{' - 1' if intercept else ''}")
    minimum = policy.min_residual_df
    if df_resid is None:
        reason = "residual degrees of freedom unknown: a reviewer must check the model's size"
        flags.append(Flag("unchecked", None, None, reason, REVIEW))
    elif df_resid < minimum:
        reason = f"{_num(df_resid)} residual degrees of freedom, fewer than the minimum {minimum}"
        flags.append(Flag("residual_df", None, None, reason, FAIL))
    if model.library == "lifelines":
        rules.append("survival_events")
        flags += _model_events(model.n_events, policy)
    return result(flags, notes, rules)


def _model_events(events: int | None, policy: SdcPolicy) -> list[Flag]:
    if events is None:
        return [Flag("unchecked", None, None, "number of events unknown: a reviewer must check it", REVIEW)]
    if events < policy.survival_min_events:
        reason = f"{events} events, fewer than the minimum {policy.survival_min_events}"
        return [Flag("survival_events", None, None, reason, FAIL)]
    return []
