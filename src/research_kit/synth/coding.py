"""The codes of a synthetic diagnosis: ORPHA, ICD-10, gene and variant.

A diagnosis of a common disease (an ORPHA code held by at least k real
patients) draws its ORPHA code given its disease group and whether it
carries a gene, then the ICD-10 code that goes with that ORPHA code. A
diagnosis that stands for a rare disease (the patient model's
``rare_disease`` flag) cannot name the disease: it draws an ICD-10 code as
rare-disease diagnoses of its group hold them (each code held by at least k
of them; the share held by fewer backs off to the codes every diagnosis of
the group holds), then a common ORPHA code that real patients hold with that
ICD-10 code (else one of its block) as a stand-in. So the ICD-10 block and
chapter, which studies group by, keep the real shares, rare diseases
included; ORPHA codes are only ever common ones. A primary diagnosis's codes
stay in the disease group the patient model drew (its age at onset and delay
were drawn with it) wherever the group has a common code.

A common disease's ORPHA code given its group backs off as Katz's back-off
does (:class:`~research_kit.synth.rare.Backoff`): the share of a context's
rows in cells of fewer than k patients moves to a coarser context, which
learns from those rows only, so a code spread thinly over many contexts
keeps its real share.

Genes follow the ORPHA code where k patients share the pair, else the block,
chapter, then the rare or common kind of disease; a genetic diagnosis is
given a disease that real genetic diagnoses of its group have. Variants are
fresh random HGVS strings, never a real patient's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from research_kit.model.codes import icd10_groups
from research_kit.synth.patients import ANY, UNDIAGNOSED_STATUS, chapter_of
from research_kit.synth.rare import NONE, Backoff, common_values

BASES = np.array(["A", "C", "G", "T"], dtype=object)
OUTSIDE = "\x00"  # a context no sampler knows: keeps a row away from a level


def kind(status: np.ndarray) -> np.ndarray:
    """``u`` for an undiagnosed case (ORPHA:616874 only), ``d`` for a diagnosis."""
    return np.where(np.asarray(status, dtype=object) == UNDIAGNOSED_STATUS, "u", "d").astype(object)


def join(*parts: np.ndarray) -> np.ndarray:
    return np.array(["|".join(map(str, x)) for x in zip(*parts, strict=True)], dtype=object)


def groups_of(icd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICD-10 blocks and chapters (``*`` for a missing or unknown code)."""
    pairs = [icd10_groups(str(c)) if c is not None and c == c else (ANY, ANY) for c in icd]
    return (np.array([p[0] for p in pairs], dtype=object), np.array([p[1] for p in pairs], dtype=object))


def by_genetic(flag: np.ndarray, gen: np.ndarray, block: np.ndarray, chapter: np.ndarray) -> list[np.ndarray]:
    """An ORPHA code's contexts, finest first: kind|genetic|block, kind|block, the same by chapter, then by kind.

    Whether the diagnosis carries a gene picks among the group's diseases: a
    genetic diagnosis is given a disease real genetic diagnoses of its group
    have (so its gene can be one of that disease's genes), where k patients
    share one."""
    by_block = [join(flag, gen, block), join(flag, block)]
    return [*by_block, join(flag, gen, chapter), join(flag, chapter), join(flag, gen), flag]


def in_group(
    sampler: Backoff, contexts: list[np.ndarray], own: list[np.ndarray], rows: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Values for ``rows``, backing off only through the levels of each row's own disease group.

    ``own``: per level, whether the row's group is of that level's kind (a
    block, a chapter, none). A primary diagnosis keeps the group the patient
    model drew with its age at onset and delay, so the rare cells' share of a
    group backs off to coarser contexts inside the group, never to another
    group; a row that no level of its group can place is drawn at the finest
    level that knows its context, whatever the group.
    """
    scoped = [np.where(ok, c, OUTSIDE)[rows] for c, ok in zip(contexts, own, strict=True)]
    out = sampler.sample(scoped, rng)
    miss = pd.isna(out)
    if miss.any():
        out[miss] = sampler.sample([c[rows][miss] for c in contexts], rng, greedy=True)
    return out


@dataclass
class Coder:
    orpha_by_group: list[Backoff]  # common ORPHA codes given kind|genetic|group, kind|group: by block, chapter, none
    orpha_by_icd10: Backoff  # common ORPHA codes given genetic|ICD-10 code, the code, then as orpha_by_group
    orpha_secondary: Backoff  # common ORPHA codes of secondary diagnoses given their status, then of any given kind
    icd10_by_orpha: Backoff
    icd10_rare: Backoff  # ICD-10 codes of rare-disease diagnoses given kind|block, then of any diagnosis given ...
    gene: Backoff  # given rare|orpha, orpha, rare|block, rare|chapter, rare
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
        common, second = rare == "no", ~first
        has_gene = gene != NONE
        gen = np.where(has_gene, "yes", "no").astype(object)
        nth = np.where(second, "2", "1").astype(object)
        carriers = pd.Series(who[has_gene]).groupby(status[has_gene]).nunique()
        coded = icd != NONE
        return cls(
            orpha_by_group=[
                Backoff.fit(
                    orpha[common], who[common], [join(flag, gen, g)[common], join(flag, g)[common]], k, residual=True
                )
                for g in (block, chapter, np.full(len(d), ANY, dtype=object))
            ],
            orpha_by_icd10=Backoff.fit(
                orpha[common],
                who[common],
                [join(gen, icd)[common], icd[common], *(c[common] for c in by_genetic(flag, gen, block, chapter))],
                k,
            ),
            orpha_secondary=Backoff.fit(
                orpha[common],
                who[common],
                [c[common] for c in (join(nth, status, gen), join(nth, status), join(flag, gen), flag)],
                k,
            ),
            icd10_by_orpha=Backoff.fit(icd, who, [orpha], k),
            icd10_rare=Backoff.fit(
                icd[coded], who[coded], [join(rare, flag, block)[coded], *(c[coded] for c in by_group)], k
            ),
            gene=Backoff.fit(
                gene[has_gene],
                who[has_gene],
                [c[has_gene] for c in (join(rare, orpha), orpha, join(rare, block), join(rare, chapter), rare)],
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
        gen = np.where(np.asarray(genetic, dtype=bool), "yes", "no").astype(object)
        groups = np.full(n, ANY, dtype=object) if group is None else np.asarray(group, dtype=object)
        chapters = np.array([chapter_of(str(g)) for g in groups], dtype=object)
        by_group = [join(flag, groups), join(flag, chapters), flag]
        block_group = (groups != ANY) & (chapters != groups)
        chapter_group = (groups != ANY) & (chapters == groups)
        any_group = groups == ANY
        orpha = np.full(n, None, dtype=object)
        icd = np.full(n, None, dtype=object)
        common = np.asarray(rare, dtype=object) != "yes"
        if group is None:
            nth = np.full(n, "2", dtype=object)
            secondary = (join(nth, status, gen), join(nth, status), join(flag, gen), flag)
            orpha[common] = self.orpha_secondary.sample([c[common] for c in secondary], rng)
        else:
            orpha[common] = self._orpha_in_group(common, flag, gen, groups, chapters, rng)
        icd[common] = self.icd10_by_orpha.sample([orpha[common]], rng, greedy=True)
        icd[pd.isna(orpha) & common] = None
        stand = ~common
        if stand.any():
            f = flag[stand]
            levels = [join(np.full(n, "yes", dtype=object), flag, groups), *by_group]
            own = [block_group, block_group, chapter_group, any_group]
            icd[stand] = in_group(self.icd10_rare, levels, own, stand, rng)
            block, chapter = groups_of(icd[stand])
            g = gen[stand]
            orpha[stand] = self.orpha_by_icd10.sample(
                [join(g, icd[stand]), icd[stand], *by_genetic(f, g, block, chapter)], rng, greedy=True
            )
            # No rare-disease code of this kind (an undiagnosed case flagged rare): code it as a common one.
            retry = stand & (pd.isna(orpha) | pd.isna(icd))
            if retry.any():
                orpha[retry] = self._orpha_in_group(retry, flag, gen, groups, chapters, rng)
                icd[retry] = self.icd10_by_orpha.sample([orpha[retry]], rng, greedy=True)
                common = common | retry
            icd[pd.isna(orpha)] = None
        carries = np.asarray(genetic, dtype=bool) & np.isin(status, list(self.gene_statuses)) & pd.notna(icd)
        gene = np.full(n, None, dtype=object)
        idx = np.nonzero(carries)[0]
        if len(idx):
            block, chapter = groups_of(icd[idx])
            r = np.where(common[idx], "no", "yes").astype(object)
            gene[idx] = self.gene.sample(
                [join(r, orpha[idx]), orpha[idx], join(r, block), join(r, chapter), r], rng, greedy=True
            )
        return pd.DataFrame({"orpha_code": orpha, "icd10_code": icd, "gene_symbol": gene})

    def _orpha_in_group(
        self,
        rows: np.ndarray,
        flag: np.ndarray,
        gen: np.ndarray,
        groups: np.ndarray,
        chapters: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """A common ORPHA code per row of ``rows`` from the sampler of its own disease group's kind (block,
        chapter, none), then from the next coarser one's where its group has no common code.

        Each sampler is a Katz back-off from kind|genetic|group to kind|group,
        learnt from every real row of its kind of group: a row enters at its
        own group (the one the patient model drew its age at onset with) and
        backs off inside it, never to another group while its own has a code.
        """
        n = len(flag)
        out = np.full(n, None, dtype=object)
        start = np.where(groups == ANY, 2, np.where(chapters == groups, 1, 0))
        anything = np.full(n, ANY, dtype=object)
        for depth, (sampler, group) in enumerate(zip(self.orpha_by_group, (groups, chapters, anything), strict=True)):
            todo = rows & pd.isna(out) & (start <= depth)
            if todo.any():
                out[todo] = sampler.sample([join(flag, gen, group)[todo], join(flag, group)[todo]], rng)
        return out[rows]

    def variants(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Random HGVS coding variants (substitution, deletion, duplication), none a real patient's."""
        out = random_variants(n, rng)
        taken = np.array([v in self.real_variants for v in out], dtype=bool)
        if taken.any():
            out[taken] = self.variants(int(taken.sum()), rng)
        return out


def random_variants(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random HGVS coding variants: a substitution, a deletion or a duplication at a random position."""
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
    return out
