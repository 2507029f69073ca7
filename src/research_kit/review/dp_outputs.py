"""A DP output is verified, not declared: intake checks a table's DP claim against the ledger.

A notebook declares a table as differentially private (``rk.outputs.table(answer)``
or ``dp=``), and the SDC rules and differencing then waive the small-cell
checks for it. The declaration and its sidecar are written inside the
sandbox, where anything can be forged (a look-alike ``Answer``, a hand-written
sidecar), so they are only a claim. When a run's outputs enter review
(:func:`research_kit.review.intake.collect`), :func:`settle` verifies the
claim of each, outside the sandbox:

- the sidecar's ``dp.answers`` name ledger ids; each must be a row of the
  ledger for the run's study (from the catalog's review queue, never from
  the sidecar), on the real tier and the run's extract, and committed
  (``spent``: a reservation released nothing);
- the table must be made of those answers, as the ledger recorded them
  (:func:`research_kit.outputs.dp_match.unmatched`): every label one of their
  keys, every number one of their figures for its row's labels.

Verified, the stored sidecar's ``dp`` is recomputed from the ledger (the
mechanisms, rho summed over the distinct answers, epsilon at the policy's
delta, the largest noise scale, the queries), whatever the sidecar said.
Otherwise ``dp`` is removed, so the output is checked as an ordinary table
(small cells, differencing), and :data:`REFUSED` with the reason goes into
``intake_notes``, which :func:`review_flags` turns into a review flag the
committee and the researcher see. Either way the stored sidecar (in the run's
result folder, in the workspace) is replaced atomically; a notebook's own
``intake_notes`` are discarded.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pandas as pd

from research_kit.core.errors import BadInput
from research_kit.disclosure.results import REVIEW, Flag
from research_kit.dp import ledger
from research_kit.dp.accounting import epsilon_of
from research_kit.dp.answer import Answer
from research_kit.outputs import dp_match
from research_kit.outputs import sidecar as sc

REFUSED = (
    "declared as DP but its figures are not answers the ledger recorded for this study ({why}): "
    "checked as an ordinary table"
)
RULE = "dp_unverified"  # the review flag's rule name


def settle(conn: sqlite3.Connection, output: Path, *, study: str, extract: str, delta: float) -> sc.Sidecar | None:
    """Verify the DP claim of the stored ``output`` for ``study``'s run on ``extract``; rewrite its sidecar.

    Returns the sidecar as stored now (None for an output without one, or one the checks will report as
    malformed: left as it is).
    """
    try:
        car = sc.read(output)
    except BadInput:
        return None
    if car is None:
        return None
    settled = replace(car, intake_notes=[])
    if car.dp is not None:
        dp, why = verify(conn, output, car, study=study, extract=extract, delta=delta)
        settled = replace(settled, dp=dp, intake_notes=[] if why is None else [REFUSED.format(why=why)])
    if settled != car:
        sc.write(output, settled, mode=sc.sidecar_path(output).stat().st_mode & 0o777)
    return settled


def verify(
    conn: sqlite3.Connection, output: Path, car: sc.Sidecar, *, study: str, extract: str, delta: float
) -> tuple[sc.DpFacts | None, str | None]:
    """The DP facts recomputed from the ledger and None, or None and why the claim is refused."""
    claimed = car.dp
    if claimed is None:
        return None, "it names no DP answer"
    if car.type != "table" or output.suffix.lower() != ".csv":
        return None, "only a table of DP answers is checked as DP"
    try:
        ids = sorted({int(i) for i in claimed.answers if not isinstance(i, bool)})
    except (TypeError, ValueError):
        return None, "its answer ids are not ledger ids"
    if not ids or not all(0 < i < 2**63 for i in ids):
        return None, "it names no answer of the ledger"
    spends = ledger.spends(conn, ids)
    answers: list[Answer] = []
    for spend_id in ids:
        spend = spends.get(spend_id)
        if spend is None or spend.study != study:
            return None, f"answer {spend_id} is not one the ledger recorded for study {study}"
        if spend.tier != "real" or spend.source != extract:
            return None, f"answer {spend_id} was released on {spend.source} ({spend.tier}), not on extract {extract}"
        if spend.state != "spent" or spend.answer is None:
            return None, f"answer {spend_id} was reserved but never released"
        try:
            answer = Answer.from_dict(spend.answer)
        except (TypeError, ValueError):
            return None, f"answer {spend_id} has no table in the ledger"
        if answer.table is None:
            return None, f"answer {spend_id} has no table in the ledger"
        answers.append(answer)
    why = dp_match.unmatched(output, car.roles, [_frame(a) for a in answers])
    if why is not None:
        return None, why
    rho = float(sum(spends[i].rho for i in ids))
    facts = sc.DpFacts(
        mechanism=", ".join(sorted({spends[i].mechanism for i in ids})),
        rho=rho,
        epsilon=epsilon_of(rho, delta),
        delta=delta,
        scale=float(max(a.scale for a in answers)),
        queries=tuple(a.description for a in answers),
        answers=tuple(ids),
    )
    return facts, None


def _frame(answer: Answer) -> pd.DataFrame:
    frame: pd.DataFrame = answer.to_pandas()
    return frame


def review_flags(car: sc.Sidecar | None) -> list[Flag]:
    """The review flags intake's notes on an output call for (a refused DP claim)."""
    if car is None:
        return []
    return [Flag(RULE, None, None, note, REVIEW) for note in car.intake_notes]
