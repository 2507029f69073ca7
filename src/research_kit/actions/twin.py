"""The synthetic twin of an extract: built, checked against the policy, published."""

from __future__ import annotations

from collections.abc import Callable

from research_kit.actions.acting import on_duty
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace
from research_kit.synth.publish import TwinResult
from research_kit.synth.publish import build_twin as _build_twin


def twin(
    ws: Workspace,
    *,
    actor: str,
    extract: str,
    model: str = "gaussian_copula",
    seed: int = 0,
    replace: bool = False,
    progress: Callable[[str], None] | None = None,
) -> TwinResult:
    """Build ``extract``'s synthetic twin; published only if every policy figure holds."""
    return on_duty(
        ws, actor, Duty.BUILD_TWIN, _build_twin, ws, extract, model=model, seed=seed, progress=progress,
        replace=replace,
    )  # fmt: skip
