"""Every automatic check of a request's outputs, in one place: gates, SDC rules, differencing.

The result per output is a JSON-able dict kept in the catalog beside the
output version, and a status:

- ``gated``: an automatic gate stopped it; it never enters review;
- ``fail``: an SDC rule or a differencing pair flags a disclosive cell (a
  reviewer may still approve it, with a comment saying why, or the
  researcher mitigates it);
- ``review``: nothing disclosive found, but something a reviewer must look
  at (zeros, rules that could not be checked, a figure without its table);
- ``pass``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from research_kit.core.config import Policy
from research_kit.disclosure import differencing, gates, sdc
from research_kit.outputs import sidecar as sc

STATUSES = ("gated", "fail", "review", "pass")
DP_DIFFERENCING_NOTE = (
    "differencing: not compared with other tables (a DP answer's figures carry noise; its guarantee holds "
    "whatever else is published)"
)


@dataclass
class Item:
    """One output version under check: where it is and what it was declared as."""

    key: str  # how the request names it: ACTION/NAME
    path: Path
    sensitivity: str
    released: bool = False
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.checks.get("status", "review"))


def check_items(items: list[Item], released: list[Item], policy: Policy) -> None:
    """Check every item (gates and SDC), then differencing across them and against released ones."""
    by_name = {_stem(i.path): i for i in items}
    for item in items:
        car = sc.read(item.path)
        source = by_name.get(car.source) if car is not None and car.source else None
        result = gates.gate(
            item.path,
            item.sensitivity,
            car,
            policy.outputs,
            source_sensitivity=source.sensitivity if source is not None else None,
        )
        item.checks = {
            "gate": {"passed": result.passed, "reasons": list(result.reasons)},
            "sdc": None if not result.passed else _sdc(item, car, policy),
            "differencing": [],
            "policy": {"sdc": asdict(policy.sdc), "outputs": asdict(policy.outputs)},
            "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    for item in items:  # a figure is checked as the table it draws
        car = sc.read(item.path)
        if car is not None and car.type == "figure" and item.checks["sdc"] is not None:
            source = by_name.get(car.source or "")
            item.checks["sdc"] = _figure(car, source)
    _differencing(items, released, policy)
    for item in items:
        item.checks["status"] = _status(item.checks)


def _sdc(item: Item, car: sc.Sidecar | None, policy: Policy) -> dict[str, Any]:
    if car is None:
        return _plain("declared without rk.outputs: the checks do not know what its numbers are; check it by eye")
    if car.type == "figure":
        return {"status": "pass", "flags": [], "notes": []}  # replaced by its table's result below
    frame = pd.read_csv(item.path) if item.path.suffix.lower() == ".csv" else None
    result = sdc.check(frame, car, policy.sdc)
    return {
        "status": result.status,
        "flags": [asdict(f) for f in result.flags],
        "notes": list(result.notes),
    }


def _plain(note: str) -> dict[str, Any]:
    flag = {"rule": "unchecked", "row": None, "column": None, "reason": note, "severity": "review"}
    return {"status": "review", "flags": [flag], "notes": [note]}


def _figure(car: sc.Sidecar, source: Item | None) -> dict[str, Any]:
    if car.source is None:
        return _plain("a figure declared without its table (source=): check it by eye")
    if source is None or source.checks.get("sdc") is None:
        return _plain(f"its table {car.source!r} is not in this request (or was gated): check it by eye")
    table = source.checks["sdc"]
    return {
        "status": table["status"],
        "flags": [{**f, "reason": f"in its table {car.source!r}: {f['reason']}"} for f in table["flags"]],
        "notes": [f"checked as its table {car.source!r}", *table["notes"]],
    }


def _differencing(items: list[Item], released: list[Item], policy: Policy) -> None:
    def refs(group: list[Item], was_released: bool) -> list[differencing.TableRef]:
        out = []
        for item in group:
            car = sc.read(item.path)
            if car is None or car.type != "table" or item.path.suffix.lower() != ".csv":
                continue
            if not was_released and not item.checks.get("gate", {}).get("passed", False):
                continue
            if car.dp is not None:
                # A DP answer's figures carry noise: what a difference with them reveals is noise, and its
                # guarantee holds whatever else is published. It is left out of every comparison.
                if not was_released and item.checks.get("sdc") is not None:
                    item.checks["sdc"]["notes"].append(DP_DIFFERENCING_NOTE)
                continue
            out.append(differencing.TableRef(item.key, pd.read_csv(item.path), car, released=was_released))
        return out

    flags = differencing.find_differencing(refs(items, False), refs(released, True), policy.sdc.differencing_threshold)
    by_key = {i.key: i for i in items}
    for flag in flags:
        for mine, other in ((flag.first, flag.second), (flag.second, flag.first)):
            if mine in by_key:
                by_key[mine].checks["differencing"].append(
                    {
                        "other": other,
                        "group": flag.group,
                        "column": flag.column,
                        "difference": flag.difference,
                        "reason": flag.reason,
                    }
                )


def _status(checks: dict[str, Any]) -> str:
    if not checks["gate"]["passed"]:
        return "gated"
    result = checks["sdc"] or {"status": "pass"}
    if result["status"] == "fail" or checks["differencing"]:
        return "fail"
    return "review" if result["status"] == "review" else "pass"


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name
