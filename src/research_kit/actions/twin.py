"""The synthetic twin of an extract: built, checked against the policy, published."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from research_kit.actions.acting import on_duty
from research_kit.core.errors import BadInput
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace
from research_kit.synth.publish import TwinResult
from research_kit.synth.publish import build_twin as _build_twin

if TYPE_CHECKING:  # the export loads protobuf; building a twin does not need it
    from research_kit.synth.phenopackets_export import ExportResult


def twin(
    ws: Workspace,
    *,
    actor: str,
    extract: str,
    model: str = "gaussian_copula",
    seed: int = 0,
    replace: bool = False,
    progress: Callable[[str], None] | None = None,
    rho: str | None = None,
    epsilon: str | None = None,
) -> TwinResult:
    """Build ``extract``'s synthetic twin (a DP one with ``model`` aim or mst, at ``rho`` or ``epsilon``, charged to
    the registry's DP-twin budget); published only if every policy figure holds."""
    return on_duty(
        ws, actor, Duty.BUILD_TWIN, _build_twin, ws, extract, model=model, seed=seed, progress=progress,
        replace=replace, rho=rho, epsilon=epsilon,
    )  # fmt: skip


def export(ws: Workspace, *, actor: str, twin_id: str, out: Path, fmt: str = "phenopackets") -> ExportResult:
    """Write published twin ``twin_id`` as ``fmt`` (phenopackets: validated by the phenopackets package)."""
    if fmt != "phenopackets":
        raise BadInput(f"--format {fmt!r}: a twin exports as phenopackets")
    return on_duty(ws, actor, Duty.EXPORT_TWIN, _export, ws, twin_id, out)


def _export(ws: Workspace, twin_id: str, out: Path) -> ExportResult:
    from research_kit.synth.phenopackets_export import export_phenopackets
    from research_kit.tiers import twin_source

    source = twin_source(ws, twin_id)  # refuses an unpublished twin in one line
    manifest = json.loads((source.folder / "twin.json").read_text(encoding="utf-8"))
    done = export_phenopackets(
        source.folder, out, twin_name=twin_id, reference_year=int(manifest["reference_year"]), created_by="research-kit"
    )
    ws.audit("twin.export", twin=twin_id, format="phenopackets", patients=done.count)
    return done
