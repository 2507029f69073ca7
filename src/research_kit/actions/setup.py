"""Setting up: a workspace and the pseudonymisation key."""

from __future__ import annotations

from pathlib import Path

from research_kit.actions.acting import as_user
from research_kit.core import identity, users
from research_kit.core.config import POLICY_FILE, AuthPolicy, Policy, TransparencyPolicy
from research_kit.core.errors import PolicyRefusal
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace, check_name, default_root, init_workspace
from research_kit.pseudonymise.keys import key_path, load_key, new_key

# Who a demo workspace's dataset description names: example.org, so that no one mistakes it for a real registry's.
DEMO_PUBLISHER = TransparencyPolicy(
    catalogue_publisher="Simulated national rare-disease registry (research-kit demo)",
    catalogue_contact="https://example.org/registry/contact",
    catalogue_landing_page="https://example.org/registry",
    catalogue_hdab="Simulated health data access body (research-kit demo)",
    catalogue_hdab_contact="https://example.org/hdab/contact",
)


def init(
    path: Path | None = None, *, steward: str | None = None, password: str | None = None, demo: bool = False
) -> tuple[Workspace, bool]:
    """Create (or bring up to date) a workspace, with its first ``steward``; it and whether it is new.

    ``demo``: a new workspace is made in demo mode (``[auth].mode = "demo"``: identities not verified).
    """
    if steward is not None:
        check_name(steward, "--steward")
    policy = Policy(auth=AuthPolicy(mode="demo"), transparency=DEMO_PUBLISHER) if demo else None
    ws, created = init_workspace(path, policy=policy)
    if steward is not None:
        if identity.has_users(ws):
            raise PolicyRefusal("this workspace has users already: a signed-in steward adds more (users add)")
        as_user(steward, users.add, ws, steward, "steward", password)
    return ws, created


def existing_workspace() -> Workspace | None:
    """The workspace the commands act on, if it has been made."""
    root = default_root()
    return Workspace(root) if (root / POLICY_FILE).exists() else None


def require_steward(ws: Workspace, name: str) -> None:
    with ws.catalog() as conn:
        users.require(conn, name, Duty.HANDLE_KEY)


def make_key(path: Path | None = None) -> tuple[Path, str]:
    """A new 256-bit key file (never over an existing one); its path and fingerprint."""
    return new_key(path, workspace_root=default_root())


def show_key(path: Path | None = None) -> tuple[Path, str]:
    """The key file's path and fingerprint (never the key), after checking it."""
    return key_path(path), load_key(path).fingerprint
