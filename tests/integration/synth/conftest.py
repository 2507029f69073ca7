"""One small simulated registry, ingested with a few planted rare codes, and its twin built once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import fixed_key

from research_kit.core.extracts import get_extract
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.ingest.pipeline import ingest
from research_kit.model.codes import hpo_id, load_code_systems, orpha_id
from research_kit.pseudonymise.keys import load_key
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.synth import build_twin, evaluate
from research_kit.synth.publish import TwinResult
from research_kit.synth.tables import Tables, read_tables

PATIENTS = 2_000
# Thresholds a 2,000-patient registry can meet (most codes are held by fewer than k patients at this size);
# the default policy's are for the 30,000-patient registry. The tests check the mechanics, not the figures.
LENIENT = {
    "min_quality = 0.85": "min_quality = 0.5",
    "min_dcr_baseline_protection = 0.35": "min_dcr_baseline_protection = 0.1",
    "min_dcr_overfitting_protection = 0.8": "min_dcr_overfitting_protection = 0.5",
    "max_singling_out_risk = 0.1": "max_singling_out_risk = 0.5",
    "max_linkability_risk = 0.1": "max_linkability_risk = 0.5",
    "max_inference_risk = 0.2": "max_inference_risk = 0.5",
}


@dataclass(frozen=True)
class Planted:
    """Values held by exactly one real patient: none may reach a twin or its reports."""

    orpha: str
    icd10: str
    gene: str
    variant: str
    hpo: str

    def values(self) -> list[str]:
        return [self.orpha, self.gene, self.variant, self.hpo]


@dataclass
class Registry:
    ws: Workspace
    raw: Path
    key: Path
    planted: Planted
    real: Tables
    twin: TwinResult


def set_policy(ws: Workspace, replacements: dict[str, str]) -> None:
    text = ws.policy_path.read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    ws.policy_path.write_text(text, encoding="utf-8")


def _plant(raw: Path) -> Planted:
    """Give one confirmed diagnosis and one phenotype codes no other patient holds."""
    codes = load_code_systems()
    diagnoses = pd.read_parquet(raw / "diagnoses.parquet")
    phenotypes = pd.read_parquet(raw / "phenotypes.parquet")
    used_orpha, used_hpo = set(diagnoses["orpha_code"]), set(phenotypes["hpo_code"])
    disease = next(d for d in codes.diseases if orpha_id(d.orpha) not in used_orpha and d.genes)
    gene = next(g for g in disease.genes if g not in set(diagnoses["gene_symbol"]))
    term = next(hpo_id(t) for t in sorted(codes.hpo_names) if hpo_id(t) not in used_hpo and t > 1000)
    planted = Planted(orpha_id(disease.orpha), disease.icd10, gene, "c.8765G>T", term)
    row = diagnoses.index[diagnoses["status"] == "confirmed"][0]
    diagnoses.loc[row, ["orpha_code", "icd10_code", "gene_symbol", "variant_hgvs"]] = [
        planted.orpha, planted.icd10, planted.gene, planted.variant,
    ]  # fmt: skip
    phenotypes.loc[0, "hpo_code"] = planted.hpo
    diagnoses.to_parquet(raw / "diagnoses.parquet", index=False)
    phenotypes.to_parquet(raw / "phenotypes.parquet", index=False)
    return planted


@pytest.fixture(scope="package")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    base = tmp_path_factory.mktemp("synth")
    ws, _ = init_workspace(base / "ws")
    set_policy(ws, LENIENT)
    raw = base / "raw"
    simulate_export(SimulationSpec(patients=PATIENTS, seed=3, format="parquet"), raw)
    planted = _plant(raw)
    key = fixed_key(base / "secrets" / "k.key", "synth test registry")
    ingest(ws, [raw], "e1", load_key(key))
    real, _ = read_tables(get_extract(ws, "e1").path)
    assert planted.orpha in set(real.diagnoses["orpha_code"])  # the planted rows were not quarantined
    with pytest.MonkeyPatch.context() as mp:
        fast(mp)
        twin = build_twin(ws, "e1", seed=0)
    return Registry(ws, raw, key, planted, real, twin)


def fast(mp: pytest.MonkeyPatch) -> None:
    """Smaller privacy subsamples: the figures are noisier, the mechanics the same."""
    mp.setattr(evaluate, "DCR_ROWS", 200)
    mp.setattr(evaluate, "NEW_ROW_SAMPLE", 100)
    mp.setattr(evaluate, "ATTACKS", 200)
