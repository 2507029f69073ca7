"""research-kit: a research workspace for a national rare-disease registry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("research-kit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
