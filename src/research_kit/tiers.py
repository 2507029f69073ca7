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

import ctypes
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from research_kit.core import audit
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
log = logging.getLogger("research_kit")
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


STAGING = ".staging"  # synthetic/.staging/: twins being written, never listed as published


def place_twin(staged: Path, final: Path) -> None:
    """Put the staged twin at ``final``: an atomic exchange with the twin there (Linux renameat2), else a rename.

    After an exchange ``staged`` holds the twin replaced; its owner removes it.
    """
    if not final.exists():
        os.replace(staged, final)
    elif not _exchange(staged, final):
        old = staged.with_name(f"old-{staged.name}")
        os.replace(final, old)  # where the filesystem cannot exchange: no twin for an instant
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (Linux renameat2 with RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return int(renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)) == 0


def finish_publications(ws: Workspace) -> list[str]:
    """Move into place each twin whose publication committed but whose folder a kill left staged; their ids.

    A staged twin is moved only if it is the one the audit log's last committed ``synth.publish`` of its
    extract names (by content hash) and another (or none) is in place.
    """
    root = ws.synthetic_dir / STAGING
    staged = sorted(root.glob(f"*/{TWIN_MANIFEST}")) if root.is_dir() else []
    if not staged or not ws.audit_path.exists():
        return []
    with ws.catalog() as conn:  # opening it cuts an uncommitted line first
        anchored, _ = audit.head(conn)
    latest: dict[str, str] = {}
    for entry in audit.read_entries(ws.audit_path):
        if entry.get("action") == "synth.publish" and int(entry.get("seq", anchored + 1)) <= anchored:
            latest[str(entry["details"]["extract"])] = str(entry["details"]["twin_content_hash"])
    done = []
    for manifest in staged:
        facts = json.loads(manifest.read_text(encoding="utf-8"))
        extract_id, twin_hash = str(facts.get("extract")), str(facts.get("content_hash"))
        final = ws.synthetic_dir / extract_id
        in_place = final / TWIN_MANIFEST
        current = json.loads(in_place.read_text(encoding="utf-8")).get("content_hash") if in_place.is_file() else None
        if latest.get(extract_id) == twin_hash and current != twin_hash:
            try:
                place_twin(manifest.parent, final)
            except FileNotFoundError:  # its own publication moved it first
                continue
            log.warning("research-kit: finished publishing the twin of %s (its publication stopped after "
                        "committing)", extract_id)  # fmt: skip
            done.append(extract_id)
    return done


def published_twins(ws: Workspace) -> list[tuple[str, dict[str, object]]]:
    """(id, manifest) of every published twin, oldest first (a publication a kill interrupted finished first)."""
    finish_publications(ws)
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


def _read(table: str, path: Path, columns: list[str] | None) -> Any:
    """One table as pandas, in the current schema (an older extract's table gains the columns added since)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from research_kit.model.extract_schema import ADDED, conform_pandas

    if columns is None:
        return conform_pandas(table, pd.read_parquet(path))
    stored = set(pq.read_schema(path).names)
    later = [c for c in columns if c not in stored and c in ADDED.get(table, {})]
    frame = pd.read_parquet(path, columns=[c for c in columns if c not in later])
    return conform_pandas(table, frame)[columns] if later else frame


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
            frames[name] = _read(name, path, columns)
        except (KeyError, ValueError) as exc:  # a column that does not exist
            raise BadInput(f"rk.load({name!r}, columns={columns}): {str(exc).splitlines()[0]}") from None
    return frames if table is None else frames[table]
