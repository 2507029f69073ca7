"""Fitted models as tables a reviewer can check: estimates, standard errors, and the facts the checks need.

Each library's summary is registered by the name of its top-level module
(:data:`SUMMARIES`); :func:`research_kit.outputs.declare.model` picks one by
the result's type. A Kaplan-Meier fit is written as a survival table instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core.errors import BadInput
from research_kit.outputs import sidecar as sc


def statsmodels_summary(result: Any, name: str, n: int | None) -> tuple[pd.DataFrame, sc.ModelFacts]:
    params = pd.Series(result.params)
    interval = pd.DataFrame(result.conf_int())
    frame = pd.DataFrame(
        {
            "term": [str(t) for t in params.index],
            "estimate": params.to_numpy(dtype=float),
            "std_error": pd.Series(result.bse).to_numpy(dtype=float),
            "statistic": pd.Series(result.tvalues).to_numpy(dtype=float),
            "p_value": pd.Series(result.pvalues).to_numpy(dtype=float),
            "ci_lower": interval.iloc[:, 0].to_numpy(dtype=float),
            "ci_upper": interval.iloc[:, 1].to_numpy(dtype=float),
        }
    )
    facts = sc.ModelFacts(
        library="statsmodels",
        estimator=type(getattr(result, "model", result)).__name__,
        n_obs=int(result.nobs),
        df_model=float(result.df_model),
        df_resid=float(result.df_resid),
        terms=tuple(frame["term"]),
    )
    return frame, facts


def lifelines_summary(result: Any, name: str, n: int | None) -> tuple[pd.DataFrame, sc.ModelFacts]:
    if not hasattr(result, "summary") or not hasattr(result, "params_"):
        raise BadInput(f"rk.outputs.model({name!r}): a lifelines regression model (e.g. CoxPHFitter) is needed")
    summary = result.summary
    frame = pd.DataFrame(
        {
            "term": [str(t) for t in summary.index],
            "estimate": summary["coef"].to_numpy(dtype=float),
            "std_error": summary["se(coef)"].to_numpy(dtype=float),
            "statistic": summary["z"].to_numpy(dtype=float),
            "p_value": summary["p"].to_numpy(dtype=float),
            "ci_lower": summary["coef lower 95%"].to_numpy(dtype=float),
            "ci_upper": summary["coef upper 95%"].to_numpy(dtype=float),
        }
    )
    events = int(np.asarray(result.event_observed).sum())
    # A survival model's information is in its events: residual df = events - parameters.
    facts = sc.ModelFacts(
        library="lifelines",
        estimator=type(result).__name__,
        n_obs=int(result._n_examples),
        df_model=float(len(frame)),
        df_resid=float(events - len(frame)),
        n_events=events,
        terms=tuple(frame["term"]),
    )
    return frame, facts


def sklearn_summary(result: Any, name: str, n: int | None) -> tuple[pd.DataFrame, sc.ModelFacts]:
    if n is None:
        raise BadInput(f"rk.outputs.model({name!r}): give n= (the number of training rows) for a scikit-learn model")
    features = [str(f) for f in getattr(result, "feature_names_in_", [])]
    if hasattr(result, "coef_"):
        coef = np.atleast_2d(np.asarray(result.coef_, dtype=float))
        classes = [str(c) for c in getattr(result, "classes_", [])]
        names = features or [f"x{i}" for i in range(coef.shape[1])]
        rows = []
        for i, line in enumerate(coef):
            prefix = f"{classes[i]}:" if coef.shape[0] > 1 and i < len(classes) else ""
            rows += [(f"{prefix}{f}", v) for f, v in zip(names, line, strict=True)]
        frame = pd.DataFrame(rows, columns=["term", "estimate"])
        parameters = coef.size + np.atleast_1d(getattr(result, "intercept_", [])).size
    elif hasattr(result, "feature_importances_"):
        importances = np.asarray(result.feature_importances_, dtype=float)
        names = features or [f"x{i}" for i in range(importances.size)]
        frame = pd.DataFrame({"term": names, "importance": importances})
        parameters = importances.size
    else:
        raise BadInput(
            f"rk.outputs.model({name!r}): {type(result).__name__} has neither coef_ nor feature_importances_"
        )
    facts = sc.ModelFacts(
        library="scikit-learn",
        estimator=type(result).__name__,
        n_obs=int(n),
        df_model=float(parameters),
        df_resid=float(n - parameters),
        terms=tuple(frame["term"]),
    )
    return frame, facts


def km_table(km: Any) -> pd.DataFrame:
    events = km.event_table
    survival = km.survival_function_.iloc[:, 0].reindex(events.index)
    return pd.DataFrame(
        {
            "time": events.index.to_numpy(dtype=float),
            "at_risk": events["at_risk"].to_numpy(dtype=int),
            "events": events["observed"].to_numpy(dtype=int),
            "censored": events["censored"].to_numpy(dtype=int),
            "survival": survival.to_numpy(dtype=float),
        }
    )


Summary = Callable[[Any, str, "int | None"], tuple[pd.DataFrame, sc.ModelFacts]]
SUMMARIES: dict[str, Summary] = {
    "statsmodels": statsmodels_summary,
    "lifelines": lifelines_summary,
    "sklearn": sklearn_summary,
}
