"""Extracts: ingest a raw export (or mapped sources), list extracts, measure their risk and data quality."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_kit.actions.acting import as_user, on_duty
from research_kit.core import users
from research_kit.core.errors import BadInput, MissingData
from research_kit.core.extracts import Extract, get_extract
from research_kit.core.extracts import list_extracts as _list
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace
from research_kit.ingest.mapping import KINDS, Mapping, default_mapping, load_mapping
from research_kit.ingest.pipeline import IngestResult
from research_kit.ingest.pipeline import ingest as _ingest
from research_kit.ingest.sources import draft
from research_kit.pseudonymise.assessment import Assessment, assess_extract
from research_kit.pseudonymise.keys import load_key

Step = Callable[[str], None]


def ingest(
    ws: Workspace,
    *,
    actor: str,
    raw: list[Path],
    extract: str,
    key_file: Path | None = None,
    step: Step | None = None,
    mappings: list[Path] | None = None,
    kind: str | None = None,
) -> IngestResult:
    """Validate, quarantine and pseudonymise ``raw`` into the new extract ``extract``.

    ``mappings`` (one per source, in order) say how each source is read; without them, ``kind`` reads every
    source with its kind's usual fields; without either, ``raw`` is one export in the registry's own layout.
    """
    with ws.catalog() as conn:
        users.require(conn, actor, Duty.INGEST)  # before the key is read
    read = _mappings(raw, mappings, kind)
    key = load_key(key_file)
    return as_user(actor, _ingest, ws, raw, extract, key, step=step, mappings=read)


def _mappings(raw: list[Path], files: list[Path] | None, kind: str | None) -> list[Mapping] | None:
    if files:
        if len(files) != len(raw):
            raise BadInput(f"{len(raw)} sources but {len(files)} mappings: give one --mapping per source, in order")
        missing = [s for s in raw if not s.exists()]
        if missing:
            raise MissingData(f"{missing[0]}: no such file or folder")
        loaded = [load_mapping(f) for f in files]
        other = next((f for f, m in zip(files, loaded, strict=True) if kind is not None and m.kind != kind), None)
        if other is not None:  # --format beside a mapping only confirms the mapping's kind
            raise BadInput(f"{other}: source.kind is not {kind!r}, as --format says")
        return loaded
    if kind is None or (kind == "registry" and len(raw) == 1):
        return None
    if kind not in KINDS:
        raise BadInput(f"--format {kind!r}: use one of {', '.join(KINDS)}")
    return [default_mapping(kind, name=f"{kind}-{i + 1}" if len(raw) > 1 else kind) for i in range(len(raw))]


def quality(ws: Workspace, *, actor: str, extract: str) -> QualityFiles:
    """The common-data-set coverage and quality report of ``extract`` (HTML with a chart, and JSON)."""
    return on_duty(ws, actor, Duty.REPORT_QUALITY, _quality, ws, extract)


def _quality(ws: Workspace, extract_id: str) -> QualityFiles:
    from research_kit.ingest.quality import quality_report, write_quality

    report = quality_report(get_extract(ws, extract_id))
    out = ws.root / "reports" / "quality" / extract_id
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    html, json_path = write_quality(report, out)
    ws.audit("extract.quality", extract=extract_id)
    return QualityFiles(extract_id, report, html, json_path)


@dataclass(frozen=True)
class QualityFiles:
    extract: str
    report: Any
    html: Path
    json: Path


def draft_mapping(ws: Workspace, *, actor: str, source: Path, kind: str | None, show_values: list[str]) -> str:
    """A mapping proposed for ``source`` (the steward's: it reads an identifiable export). Shown values are
    audited (which columns, never the values)."""
    with ws.catalog() as conn:
        users.require(conn, actor, Duty.INGEST)
    ws.quarantine_dir.mkdir(mode=0o700, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".draft-", dir=ws.quarantine_dir))  # copies of the source stay inside
    try:
        text = as_user(actor, draft, source, kind, show_values, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if show_values:
        ws.audit("mapping.show_values", source=source.name, columns=sorted(show_values))
    return text


def list_extracts(ws: Workspace) -> list[Extract]:
    return _list(ws)


def risk(ws: Workspace, *, actor: str, extract: str, enforce_k: int | None = None) -> Assessment:
    """The re-identification risk report of ``extract`` (and with ``enforce_k``, what enforcing k costs)."""
    return on_duty(ws, actor, Duty.ASSESS_RISK, assess_extract, ws, extract, enforce=enforce_k)
