"""A DP answer: the released figures with their intervals, and what they cost.

Every row's ``[lower, upper]`` is an interval for the true figure of the
bounded data (values clipped to the bounds, each patient's rows truncated) at
the answer's confidence (95% by default):

- counts, histograms and sums: value ± OpenDP's accuracy, holding the truth
  with that probability (``half_width``). A sum is not centred: one patient
  can move it by its largest |bound|, so that sets its noise.
- means: ``c + sum(x - c) / n`` with ``c`` the bounds' midpoint, so the noise
  follows the range's width; the interval is every mean the noisy sum and the
  noisy count ``n`` allow, each within its accuracy at half the error
  probability: at least the confidence (conservative, no approximation).
- quantiles: the exponential mechanism picks a public candidate; with the
  stated probability its rank is within ``rank_error`` rows of the best
  candidate's. The interval is the chosen candidate's grid cell (the
  candidates either side): it holds the true quantile wherever more than
  ``rank_error`` rows lie within one grid step of the chosen value, and misses
  it by fewer than ``rank_error`` rows otherwise (sparse data, tiny costs).
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
        level = f"{self.confidence:.0%}"
        if self.half_width is not None:
            lines.append(f"  {level} interval: value ± {self.half_width:.4g}")
        if self.query.get("kind") == "mean":
            lines.append(f"  {level} interval (conservative): per row, every mean the noisy sum and count n allow")
        if self.rank_error is not None:
            lines.append(
                f"  {level} interval: the chosen candidate's grid cell (lower to upper); "
                f"its rank is within {self.rank_error:.4g} rows of the best candidate's"
            )
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        body = "(preview: nothing released)" if self.table is None else repr(self.table)
        return f"{self.summary()}\n{body}"
