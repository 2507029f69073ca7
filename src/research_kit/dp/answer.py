"""A DP answer: the released figures with their intervals, and what they cost.

Counts and sums carry OpenDP's own accuracy at the answer's confidence: the
interval [value - a, value + a] holds the true (bounded) figure with that
probability. A mean is a noisy sum over a noisy count; its interval comes
from both noise scales by the delta method, which is close to exact when the
count is large against its noise. A quantile is chosen among public candidates
by the exponential mechanism; its interval is in ranks: with the stated
probability, the candidate chosen is within ``rank_error`` rows of the best
candidate's position, a bound from the mechanism's utility theorem (and
conservative).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl


@dataclass
class Answer:
    query: dict[str, Any]
    description: str
    study: str
    tier: str
    source: str
    mechanism: str
    scale: float
    rho: float
    epsilon: float
    delta: float
    confidence: float
    table: pl.DataFrame | None = None  # keys, value, lower, upper (None for a preview)
    half_width: float | None = None  # counts and sums: the same for every row
    rank_error: float | None = None  # quantiles
    preview: bool = False
    replayed: bool = False
    reused_from: str | None = None
    notes: list[str] = field(default_factory=list)
    id: int | None = None  # the ledger's id of the release (a replay carries the first one's); None for a preview

    @property
    def value(self) -> Any:
        """The single figure of an ungrouped query."""
        if self.table is None:
            raise ValueError("a preview has no value: run the query without preview to release it")
        if self.table.height != 1 or self.query.get("by") or self.query.get("kind") == "histogram":
            raise ValueError("a grouped answer has one value per group: use .table")
        return self.table["value"][0]

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.table is None or self.table.height != 1 or "lower" not in self.table.columns:
            return None
        lo, hi = self.table["lower"][0], self.table["upper"][0]
        return None if lo is None else (float(lo), float(hi))

    def to_pandas(self) -> Any:
        if self.table is None:
            raise ValueError("a preview has no table")
        return self.table.to_pandas()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["table"] = None if self.table is None else json.loads(self.table.write_json())
        data["schema"] = None if self.table is None else list(self.table.columns)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        data = dict(data)
        rows, schema = data.pop("table"), data.pop("schema", None)
        answer = cls(**data)
        if rows is not None:
            frame = pl.DataFrame(rows, infer_schema_length=None)
            if schema:
                frame = frame.select(schema)
            answer.table = frame
        return answer

    def summary(self) -> str:
        cost = f"rho {self.rho:.4g} (epsilon {self.epsilon:.3g} at delta {self.delta:.0e})"
        if self.replayed:
            cost = "nothing (replay of an answer already released)"
        elif self.reused_from:
            cost = f"nothing (reused from {self.reused_from})"
        lines = [f"{self.description} [{self.source}, {self.tier} ledger]"]
        lines.append(f"  {self.mechanism}, noise scale {self.scale:.4g}; cost {cost}")
        if self.half_width is not None:
            lines.append(f"  {self.confidence:.0%} interval: value ± {self.half_width:.4g}")
        if self.query.get("kind") == "mean":
            lines.append(f"  {self.confidence:.0%} interval: per row (delta method over the noisy sum and count n)")
        if self.rank_error is not None:
            lines.append(f"  {self.confidence:.0%} interval: within {self.rank_error:.4g} rows of the true quantile")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        body = "(preview: nothing released)" if self.table is None else repr(self.table)
        return f"{self.summary()}\n{body}"
