"""What limits a DP twin's TSTR: the HPO terms a budget can vouch for are held by k patients (an analysis).

``python -m benchmarks.dp_twin_terms [--patients 30000] [--epsilon 4 8 16]`` measures the patient table once
(MST at the first epsilon, as ``research-kit synth --model mst`` does), then trains the TSTR task of
:mod:`research_kit.synth.fidelity` on twins generated from it with the HPO histogram replaced by:

- the real (chapter, term) counts of at least k patients, without noise: what the DP twin's structure (terms
  drawn per chapter) reaches when noise takes nothing (its ceiling);
- the same, keeping only the terms whose real total clears the cut the DP twin's term selection has at each
  epsilon: what the rare-category rule leaves at that budget, still without noise;
- the DP twin's own HPO measurement at each epsilon (:func:`research_kit.synth.dp_twin._selected`).

The second and third rows use the real counts of the training patients: this is an analysis, on a simulated
extract made under ``RK_BENCH_DATA``, never a release. It prints scores and term counts only.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from research_kit.core.extracts import get_extract
from research_kit.dp.accounting import rho_from
from research_kit.synth import dp_domain as dom
from research_kit.synth import dp_twin, fidelity
from research_kit.synth.publish import held_out_patients
from research_kit.synth.tables import KEY, Granularity, patient_index, read_tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=30_000)
    parser.add_argument("--epsilon", type=float, nargs="+", default=[4.0, 8.0, 16.0])
    args = parser.parse_args()
    from benchmarks.cases_dp_twin import _workspace

    scratch = Path(os.environ.get("RK_BENCH_DATA") or tempfile.mkdtemp()) / "scratch"
    ws = _workspace(args.patients, scratch)
    extract = get_extract(ws, "demo")
    tables, _ = read_tables(extract.path)
    ids = tables.patients[KEY].to_numpy()
    held = held_out_patients(ids, 0)
    control, train = tables.subset(pd.Index(ids[held])), tables.subset(pd.Index(ids[~held]))
    delta, k = ws.policy().dp.delta, ws.policy().synth.rare_category_k
    reference = float(np.datetime64(extract.created_at[:10], "D").astype(np.int64))
    rhos = [float(rho_from(None, str(e), delta)) for e in args.epsilon]
    release = dp_twin.measure(
        train, mechanism="mst", rho=rhos[0], k=k, reference_date=reference,
        granularity=Granularity.of(extract.manifest), step=lambda _: None,
    )  # fmt: skip

    frame, _ = dp_twin.patient_rows(train, reference, release.reference_year)
    context = dp_twin._context_index(frame["chapter"].to_numpy(dtype=object))
    ph = train.phenotypes
    who = patient_index(ph, train.patients)
    capped = pd.Series(who).groupby(who).cumcount().to_numpy() < dom.HPO_CAP
    cells = dp_twin._cells(context[who[capped]], ph["hpo_code"].to_numpy(dtype=object)[capped], dom.hpo(), who[capped])
    totals = cells.sum(axis=0)
    sensitivity = math.ceil(math.sqrt(dom.HPO_CAP))

    def score(kept: np.ndarray, label: str) -> None:
        histogram = dp_twin.Histogram(codes=dom.hpo().codes, kept=kept, scale=0.0, cut=0.0, rho=0.0)
        twin = dp_twin.generate(replace(release, hpo=histogram), None, seed=0, taken=set(ids))
        r = fidelity.tstr(train, control, twin, min_cell=k, seed=0)
        terms = int((kept.sum(axis=0) > 0).sum())
        print(f"{label:<58} TSTR {r['accuracy']:.3f}  terms {terms:>5}  (TRTR {r['trtr']['accuracy']:.3f})", flush=True)

    print(f"{args.patients:,} patients, {len(ids[~held]):,} training; terms held by >= {k}: {(totals >= k).sum()}")
    score(np.where(cells >= k, cells, 0.0), f"no noise, every (chapter, term) cell of >= {k} patients")
    for epsilon, rho in zip(args.epsilon, rhos, strict=True):
        measured = dp_twin._selected(cells, sensitivity, rho * dp_twin.SPLIT["hpo"], k)
        cut = measured.selection["cut"]  # the twin's own cut on the terms' totals (it does not depend on the data)
        score(
            np.where((cells >= k) & (totals >= cut)[None, :], cells, 0.0),
            f"no noise, terms over eps {epsilon:g}'s cut {cut:.0f}",
        )
        score(measured.kept, f"the DP twin's measurement at eps {epsilon:g}")


if __name__ == "__main__":
    main()
