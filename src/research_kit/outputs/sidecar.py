"""What a declared output is, written beside it as ``NAME.EXT.rk.json``: the facts the checks read.

``rk.outputs.table / figure / model`` write the output file and this sidecar.
The sidecar stays in the workspace: it may hold the largest individual
contributions behind a magnitude cell (what the dominance and p% rules need),
so it is never copied into a release bundle.

A table's every column has a role (``ROLES``); a row is a cell group
identified by its ``label`` columns. Magnitude columns (sums, means) carry,
per row, a :class:`Contribution` when the rows behind it were given
(``source=``); without one, dominance and p% cannot be checked and the
checks say so. ``n_column`` names the column holding each row's number of
patients behind it (for sums, means, medians and quantiles); a ``count``
column is its own n.

The sidecar is written by the researcher's code, inside the sandbox, so
nothing in it is taken on trust where it would waive a check. Its ``dp``
facts name the ledger ids of the answers the table was built from; when a
run's outputs enter review, intake (:mod:`research_kit.review.dp_outputs`)
looks those answers up in the ledger and compares the table with them, then
rewrites the stored sidecar: ``dp`` recomputed from the ledger when every
figure is one of the study's answers, removed otherwise, with the reason in
``intake_notes`` (whatever a notebook wrote there is discarded).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from research_kit.core.errors import BadInput

FORMAT = "research-kit-output/1"
SUFFIX = ".rk.json"

ROLES = (
    "label",  # identifies the cell group (a category, a year, a band)
    "count",  # number of patients (or events) in the cell
    "sum",
    "mean",
    "median",
    "quantile",
    "std",
    "min",  # a minimum or maximum of individual values: always flagged
    "max",
    "proportion",  # a share of a count (its n in n_column)
    "survival_time",  # a survival table: one row per time step
    "survival_at_risk",
    "survival_events",
    "survival_censored",
    "survival_estimate",
    "coefficient",  # a model's estimates: see ModelFacts
    "std_error",
    "statistic",  # test statistics, p-values, interval bounds
    "other",
)
MAGNITUDE_ROLES = frozenset({"sum", "mean", "median", "quantile", "std"})
KINDS = ("frequency", "magnitude", "survival", "model", "descriptive")
OutputType = Literal["table", "figure", "model", "text"]


@dataclass(frozen=True)
class Contribution:
    """The rows behind one magnitude cell: their number, total, and largest values (largest first)."""

    n: int
    total: float
    top: tuple[float, ...]  # at most TOP_KEPT, by absolute value, descending


TOP_KEPT = 10


@dataclass(frozen=True)
class DpFacts:
    """An output built from DP answers (``rk.dp``): its guarantee and what it cost."""

    mechanism: str
    rho: float
    epsilon: float
    delta: float
    scale: float
    queries: tuple[str, ...] = ()
    answers: tuple[int, ...] = ()  # the ledger's ids of the answers (``Answer.id``): what intake verifies


@dataclass(frozen=True)
class ModelFacts:
    """A fitted model: its library, size and degrees of freedom."""

    library: str  # statsmodels | lifelines | scikit-learn
    estimator: str
    n_obs: int
    df_model: float | None
    df_resid: float | None
    n_events: int | None = None  # survival models
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sidecar:
    name: str
    file: str  # file name beside the sidecar
    type: OutputType
    kind: str  # one of KINDS
    roles: dict[str, str] = field(default_factory=dict)  # column -> role (tables and models)
    n_column: str | None = None
    contributions: dict[str, list[Contribution | None]] = field(default_factory=dict)
    dp: DpFacts | None = None
    model: ModelFacts | None = None
    source: str | None = None  # figures: the declared table they draw
    population: str = ""  # who is counted (a filter, a cohort name): differencing compares like with like
    unit: str = "patients"
    rows: int = 0
    tier: str = "synthetic"
    study: str | None = None
    mitigations: list[dict[str, Any]] = field(default_factory=list)  # applied on request, recorded
    intake_notes: list[str] = field(default_factory=list)  # written at intake, outside the sandbox (see below)

    def columns(self, *roles: str) -> list[str]:
        return [c for c, r in self.roles.items() if r in roles]

    @property
    def labels(self) -> list[str]:
        return self.columns("label")

    def to_json(self) -> str:
        data = asdict(self)
        data["format"] = FORMAT
        return json.dumps(data, indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "sidecar") -> Sidecar:
        data = dict(data)
        if data.pop("format", None) != FORMAT:
            raise BadInput(f"{where}: not a research-kit output sidecar ({FORMAT})")
        try:
            contributions = {
                col: [None if c is None else Contribution(c["n"], c["total"], tuple(c["top"])) for c in cells]
                for col, cells in data.pop("contributions", {}).items()
            }
            dp = data.pop("dp", None)
            if dp is not None:
                dp = DpFacts(**{**dp, "queries": tuple(dp.get("queries", ())), "answers": tuple(dp.get("answers", ()))})
            model = data.pop("model", None)
            return cls(
                **data,
                contributions=contributions,
                dp=dp,
                model=None if model is None else ModelFacts(**{**model, "terms": tuple(model.get("terms", ()))}),
            )
        except (KeyError, TypeError) as exc:
            raise BadInput(f"{where}: malformed sidecar ({exc})") from None


def sidecar_path(output: Path) -> Path:
    return output.with_name(output.name + SUFFIX)


def is_sidecar(path: Path) -> bool:
    return path.name.endswith(SUFFIX)


def write(output: Path, sidecar: Sidecar, *, mode: int | None = None) -> Path:
    """Write the sidecar beside ``output`` (temp file, given ``mode``, then rename)."""
    path = sidecar_path(output)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(sidecar.to_json())
    if mode is not None:
        tmp.chmod(mode)
    os.replace(tmp, path)
    return path


def read(output: Path) -> Sidecar | None:
    """The sidecar of ``output``, or None when it was declared without one (a plain file)."""
    path = sidecar_path(output)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise BadInput(f"{path}: not valid JSON ({exc})") from None
    return Sidecar.from_dict(data, str(path))
