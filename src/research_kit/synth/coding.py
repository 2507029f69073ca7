"""The codes of a synthetic diagnosis: ORPHA, ICD-10, gene and variant.

A diagnosis of a common disease (an ORPHA code held by at least k real
patients) draws its ORPHA code given the disease group, then the ICD-10 code
that goes with that ORPHA code. A diagnosis that stands for a rare disease
(the patient model's ``rare_disease`` flag) cannot name the disease: it draws
an ICD-10 code as rare-disease patients of its group hold them (each code
held by at least k of them), then a common ORPHA code of that code's ICD-10
block as a stand-in. So the ICD-10 block and chapter, which studies group
by, keep the real shares, rare diseases included; ORPHA codes are only ever
common ones.

Genes follow the ORPHA code where k patients share the pair, else the block,
chapter, then the rare or common kind of disease. Variants are fresh random
HGVS strings, never a real patient's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from research_kit.model.codes import icd10_groups
from research_kit.synth.patients import ANY, UNDIAGNOSED_STATUS, chapter_of
from research_kit.synth.rare import NONE, Backoff, common_values

BASES = np.array(["A", "C", "G", "T"], dtype=object)


def kind(status: np.ndarray) -> np.ndarray:
    """``u`` for an undiagnosed case (ORPHA:616874 only), ``d`` for a diagnosis."""
    return np.where(np.asarray(status, dtype=object) == UNDIAGNOSED_STATUS, "u", "d").astype(object)


def join(*parts: np.ndarray) -> np.ndarray:
    return np.array(["|".join(map(str, x)) for x in zip(*parts, strict=True)], dtype=object)


def groups_of(icd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICD-10 blocks and chapters (``*`` for a missing or unknown code)."""
    pairs = [icd10_groups(str(c)) if c is not None and c == c else (ANY, ANY) for c in icd]
    return (np.array([p[0] for p in pairs], dtype=object), np.array([p[1] for p in pairs], dtype=object))


@dataclass
class Coder:
    orpha_by_group: Backoff  # common ORPHA codes given kind|block, kind|chapter, kind
    orpha_secondary: Backoff  # common ORPHA codes of secondary diagnoses given their status
    icd10_by_orpha: Backoff
    icd10_rare: Backoff  # ICD-10 codes of rare-disease diagnoses given kind|block, kind|chapter, kind
    gene: Backoff  # given rare|orpha, rare|block, rare|chapter, rare
    gene_statuses: set[str]  # statuses under which k patients carry a gene
    real_variants: frozenset[str]

    @classmethod
    def fit(cls, d: pd.DataFrame, who: np.ndarray, first: np.ndarray, k: int) -> Coder:
        """``d``: the real diagnoses; ``who``: each row's patient; ``first``: the patients' first rows."""
        status = d["status"].fillna(NONE).to_numpy(dtype=object)
        orpha = d["orpha_code"].fillna(NONE).to_numpy(dtype=object)
        icd = d["icd10_code"].fillna(NONE).to_numpy(dtype=object)
        gene = d["gene_symbol"].fillna(NONE).to_numpy(dtype=object)
        block, chapter = groups_of(icd)
        flag = kind(status)
        rare = np.where(np.isin(orpha, list(common_values(orpha, who, k))), "no", "yes").astype(object)
        by_group = [join(flag, block), join(flag, chapter), flag]
        common, second, is_rare = rare == "no", ~first, rare == "yes"
        has_gene = gene != NONE
        carriers = pd.Series(who[has_gene]).groupby(status[has_gene]).nunique()
        return cls(
            orpha_by_group=Backoff.fit(orpha[common], who[common], [c[common] for c in by_group], k),
            orpha_secondary=Backoff.fit(orpha[second & common], who[second & common], [status[second & common]], k),
            icd10_by_orpha=Backoff.fit(icd, who, [orpha], k),
            icd10_rare=Backoff.fit(icd[is_rare], who[is_rare], [c[is_rare] for c in by_group], k),
            gene=Backoff.fit(
                gene[has_gene],
                who[has_gene],
                [c[has_gene] for c in (join(rare, orpha), join(rare, block), join(rare, chapter), rare)],
                k,
            ),
            gene_statuses={str(s) for s, n in carriers.items() if n >= k},
            real_variants=frozenset(str(v) for v in d["variant_hgvs"].dropna()),
        )

    def codes(
        self,
        status: np.ndarray,
        rare: np.ndarray,
        genetic: np.ndarray,
        rng: np.random.Generator,
        group: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """ORPHA, ICD-10 and gene per diagnosis (``None`` codes where no common code fits: the caller drops them).

        ``group`` (the patient model's disease group) is given for primary
        diagnoses; a secondary diagnosis draws its ORPHA code given its status.
        """
        n = len(status)
        flag = kind(status)
        groups = np.full(n, ANY, dtype=object) if group is None else np.asarray(group, dtype=object)
        chapters = np.array([chapter_of(str(g)) for g in groups], dtype=object)
        by_group = [join(flag, groups), join(flag, chapters), flag]
        orpha = np.full(n, None, dtype=object)
        icd = np.full(n, None, dtype=object)
        common = np.asarray(rare, dtype=object) != "yes"
        if group is None:
            orpha[common] = self.orpha_secondary.sample([np.asarray(status, dtype=object)[common]], rng)
        else:
            orpha[common] = self.orpha_by_group.sample([c[common] for c in by_group], rng, greedy=True)
        icd[common] = self.icd10_by_orpha.sample([orpha[common]], rng, greedy=True)
        icd[pd.isna(orpha) & common] = None
        stand = ~common
        if stand.any():
            icd[stand] = self.icd10_rare.sample([c[stand] for c in by_group], rng, greedy=True)
            block, chapter = groups_of(icd[stand])
            f = flag[stand]
            orpha[stand] = self.orpha_by_group.sample([join(f, block), join(f, chapter), f], rng, greedy=True)
            # No rare-disease code of this kind (an undiagnosed case flagged rare): code it as a common one.
            retry = stand & (pd.isna(orpha) | pd.isna(icd))
            if retry.any():
                orpha[retry] = self.orpha_by_group.sample([c[retry] for c in by_group], rng, greedy=True)
                icd[retry] = self.icd10_by_orpha.sample([orpha[retry]], rng, greedy=True)
                common = common | retry
            icd[pd.isna(orpha)] = None
        carries = np.asarray(genetic, dtype=bool) & np.isin(status, list(self.gene_statuses)) & pd.notna(icd)
        gene = np.full(n, None, dtype=object)
        idx = np.nonzero(carries)[0]
        if len(idx):
            block, chapter = groups_of(icd[idx])
            r = np.where(common[idx], "no", "yes").astype(object)
            gene[idx] = self.gene.sample([join(r, orpha[idx]), join(r, block), join(r, chapter), r], rng, greedy=True)
        return pd.DataFrame({"orpha_code": orpha, "icd10_code": icd, "gene_symbol": gene})

    def variants(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Random HGVS coding variants (substitution, deletion, duplication), none a real patient's."""
        pos = rng.integers(40, 9000, n)
        ref = rng.integers(0, 4, n)
        alt = (ref + rng.integers(1, 4, n)) % 4
        form = rng.random(n)
        length = rng.integers(1, 25, n)
        out = np.empty(n, dtype=object)
        for i in range(n):
            if form[i] < 0.75:
                out[i] = f"c.{pos[i]}{BASES[ref[i]]}>{BASES[alt[i]]}"
            elif form[i] < 0.9:
                out[i] = f"c.{pos[i]}_{pos[i] + length[i]}del"
            else:
                out[i] = f"c.{pos[i]}dup"
        taken = np.array([v in self.real_variants for v in out], dtype=bool)
        if taken.any():
            out[taken] = self.variants(int(taken.sum()), rng)
        return out
