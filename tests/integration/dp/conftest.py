from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from research_kit.core.extracts import get_extract
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.ingest.pipeline import ingest
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.tiers import Source, real_source


@dataclass
class Registry:
    ws: Workspace
    source: Source


def _extract(base: Path, patients: int, seed: int) -> Registry:
    ws, _ = init_workspace(base / "ws")
    # Large grants for the tests' noiseless releases; the default ceiling is the committee's.
    policy = ws.policy_path.read_text(encoding="utf-8")
    ws.policy_path.write_text(policy.replace("max_study_rho = 5.0", "max_study_rho = 1000000.0"), encoding="utf-8")
    raw = base / "raw"
    simulate_export(SimulationSpec(patients=patients, seed=seed, format="parquet"), raw)
    key_path, _ = new_key(base / "secrets" / "k.key")
    ingest(ws, [raw], "e1", load_key(key_path))
    return Registry(ws, real_source(ws, "e1"))


@pytest.fixture(scope="package")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return _extract(tmp_path_factory.mktemp("dp"), 1_500, 5)


def copy_extract(registry: Registry, folder: Path, name: str, content_hash: str) -> Source:
    """The registry's extract copied to ``folder``: a source to edit (tests of bounding, keys, tiers)."""
    shutil.copytree(get_extract(registry.ws, "e1").path, folder)
    return Source(registry.source.tier, name, folder, content_hash, registry.source.reference_year)
