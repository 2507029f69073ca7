"""``rk.dp`` in the sandbox tier answers from the twin the lab chose and charges the same study's ledger.

A default twin and a DP twin (two extracts' tables stand in for them: what is under test is which one answers
and which ledger pays, not how they were made).
"""

from __future__ import annotations

import json
import shutil

import pytest
from tests.conftest import Project

import research_kit as rk
from research_kit.core.extracts import get_extract
from research_kit.dp import ledger
from research_kit.tiers import TWIN_ENV, TWIN_MANIFEST


def publish(project: Project, extract: str, twin_id: str, kind: str, at: str) -> None:
    folder = project.ws.synthetic_dir / twin_id
    shutil.copytree(get_extract(project.ws, extract).path, folder)
    manifest = {"extract": extract, "twin": twin_id, "kind": kind, "content_hash": f"hash-{twin_id}",
                "reference_year": 2026, "published_at": at}  # fmt: skip
    (folder / TWIN_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def test_rk_dp_reads_the_chosen_twin_and_charges_the_same_sandbox_ledger(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(project, "e1", "e1", "default", "2026-02-01T00:00:00+00:00")
    publish(project, "e2", "e1@dp", "dp", "2026-03-01T00:00:00+00:00")
    monkeypatch.setenv("RESEARCH_KIT_STUDY", "delay")
    monkeypatch.delenv(TWIN_ENV, raising=False)
    on_default = rk.dp.count("patients", by="sex", rho=0.01)
    assert on_default.source == "twin:e1"  # the DP twin is newer: still the default one unless chosen
    after_default = ledger.balance(project.ws, "delay", "sandbox").spent
    monkeypatch.setenv(TWIN_ENV, "dp")  # research-kit lab --twin dp
    on_dp = rk.dp.count("patients", by="sex", rho=0.01)
    assert on_dp.source == "twin:e1@dp"
    assert on_dp.tier == on_default.tier == "sandbox"
    assert ledger.balance(project.ws, "delay", "sandbox").spent == pytest.approx(2 * after_default)
    assert ledger.balance(project.ws, "delay", "real").spent == 0
