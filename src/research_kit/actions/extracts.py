"""Extracts: ingest a raw export, list extracts, measure their risk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from research_kit.actions.acting import as_user, on_duty
from research_kit.core import users
from research_kit.core.extracts import Extract
from research_kit.core.extracts import list_extracts as _list
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace
from research_kit.ingest.pipeline import IngestResult
from research_kit.ingest.pipeline import ingest as _ingest
from research_kit.pseudonymise.assessment import Assessment, assess_extract
from research_kit.pseudonymise.keys import load_key

Step = Callable[[str], None]


def ingest(
    ws: Workspace, *, actor: str, raw: list[Path], extract: str, key_file: Path | None = None, step: Step | None = None
) -> IngestResult:
    """Validate, quarantine and pseudonymise ``raw`` into the new extract ``extract``."""
    with ws.catalog() as conn:
        users.require(conn, actor, Duty.INGEST)  # before the key is read
    key = load_key(key_file)
    return as_user(actor, _ingest, ws, raw, extract, key, step=step)


def list_extracts(ws: Workspace) -> list[Extract]:
    return _list(ws)


def risk(ws: Workspace, *, actor: str, extract: str, enforce_k: int | None = None) -> Assessment:
    """The re-identification risk report of ``extract`` (and with ``enforce_k``, what enforcing k costs)."""
    return on_duty(ws, actor, Duty.ASSESS_RISK, assess_extract, ws, extract, enforce=enforce_k)
