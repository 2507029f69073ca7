"""How close a twin is to what it could at best be: the real tables coarsened as the twin is, and TSTR.

**Coarsened quality** (:func:`coarsen`). A twin may only hold a categorical
value that at least ``k`` training patients hold (``policy.synth.
rare_category_k``; :mod:`research_kit.synth.publish` computes the allowed
values per column), and a DP twin only values of its public domain. SDV's quality score
against the raw training tables counts every row holding another value as a
miss the twin can never repair: in a 3,000-patient registry most ORPHA codes,
ICD-10 codes, genes and HPO terms are held by fewer than ten patients. The
coarsened tables are the training tables as the rule leaves them, built the
way the default twin replaces a rare value:

- ``rollup`` first (optional, per column): each value mapped to a coarser
  public one (for a twin that writes coarser codes than the extract holds; neither
  twin does today);
- ``diagnoses.orpha_code``, ``icd10_code`` and ``gene_symbol``: a value not
  allowed becomes an allowed value of the same column found on rows of the
  same ICD-10 block (of the row's own ICD-10 code), else of the same chapter,
  else anywhere in the column, drawn in proportion to how many real rows of
  that context hold each allowed value (as :mod:`research_kit.synth.coding`
  codes a rare disease by a common ORPHA code of its block, then chapter);
- ``phenotypes.hpo_code``: the same, the context being the ICD-10 block, then
  chapter, of the patient's first diagnosis (as :mod:`research_kit.synth.
  children` backs a rare term off to coarser disease contexts);
- every other categorical column (sex, residence, status, centres, kinds of
  encounter ...): an allowed value of the same column at the frequencies real
  rows hold them (as :func:`research_kit.synth.rare.recode_rare` does);
- missing values stay missing; a column whose every value is allowed is left
  as it is; a column with no allowed value at all left in the real rows
  draws uniformly among the allowed values, and becomes missing when nothing
  is allowed; columns not named in ``allowed`` (dates, numbers, identifiers,
  fresh variants) are not changed.

Numbers and dates are not clipped. The twin clips each to its k-th smallest
and largest per-patient value: at most ``2(k - 1)`` patients per column move,
a shift of SDV's column-shape score of at most ``2(k - 1) / n`` (0.0075 on
2,400 training patients at k = 10; measured on 3,000 patients: clipping the
coarsened tables too left the score unchanged at 4 decimals), not worth a
second rule; the raw and coarsened scores both show it.

What moves the score most is not only the column shapes: SDMetrics' column
pair and intertable trends average only the pairs whose *real* association
passes a threshold, and a column of many rare values is spuriously associated
with everything (Cramér's V of sex against the ORPHA code: about 0.6 on 3,000
patients, since a code held by one or two patients "predicts" their sex). The
raw score counts those pairs and the twin, which may not hold such codes,
fails them; coarsened, they fall under the threshold and are not counted
(measured on 3,000 patients: 25 pairs within tables counted raw, 11
coarsened). Held-out real patients scored like a twin show the same: 0.77
raw, 0.94 coarsened.

Why this is fair and loosens nothing: the coarsened tables are a yardstick
built in memory from the training tables and thrown away; only SDV's score
against them leaves (a number, in the twin's report). The twin itself, the
rare-category rule, the values it may hold and every privacy gate (rare
values, constraints, DCR, anonymeter) are exactly as before; the gates still
read the raw real tables. What changes is only which target the quality
figure is measured against: what the rule lets a twin reproduce, instead of
rows no twin under the rule may hold. The raw score is reported beside it.

**TSTR** (:func:`tstr`): train on synthetic, test on real, on the task of
``notebooks/phenotype_prediction.ipynb``: a diagnosed patient's disease group
(the ICD-10 chapter of their first dated diagnosis) from their observed HPO
terms, by logistic regression (C 0.5), the terms held by at least 20 training
patients as features. The model trained on the twin and the same model
trained on the real training patients (TRTR) are scored on the held-out
control patients, which neither saw. The classes are the real training
set's (the notebook takes the whole extract's; here the test patients do not
shape the task): groups of fewer than 50 patients, or of fewer than the
policy's minimum cell count, pooled. A side with one class or no feature
predicts its most frequent class; a side without a usable patient scores 0.
Only scores and sizes come out: no code, no class name.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core.errors import BadInput
from research_kit.model.codes import icd10_groups
from research_kit.model.facts import diagnosis_group, first_diagnosis_rows, observed_rows
from research_kit.synth.synthesizers import library
from research_kit.synth.tables import KEY, TABLES, Tables

ANY = "*"  # the block and chapter of a missing code or one outside WHO ICD-10
ROOT = ""  # the one context of the coarsest level
BY_DIAGNOSIS = ("diagnoses.orpha_code", "diagnoses.icd10_code", "diagnoses.gene_symbol")
BY_PATIENT_DISEASE = ("phenotypes.hpo_code",)

# The task of notebooks/phenotype_prediction.ipynb, with its parameters.
TASK = "disease group (ICD-10 chapter of the first diagnosis) from observed HPO terms, logistic regression"
MIN_TERM_PATIENTS = 20  # an HPO term is a feature when at least this many training patients have it
MIN_CLASS_PATIENTS = 50  # smaller disease groups (or smaller than the minimum cell count) are pooled
OTHER = "other groups"
C = 0.5
MAX_ITER = 2000
UNDIAGNOSED = "undiagnosed"
SCORES = ("accuracy", "balanced_accuracy", "macro_f1")


# -- coarsened real tables ------------------------------------------------------------------------------------------


def coarsen(
    real: Tables,
    allowed: Mapping[str, set[str]],
    *,
    seed: int,
    rollup: Mapping[str, Callable[[str], str]] | None = None,
) -> Tables:
    """The real tables as the twin's rare-category rule leaves them (see the module's docstring).

    ``allowed`` maps ``"table.column"`` to the values a twin may hold there;
    ``rollup`` maps a column's values to a coarser public value first (a
    column only rolled up keeps every rolled-up value). Row
    counts, patients and every column not named are unchanged; the result
    depends on ``seed`` only.
    """
    rollup = rollup or {}
    for key in (*allowed, *rollup):
        table, _, column = key.partition(".")
        if table not in TABLES or column not in getattr(real, table).columns:
            raise BadInput(f"coarsen: no column {key!r} in the tables")
    frames = {name: frame.copy() for name, frame in real.as_dict().items()}
    levels = _Contexts(real)
    for key in sorted({*allowed, *rollup}):
        table, column = key.split(".")
        frame = frames[table]
        values = frame[column].astype(object).to_numpy(dtype=object).copy()
        present = pd.notna(values)
        if key in rollup:
            roll = rollup[key]
            values[present] = np.array([roll(str(v)) for v in values[present]], dtype=object)
        keep = np.array(sorted(allowed.get(key, ())), dtype=object)
        ok = present & pd.Series(values).astype(str).isin(set(keep)).to_numpy()
        bad = present & ~ok if key in allowed else np.zeros(len(values), dtype=bool)  # rolled up only
        if bad.any():
            rng = np.random.default_rng([seed, zlib.crc32(key.encode())])  # a column's draws: its own stream
            values = _replace(values, ok, bad, levels.of(key, real.as_dict()[table]), keep, rng)
        if bad.any() or key in rollup:
            frame[column] = pd.Series(values, index=frame.index, dtype=object)
    return Tables(**frames)


class _Contexts:
    """Per column: the contexts a disallowed value is replaced in, finest first (the root last)."""

    def __init__(self, real: Tables) -> None:
        self.real = real
        self._groups: dict[str, tuple[str, str]] = {}

    def _blocks(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pairs = []
        for code in codes:
            text = str(code) if pd.notna(code) else ""
            if text not in self._groups:
                self._groups[text] = icd10_groups(text, outside=ANY)
            pairs.append(self._groups[text])
        return (np.array([p[0] for p in pairs], dtype=object), np.array([p[1] for p in pairs], dtype=object))

    def of(self, key: str, frame: pd.DataFrame) -> list[np.ndarray]:
        """Contexts of ``frame``'s rows (the real table: a replaced ICD-10 code never moves another column's)."""
        root = np.full(len(frame), ROOT, dtype=object)
        if key in BY_DIAGNOSIS:
            block, chapter = self._blocks(frame["icd10_code"].to_numpy(dtype=object))
            return [block, chapter, root]
        if key in BY_PATIENT_DISEASE:
            first = first_diagnosis_rows(self.real.diagnoses, KEY).set_index(KEY)["icd10_code"]
            codes = first.reindex(frame[KEY].to_numpy()).to_numpy(dtype=object)
            block, chapter = self._blocks(codes)
            return [block, chapter, root]
        return [root]


def _replace(
    values: np.ndarray,
    ok: np.ndarray,
    bad: np.ndarray,
    levels: list[np.ndarray],
    keep: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """``values[bad]`` replaced by allowed values (those of the ``ok`` rows), drawn per context, finest first."""
    out = values.copy()
    pending = np.flatnonzero(bad)
    for context in levels:
        if len(pending) == 0:
            break
        pool = pd.DataFrame({"c": context[ok], "v": values[ok].astype(str)})
        cells = pool.groupby(["c", "v"], sort=True).size()
        frequencies = {c: per.droplevel("c") for c, per in cells.groupby(level="c", sort=True)}
        known = pd.Series(context[pending]).isin(set(frequencies)).to_numpy()
        here = pending[known]
        for where, rows in pd.Series(here).groupby(context[here], sort=True):
            counts = frequencies[where]
            drawn = rng.choice(counts.index.to_numpy(dtype=object), size=len(rows), p=counts.to_numpy() / counts.sum())
            out[rows.to_numpy()] = drawn
        pending = pending[~known]
    if len(pending):  # no allowed value left in the real rows of the column
        out[pending] = keep[rng.integers(0, len(keep), len(pending))] if len(keep) else None
    return out


# -- train on synthetic, test on real -------------------------------------------------------------------------------


def tstr(train: Tables, test: Tables, twin: Tables, *, min_cell: int, seed: int) -> dict[str, Any]:
    """Train-synthetic-test-real on the phenotype-to-disease-group task (see the module's docstring).

    ``train``: the real patients the twin was fitted on; ``test``: held-out
    real patients (never trained on); ``min_cell``: the policy's minimum cell
    count (a disease group with fewer training patients than it, or than
    50, is pooled). Classes are the real training set's; a twin patient of
    another group is in the pooled class. ``seed``: the model's random state
    (its solver is deterministic: the same tables give the same scores).
    Returns scores (4 decimals) and sizes only; a twin without a usable
    patient scores 0.
    """
    cohorts = {side: _cohort(tables) for side, tables in (("real", train), ("twin", twin), ("test", test))}
    sizes = cohorts["real"][0].value_counts()
    classes = set(sizes[sizes >= max(MIN_CLASS_PATIENTS, min_cell)].index)

    def usable(side: str) -> tuple[pd.Series, pd.Series]:
        groups, terms = cohorts[side]
        groups = groups[groups.index.isin(terms.index)]  # a patient without a term has nothing to go on
        return groups.where(groups.isin(classes), OTHER).astype(object), terms

    y_real, real_terms = usable("real")
    y_twin, twin_terms = usable("twin")
    y_test, test_terms = usable("test")
    twin_scores, twin_features = _fit_and_score(y_twin, twin_terms, y_test, test_terms, seed)
    real_scores, real_features = _fit_and_score(y_real, real_terms, y_test, test_terms, seed)
    return {
        "task": TASK,
        **twin_scores,
        "trtr": real_scores,
        "classes": int(y_real.nunique()),
        "features": twin_features,
        "features_real": real_features,
        "n_train_twin": len(y_twin),
        "n_train_real": len(y_real),
        "n_test": len(y_test),
    }


def _cohort(tables: Tables) -> tuple[pd.Series, pd.Series]:
    """Diagnosed patients' disease group (indexed by pseudonym), and each patient's distinct observed HPO terms.

    As the notebook's ``rk.analysis.first_diagnoses``: the first dated diagnosis, not an undiagnosed case.
    """
    d = tables.diagnoses
    d = d[d["diagnosis_date"].notna() & d[KEY].isin(set(tables.patients[KEY]))]
    first = first_diagnosis_rows(d, KEY)
    first = first[first["status"] != UNDIAGNOSED]
    groups = pd.Series(
        [diagnosis_group(str(c)) if pd.notna(c) else None for c in first["icd10_code"]],
        index=first[KEY].to_numpy(),
        dtype=object,
    )
    ph = observed_rows(tables.phenotypes)
    ph = ph[ph["hpo_code"].notna() & ph[KEY].isin(set(groups.index))].drop_duplicates([KEY, "hpo_code"])
    terms = ph.groupby(KEY)["hpo_code"].apply(lambda s: [str(v) for v in s])
    return groups, terms


def _matrix(patients: pd.Index, terms: pd.Series, vocabulary: list[str]) -> np.ndarray:
    """One column per term of the vocabulary: 1 where the patient has it."""
    column = {term: i for i, term in enumerate(vocabulary)}
    out = np.zeros((len(patients), len(vocabulary)), dtype=np.float32)
    for row, held in enumerate(terms.reindex(patients)):
        for term in held if isinstance(held, list) else []:
            j = column.get(term)
            if j is not None:
                out[row, j] = 1.0
    return out


def _fit_and_score(
    y_train: pd.Series, train_terms: pd.Series, y_test: pd.Series, test_terms: pd.Series, seed: int
) -> tuple[dict[str, float], int]:
    """The three scores of a model trained on one side, and its number of features."""
    convergence = library("sklearn.exceptions").ConvergenceWarning
    logistic = library("sklearn.linear_model").LogisticRegression
    metrics = library("sklearn.metrics")
    accuracy_score, balanced_accuracy_score, f1_score = (
        metrics.accuracy_score,
        metrics.balanced_accuracy_score,
        metrics.f1_score,
    )

    if len(y_train) == 0 or len(y_test) == 0:
        return dict.fromkeys(SCORES, 0.0), 0
    held = pd.Series([t for ts in train_terms.reindex(y_train.index) for t in ts]).value_counts()
    vocabulary = sorted(str(t) for t in held[held >= MIN_TERM_PATIENTS].index)
    truth = y_test.to_numpy(dtype=object)
    if y_train.nunique() < 2 or not vocabulary:  # nothing to learn: the most frequent training class
        predicted = np.full(len(truth), y_train.value_counts().index[0], dtype=object)
    else:
        model = logistic(max_iter=MAX_ITER, C=C, random_state=seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=convergence)  # a model short of converging still scores
            model.fit(_matrix(y_train.index, train_terms, vocabulary), y_train.to_numpy(dtype=object))
        predicted = model.predict(_matrix(y_test.index, test_terms, vocabulary))
    with warnings.catch_warnings():
        # a class predicted that no held-out patient has (balanced accuracy ignores it, as intended), or one class
        # only (every group pooled): the scores are still defined
        warnings.filterwarnings("ignore", message=r".*y_pred contains classes not in y_true.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"A single label was found", category=UserWarning)
        balanced = balanced_accuracy_score(truth, predicted)
    scores = {
        "accuracy": accuracy_score(truth, predicted),
        "balanced_accuracy": balanced,
        "macro_f1": f1_score(truth, predicted, average="macro", zero_division=0),
    }
    return {k: round(float(v), 4) for k, v in scores.items()}, len(vocabulary)
