"""``rk.outputs``: a notebook declares what it produces, so the checks know what they look at.

```python
import research_kit as rk
rk.outputs.table(counts, "prevalence", counts=["n"])                   # labels: the text columns
rk.outputs.table(costs, "cost", sums=["cost"], n="n", source=rows)      # dominance and p% from the rows
rk.outputs.table(rk.dp.count("patients", by=["sex"]), "sex")            # a DP answer: verified at review
rk.outputs.figure(fig, "prevalence-plot", source="prevalence")
rk.outputs.model(cox, "cox")                                            # statsmodels, lifelines, scikit-learn
```

Each call writes the file (``NAME.csv`` / ``NAME.png``) in the working folder,
by a temporary file renamed into place, and its sidecar ``NAME.csv.rk.json``
(:mod:`research_kit.outputs.sidecar`). Under the runner, the pipeline file
declares the same paths as outputs; the runner keeps the sidecar beside them.

Every column of a table has a role. Text, category and boolean columns are
labels unless named otherwise; a numeric column must be named (``counts=``,
``sums=``, ``means=``, ``medians=``, ``labels=`` or ``roles=``), because a
number the checks cannot place is a number they cannot check.

A table of DP answers (``frame`` an answer, or ``dp=``) records the ledger
ids of its answers in its sidecar. That is a claim: it is verified outside
the sandbox when the run's outputs enter review, against the answers the
ledger recorded (:mod:`research_kit.review.dp_outputs`, comparing as
:mod:`research_kit.outputs.dp_match` says). Only a table whose every figure
is one of those answers', for the run's study and extract, keeps the DP
waiver; the notebook is told at once (on stderr) when its table would not.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core.errors import BadInput
from research_kit.outputs import dp_match
from research_kit.outputs import sidecar as sc
from research_kit.outputs.models import SUMMARIES, km_table
from research_kit.tiers import STUDY_ENV, current_tier

TABLE_SUFFIXES = (".csv",)
FIGURE_SUFFIXES = (".png", ".svg")


def table(
    frame: Any,
    name: str,
    *,
    counts: Sequence[str] = (),
    sums: Sequence[str] = (),
    means: Sequence[str] = (),
    medians: Sequence[str] = (),
    labels: Sequence[str] = (),
    n: str | None = None,
    kind: str | None = None,
    roles: Mapping[str, str] | None = None,
    source: pd.DataFrame | None = None,
    values: Mapping[str, str] | None = None,
    population: str = "",
    dp: Any = None,
) -> Path:
    """Write a table output and its sidecar; return the file's path.

    ``source``: the rows behind a magnitude table (one per contributor, with
    the label columns and the value columns): dominance and p% are checked
    from it. ``values`` maps an output column to its source column when the
    names differ. ``dp``: the DP answer(s) the table was built from (implied
    when ``frame`` is an answer).
    """
    answers = _answers(dp)
    if _is_answer(frame):
        answers = [frame, *answers]
        frame, answer_roles = _answer_frame(frame)
        roles = {**answer_roles, **(roles or {})}
    if not isinstance(frame, pd.DataFrame):
        raise BadInput(
            f"rk.outputs.table({name!r}): give a pandas DataFrame or a DP answer, not {type(frame).__name__}"
        )
    path = _path(name, TABLE_SUFFIXES, ".csv")
    given = _roles(name, frame, counts=counts, sums=sums, means=means, medians=medians, labels=labels, roles=roles)
    if n is not None:
        if n not in frame.columns:
            raise BadInput(f"rk.outputs.table({name!r}): n={n!r} is not a column")
        given.setdefault(n, "count")
    all_roles = _complete(name, frame, given)
    chosen = kind or _kind(all_roles)
    if chosen not in sc.KINDS:
        raise BadInput(f"rk.outputs.table({name!r}): kind={chosen!r}: use one of {', '.join(sc.KINDS)}")
    contributions = {} if source is None else _contributions(name, frame, all_roles, source, values or {})
    saved = _save(
        frame,
        path,
        type="table",
        kind=chosen,
        roles=all_roles,
        n_column=n,
        contributions=contributions,
        dp=_dp_facts(answers),
        population=population,
    )
    if answers:
        _say_if_not_dp(name, saved, all_roles, answers)
    return saved


def figure(fig: Any, name: str, *, source: str | None = None, dpi: int = 150) -> Path:
    """Save a matplotlib figure (PNG, or SVG when ``name`` ends in .svg) and its sidecar.

    ``source``: the declared table the figure draws; the figure is checked as that table is.
    """
    if not hasattr(fig, "savefig"):
        raise BadInput(f"rk.outputs.figure({name!r}): give a matplotlib figure, not {type(fig).__name__}")
    path = _path(name, FIGURE_SUFFIXES, ".png")
    metadata = {"Software": None} if path.suffix == ".png" else {"Date": None, "Creator": None}
    tmp = _tmp(path)
    fig.savefig(tmp, format=path.suffix[1:], dpi=dpi, bbox_inches="tight", metadata=metadata)
    os.replace(tmp, path)
    car = sc.Sidecar(
        name=_stem(path),
        file=path.name,
        type="figure",
        kind="descriptive",
        source=None if source is None else _stem(Path(source)),
        tier=current_tier(),
        study=os.environ.get(STUDY_ENV),
    )
    sc.write(path, car)
    return path


def model(result: Any, name: str, *, n: int | None = None, population: str = "") -> Path:
    """Write a fitted model's estimates as a table, and a sidecar with its size and degrees of freedom.

    statsmodels results, lifelines ``CoxPHFitter`` (and ``KaplanMeierFitter``,
    written as a survival table) and scikit-learn estimators with ``coef_``
    or ``feature_importances_`` (give ``n``, the number of training rows).
    """
    path = _path(name, TABLE_SUFFIXES, ".csv")
    module = type(result).__module__.split(".")[0]
    if module == "lifelines" and type(result).__name__ == "KaplanMeierFitter":
        frame = km_table(result)
        roles = {
            "time": "survival_time",
            "at_risk": "survival_at_risk",
            "events": "survival_events",
            "censored": "survival_censored",
            "survival": "survival_estimate",
        }
        return table(frame, str(path), roles=roles, kind="survival", population=population)
    summary = SUMMARIES.get(module)
    if summary is None:
        raise BadInput(
            f"rk.outputs.model({name!r}): {type(result).__name__} is not a statsmodels, lifelines or "
            "scikit-learn result"
        )
    frame, facts = summary(result, name, n)
    roles = {c: ("label" if c == "term" else "coefficient" if c == "estimate" else "std_error" if c == "std_error"
                 else "statistic") for c in frame.columns}  # fmt: skip
    return _save(frame, path, type="model", kind="model", roles=roles, model=facts, population=population)


# -- tables -------------------------------------------------------------------------------------------------------


def _roles(name: str, frame: pd.DataFrame, **groups: Any) -> dict[str, str]:
    given: dict[str, str] = {}
    for role, columns in (
        ("count", groups["counts"]), ("sum", groups["sums"]), ("mean", groups["means"]),
        ("median", groups["medians"]), ("label", groups["labels"]),
    ):  # fmt: skip
        for column in columns:
            given[column] = role
    for column, role in (groups["roles"] or {}).items():
        if role not in sc.ROLES:
            raise BadInput(
                f"rk.outputs.table({name!r}): role {role!r} of {column!r} is not one of {', '.join(sc.ROLES)}"
            )
        given[column] = role
    missing = [c for c in given if c not in frame.columns]
    if missing:
        raise BadInput(
            f"rk.outputs.table({name!r}): no column {missing[0]!r} (columns: {', '.join(map(str, frame.columns))})"
        )
    return given


def _complete(name: str, frame: pd.DataFrame, given: dict[str, str]) -> dict[str, str]:
    """Every column's role: text columns default to labels; a numeric column must be named."""
    roles: dict[str, str] = {}
    for column in frame.columns:
        key = str(column)
        if key in given:
            roles[key] = given[key]
        elif pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column]):
            raise BadInput(
                f"rk.outputs.table({name!r}): numeric column {key!r} has no role: name it in counts=, sums=, "
                "means=, medians=, labels= or roles="
            )
        else:
            roles[key] = "label"
    for column, role in roles.items():
        if role == "count" and not pd.api.types.is_numeric_dtype(frame[column]):
            raise BadInput(f"rk.outputs.table({name!r}): count column {column!r} is not numeric")
    return roles


def _kind(roles: Mapping[str, str]) -> str:
    present = set(roles.values())
    if present & {"survival_time", "survival_events", "survival_at_risk"}:
        return "survival"
    if present & sc.MAGNITUDE_ROLES:
        return "magnitude"
    if "count" in present or "proportion" in present:
        return "frequency"
    return "descriptive"


def _contributions(
    name: str, frame: pd.DataFrame, roles: Mapping[str, str], source: pd.DataFrame, values: Mapping[str, str]
) -> dict[str, list[sc.Contribution | None]]:
    """Per magnitude cell: the number, total and largest values of the source rows behind it."""
    labels = [c for c, r in roles.items() if r == "label"]
    absent = [c for c in labels if c not in source.columns]
    if absent:
        raise BadInput(f"rk.outputs.table({name!r}): source has no label column {absent[0]!r}")
    out: dict[str, list[sc.Contribution | None]] = {}
    for column in (c for c, r in roles.items() if r in sc.MAGNITUDE_ROLES):
        value = values.get(column, column)
        if value not in source.columns:
            raise BadInput(f"rk.outputs.table({name!r}): source has no column {value!r} for {column!r} (values=)")
        rows = source[[*labels, value]].dropna(subset=[value])
        cells: dict[tuple[str, ...], sc.Contribution] = {}
        for key, group in rows.groupby(labels, dropna=False, sort=False) if labels else [((), rows)]:
            numbers = group[value].to_numpy(dtype=float)
            top = numbers[np.argsort(-np.abs(numbers), kind="stable")[: sc.TOP_KEPT]]
            cells[_key(key)] = sc.Contribution(len(numbers), float(numbers.sum()), tuple(float(v) for v in top))
        keys = frame[labels].astype(str).itertuples(index=False, name=None) if labels else iter([()] * len(frame))
        out[column] = [cells.get(tuple(k)) for k in keys]
    return out


def _key(key: Any) -> tuple[str, ...]:
    parts = key if isinstance(key, tuple) else (key,)
    return tuple(str(p) for p in parts)


# -- DP answers ---------------------------------------------------------------------------------------------------


def _is_answer(value: Any) -> bool:
    return type(value).__name__ == "Answer" and type(value).__module__ == "research_kit.dp.answer"


def _answers(dp: Any) -> list[Any]:
    if dp is None:
        return []
    items = list(dp) if isinstance(dp, Iterable) and not _is_answer(dp) else [dp]
    for item in items:
        if not _is_answer(item):
            raise BadInput(f"rk.outputs: dp= takes rk.dp answers, not {type(item).__name__}")
        if getattr(item, "preview", False) or getattr(item, "table", None) is None:
            raise BadInput("rk.outputs: a preview released nothing: run the query without preview=True")
    return items


def _say_if_not_dp(name: str, path: Path, roles: Mapping[str, str], answers: list[Any]) -> None:
    """Tell the notebook now what intake will find: a table that is not made of its answers is checked as any.

    The declaration is only a claim (the sidecar is written here, by the notebook); intake, outside the
    sandbox, compares the table with the answers the ledger recorded (:mod:`research_kit.review.dp_outputs`).
    """
    why = None if all(a.id is not None for a in answers) else "an answer without a ledger id"
    why = why or dp_match.unmatched(path, roles, [a.to_pandas() for a in answers])
    if why is not None:
        print(
            f"rk.outputs.table({name!r}): declared as DP, but {why}: at review it is checked as an ordinary "
            "table (small cells, differencing). Publish the answers' own columns (keys, value, lower, upper, n).",
            file=sys.stderr,
        )


def _answer_frame(answer: Any) -> tuple[pd.DataFrame, dict[str, str]]:
    frame = answer.to_pandas()
    kind = answer.query.get("kind", "count")
    value_role = {"sum": "sum", "mean": "mean", "quantile": "quantile", "median": "median"}.get(kind, "count")
    roles = {c: ("statistic" if c in ("lower", "upper") else value_role if c == "value" else "label") for c in frame}
    return frame, roles


def _dp_facts(answers: list[Any]) -> sc.DpFacts | None:
    if not answers:
        return None
    return sc.DpFacts(
        mechanism=", ".join(sorted({a.mechanism for a in answers})),
        rho=float(sum(a.rho for a in answers)),
        epsilon=float(sum(a.epsilon for a in answers)),
        delta=float(max(a.delta for a in answers)),
        scale=float(max(a.scale for a in answers)),
        queries=tuple(a.description for a in answers),
        answers=tuple(sorted({int(a.id) for a in answers if a.id is not None})),
    )


# -- files --------------------------------------------------------------------------------------------------------


def _path(name: str, suffixes: tuple[str, ...], default: str) -> Path:
    if not name or name.strip() != name or "\x00" in name:
        raise BadInput(f"rk.outputs: {name!r} is not a usable output name")
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise BadInput(f"rk.outputs: {name!r}: give a name relative to the working folder")
    if path.suffix.lower() not in suffixes:
        if path.suffix and path.suffix.lower() in (".csv", ".png", ".svg", ".json", ".txt", ".html"):
            raise BadInput(f"rk.outputs: {name!r}: this kind of output is written as {', '.join(suffixes)}")
        path = path.with_name(path.name + default)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _save(frame: pd.DataFrame, path: Path, **facts: Any) -> Path:
    """Write a table and its sidecar (the facts given, plus its name, size, tier and study)."""
    car = sc.Sidecar(
        name=_stem(path),
        file=path.name,
        rows=len(frame),
        tier=current_tier(),
        study=os.environ.get(STUDY_ENV),
        **facts,
    )
    _write_csv(frame, path)
    sc.write(path, car)
    return path


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    tmp = _tmp(path)
    frame.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, path)
