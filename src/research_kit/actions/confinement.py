"""The sandbox researcher code runs in: how it confines here, its waiver; the researchers' lab."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from research_kit.actions.acting import as_user
from research_kit.core import audit, users
from research_kit.core.catalog import transaction
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace
from research_kit.lab import run_lab
from research_kit.sandbox import modes
from research_kit.sandbox.limits import Limits


def check(ws: Workspace) -> tuple[modes.Confinement, Limits]:
    """How researcher code would be confined here, with which limits (a refusal when it cannot be)."""
    return modes.confinement(ws), Limits.from_policy(ws.policy().runner)


def waive(ws: Workspace, *, actor: str, reason: str) -> None:
    as_user(actor, modes.waive, ws, reason=reason)


def unwaive(ws: Workspace, *, actor: str) -> int:
    return as_user(actor, modes.unwaive, ws)


def lab(
    ws: Workspace,
    *,
    actor: str,
    home: Path,
    port: int,
    notebooks: Path,
    console: Console,
    open_browser: bool = False,
    twin: str | None = None,
) -> None:
    """A researcher's JupyterLab on the synthetic twin (``twin``: the kind or id ``rk.load()`` reads), in its
    sandbox, until Ctrl-C; it is theirs (its sandbox ledger holds the studies they own) and its start is audited."""
    from research_kit.tiers import twin_source

    with ws.catalog() as conn:
        users.require(conn, actor, Duty.START_LAB)  # the role first: its refusal says what is missing
    twin_source(ws, twin)  # no twin to read (none, only DP ones, not that one): refused before the start is audited
    with ws.catalog() as conn, transaction(conn):
        users.require(conn, actor, Duty.START_LAB)
        audit.append(conn, ws.audit_path, "lab.start", {"port": port, **({"twin": twin} if twin else {})}, actor=actor)
    as_user(
        actor, run_lab, ws, owner=actor, home=home, port=port, notebooks=notebooks, console=console,
        open_browser=open_browser, twin=twin,
    )  # fmt: skip
