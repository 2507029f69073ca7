"""The same person from several sources: one patient, each value keeping its source.

Sources are merged on the person's identifier as read (trimmed), which is
what the keyed pseudonym is made from: two records resolve to the same
pseudonym exactly when their identifiers are equal. The rule, per field of
the patients table:

- the value comes from the source with the lowest ``precedence`` in its
  mapping that gives one (ties: the order the sources were given in); an
  empty value never overrides a given one;
- when the sources give different values (compared trimmed and without
  case), the field's conflict is counted (``conflicts``: field -> patients),
  shown in the reconciliation and the quality report, never silently;
- the merged row's ``source`` names every source that holds the person
  (``;``-separated, in precedence order), and ``value_sources`` which source
  each field's value came from where it is not the first
  (``date_of_birth=hospital_b;sex=phenopackets``).

Merging is across sources only: a person twice in one source is a broken
export, and validation quarantines the second row (``duplicate_patient``).
A ``source_issue`` of any merged row stays with the person: a mapping
mistake in one source quarantines the patient rather than being hidden by
another source's value.

Child tables (diagnoses, phenotypes, encounters) are concatenated: each row
keeps its ``source``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from research_kit.ingest.converted import SOURCE_ISSUE, SOURCE_RECORD, Converted
from research_kit.model.tables import BY_NAME, SOURCE, TABLE_NAMES, VALUE_SOURCES

ID = "national_id"


@dataclass
class Merged:
    tables: dict[str, pl.DataFrame]
    conflicts: dict[str, int] = field(default_factory=dict)  # field -> patients whose sources disagree
    merged: int = 0  # patients held by more than one source


def aligned(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every column of ``table`` (absent ones empty) plus the reader's two columns, as text."""
    wanted = (*BY_NAME[table].columns, SOURCE_RECORD, SOURCE_ISSUE)
    have = set(frame.columns)
    return frame.select(
        (pl.col(c).cast(pl.String) if c in have else pl.lit(None, dtype=pl.String)).alias(c) for c in wanted
    )


def merge(sources: list[tuple[Converted, int]]) -> Merged:
    """One set of raw tables from ``sources`` (each with its mapping's precedence), patients merged by identifier."""
    tables: dict[str, pl.DataFrame] = {}
    for table in TABLE_NAMES:
        parts = [
            aligned(table, c.tables[table]).with_columns(
                pl.lit(precedence, dtype=pl.Int64).alias("_prec"), pl.lit(i, dtype=pl.Int64).alias("_src")
            )
            for i, (c, precedence) in enumerate(sources)
            if table in c.tables
        ]
        tables[table] = pl.concat(parts, how="vertical") if parts else aligned(table, pl.DataFrame())
    result = Merged({})
    patients = tables["patients"]
    if "_src" in patients.columns and patients["_src"].n_unique() > 1:
        patients, result.conflicts, result.merged = _merge_patients(patients)
    result.tables = {t: f.drop("_prec", "_src", strict=False) for t, f in tables.items()}
    result.tables["patients"] = patients.drop("_prec", "_src", strict=False)
    return result


def _merge_patients(patients: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int], int]:
    key = pl.col(ID).fill_null("").str.strip_chars()
    rows = patients.with_row_index("_pos").with_columns(key.alias("_key"))
    # A source's first row of a person takes part in the merge; its later rows are that source's duplicates.
    first_in_source = (pl.col("_key") != "") & (pl.int_range(pl.len()).over("_key", "_src") == 0)
    rows = rows.with_columns(
        (first_in_source & (pl.col("_key").filter(first_in_source).len().over("_key") > 1)).alias("_merge")
    )
    taking = rows.filter(pl.col("_merge")).sort("_key", "_prec", "_src")
    rest = rows.filter(~pl.col("_merge"))
    fields = [c for c in BY_NAME["patients"].columns if c not in (ID, SOURCE, VALUE_SOURCES)]
    given = {c: pl.col(c).fill_null("").str.strip_chars() for c in fields}
    merged = taking.group_by("_key", maintain_order=True).agg(
        pl.col(ID).first(),
        pl.col("_pos").min(),
        *(pl.col(c).filter(given[c] != "").first().alias(c) for c in fields),
        *(given[c].str.to_lowercase().filter(given[c] != "").n_unique().alias(f"_n:{c}") for c in fields),
        *(pl.col(SOURCE).filter(given[c] != "").first().alias(f"_s:{c}") for c in fields),
        pl.col(SOURCE).drop_nulls().unique(maintain_order=True).str.join(";").alias(SOURCE),
        pl.col(SOURCE_RECORD).drop_nulls().str.join(" + ").alias(SOURCE_RECORD),
        pl.col(SOURCE_ISSUE).filter(pl.col(SOURCE_ISSUE).fill_null("") != "").str.join(";").alias(SOURCE_ISSUE),
    )
    conflicts = {c: int(n) for c in fields if (n := merged.select((pl.col(f"_n:{c}") > 1).sum()).item())}
    lead = pl.col(SOURCE).str.split(";").list.first()
    provenance = pl.concat_list(
        pl.when(pl.col(f"_s:{c}").is_not_null() & (pl.col(f"_s:{c}") != lead)).then(pl.lit(f"{c}=") + pl.col(f"_s:{c}"))
        for c in fields
    ).list.drop_nulls()
    merged = merged.with_columns(
        pl.when(provenance.list.len() > 0).then(provenance.list.join(";")).alias(VALUE_SOURCES)
    )
    merged = merged.drop([f"_n:{c}" for c in fields] + [f"_s:{c}" for c in fields]).with_columns(
        pl.when(pl.col(SOURCE_ISSUE) == "").then(None).otherwise(pl.col(SOURCE_ISSUE)).alias(SOURCE_ISSUE)
    )
    columns = [*BY_NAME["patients"].columns, SOURCE_RECORD, SOURCE_ISSUE]
    out = pl.concat([merged.select("_pos", *columns), rest.select("_pos", *columns)]).sort("_pos").drop("_pos")
    return out, conflicts, merged.height
