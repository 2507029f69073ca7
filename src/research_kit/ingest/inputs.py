"""An ingest of mapped sources: each read into the raw tables, merged, and staged for validation.

The merged raw tables are written to the ingest's scratch folder (under
``quarantine/``, the steward's: they hold identifiers) as Parquet, and the
ingest then validates them like any export: one set of rules for every
source. Row numbers in the quarantine are the merged table's; each row's
``source_record`` says where in which source it came from.
"""

from __future__ import annotations

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
        for c in self.converted:
            reasons: dict[str, int] = {}
            for r in c.refused:
                kind = r.reason.split(":", 1)[-1].strip() if ":" in r.reason else r.reason
                reasons[kind] = reasons.get(kind, 0) + 1
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
                "reasons": reasons,
                "rows": {name: frame.height for name, frame in c.tables.items()},
            }
        return out

    def manifest(self) -> list[dict[str, Any]]:
        """What the manifest records of each source: its kind, files and their hashes, the mapping's hash."""
        return [
            {
                "name": c.name,
                "kind": c.kind,
                "source": path.name,
                "mapping_sha256": mapping.sha256,
                "precedence": mapping.precedence,
                "files": c.files,
                "records_in": c.records_in,
                **({"versions": c.versions} if c.versions else {}),
                **c.facts,
            }
            for (path, mapping), c in zip(self.mappings, self.converted, strict=True)
        ]

    def versions(self) -> dict[str, str]:
        """The ontology versions the sources declare (prefix -> version; several are joined with ' | ')."""
        seen: dict[str, set[str]] = {}
        for c in self.converted:
            for prefix, version in c.versions.items():
                seen.setdefault(prefix, set()).update(v.strip() for v in version.split("|"))
        return {prefix: " | ".join(sorted(v)) for prefix, v in sorted(seen.items())}


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
