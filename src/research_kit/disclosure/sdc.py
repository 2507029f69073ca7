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
protection
    Not a rule of this module: the output checks
    (:mod:`research_kit.disclosure.checks`) fail a suppressed cell whose
    feasible interval, attacked with a solver over the request's and the
    released tables (:mod:`research_kit.disclosure.attack`), is narrower than
    the protection width.
mitigated_source
    Not a rule of this module: the output checks
    (:mod:`research_kit.disclosure.checks`) fail a figure whose table was
    mitigated after the figure was drawn (the image shows the table's figures
    as they were before).

Missing values (cells already suppressed, NaN) are never flagged. An output
built from DP answers (``sidecar.dp``) has its threshold, zero, dominance, p%
and survival rules waived, with a note naming the guarantee: no figure then
discloses an individual beyond it. Minima and maxima still fail.

Reasons name the figure and the limit but never an individual's value: a
dominance flag states the share held by the largest contributors, a p% flag
how close the estimate of the largest would come, in percent.

Deliberate differences from ACRO 1.0.2 (each tested in
``tests/integration/disclosure/test_acro_crosscheck.py``):

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

The rules are registered by name in the order they run, one entry per kind
of figure (:data:`TABLE_RULES`: ``min_max``, ``counts``, ``proportions``,
``magnitudes``, ``survival``; :data:`MODEL_RULES`: ``residual_df``,
``survival_events``); an entry raises the flags of every rule above that
applies to its figures (``counts``: threshold, zero and negative). A new rule
is one function, registered there. The count-like rules are in
:mod:`~research_kit.disclosure.sdc_counts`, the magnitude rules in
:mod:`~research_kit.disclosure.sdc_magnitudes`.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from research_kit.core.config import SdcPolicy
from research_kit.core.errors import BadInput
from research_kit.disclosure import sdc_counts, sdc_magnitudes
from research_kit.disclosure.results import FAIL, REVIEW, CheckResult, Flag, result
from research_kit.disclosure.sdc_counts import count_columns, number_text
from research_kit.disclosure.sdc_magnitudes import DOMINANCE_ROLES, contribution_flags
from research_kit.outputs.sidecar import MAGNITUDE_ROLES, ROLES, DpFacts, ModelFacts, Sidecar

__all__ = [
    "DOMINANCE_ROLES",
    "DP_WAIVED",
    "FAIL",
    "KEPT_UNDER_DP",
    "MODEL_RULES",
    "NUMERIC_ROLES",
    "REVIEW",
    "RULES",
    "TABLE_RULES",
    "CheckResult",
    "Flag",
    "ModelRule",
    "TableRule",
    "check",
    "check_model",
    "check_table",
    "contribution_flags",
    "count_columns",
    "result",
    "validate_table",
]

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
    "mitigated_source",
    "protection",
)
NUMERIC_ROLES = frozenset(
    {"count", "proportion", "survival_at_risk", "survival_events", "survival_censored"} | MAGNITUDE_ROLES
)
DP_WAIVED = ("threshold", "zero", "dominance", "p_percent", "survival_events")

TableRule = Callable[[pd.DataFrame, Sidecar, SdcPolicy], CheckResult]
ModelRule = Callable[[ModelFacts, SdcPolicy], CheckResult]


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


def _together(found: list[CheckResult], notes: tuple[str, ...] = ()) -> CheckResult:
    """Several rules' results as one: their flags, notes and rules in the order the rules ran."""
    flags = [f for r in found for f in r.flags]
    return result(flags, [*(n for r in found for n in r.notes), *notes], [x for r in found for x in r.rules])


# --- tables ------------------------------------------------------------------------------------------------

# The table rules by name, in the order they run; each takes a validated table.
TABLE_RULES: dict[str, TableRule] = {
    "min_max": sdc_counts.min_max,
    "counts": sdc_counts.counts,
    "proportions": sdc_counts.proportions,
    "magnitudes": sdc_magnitudes.magnitudes,
    "survival": sdc_counts.survival,
}
KEPT_UNDER_DP = frozenset({"min_max"})  # a DP answer's guarantee stands for every other table rule (DP_WAIVED)


def check_table(frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy) -> CheckResult:
    """Apply every table rule to ``frame`` as its sidecar describes it."""
    validate_table(frame, sidecar)
    dp = sidecar.dp
    found = [rule(frame, sidecar, policy) for name, rule in TABLE_RULES.items() if dp is None or name in KEPT_UNDER_DP]
    return _together(found, () if dp is None else (_dp_note(dp),))


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


def _dp_note(dp: DpFacts) -> str:
    return (
        f"DP answers ({dp.mechanism}, rho={dp.rho:g}, epsilon={dp.epsilon:g} at delta={dp.delta:g}): the "
        f"{', '.join(DP_WAIVED)} rules were waived, no figure discloses an individual beyond that guarantee; "
        "minima and maxima are still refused"
    )


# --- models ------------------------------------------------------------------------------------------------


def _residual_df(model: ModelFacts, policy: SdcPolicy) -> CheckResult:
    flags: list[Flag] = []
    notes: list[str] = []
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
        reason = f"{number_text(df_resid)} residual degrees of freedom, fewer than the minimum {minimum}"
        flags.append(Flag("residual_df", None, None, reason, FAIL))
    return result(flags, notes, ["residual_df"])


def _survival_events(model: ModelFacts, policy: SdcPolicy) -> CheckResult:
    if model.library != "lifelines":
        return result([], [], [])
    events = model.n_events
    if events is None:
        flags = [Flag("unchecked", None, None, "number of events unknown: a reviewer must check it", REVIEW)]
    elif events < policy.survival_min_events:
        reason = f"{events} events, fewer than the minimum {policy.survival_min_events}"
        flags = [Flag("survival_events", None, None, reason, FAIL)]
    else:
        flags = []
    return result(flags, [], ["survival_events"])


# The model rules by name, in the order they run.
MODEL_RULES: dict[str, ModelRule] = {
    "residual_df": _residual_df,
    "survival_events": _survival_events,  # lifelines models only
}


def check_model(sidecar: Sidecar, policy: SdcPolicy) -> CheckResult:
    """Residual degrees of freedom of a fitted model; for lifelines models, their number of events too."""
    model = sidecar.model
    if model is None:
        raise BadInput(f"{sidecar.file}: a model output without its model facts in the sidecar")
    return _together([rule(model, policy) for rule in MODEL_RULES.values()])
