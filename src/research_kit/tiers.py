"""Which data a call sees: the real extract (the runner's tier) or the synthetic twin (everyone else's).

Only the pipeline runner sets ``RESEARCH_KIT_TIER=real`` (with the extract in
``RESEARCH_KIT_EXTRACT``). Everywhere else, JupyterLab included, the same
calls read the latest published synthetic twin and charge the sandbox ledger,
so a notebook behaves the same on the twin and on the extract. The shell's
``research-kit query`` is the researcher's explicit door to the real extract.

Inside the sandbox (``RESEARCH_KIT_VIEW`` set by the runner or the lab) no
workspace is reachable: ``rk.load()`` reads the action's input view (see
:mod:`research_kit.sandbox.views`) and :func:`current_policy` its copy of the
policy.

A published twin is a folder ``synthetic/ID/`` holding the four tables as
Parquet and ``twin.json`` (``extract``, ``content_hash``, ``reference_year``,
``published_at``); only twins that passed their privacy gate are published.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from research_kit.core.config import Policy, load_policy
from research_kit.core.errors import BadInput, MissingData
from research_kit.core.extracts import get_extract, list_extracts
from research_kit.core.workspace import Workspace, open_workspace
from research_kit.model.tables import TABLE_NAMES

Tier = Literal["real", "sandbox"]
TIERS: tuple[Tier, ...] = get_args(Tier)
TIER_ENV = "RESEARCH_KIT_TIER"
EXTRACT_ENV = "RESEARCH_KIT_EXTRACT"
STUDY_ENV = "RESEARCH_KIT_STUDY"
VIEW_ENV = "RESEARCH_KIT_VIEW"
TWIN_MANIFEST = "twin.json"
VIEW_MANIFEST = "view.json"


@dataclass(frozen=True)
class Source:
    tier: Tier
    name: str  # the extract's id, or "twin:ID"
    folder: Path
    content_hash: str
    reference_year: int


def current_tier() -> Tier:
    value = os.environ.get(TIER_ENV, "synthetic").strip().lower()
    if value == "real":
        return "real"
    if value in ("synthetic", "sandbox", ""):
        return "sandbox"
    raise BadInput(f"{TIER_ENV}={value!r}: use 'real' (set by the pipeline runner) or 'synthetic'")


def real_source(ws: Workspace, extract_id: str | None = None) -> Source:
    """The extract named (or ``RESEARCH_KIT_EXTRACT``, or the newest registered one)."""
    extract_id = extract_id or os.environ.get(EXTRACT_ENV) or None
    if extract_id is None:
        extracts = list_extracts(ws)
        if not extracts:
            raise MissingData("no extract registered yet (run 'research-kit ingest')")
        extract = extracts[-1]
    else:
        extract = get_extract(ws, extract_id)
    year = datetime.fromisoformat(extract.created_at).year
    return Source("real", extract.id, extract.path, extract.content_hash, year)


def published_twins(ws: Workspace) -> list[tuple[str, dict[str, object]]]:
    """(id, manifest) of every published twin, oldest first."""
    twins = []
    if ws.synthetic_dir.is_dir():
        for folder in ws.synthetic_dir.iterdir():
            manifest = folder / TWIN_MANIFEST
            if manifest.is_file():
                twins.append((folder.name, json.loads(manifest.read_text(encoding="utf-8"))))
    return sorted(twins, key=lambda t: (str(t[1].get("published_at", "")), t[0]))


def twin_source(ws: Workspace, twin_id: str | None = None) -> Source:
    twins = dict(published_twins(ws))
    if not twins:
        raise MissingData("no synthetic twin published yet (the steward runs 'research-kit synth EXTRACT')")
    if twin_id is None:
        twin_id = list(twins)[-1]
    elif twin_id not in twins:
        raise MissingData(f"no published twin {twin_id!r} (published: {', '.join(twins)})")
    manifest = twins[twin_id]
    return Source(
        "sandbox",
        f"twin:{twin_id}",
        ws.synthetic_dir / twin_id,
        str(manifest["content_hash"]),
        int(str(manifest["reference_year"])),
    )


def source_for(ws: Workspace, tier: Tier, name: str | None = None) -> Source:
    return real_source(ws, name) if tier == "real" else twin_source(ws, name)


TABLES = TABLE_NAMES


def view_folder() -> Path | None:
    """The input view this process was given (inside the sandbox), or None."""
    value = os.environ.get(VIEW_ENV)
    return Path(value) if value else None


def current_policy(workspace: str | Path | None = None) -> Policy:
    """The policy in force: the view's copy inside the sandbox, else the workspace's."""
    view = view_folder()
    if view is not None and workspace is None:
        return load_policy(view)
    return open_workspace(Path(workspace) if workspace is not None else None).policy()


def view_source(view: Path, *, twin: bool = False) -> tuple[Source, set[str]]:
    """(the source in the view, the tables it holds): the action's extract, or with ``twin`` the twin."""
    path = view / VIEW_MANIFEST
    if not path.is_file():
        raise MissingData(f"{VIEW_ENV}={view}: not an input view (no {VIEW_MANIFEST})")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if twin:
        facts = manifest.get("twin")
        if not facts:
            raise MissingData("no synthetic twin was published when this action started: rk.load(twin=True) has none")
        return Source(
            "sandbox", str(facts["name"]), view / "twin", str(facts["content_hash"]), int(facts["reference_year"])
        ), set(TABLES)
    tier: Tier = "real" if manifest["tier"] == "real" else "sandbox"
    source = Source(
        tier, str(manifest["extract"]), view / "extract", str(manifest["content_hash"]), int(manifest["reference_year"])
    )
    return source, set(manifest["tables"])


def load(
    table: str | None = None,
    *,
    columns: list[str] | None = None,
    twin: bool = False,
    workspace: str | Path | None = None,
) -> Any:
    """The registry's tables as pandas DataFrames: the synthetic twin, or the real extract under the runner.

    ``rk.load()`` gives ``{"patients": df, "diagnoses": df, ...}``;
    ``rk.load("patients")`` gives one table (``columns`` to read fewer).
    ``twin=True`` reads the newest published twin whatever the tier (a study
    that trains on the twin and tests on the real extract, for instance).
    """
    import pandas as pd

    if table is not None and table not in TABLES:
        raise BadInput(f"rk.load({table!r}): no such table (tables: {', '.join(TABLES)})")
    view = view_folder()
    if view is not None and workspace is None:
        source, readable = view_source(view, twin=twin)
    else:
        ws = open_workspace(Path(workspace) if workspace is not None else None)
        source = twin_source(ws) if twin else source_for(ws, current_tier())
        readable = set(TABLES)
    names = tuple(t for t in TABLES if t in readable) if table is None else (table,)
    if table is not None and table not in readable:
        raise MissingData(f"rk.load({table!r}): this action's view does not hold that table")
    frames: dict[str, pd.DataFrame] = {}
    for name in names:
        path = source.folder / f"{name}.parquet"
        if not path.is_file():
            raise MissingData(f"{source.name}: {name}.parquet is missing")
        try:
            frames[name] = pd.read_parquet(path, columns=columns)
        except (KeyError, ValueError) as exc:  # a column that does not exist
            raise BadInput(f"rk.load({name!r}, columns={columns}): {str(exc).splitlines()[0]}") from None
    return frames if table is None else frames[table]
