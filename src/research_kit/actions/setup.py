"""Setting up: a workspace and the pseudonymisation key."""

from __future__ import annotations

from pathlib import Path

from research_kit.core.workspace import Workspace, default_root, init_workspace
from research_kit.pseudonymise.keys import key_path, load_key, new_key


def init(path: Path | None = None) -> tuple[Workspace, bool]:
    """Create (or bring up to date) a workspace; it and whether it is new."""
    return init_workspace(path)


def make_key(path: Path | None = None) -> tuple[Path, str]:
    """A new 256-bit key file (never over an existing one); its path and fingerprint."""
    return new_key(path, workspace_root=default_root())


def show_key(path: Path | None = None) -> tuple[Path, str]:
    """The key file's path and fingerprint (never the key), after checking it."""
    return key_path(path), load_key(path).fingerprint
