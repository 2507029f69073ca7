"""The dataset catalogue on the terminal, and as JSON: where it was written and what it says, in counts."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from research_kit.transparency.catalogue import Written
from research_kit.transparency.catalogue_shapes import SHAPE_SETS


def print_written(console: Console, done: Written) -> None:
    facts = done.facts
    ages = f", typical ages {facts.typical_ages[0]} to {facts.typical_ages[1]}" if facts.typical_ages else ""
    period = f", {facts.coverage[0]} to {facts.coverage[1]}" if facts.coverage else ""
    derived = " (from the extracts' dates)" if facts.frequency_derived else ""
    twins = len(facts.twins)
    records = f" and {facts.records:,} records" if facts.records is not None else ""  # not published (catalogue_facts)
    console.print(
        f"catalogue: {done.folder} ({', '.join(p.name for p in done.files)}), HealthDCAT-AP, passes "
        f"{' and '.join(s.name for s in SHAPE_SETS)}"
    )
    console.print(
        f"the registry as of extract {facts.newest.id} (version {len(facts.versions)} of the series): about "
        f"{facts.individuals:,} individuals{records} (rounded to {facts.rounding}){ages}"
        f"{period}; updated {facts.frequency}{derived}; distributions: the extract series and "
        f"{twins} synthetic twin{'' if twins == 1 else 's'}"
    )


def written_json(done: Written) -> dict[str, Any]:
    """``catalogue OUT --json``: ``folder``, ``files``, ``extract`` (the newest, which it describes), ``versions``,
    ``individuals`` (rounded to ``rounding``), ``records`` (null: not published), ``twins`` (their ids),
    ``shapes`` (what it passed)."""
    facts = done.facts
    return {
        "folder": str(done.folder),
        "files": [str(p) for p in done.files],
        "extract": facts.newest.id,
        "versions": len(facts.versions),
        "individuals": facts.individuals,
        "records": facts.records,
        "rounding": facts.rounding,
        "twins": [t.id for t in facts.twins],
        "shapes": [s.name for s in SHAPE_SETS],
    }
