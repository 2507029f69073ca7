"""What the disclosure steps hand back: flags, SDC and gate results, differencing pairs, checks, a mitigation.

Every result is a small frozen dataclass. Those kept in the catalog
(``request_outputs.checks``, one :class:`OutputChecks` per output version)
have ``to_json()``, the JSON stored there, and ``from_json()``, which reads it
back from catalogs of every version. An output whose checks have not run yet
is stored as ``{}`` and reads as :data:`UNCHECKED`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

FAIL = "fail"
REVIEW = "review"
STATUSES = ("gated", "fail", "review", "pass")  # an output's status after every check, worst first


@dataclass(frozen=True)
class Flag:
    """One finding of an SDC rule: on a cell, a column (``row`` None) or the whole output (both None)."""

    rule: str  # one of sdc.RULES
    row: int | None  # row index in the table file (0-based), None for whole-output flags
    column: str | None
    reason: str  # one human line naming the figure and the limit
    severity: str  # FAIL | REVIEW

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "row": self.row,
            "column": self.column,
            "reason": self.reason,
            "severity": self.severity,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Flag:
        return cls(str(data["rule"]), data.get("row"), data.get("column"), str(data["reason"]), str(data["severity"]))


@dataclass(frozen=True)
class CheckResult:
    """The SDC rules' result on one output.

    ``rules`` (the rules applied, flagged or not) is not stored: a result read
    back from the catalog has none, and names its rules through its flags.
    """

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

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "flags": [f.to_json() for f in self.flags], "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckResult:
        flags = tuple(Flag.from_json(f) for f in data.get("flags", []))
        return cls(str(data["status"]), flags, tuple(str(n) for n in data.get("notes", [])))


def result(flags: Iterable[Flag], notes: Iterable[str], rules: Iterable[str]) -> CheckResult:
    """A check's result: its status from the most severe flag, its rules listed once each."""
    flags = tuple(flags)
    severities = {f.severity for f in flags}
    status = FAIL if FAIL in severities else REVIEW if REVIEW in severities else "pass"
    return CheckResult(status, flags, tuple(notes), tuple(dict.fromkeys(rules)))


@dataclass(frozen=True)
class GateResult:
    """The automatic gates on one output: it passed when no reason stops it."""

    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(tuple(str(r) for r in data.get("reasons", [])))


@dataclass(frozen=True)
class DifferencingPair:
    """A differencing flag as one output of the pair sees it: the other output, the group, the difference."""

    other: str  # how the request names the other output (a released one: "request N: ACTION/NAME")
    group: dict[str, str]  # label values of the group compared; {} for overall totals
    column: str
    difference: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "other": self.other,
            "group": dict(self.group),
            "column": self.column,
            "difference": self.difference,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DifferencingPair:
        group = {str(k): str(v) for k, v in data.get("group", {}).items()}
        return cls(str(data["other"]), group, str(data["column"]), int(data["difference"]), str(data["reason"]))


@dataclass(frozen=True)
class Interval:
    """A suppressed cell's feasible interval: every value in it is consistent with everything published."""

    output: str
    row: int
    column: str
    lower: float
    upper: float  # math.inf when nothing bounds it from above
    required: float  # the width the policy asks of it
    linked: tuple[str, ...] = ()  # the other outputs whose cells bounded it

    @property
    def width(self) -> float:
        return self.upper - self.lower

    @property
    def protected(self) -> bool:
        return self.width >= self.required - 1e-6

    def text(self) -> str:
        upper = "no upper bound" if math.isinf(self.upper) else _interval_number(self.upper)
        return f"[{_interval_number(self.lower)}, {upper}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "row": self.row,
            "column": self.column,
            "lower": self.lower,
            "upper": None if math.isinf(self.upper) else self.upper,
            "required": self.required,
            "linked": list(self.linked),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Interval:
        upper = data.get("upper")
        return cls(
            str(data["output"]),
            int(data["row"]),
            str(data["column"]),
            float(data["lower"]),
            math.inf if upper is None else float(upper),
            float(data["required"]),
            tuple(str(x) for x in data.get("linked", [])),
        )


def _interval_number(value: float) -> str:
    return str(round(value)) if abs(value - round(value)) < 1e-6 else f"{value:.4g}"


@dataclass(frozen=True)
class OutputChecks:
    """Every automatic check on one output version, as the catalog keeps it.

    ``status``: ``gated`` (a gate stopped it), ``fail`` (an SDC flag fails or a
    differencing pair), ``review`` (something a reviewer must look at) or
    ``pass``. ``sdc`` is None when the output was gated. ``policy``: the
    policy's ``sdc`` and ``outputs`` sections the checks ran under, as JSON.
    ``checked_at`` is None only for :data:`UNCHECKED`.
    """

    status: str
    gate: GateResult
    sdc: CheckResult | None
    differencing: tuple[DifferencingPair, ...] = ()
    policy: dict[str, Any] = field(default_factory=dict)
    checked_at: str | None = None
    protection: tuple[Interval, ...] = ()  # each suppressed cell's feasible interval (tables only)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status {self.status!r} is not one of {', '.join(STATUSES)}")

    @property
    def checked(self) -> bool:
        return self.checked_at is not None

    def to_json(self) -> dict[str, Any]:
        """The JSON stored in ``request_outputs.checks`` (``{}`` before the checks run)."""
        if not self.checked:
            return {}
        return {
            "status": self.status,
            "gate": self.gate.to_json(),
            "sdc": None if self.sdc is None else self.sdc.to_json(),
            "differencing": [pair.to_json() for pair in self.differencing],
            "protection": [interval.to_json() for interval in self.protection],
            "policy": self.policy,
            "checked_at": self.checked_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutputChecks:
        """Read what ``to_json`` stored; ``{}`` (an output not checked yet) is :data:`UNCHECKED`."""
        if not data:
            return UNCHECKED
        sdc = data.get("sdc")
        return cls(
            status=str(data.get("status", REVIEW)),
            gate=GateResult.from_json(data.get("gate", {})),
            sdc=None if sdc is None else CheckResult.from_json(sdc),
            differencing=tuple(DifferencingPair.from_json(d) for d in data.get("differencing", [])),
            policy=dict(data.get("policy", {})),
            checked_at=data.get("checked_at"),
            protection=tuple(Interval.from_json(i) for i in data.get("protection", [])),
        )


# Not checked yet (stored as {}): status review, as for any output a reviewer must look at; no gate stopped it and
# nothing was flagged. Intake adds and checks a version in one transaction, so research-kit never leaves one in
# the catalog itself; a catalog written otherwise may hold one.
UNCHECKED = OutputChecks(status=REVIEW, gate=GateResult(()), sdc=None)


@dataclass(frozen=True)
class Mitigated:
    """A mitigation's result: the new table, and the record the caller stores in ``sidecar.mitigations``.

    ``rows_kept`` is False when rows were merged: the sidecar's contributions
    then no longer describe the table's rows.
    """

    frame: pd.DataFrame
    record: dict[str, Any]
    rows_kept: bool = True
