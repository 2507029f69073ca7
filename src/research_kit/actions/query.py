"""A differentially private query of any kind, as the CLI asks it: checked once, answered by :mod:`research_kit.dp`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from research_kit import dp
from research_kit.actions.acting import as_user
from research_kit.core.errors import BadInput
from research_kit.core.workspace import Workspace
from research_kit.dp.accounting import Typed, rho_from
from research_kit.dp.answer import Answer
from research_kit.tiers import Tier

KINDS = ("count", "crosstab", "sum", "mean", "quantile", "median", "histogram")
NEEDS_COLUMN = frozenset({"sum", "mean", "quantile", "median", "histogram"})


def query(
    ws: Workspace,
    *,
    actor: str,
    kind: str,
    table: str,
    study: str,
    by: Sequence[str] = (),
    where: Sequence[str] = (),
    column: str | None = None,
    bounds: Sequence[float] | None = None,
    q: float | None = None,
    candidates: Sequence[float] | None = None,
    bins: Sequence[float] | None = None,
    per_group: int = 1,
    max_groups: int | None = None,
    clamp: bool = False,
    rho: Typed | None = None,
    epsilon: Typed | None = None,
    preview: bool = False,
    reuse: bool = False,
    extract: str | None = None,
    tier: Tier = "real",
) -> Answer:
    """Answer one query of ``kind`` on ``table``, charged to ``study``'s budget (``preview``: nothing spent)."""
    if kind not in KINDS:
        raise BadInput(f"no query kind {kind!r}: use {', '.join(KINDS)}")
    rho_from(rho, epsilon, ws.policy().dp.delta)  # the cost first: checked before the extract is looked up
    if kind in NEEDS_COLUMN and column is None:
        raise BadInput(f"a {kind} needs --column")
    if bounds is not None and len(bounds) != 2:
        raise BadInput("--bounds: give LOWER,UPPER")
    pair = (bounds[0], bounds[1]) if bounds is not None else None
    common: dict[str, Any] = dict(
        where=list(where) or None, study=study, rho=rho, epsilon=epsilon, preview=preview, reuse=reuse,
        extract=extract, tier=tier, workspace=Path(ws.root), per_group=per_group, max_groups=max_groups,
    )  # fmt: skip
    by = list(by)
    if kind == "count":
        return as_user(actor, dp.count, table, by=by or None, clamp=clamp, **common)
    if kind == "crosstab":
        if len(by) != 2:
            raise BadInput("a crosstab needs two --by columns")
        return as_user(actor, dp.crosstab, table, by[0], by[1], clamp=clamp, **common)
    if kind in ("sum", "mean"):
        fn = dp.sum if kind == "sum" else dp.mean
        return as_user(actor, fn, table, str(column), bounds=pair, by=by or None, **common)
    if kind in ("quantile", "median"):
        level = 0.5 if kind == "median" else q
        if level is None:
            raise BadInput("a quantile needs --q (0.5 for the median)")
        found = list(candidates) if candidates is not None else None
        return as_user(
            actor, dp.quantile, table, str(column), level, bounds=pair, candidates=found, by=by or None, **common
        )
    if not bins:
        raise BadInput("a histogram needs --bins EDGE,EDGE,...")
    return as_user(actor, dp.histogram, table, str(column), list(bins), by=by or None, clamp=clamp, **common)
