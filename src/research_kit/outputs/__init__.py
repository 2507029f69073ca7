"""Outputs: declaring them from notebooks (``rk.outputs``), automatic gates, SDC checks, review and release.

``rk.outputs.table / figure / model`` are :mod:`research_kit.outputs.declare`'s,
imported on first use (the runner reads sidecars without loading pandas).
"""

from __future__ import annotations

__all__ = ["figure", "model", "table"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from research_kit.outputs import declare

        return getattr(declare, name)
    raise AttributeError(f"module 'research_kit.outputs' has no attribute {name!r}")
