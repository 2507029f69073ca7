"""Differentially private queries over the registry, charged to a study's privacy budget.

In a notebook::

    import research_kit as rk
    ans = rk.dp.count("diagnoses", by=["disease_group"], where="sex = female", study="delay")
    ans.table          # every public key, its noisy count and 95% interval
    rk.dp.mean("diagnoses", "diagnostic_delay_years", bounds=(0, 30), preview=True)  # cost, spends nothing

Which data answers depends on the tier (see :mod:`research_kit.tiers`): the
synthetic twin and the sandbox ledger, except under the pipeline runner
(real extract, real ledger). Every function takes:

- ``study``: whose budget pays (default ``RESEARCH_KIT_STUDY``);
- ``rho`` or ``epsilon``: the cost (default ``[dp].default_query_rho``); an
  epsilon is turned into rho at the policy's delta;
- ``where``: the cohort, e.g. ``"canton = Luxembourg and diagnosis_year >= 2010"``
  or ``{"sex": "female", "status": ["confirmed", "suspected"]}``;
- ``per_group`` / ``max_groups``: how many rows a patient may contribute per
  group, and to how many groups (default 1 and 1);
- ``preview=True``: the interval and the cost, without touching the data or the budget;
- ``reuse=True``: an answer already released for the same query on an earlier
  extract is returned instead of spending again.

The identical query on the identical extract is answered from the ledger and
costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from research_kit.core import permits
from research_kit.core.audit import RUNNER, current_actor
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.workspace import Workspace, check_name, open_workspace
from research_kit.dp import engine
from research_kit.dp.accounting import Typed, rho_from
from research_kit.dp.answer import Answer
from research_kit.dp.columns import COLUMNS, TABLES, reads
from research_kit.dp.query import make_query
from research_kit.tiers import STUDY_ENV, Source, Tier, current_tier, source_for

BROKER_ENV = "RESEARCH_KIT_BROKER"

__all__ = [
    "COLUMNS",
    "TABLES",
    "Answer",
    "count",
    "crosstab",
    "histogram",
    "mean",
    "median",
    "quantile",
    "sum",
]

Where = str | Sequence[str] | Mapping[str, Any] | None


def _text(amount: Typed | None) -> Typed | None:
    """An amount as JSON carries it to the broker: a decimal as its text, so nothing is lost on the way."""
    return str(amount) if isinstance(amount, Decimal) else amount


def _ask(
    kind: str,
    table: str,
    *,
    study: str | None,
    rho: Typed | None,
    epsilon: Typed | None,
    preview: bool,
    reuse: bool,
    extract: str | None,
    tier: Tier | None,
    workspace: str | Path | None,
    **spec: Any,
) -> Answer:
    broker = os.environ.get(BROKER_ENV)
    if broker and workspace is None:
        # Inside the sandbox: the broker outside answers (and charges) for this action's study and extract.
        from research_kit.core.wire import ask

        request = {
            "kind": kind, "table": table, "spec": spec, "study": study, "rho": _text(rho), "epsilon": _text(epsilon),
            "preview": preview, "reuse": reuse, "extract": extract, "tier": tier,
        }  # fmt: skip
        return Answer.from_dict(ask(broker, request))
    ws = open_workspace(Path(workspace) if workspace is not None else None)
    tier = tier or current_tier()
    return answer_query(
        ws, kind, table, study=study, pipeline_study=os.environ.get(STUDY_ENV), rho=rho, epsilon=epsilon,
        preview=preview, reuse=reuse, source=source_for(ws, tier, extract), spec=spec,
    )  # fmt: skip


def answer_query(
    ws: Workspace,
    kind: str,
    table: str,
    *,
    study: str | None,
    pipeline_study: str | None,
    rho: Typed | None,
    epsilon: Typed | None,
    preview: bool,
    reuse: bool,
    source: Source,
    spec: dict[str, Any],
) -> Answer:
    """Answer one query on ``source``, charged to ``study`` (which must be ``pipeline_study`` on the real tier)."""
    policy = ws.policy().dp
    study = study or pipeline_study
    if not study:
        raise BadInput(f"name the study whose budget pays: study='...' (or set {STUDY_ENV})")
    check_name(study, "study")
    rho = rho_from(rho, epsilon, policy.delta)  # a mistyped cost is said before anything else
    if source.tier == "real" and pipeline_study and study != pipeline_study:
        # Under the runner a notebook spends its own pipeline's budget, never another study's.
        raise PolicyRefusal(
            f"study {study!r}: this pipeline's queries are charged to its study {pipeline_study!r} "
            f"(set the notebook's study parameter to it)"
        )
    cost = policy.default_query_rho if rho is None else rho  # make_query checks it
    query = make_query(kind, table, rho=cost, **spec)
    if source.tier == "real":
        # Only the users of the study's data permit spend its budget, on the tables and columns it covers (each
        # of the view's columns the query reads, traced to the extract's columns it is made from); under the
        # runner (its broker acts as "runner:NAME") the run's user was checked when the run registered the
        # study's pipeline, and is checked again here: a permit revoked mid-run stops its queries.
        with ws.catalog() as conn:
            permits.check(
                conn, study, current_actor().removeprefix(RUNNER), tier="dp", tables=(table,),
                columns=reads(table, query.read_columns), extract=source.name,
                doing="asking the real extract on its budget",
            )  # fmt: skip
    return engine.run(ws, query, study=study, source=source, preview=preview, reuse=reuse)


def count(
    table: str,
    *,
    by: Sequence[str] | str | None = None,
    where: Where = None,
    per_group: int = 1,
    max_groups: int | None = None,
    clamp: bool = False,
    study: str | None = None,
    rho: Typed | None = None,
    epsilon: Typed | None = None,
    preview: bool = False,
    reuse: bool = False,
    extract: str | None = None,
    tier: Tier | None = None,
    workspace: str | Path | None = None,
) -> Answer:
    """Patients (rows, up to ``per_group`` per patient) per group; signed unless ``clamp=True``."""
    return _ask(
        "count", table, by=by, where=where, per_group=per_group, max_groups=max_groups, signed=not clamp,
        study=study, rho=rho, epsilon=epsilon, preview=preview, reuse=reuse, extract=extract, tier=tier,
        workspace=workspace,
    )  # fmt: skip


def crosstab(table: str, rows: str, columns: str, **kwargs: Any) -> Answer:
    """A two-way table of counts over the public keys of ``rows`` x ``columns`` (see :func:`count`)."""
    return count(table, by=[rows, columns], **kwargs)


def sum(
    table: str,
    column: str,
    *,
    bounds: tuple[float, float] | None = None,
    by: Sequence[str] | str | None = None,
    where: Where = None,
    per_group: int = 1,
    max_groups: int | None = None,
    study: str | None = None,
    rho: Typed | None = None,
    epsilon: Typed | None = None,
    preview: bool = False,
    reuse: bool = False,
    extract: str | None = None,
    tier: Tier | None = None,
    workspace: str | Path | None = None,
) -> Answer:
    """The sum of ``column``, each value clipped to ``bounds`` (default: the schema's)."""
    return _ask(
        "sum", table, column_name=column, bounds=bounds, by=by, where=where, per_group=per_group,
        max_groups=max_groups, study=study, rho=rho, epsilon=epsilon, preview=preview, reuse=reuse,
        extract=extract, tier=tier, workspace=workspace,
    )  # fmt: skip


def mean(
    table: str,
    column: str,
    *,
    bounds: tuple[float, float] | None = None,
    by: Sequence[str] | str | None = None,
    where: Where = None,
    per_group: int = 1,
    max_groups: int | None = None,
    study: str | None = None,
    rho: Typed | None = None,
    epsilon: Typed | None = None,
    preview: bool = False,
    reuse: bool = False,
    extract: str | None = None,
    tier: Tier | None = None,
    workspace: str | Path | None = None,
) -> Answer:
    """The mean of ``column`` (clipped to ``bounds``): a noisy sum over a noisy count, with the count as ``n``."""
    return _ask(
        "mean", table, column_name=column, bounds=bounds, by=by, where=where, per_group=per_group,
        max_groups=max_groups, study=study, rho=rho, epsilon=epsilon, preview=preview, reuse=reuse,
        extract=extract, tier=tier, workspace=workspace,
    )  # fmt: skip


def quantile(
    table: str,
    column: str,
    q: float,
    *,
    bounds: tuple[float, float] | None = None,
    candidates: Sequence[float] | None = None,
    by: Sequence[str] | str | None = None,
    where: Where = None,
    per_group: int = 1,
    max_groups: int | None = None,
    study: str | None = None,
    rho: Typed | None = None,
    epsilon: Typed | None = None,
    preview: bool = False,
    reuse: bool = False,
    extract: str | None = None,
    tier: Tier | None = None,
    workspace: str | Path | None = None,
) -> Answer:
    """The ``q``-quantile of ``column``, chosen among public ``candidates`` (default: a grid over the bounds)."""
    return _ask(
        "quantile", table, column_name=column, alpha=q, bounds=bounds, candidates=candidates, by=by, where=where,
        per_group=per_group, max_groups=max_groups, study=study, rho=rho, epsilon=epsilon, preview=preview,
        reuse=reuse, extract=extract, tier=tier, workspace=workspace,
    )  # fmt: skip


def median(table: str, column: str, **kwargs: Any) -> Answer:
    """The median of ``column`` (see :func:`quantile`)."""
    return quantile(table, column, 0.5, **kwargs)


def histogram(
    table: str,
    column: str,
    bins: Sequence[float],
    *,
    by: Sequence[str] | str | None = None,
    where: Where = None,
    per_group: int = 1,
    max_groups: int | None = None,
    clamp: bool = False,
    study: str | None = None,
    rho: Typed | None = None,
    epsilon: Typed | None = None,
    preview: bool = False,
    reuse: bool = False,
    extract: str | None = None,
    tier: Tier | None = None,
    workspace: str | Path | None = None,
) -> Answer:
    """Counts of ``column`` in the bins [edge_i, edge_i+1) (values outside the edges are not counted)."""
    return _ask(
        "histogram", table, column_name=column, bins=bins, by=by, where=where, per_group=per_group,
        max_groups=max_groups, signed=not clamp, study=study, rho=rho, epsilon=epsilon, preview=preview,
        reuse=reuse, extract=extract, tier=tier, workspace=workspace,
    )  # fmt: skip
