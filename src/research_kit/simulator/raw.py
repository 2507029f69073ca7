"""Raw exports in a workspace: simulated ones are written under ``raw/`` and registered.

Raw exports are identifiable: they stay under the workspace's ``raw/`` folder
(owner-only), and only their counts, never their rows, reach the catalog and
the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from research_kit.core.catalog import transaction
from research_kit.core.errors import BadInput
from research_kit.core.workspace import Workspace, check_name
from research_kit.simulator.export import SimulationResult, SimulationSpec, simulate_export


def simulate_raw_export(
    ws: Workspace,
    spec: SimulationSpec,
    *,
    name: str | None = None,
    out: Path | None = None,
    replace: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[str, SimulationResult]:
    """Simulate an export into the workspace (or ``out``), register it and audit it."""
    export_id = check_name(name or spec.default_name(), "export name")
    target = out if out is not None else ws.raw_dir / export_id
    where, root = target.resolve(), ws.root.resolve()
    if root.is_relative_to(where) or (where.is_relative_to(root) and not where.is_relative_to(ws.raw_dir.resolve())):
        raise BadInput(f"--out {target}: it holds or lies in the workspace {root}; choose a folder outside it")
    result = simulate_export(spec, target, replace=replace, progress=progress)
    with ws.catalog() as conn, transaction(conn):
        conn.execute(
            "INSERT OR REPLACE INTO raw_exports (id, path, source, format, patients, seed, faults, created_at) "
            "VALUES (?, ?, 'simulated', ?, ?, ?, ?, ?)",
            (
                export_id,
                str(target.resolve()),
                spec.format,
                spec.patients,
                spec.seed,
                result.faults,
                datetime.now(UTC).isoformat(timespec="seconds"),
            ),
        )
    ws.audit(
        "raw.simulate",
        export=export_id,
        patients=spec.patients,
        seed=spec.seed,
        format=spec.format,
        faults=result.faults,
        rows=result.rows,
    )
    return export_id, result
