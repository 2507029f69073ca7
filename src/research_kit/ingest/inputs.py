"""An ingest of mapped sources: each read into the raw tables, merged, and staged for validation.

The merged raw tables are written to the ingest's scratch folder (under
``quarantine/``, the steward's: they hold identifiers) as Parquet, and the
ingest then validates them like any export: one set of rules for every
source. Row numbers in the quarantine are the merged table's; each row's
``source_record`` says where in which source it came from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_kit.core.errors import BadInput
from research_kit.ingest import readers
from research_kit.ingest.converted import Converted
from research_kit.ingest.mapping import Mapping
from research_kit.ingest.merge import Merged, merge
from research_kit.ingest.sources import convert
from research_kit.model.tables import TABLES


@dataclass
class Inputs:
    mappings: list[tuple[Path, Mapping]]
    converted: list[Converted]
    merged: Merged
    sources: dict[str, readers.Source]

    def accounts(self) -> dict[str, Any]:
        """Per source: records in = converted + refused, with the refusals' reasons counted (reconciliation)."""
        out: dict[str, Any] = {}
        for c in self.converted:  # counts only: a refusal's reason may name a source's own text (quarantine only)
            out[c.name] = {
                "kind": c.kind,
                "records_in": c.records_in,
                "converted": c.converted,
                "refused": len(c.refused),
                "balanced": c.balanced,
                "refused_phenotypes": {
                    "observed": sum(r.observed_phenotypes for r in c.refused),
                    "excluded": sum(r.excluded_phenotypes for r in c.refused),
                },
                "rows": {name: frame.height for name, frame in c.tables.items()},
            }
        return out

    def manifest(self) -> list[dict[str, Any]]:
        """What the manifest records of each source: its kind, files and their hashes, the mapping's hash."""
        return [
            {
                **_counts_only(c.facts),
                "name": c.name,
                "kind": c.kind,
                "source": path.name,
                "mapping_sha256": mapping.sha256,
                "precedence": mapping.precedence,
                "files": _files_digest(c.files),
                "records_in": c.records_in,
                **({"versions": _shaped_versions(c.versions)} if c.versions else {}),
            }
            for (path, mapping), c in zip(self.mappings, self.converted, strict=True)
        ]

    def simulated(self) -> bool:
        """Whether every file of every source is one the simulator wrote (its mark, beside the source, names
        the file's SHA-256): only then may demo mode and an unconfined sandbox touch the extract."""
        for (path, _), converted in zip(self.mappings, self.converted, strict=True):
            if path.is_dir():  # a mark beside the folder (other kinds), or in it (the registry's own layout)
                beside = _marked(path.parent)
                marked = {
                    **{k: v for k, v in _marked(path).items()},
                    **{k.removeprefix(f"{path.name}/"): v for k, v in beside.items() if k.startswith(f"{path.name}/")},
                }
            else:
                marked = _marked(path.parent)
            if not converted.files or any(marked.get(n) != d for n, d in converted.files.items()):
                return False
        return True

    def versions(self) -> dict[str, str]:
        """The ontology versions the sources declare (prefix -> version; several are joined with ' | ')."""
        seen: dict[str, set[str]] = {}
        for c in self.converted:
            for prefix, version in _shaped_versions(c.versions).items():
                seen.setdefault(prefix, set()).update(v.strip() for v in version.split("|"))
        return {prefix: " | ".join(sorted(v)) for prefix, v in sorted(seen.items())}


PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")  # an ontology's namespace prefix (HP, OMIM, ORPHA...)
# A release as ontologies number them: a date (2024-04-26, 06/01/25, 20240426), or a version number (v4.0.0).
VERSION = re.compile(r"v?(\d{4}-\d{2}-\d{2}|\d{2}/\d{2}/\d{2,4}|\d{8}|\d{1,4}(\.\d{1,4}){0,3})")


def _counts_only(facts: dict[str, Any]) -> dict[str, Any]:
    """What a reader adds to the manifest, as counts only (a reader's text may carry a source's own words)."""
    out: dict[str, Any] = {}
    for key, value in facts.items():
        if isinstance(value, bool | int | float):
            out[key] = value
        elif isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
            out[key] = {k: v for k, v in value.items() if PREFIX.fullmatch(str(k))}
    return out


def _shaped_versions(versions: dict[str, str]) -> dict[str, str]:
    """A source's ontology versions as the manifest may hold them: a prefix and a release of their usual shapes
    (free text of a source, which could be anything, never reaches the manifest)."""
    out: dict[str, str] = {}
    for prefix, version in versions.items():
        if PREFIX.fullmatch(prefix):
            shaped = sorted(
                {v.strip() if VERSION.fullmatch(v.strip()) else "(not a version)" for v in version.split("|")}
            )
            out[prefix] = " | ".join(shaped)
    return out


def _files_digest(files: dict[str, str]) -> dict[str, Any]:
    """The files a source was read from, as the manifest records them: how many, and one SHA-256 over their
    paths and hashes. Not the names: a folder of phenopackets may name each file after its case."""
    lines = "".join(f"{name}\t{digest}\n" for name, digest in sorted(files.items()))
    return {"count": len(files), "sha256": hashlib.sha256(lines.encode()).hexdigest()}


def _marked(folder: Path) -> dict[str, str]:
    """The files the simulator's mark in ``folder`` names (relative path -> SHA-256); none without a mark."""
    from research_kit.simulator.export import SIMULATED_MARK

    try:
        files = json.loads((folder / SIMULATED_MARK).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return files if isinstance(files, dict) else {}


def read_inputs(inputs: list[tuple[Path, Mapping]], scratch: Path, say: Callable[[str], None]) -> Inputs:
    """Read, convert and merge every source; stage the merged raw tables for validation."""
    names = [m.name for _, m in inputs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadInput(f"two sources are named {twice[0]!r}: give each mapping its own [source].name")
    converted = []
    for path, mapping in inputs:
        say(f"reading {mapping.kind} source {mapping.name}")
        converted.append(convert(path, mapping, scratch))
    say("merging the sources")
    merged = merge([(c, m.precedence) for c, (_, m) in zip(converted, inputs, strict=True)])
    folder = scratch / "merged"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    sources: dict[str, readers.Source] = {}
    for table in TABLES:
        path = folder / f"{table.name}.parquet"
        merged.tables[table.name].write_parquet(path)
        sources[table.name] = readers.converted_source(table, path)
    return Inputs(inputs, converted, merged, sources)
