"""Every automatic check of a request's outputs, in one place: gates, SDC rules, figures, differencing.

The checks are registered by name in :data:`CHECKS` and run in that order,
each on the whole request (a later check reads what the earlier ones found):

``gate``
    the automatic gates (:mod:`research_kit.disclosure.gates`);
``sdc``
    the SDC rules (:mod:`research_kit.disclosure.sdc`) on every output the
    gates let through;
``figure``
    a figure is checked as the table it draws (``source=``), when that table
    is in the request; it fails when the table's current version carries
    mitigations the figure does not: the image was drawn from the figures as
    they were before;
``protection``
    every suppressed cell of the request's tables, attacked with a solver
    (:mod:`research_kit.disclosure.attack`) together with every table of the
    request and those already released (the scope differencing uses): a cell
    whose feasible interval is narrower than the protection width fails,
    with the interval; each suppressed cell's interval is kept for the
    reviewer and the researcher;
``differencing``
    the request's tables against each other and against released ones
    (:mod:`research_kit.disclosure.differencing`).

A new check is one function taking the :class:`Run`, registered in
:data:`CHECKS`. The result per output is an
:class:`~research_kit.disclosure.results.OutputChecks`, kept in the catalog
beside the output version, with a status:

- ``gated``: an automatic gate stopped it; it never enters review;
- ``fail``: an SDC rule or a differencing pair flags a disclosive cell (a
  reviewer may still approve it, with a comment saying why, or the
  researcher mitigates it);
- ``review``: nothing disclosive found, but something a reviewer must look
  at (zeros, rules that could not be checked, a figure without its table);
- ``pass``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from math import inf
from pathlib import Path

import pandas as pd

from research_kit.core.config import Policy, SdcPolicy
from research_kit.disclosure import attack, differencing, gates, sdc
from research_kit.disclosure.results import (
    FAIL,
    REVIEW,
    STATUSES,
    CheckResult,
    DifferencingPair,
    Flag,
    GateResult,
    OutputChecks,
    result,
)
from research_kit.outputs import sidecar as sc

__all__ = ["CHECKS", "DP_DIFFERENCING_NOTE", "STATUSES", "Check", "Draft", "Item", "Run", "check_items"]

DP_DIFFERENCING_NOTE = (
    "differencing: not compared with other tables (a DP answer's figures carry noise; its guarantee holds "
    "whatever else is published)"
)


@dataclass(frozen=True)
class Item:
    """One output version under check: where it is and what it was declared as."""

    key: str  # how the request names it: ACTION/NAME
    path: Path
    sensitivity: str


@dataclass
class Draft:
    """One output's findings while the checks run: each check fills in its part."""

    item: Item
    sidecar: sc.Sidecar | None
    gate: GateResult = field(default_factory=lambda: GateResult(()))  # until check_gates runs
    sdc: CheckResult | None = None
    differencing: list[DifferencingPair] = field(default_factory=list)
    protection: list[attack.Interval] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    """What every check sees: the request's outputs (in request order), those already released, the policy."""

    drafts: list[Draft]
    released: list[Item]
    policy: Policy

    def by_key(self) -> dict[str, Draft]:
        return {d.item.key: d for d in self.drafts}

    def by_stem(self) -> dict[str, Draft]:
        """The request's outputs by file name without its suffix, as ``source=`` names a figure's table."""
        return {_stem(d.item.path): d for d in self.drafts}


Check = Callable[[Run], None]


def check_items(items: list[Item], released: list[Item], policy: Policy) -> list[OutputChecks]:
    """Every registered check on ``items``, differencing against ``released`` too; one result per item, in order."""
    run = Run([Draft(item, sc.read(item.path)) for item in items], released, policy)
    for check in CHECKS.values():
        check(run)
    checked_at = datetime.now(UTC).isoformat(timespec="seconds")
    # Stored as JSON: kept as JSON reads it back, so a result equals what the catalog returns.
    snapshot = json.loads(json.dumps({"sdc": asdict(policy.sdc), "outputs": asdict(policy.outputs)}))
    return [
        OutputChecks(
            status=_status(d),
            gate=d.gate,
            sdc=None if d.sdc is None else replace(d.sdc, rules=()),  # the rules applied are not stored
            differencing=tuple(d.differencing),
            policy=snapshot,
            checked_at=checked_at,
            protection=tuple(d.protection),
        )
        for d in run.drafts
    ]


def _status(draft: Draft) -> str:
    if not draft.gate.passed:
        return "gated"
    found = draft.sdc.status if draft.sdc is not None else "pass"
    if found == FAIL or draft.differencing:
        return "fail"
    return "review" if found == REVIEW else "pass"


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


# --- the checks, in the order they run -------------------------------------------------------------------------


def check_gates(run: Run) -> None:
    by_stem = run.by_stem()
    for draft in run.drafts:
        car = draft.sidecar
        source = by_stem.get(car.source) if car is not None and car.source else None
        draft.gate = gates.gate(
            draft.item.path,
            draft.item.sensitivity,
            car,
            run.policy.outputs,
            source_sensitivity=source.item.sensitivity if source is not None else None,
        )


def check_sdc(run: Run) -> None:
    for draft in run.drafts:
        if draft.gate.passed:
            draft.sdc = _sdc(draft, run.policy)


def _sdc(draft: Draft, policy: Policy) -> CheckResult:
    car, path = draft.sidecar, draft.item.path
    if car is None:
        return _plain("declared without rk.outputs: the checks do not know what its numbers are; check it by eye")
    if car.type == "figure":
        return result([], [], [])  # replaced by its table's result (check_figures)
    frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else None
    return sdc.check(frame, car, policy.sdc)


def _plain(note: str) -> CheckResult:
    return CheckResult(REVIEW, (Flag("unchecked", None, None, note, REVIEW),), (note,))


def check_figures(run: Run) -> None:
    by_stem = run.by_stem()
    for draft in run.drafts:  # in order: a figure drawing another figure sees it as checked so far
        car = draft.sidecar
        if car is not None and car.type == "figure" and draft.sdc is not None:
            draft.sdc = _figure(car, by_stem.get(car.source or ""))


def _figure(car: sc.Sidecar, table: Draft | None) -> CheckResult:
    if car.source is None:
        return _plain("a figure declared without its table (source=): check it by eye")
    drawn = _drawn_before_mitigation(car, table)
    if table is None or table.sdc is None:
        found = _plain(f"its table {car.source!r} is not in this request (or was gated): check it by eye")
    else:
        flags = [replace(f, reason=f"in its table {car.source!r}: {f.reason}") for f in table.sdc.flags]
        found = CheckResult(table.sdc.status, tuple(flags), (f"checked as its table {car.source!r}", *table.sdc.notes))
    if drawn is None:
        return found
    return result([drawn, *found.flags], found.notes, ["mitigated_source", *found.rules])


def _drawn_before_mitigation(car: sc.Sidecar, table: Draft | None) -> Flag | None:
    """A fail flag when the table's current version carries mitigations the figure was not drawn with."""
    if table is None or table.sidecar is None:
        return None
    if all(record in car.mitigations for record in table.sidecar.mitigations):
        return None
    reason = (
        f"its table {car.source!r} was mitigated after the figure was drawn: redraw the figure from the "
        "mitigated table or leave it out"
    )
    return Flag("mitigated_source", None, None, reason, FAIL)


def _attackable(item: Item, car: sc.Sidecar | None, draft: Draft | None) -> bool:
    """A table the attacker reads: a CSV table, let through by the gates, not built from DP answers."""
    if car is None or car.type != "table" or item.path.suffix.lower() != ".csv" or car.dp is not None:
        return False
    return draft is None or (draft.gate.passed and draft.sdc is not None)


def check_protection(run: Run) -> None:
    candidates = [
        attack.Table(d.item.key, pd.read_csv(d.item.path), d.sidecar)
        for d in run.drafts
        if d.sidecar is not None and _attackable(d.item, d.sidecar, d)
    ]
    if not candidates:
        return
    released = []
    for item in run.released:
        car = sc.read(item.path)
        if car is not None and _attackable(item, car, None):
            released.append(attack.Table(item.key, pd.read_csv(item.path), car, released=True))
    if not any(attack.has_suppressed(t) for t in [*candidates, *released]):
        return
    keys = [t.key for t in candidates]
    everyone = [t.key for t in [*candidates, *released]]
    intervals, notes = attack.audit([*candidates, *released], run.policy.sdc, report=everyone, touching=keys)
    by_key = run.by_key()
    for interval in intervals:
        if interval.output in by_key:
            by_key[interval.output].protection.append(interval)
    for interval, narrowed_by in _released_narrowed(intervals, released, run.policy.sdc, set(keys)):
        draft = by_key[narrowed_by]
        if draft.sdc is not None:
            reason = (
                f"with this output, the suppressed {interval.column} cell (row {interval.row}) of the released "
                f"output {interval.output} lies in {interval.text()}: narrower than the protection width "
                f"{interval.required:g}"
            )
            flag = Flag("protection", None, interval.column, reason, FAIL)
            draft.sdc = result([*draft.sdc.flags, flag], draft.sdc.notes, [*draft.sdc.rules, "protection"])
    for draft in by_key.values():
        if draft.sdc is None or not (draft.protection or any(n.startswith(draft.item.key + ":") for n in notes)):
            continue
        flags = [_protection_flag(i) for i in draft.protection if not i.protected]
        flags += [
            Flag("unchecked", None, None, n.split(": ", 1)[1], REVIEW)
            for n in notes
            if n.startswith(draft.item.key + ":")
        ]
        narrowest = min((i.width for i in draft.protection), default=None)
        note = (
            f"protection: {len(draft.protection)} suppressed cell(s) attacked with a solver"
            + (f", the narrowest interval {narrowest:g} wide" if narrowest is not None and narrowest < inf else "")
            + (", none bounded from above" if narrowest == inf else "")
            + f" (width asked: {attack.required_width(run.policy.sdc, 0.0):g})"
        )
        draft.sdc = result([*draft.sdc.flags, *flags], [*draft.sdc.notes, note], [*draft.sdc.rules, "protection"])


def _released_narrowed(
    intervals: list[attack.Interval], released: list[attack.Table], policy: SdcPolicy, candidates: set[str]
) -> list[tuple[attack.Interval, str]]:
    """Suppressed cells of released tables that the request narrows below the width, each with a candidate to blame.

    A cell that was already as narrow without the request is left alone: it was reviewed when it was released.
    """
    narrow = [i for i in intervals if i.output not in candidates and not i.protected]
    if not narrow:
        return []
    before, _ = attack.audit(released, policy, report={i.output for i in narrow})
    was = {(i.output, i.row, i.column): i for i in before}
    out = []
    for interval in narrow:
        old = was.get((interval.output, interval.row, interval.column))
        if old is not None and not old.protected and old.width <= interval.width + 1e-9:
            continue
        blamed = [key for key in interval.linked if key in candidates] or sorted(candidates)
        out += [(interval, key) for key in blamed[:1]]
    return out


def _protection_flag(interval: attack.Interval) -> Flag:
    others = f" and {', '.join(interval.linked)}" if interval.linked else ""
    reason = (
        f"suppressed, but the published cells and margins (of this table{others}) put it in {interval.text()}: "
        f"narrower than the protection width {interval.required:g}; suppress more (the suppress mitigation does "
        "it) or round the table"
    )
    return Flag("protection", interval.row, interval.column, reason, FAIL)


def check_differencing(run: Run) -> None:
    def refs(group: list[tuple[Item, Draft | None]]) -> list[differencing.TableRef]:
        out = []
        for item, draft in group:
            car = draft.sidecar if draft is not None else sc.read(item.path)
            if car is None or car.type != "table" or item.path.suffix.lower() != ".csv":
                continue
            if draft is not None and not draft.gate.passed:
                continue
            if car.dp is not None:
                # A DP answer's figures carry noise: what a difference with them reveals is noise, and its
                # guarantee holds whatever else is published. It is left out of every comparison.
                if draft is not None and draft.sdc is not None:
                    draft.sdc = replace(draft.sdc, notes=(*draft.sdc.notes, DP_DIFFERENCING_NOTE))
                continue
            out.append(differencing.TableRef(item.key, pd.read_csv(item.path), car, released=draft is None))
        return out

    candidates = refs([(d.item, d) for d in run.drafts])
    released = refs([(item, None) for item in run.released])
    flags = differencing.find_differencing(candidates, released, run.policy.sdc.differencing_threshold)
    by_key = {d.item.key: d for d in run.drafts}
    for flag in flags:
        for mine, other in ((flag.first, flag.second), (flag.second, flag.first)):
            if mine in by_key:
                pair = DifferencingPair(other, flag.group, flag.column, flag.difference, flag.reason)
                by_key[mine].differencing.append(pair)


# The checks by name, in the order they run.
CHECKS: dict[str, Check] = {
    "gate": check_gates,
    "sdc": check_sdc,
    "figure": check_figures,
    "protection": check_protection,
    "differencing": check_differencing,
}
