"""Content keys: an action reruns only when something it depends on changed.

An action's key is the SHA-256 of its study, its declared outputs, its
notebook's bytes, its parameters (canonical JSON), the input extract (id and
content hash), the study's pseudonyms (the fingerprint of its secret: the
identifiers its view shows), the files its ``needs`` handed it (by their
hashes) and the environment it runs in. The
environment is every installed distribution's name and version, Python's
version and the research-kit sources (the DP helpers and ``rk.load`` run in
the notebook), read from the file system without importing anything, so
that a run where nothing changed costs a few milliseconds per action.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any


def canonical(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class Environment:
    hash: str
    packages: dict[str, str]  # distribution name -> version, plus python and research-kit's sources


def _distributions(paths: Iterable[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in paths:
        folder = Path(entry)
        if not folder.is_dir():
            continue
        for child in folder.iterdir():
            if child.suffix not in (".dist-info", ".egg-info"):
                continue
            name, _, version = child.stem.partition("-")
            if name and version:
                found.setdefault(name.lower().replace("_", "-"), version)
    return found


def _sources_hash() -> str:
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@cache
def environment() -> Environment:
    """The packages this interpreter sees (kernels run with the same interpreter)."""
    packages = _distributions(sys.path)
    packages["python"] = platform.python_version()
    packages["research-kit-sources"] = _sources_hash()[:16]
    return Environment(hashlib.sha256(canonical(packages).encode()).hexdigest(), packages)


def action_key(
    *,
    study: str,
    outputs: list[tuple[str, str, str]],
    notebook_hash: str,
    parameters: Mapping[str, Any],
    extract: str,
    extract_hash: str,
    upstream: Mapping[str, str],
    environment_hash: str,
    pseudonyms: str,
    tables: str = "every table",
) -> str:
    """The content key of one action: equal keys, equal inputs."""
    material = {
        "study": study,  # the notebook's DP queries charge this study's budget
        "outputs": sorted(outputs),  # what is kept
        "notebook": notebook_hash,
        "parameters": dict(parameters),
        "extract": [extract, extract_hash],
        "pseudonyms": pseudonyms,  # the study pseudonyms its view shows (the fingerprint of the study's secret)
        "upstream": dict(sorted(upstream.items())),
        "environment": environment_hash,
        "tables": tables,  # what the study's data permit let its view hold
    }
    return hashlib.sha256(canonical(material).encode()).hexdigest()
