"""Where a workspace keeps its files, and how to create and find one.

The data root (default ``.workspace/`` in the current directory, moved by
``RESEARCH_KIT_HOME``) holds sensitive state: raw exports, extracts, the
catalog and the audit log. It is created readable by its owner only.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from research_kit.core import audit, catalog
from research_kit.core.config import POLICY_FILE, Policy, load_policy, render_policy
from research_kit.core.errors import BadInput, MissingData

HOME_ENV = "RESEARCH_KIT_HOME"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_HOME = ".workspace"


def default_root() -> Path:
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME)


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def policy_path(self) -> Path:
        return self.root / POLICY_FILE

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def audit_path(self) -> Path:
        return self.root / "audit.jsonl"

    @property
    def raw_dir(self) -> Path:
        """Identifiable raw exports (steward only)."""
        return self.root / "raw"

    @property
    def extracts_dir(self) -> Path:
        return self.root / "extracts"

    @property
    def quarantine_dir(self) -> Path:
        """Rows refused at ingest, with their raw values and reasons (steward only)."""
        return self.root / "quarantine"

    @property
    def synthetic_dir(self) -> Path:
        """Synthetic twins that passed their privacy checks: what researchers' notebooks read."""
        return self.root / "synthetic"

    @property
    def cache_dir(self) -> Path:
        """Derived files that can be rebuilt at any time (e.g. the DP query views of an extract)."""
        return self.root / "cache"

    @property
    def scratch_dir(self) -> Path:
        """Temporary files of running steps; cleared by the next run."""
        return self.root / "tmp"

    def policy(self) -> Policy:
        return load_policy(self.root)

    @contextmanager
    def catalog(self) -> Iterator[sqlite3.Connection]:
        """The catalog, its audit log first repaired if a crash left a line past its anchor (one ``stat``)."""
        conn = catalog.connect(self.catalog_path)
        try:
            audit.repair(conn, self.audit_path)
            yield conn
        finally:
            conn.close()

    def audit(self, action: str, **details: object) -> audit.AuditEntry:
        """Append an entry to the hash-chained audit log."""
        with self.catalog() as conn:
            return audit.append(conn, self.audit_path, action, details)


def check_name(value: str, what: str) -> str:
    """A name that becomes a folder (an export, an extract): letters, digits, '.', '_', '-'; no path tricks."""
    if not _NAME.match(value):
        raise BadInput(f"{what} {value!r}: use letters, digits, '.', '_' or '-' (at most 64, not starting with '.')")
    return value


def open_workspace(path: Path | None = None) -> Workspace:
    """The workspace at ``path`` (or the default root); it must have been initialised."""
    root = (path or default_root()).resolve()
    if not (root / POLICY_FILE).is_file():
        raise MissingData(f"{root}: no workspace here (run 'research-kit init')")
    return Workspace(root)


def init_workspace(path: Path | None = None, *, policy: Policy | None = None) -> tuple[Workspace, bool]:
    """Create (or bring up to date) a workspace; return it and whether it is new.

    A new workspace gets ``policy`` (default: the defaults); an existing policy file is never overwritten;
    the catalog is migrated.
    """
    root = (path or default_root()).resolve()
    if root.exists() and not root.is_dir():
        raise BadInput(f"{root}: exists and is not a directory")
    created = not (root / POLICY_FILE).exists()
    if created and root.is_dir() and any(root.iterdir()):
        raise BadInput(f"{root}: not empty and not a workspace; choose a new or empty folder")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if created:
        root.chmod(0o700)  # an empty folder made by someone else may be readable by others
    ws = Workspace(root)
    if created:
        tmp = ws.policy_path.with_suffix(".toml.tmp")
        tmp.write_text(render_policy(policy), encoding="utf-8")
        os.replace(tmp, ws.policy_path)
    else:
        ws.policy()  # an existing policy must still be valid
    for sub in (ws.raw_dir, ws.extracts_dir, ws.quarantine_dir, ws.scratch_dir):
        sub.mkdir(mode=0o700, exist_ok=True)
    if created:
        ws.audit("workspace.init", policy=ws.policy().as_dict())
    else:
        with ws.catalog():
            pass  # migrates the catalog forward
    return ws, created
