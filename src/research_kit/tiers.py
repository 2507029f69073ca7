"""Which data a call sees: the real extract (the runner's tier) or the synthetic twin (everyone else's).

Only the pipeline runner sets ``RESEARCH_KIT_TIER=real`` (with the extract in
``RESEARCH_KIT_EXTRACT``). Everywhere else, JupyterLab included, the same
calls read the latest published synthetic twin and charge the sandbox ledger,
so a notebook behaves the same on the twin and on the extract. The shell's
``research-kit query`` is the researcher's explicit door to the real extract.

**Which twin.** An extract may have two twins side by side: its default twin
(``synthetic/ID/``, the model of ``research-kit synth``) and a differentially
private one (``synthetic/ID@dp/``, ``--model aim|mst``). A call that does not
name one reads the newest *default* twin: a notebook never moves silently to
a DP twin because one was published later. ``rk.load(twin="dp")`` names the
newest DP twin, ``rk.load(twin="ID@dp")`` one twin; ``RESEARCH_KIT_TWIN``
(set by ``research-kit lab --twin dp|ID``) gives the twin that ``rk.load()``
and ``rk.dp`` read in the sandbox tier. Whichever twin answers, ``rk.dp``
charges the same study's sandbox ledger.

Inside the sandbox (``RESEARCH_KIT_VIEW`` set by the runner or the lab) no
workspace is reachable: ``rk.load()`` reads the action's input view (see
:mod:`research_kit.sandbox.views`) and :func:`current_policy` its copy of the
policy.

A published twin is a folder ``synthetic/ID/`` holding the four tables as
Parquet and ``twin.json`` (``extract``, ``content_hash``, ``reference_year``,
``published_at``, and since DP twins ``twin``: its id, ``kind``: ``default``
or ``dp``, and for a DP twin ``dp``: mechanism, epsilon, rho); only twins that
passed their privacy gate are published. A twin published before DP twins
has neither ``twin`` nor ``kind``: it is a default twin, its id its folder's name.
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
from research_kit.core.extracts import check_current, get_extract, list_extracts
from research_kit.core.workspace import Workspace, open_workspace
from research_kit.model.tables import TABLE_NAMES

Tier = Literal["real", "sandbox"]
TIERS: tuple[Tier, ...] = get_args(Tier)
TIER_ENV = "RESEARCH_KIT_TIER"
EXTRACT_ENV = "RESEARCH_KIT_EXTRACT"
STUDY_ENV = "RESEARCH_KIT_STUDY"
VIEW_ENV = "RESEARCH_KIT_VIEW"
TWIN_ENV = "RESEARCH_KIT_TWIN"  # the twin rk.load() reads in the sandbox tier: a kind ("default", "dp") or an id
TWIN_KINDS = ("default", "dp")
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
    """The extract named (or ``RESEARCH_KIT_EXTRACT``, or the newest registered one), for research use: refused
    if it was built before the latest opt-out (:func:`~research_kit.core.extracts.check_current`)."""
    extract_id = extract_id or os.environ.get(EXTRACT_ENV) or None
    if extract_id is None:
        extracts = list_extracts(ws)
        if not extracts:
            raise MissingData("no extract registered yet (run 'research-kit ingest')")
        extract = extracts[-1]
    else:
        extract = get_extract(ws, extract_id)
    check_current(ws, extract)  # research use: never an extract built before the latest opt-out
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
    twin id names (by content hash) and another (or none) is in place. Keyed by twin id (``synthetic/ID@dp``
    for a DP twin), so a staged DP twin never lands on its extract's default twin, nor the reverse.
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
            details = entry["details"]
            latest[str(details.get("twin") or details["extract"])] = str(details["twin_content_hash"])
    done = []
    for manifest in staged:
        facts = json.loads(manifest.read_text(encoding="utf-8"))
        twin_id, twin_hash = str(facts.get("twin") or facts.get("extract")), str(facts.get("content_hash"))
        if not _plain_name(twin_id):
            continue
        final = ws.synthetic_dir / twin_id
        in_place = final / TWIN_MANIFEST
        current = json.loads(in_place.read_text(encoding="utf-8")).get("content_hash") if in_place.is_file() else None
        if latest.get(twin_id) == twin_hash and current != twin_hash:
            try:
                place_twin(manifest.parent, final)
            except FileNotFoundError:  # its own publication moved it first
                continue
            log.warning("research-kit: finished publishing the twin %s (its publication stopped after "
                        "committing)", twin_id)  # fmt: skip
            done.append(twin_id)
    return done


def _plain_name(twin_id: str) -> bool:
    """A twin id names one folder of synthetic/: never a path, never the staging folder."""
    return bool(twin_id) and "/" not in twin_id and "\\" not in twin_id and not twin_id.startswith(".")


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


def twin_kind(manifest: dict[str, object]) -> str:
    """A published twin's kind: ``"dp"`` or ``"default"`` (a twin published before DP twins has no ``kind``)."""
    return str(manifest.get("kind") or "default")


def twin_label(twin_id: str, manifest: dict[str, object]) -> str:
    """``demo (default)``, ``demo@dp (DP: AIM, epsilon 4)``: a twin and its kind, as lists of twins show it."""
    if twin_kind(manifest) != "dp":
        return f"{twin_id} ({twin_kind(manifest)})"
    dp = manifest.get("dp")
    facts = dp if isinstance(dp, dict) else {}
    parts = [str(facts["mechanism"]).upper()] if facts.get("mechanism") else []
    if facts.get("epsilon") is not None:
        parts.append(f"epsilon {_figure(facts['epsilon'])}")
    elif facts.get("rho") is not None:
        parts.append(f"rho {_figure(facts['rho'])}")
    return f"{twin_id} (DP{': ' + ', '.join(parts) if parts else ''})"


def _figure(value: object) -> str:
    try:
        return f"{float(str(value)):g}"
    except ValueError:
        return str(value)


def chosen_twin() -> str | None:
    """The twin named by ``RESEARCH_KIT_TWIN`` (``research-kit lab --twin``), or None: the newest default one."""
    return os.environ.get(TWIN_ENV, "").strip() or None


def twin_source(ws: Workspace, twin: bool | str | None = None) -> Source:
    """A published twin: ``None``/``True``/``"default"`` the newest default twin, ``"dp"`` the newest DP twin,
    any other text the twin of that id; refused in one line (saying what is published) when there is none."""
    twins = dict(published_twins(ws))
    if not twins:
        raise MissingData("no synthetic twin published yet (the steward runs 'research-kit synth EXTRACT')")
    listing = ", ".join(twin_label(t, m) for t, m in twins.items())
    if not twin or twin is True or twin == "default":
        found = newest_twin_id(twins, "default")
        if found is None:
            raise MissingData(
                f"no default synthetic twin published, only DP ones ({listing}): read one with "
                "rk.load(twin='dp') or start the lab with 'research-kit lab --twin dp'"
            )
    elif twin == "dp":
        found = newest_twin_id(twins, "dp")
        if found is None:
            raise MissingData(
                f"no DP twin published (published: {listing}; the steward runs "
                "'research-kit synth EXTRACT --model aim')"
            )
    elif not isinstance(twin, str) or twin not in twins:
        raise MissingData(f"no published twin {twin!r} (published: {listing})")
    else:
        found = twin
    return _twin(ws, found, twins[found])


def newest_twin(ws: Workspace, kind: str, *, extract: str | None = None) -> Source | None:
    """The newest published twin of ``kind`` (of ``extract`` when given), or None."""
    twins = dict(published_twins(ws))
    found = newest_twin_id(twins, kind, extract)
    return None if found is None else _twin(ws, found, twins[found])


def newest_twin_id(twins: dict[str, dict[str, object]], kind: str, extract: str | None = None) -> str | None:
    """The newest of ``twins`` (oldest first, as :func:`published_twins` gives them) of ``kind``; of ``extract``
    too when given."""
    found = [
        t for t, m in twins.items() if twin_kind(m) == kind and (extract is None or str(m.get("extract")) == extract)
    ]
    return found[-1] if found else None


def _twin(ws: Workspace, twin_id: str, manifest: dict[str, object]) -> Source:
    return Source(
        "sandbox",
        f"twin:{twin_id}",
        ws.synthetic_dir / twin_id,
        str(manifest["content_hash"]),
        int(str(manifest["reference_year"])),
    )


def source_for(ws: Workspace, tier: Tier, name: str | None = None) -> Source:
    """The extract ``name`` (real tier), or the twin ``name`` (sandbox tier; by default the lab's choice,
    ``RESEARCH_KIT_TWIN``, else the newest default twin)."""
    return real_source(ws, name) if tier == "real" else twin_source(ws, name or chosen_twin())


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


VIEW_TWINS = {"default": "twin", "dp": "twins/dp"}  # where an input view holds each kind of twin


def view_source(view: Path, *, twin: bool | str = False) -> tuple[Source, dict[str, list[str] | None]]:
    """(the source in the view, the tables it holds, each with the columns its permit covers or None for all):
    the action's extract, or with ``twin`` one of its twins (``True``/``"default"``: the default twin at
    ``twin/``; ``"dp"``: the DP twin at ``twins/dp/``; or an id)."""
    path = view / VIEW_MANIFEST
    if not path.is_file():
        raise MissingData(f"{VIEW_ENV}={view}: not an input view (no {VIEW_MANIFEST})")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if twin is not False:
        return _view_twin(view, manifest, twin), dict.fromkeys(TABLES)
    tier: Tier = "real" if manifest["tier"] == "real" else "sandbox"
    source = Source(
        tier, str(manifest["extract"]), view / "extract", str(manifest["content_hash"]), int(manifest["reference_year"])
    )
    return source, dict(manifest["tables"])


def _view_twin(view: Path, manifest: dict[str, Any], twin: bool | str) -> Source:
    """The twin ``twin`` names among those of the view (a view written before DP twins has only ``twin``)."""
    held: dict[str, dict[str, Any]] = {k: f for k, f in (manifest.get("twins") or {}).items() if f}
    if manifest.get("twin"):
        held.setdefault("default", manifest["twin"])
    names = {str(f["name"]).removeprefix("twin:"): kind for kind, f in held.items()}
    kind = "default" if twin is True else str(twin) if twin in TWIN_KINDS else names.get(str(twin), "")
    if kind not in held:
        listing = ", ".join(f"{n} ({k})" for n, k in names.items()) or "none"
        if twin is True or twin == "default":
            raise MissingData(
                "no default synthetic twin was published when this action started: rk.load(twin=True) has none "
                f"(this action's twins: {listing})"
            )
        raise MissingData(f"rk.load(twin={twin!r}): this action's view holds no such twin (its twins: {listing})")
    facts = held[kind]
    folder = view / str(facts.get("folder") or VIEW_TWINS.get(kind, "twin"))
    return Source("sandbox", str(facts["name"]), folder, str(facts["content_hash"]), int(facts["reference_year"]))


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
    twin: bool | str = False,
    workspace: str | Path | None = None,
) -> Any:
    """The registry's tables as pandas DataFrames: the synthetic twin, or the real extract under the runner.

    ``rk.load()`` gives ``{"patients": df, "diagnoses": df, ...}``;
    ``rk.load("patients")`` gives one table (``columns`` to read fewer).
    ``twin`` reads a twin whatever the tier (a study that trains on the twin
    and tests on the real extract, for instance): ``True`` the newest default
    twin, ``"dp"`` the newest differentially private one, ``"ID"`` that twin.
    Without it, outside the runner, ``rk.load()`` reads the twin the lab was
    started on (``research-kit lab --twin``), else the newest default twin.
    """
    import pandas as pd

    if table is not None and table not in TABLES:
        raise BadInput(f"rk.load({table!r}): no such table (tables: {', '.join(TABLES)})")
    view = view_folder()
    if view is not None and workspace is None:
        source, readable = view_source(view, twin=twin)
    else:
        ws = open_workspace(Path(workspace) if workspace is not None else None)
        source = source_for(ws, current_tier()) if twin is False else twin_source(ws, twin)
        readable = dict.fromkeys(TABLES)
    names = tuple(t for t in TABLES if t in readable) if table is None else (table,)
    if table is not None and table not in readable:
        raise MissingData(
            f"rk.load({table!r}): this action's view does not hold that table (its study's data permit does not "
            "cover it)"
        )
    frames: dict[str, pd.DataFrame] = {}
    for name in names:
        path = source.folder / f"{name}.parquet"
        if not path.is_file():
            raise MissingData(f"{source.name}: {name}.parquet is missing")
        try:
            # A table its permit covers some columns of holds those only: it gains no column of a later schema.
            projected = readable[name] is not None
            frames[name] = pd.read_parquet(path, columns=columns) if projected else _read(name, path, columns)
        except (KeyError, ValueError) as exc:  # a column that does not exist
            raise BadInput(f"rk.load({name!r}, columns={columns}): {str(exc).splitlines()[0]}") from None
    return frames if table is None else frames[table]
