"""research-kit: a research workspace for a national rare-disease registry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("research-kit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "dp"]


def __getattr__(name: str) -> object:
    # The notebook API (rk.dp.count, ...) is imported on first use: the CLI need not load OpenDP.
    if name == "dp":
        import importlib

        return importlib.import_module("research_kit.dp")
    raise AttributeError(f"module 'research_kit' has no attribute {name!r}")
