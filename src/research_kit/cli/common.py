"""What every command group shares: the console, the acting user, the workspace, list options."""

from __future__ import annotations

from rich.console import Console

from research_kit.core.audit import current_actor
from research_kit.core.errors import BadInput
from research_kit.core.workspace import Workspace, open_workspace

console = Console(highlight=False)


def actor() -> str:
    """Who is acting: ``--as``, else ``$RESEARCH_KIT_USER``, else the login name."""
    return current_actor()


def workspace() -> Workspace:
    """The workspace: ``$RESEARCH_KIT_HOME``, else ``./.workspace``."""
    return open_workspace()


def numbers(text: str | None, what: str) -> list[float] | None:
    """``"1,2.5,3"`` as numbers; ``None`` when the option was not given."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"{what}: give numbers separated by commas, not {text!r}") from None
