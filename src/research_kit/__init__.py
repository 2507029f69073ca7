"""research-kit: a research workspace for a national rare-disease registry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("research-kit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "analysis", "dp", "load", "outputs"]


def __getattr__(name: str) -> object:
    # The notebook API (rk.dp.count, ...) is imported on first use: the CLI need not load OpenDP.
    import importlib

    if name == "analysis":
        return importlib.import_module("research_kit.analysis")
    if name == "dp":
        return importlib.import_module("research_kit.dp")
    if name == "outputs":
        return importlib.import_module("research_kit.outputs")
    if name == "load":
        return importlib.import_module("research_kit.tiers").load
    raise AttributeError(f"module 'research_kit' has no attribute {name!r}")
