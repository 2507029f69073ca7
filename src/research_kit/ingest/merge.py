"""The same person from several sources: one patient, each value keeping its source.

Sources are merged on the person's identifier as read (trimmed), which is
what the keyed pseudonym is made from: two records resolve to the same
pseudonym exactly when their identifiers are equal. The same holds, inside a
patient, for the rows of the child tables that describe one thing:

======================  =====================================================
table                   one thing is
======================  =====================================================
patients                a person (identifier)
diagnoses               a person's disease: its preferred code (ORPHA, else
                        OMIM, ICD-10, ICD-11, MONDO), in the extract's spelling,
                        stated or ruled out
phenotypes              a person's HPO term, observed or excluded
encounters              a person's encounter: date, centre and type
======================  =====================================================

Rows of *different* sources that describe one thing become one row:

- each field's value comes from the source with the lowest ``precedence``
  in its mapping that gives one (ties: the order the sources were given in);
  an empty value never overrides a given one;
- where the sources give different values (compared trimmed and without
  case), the field's conflict is counted (``conflicts``: ``table.field`` ->
  rows), shown in the reconciliation and the quality report, never silently;
- the row's ``source`` names every source that holds it (``;``-separated, in
  precedence order); a merged patient's ``value_sources`` names which source
  each field's value came from where it is not the first
  (``date_of_birth=hospital_b;sex=phenopackets``);
- a refusal wins whatever the precedence: a patient any source records as
  not consenting to reuse (``consent_reuse = no``) or not to be contacted
  (``agrees_to_contact = no``) is merged with that ``no``, and one any source
  records as opted out (``vital_status = opted out``) is merged opted out
  (ingest then withholds them: see ``docs/steward.md``, the opt-out register).

Merging is across sources only: a person (or a row) twice in one source is
that source's own, and stays (validation quarantines a second patient row as
``duplicate_patient``). A ``source_issue`` of any merged row stays with the
merged row: a mapping mistake in one source quarantines it rather than
being hidden by another source's value. Codes of different systems are not
linked (no crosswalk is used): an ORPHA-coded and an OMIM-coded diagnosis of
one disease stay two rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from research_kit.ingest.converted import SOURCE_ISSUE, SOURCE_RECORD, Converted
from research_kit.ingest.validate import CODE_SYSTEMS, code_spelling
from research_kit.model.tables import BY_NAME, CODE_COLUMNS, SOURCE, TABLE_NAMES, VALUE_SOURCES

ID = "national_id"


@dataclass
class Merged:
    tables: dict[str, pl.DataFrame]
    conflicts: dict[str, int] = field(default_factory=dict)  # "table.field" -> merged rows whose sources disagree
    merged: dict[str, int] = field(default_factory=dict)  # table -> rows that several sources held, merged into one
    rows_in: dict[str, int] = field(default_factory=dict)  # table -> rows the sources gave, before merging


def aligned(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every column of ``table`` (absent ones empty) plus the reader's two columns, as text."""
    wanted = (*BY_NAME[table].columns, SOURCE_RECORD, SOURCE_ISSUE)
    have = set(frame.columns)
    if frame.height == 0 and not have:  # no source feeds the table: no rows (a select of literals would make one)
        return pl.DataFrame(schema={c: pl.String for c in wanted})
    return frame.select(
        (pl.col(c).cast(pl.String) if c in have else pl.lit(None, dtype=pl.String)).alias(c) for c in wanted
    )


def merge(sources: list[tuple[Converted, int]]) -> Merged:
    """One set of raw tables from ``sources`` (each with its mapping's precedence), merged as the module says."""
    result = Merged({})
    for table in TABLE_NAMES:
        parts = [
            aligned(table, c.tables[table]).with_columns(
                pl.lit(precedence, dtype=pl.Int64).alias("_prec"), pl.lit(i, dtype=pl.Int64).alias("_src")
            )
            for i, (c, precedence) in enumerate(sources)
            if table in c.tables
        ]
        rows = pl.concat(parts, how="vertical") if parts else aligned(table, pl.DataFrame())
        result.rows_in[table] = rows.height
        if parts and rows["_src"].n_unique() > 1:
            rows, conflicts, merged = _merge_on(table, rows)
            result.conflicts.update({f"{table}.{f}": n for f, n in conflicts.items()})
            if merged:
                result.merged[table] = merged
        result.tables[table] = rows.drop("_prec", "_src", strict=False)
    return result


def thing(table: str) -> pl.Expr:
    """What a row of ``table`` describes, as one text key (empty: a row that cannot be matched)."""
    person = _trimmed(ID)
    if table == "patients":
        return person
    if table == "diagnoses":
        spelt = [
            _trimmed(c).map_batches(_spelling(CODE_SYSTEMS[c]), return_dtype=pl.String, is_elementwise=True)
            for c in CODE_COLUMNS.values()
        ]
        code = pl.coalesce(*(pl.when(s != "").then(s) for s in spelt)).fill_null("")
        # A disease ruled out is another statement than the disease: the two never merge into one row.
        ruled_out = _trimmed("excluded").str.to_lowercase() == "yes"
        what = pl.when(code != "").then(code + pl.when(ruled_out).then(pl.lit("|excluded")).otherwise(pl.lit("")))
    elif table == "phenotypes":
        excluded = _trimmed("excluded").str.to_lowercase() == "yes"
        term = _trimmed("hpo_code").str.to_uppercase()
        what = pl.when(term != "").then(term + pl.when(excluded).then(pl.lit("|excluded")).otherwise(pl.lit("")))
    else:
        parts = [_trimmed(c) for c in ("encounter_date", "centre_code", "encounter_type")]
        what = pl.when(pl.all_horizontal(p != "" for p in parts)).then(pl.concat_str(parts, separator="|"))
    return pl.when(person != "").then(person + pl.lit("\x1f") + what).fill_null("")


def _trimmed(column: str) -> pl.Expr:
    return pl.col(column).fill_null("").str.strip_chars()


def _spelling(system: str):  # type: ignore[no-untyped-def]
    spell = code_spelling(system)

    def settle(batch: pl.Series) -> pl.Series:
        mapping = {v: spell(v) for v in batch.unique().to_list() if v}
        return batch.replace_strict(mapping, default=batch, return_dtype=pl.String) if mapping else batch

    return settle


REFUSALS = ("consent_reuse", "agrees_to_contact")  # a "no" in any source wins
OPTED_OUT = ("vital_status", "opted out")  # an opt-out in any source wins


def _merged_value(column: str, given: pl.Expr) -> pl.Expr:
    first = pl.col(column).filter(given != "").first()
    if column == OPTED_OUT[0]:
        opted_out = (given.str.to_lowercase() == OPTED_OUT[1]).any()
        return pl.when(opted_out).then(pl.lit(OPTED_OUT[1])).otherwise(first).alias(column)
    if column not in REFUSALS:
        return first.alias(column)
    refused = (given.str.to_lowercase() == "no").any()
    return pl.when(refused).then(pl.lit("no")).otherwise(first).alias(column)


def _merge_on(table: str, rows: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int], int]:
    """Rows of different sources describing one thing (:func:`thing`), merged; the conflicts per field."""
    rows = rows.with_row_index("_pos").with_columns(thing(table).alias("_key"))
    # A source's first row of a thing takes part; its later rows of the same thing are that source's own.
    first_in_source = (pl.col("_key") != "") & (pl.int_range(pl.len()).over("_key", "_src") == 0)
    rows = rows.with_columns(first_in_source.alias("_first"))
    rows = rows.with_columns((pl.col("_first") & (pl.col("_first").sum().over("_key") > 1)).alias("_merge"))
    taking = rows.filter(pl.col("_merge")).sort("_key", "_prec", "_src")
    rest = rows.filter(~pl.col("_merge"))
    columns = [*BY_NAME[table].columns, SOURCE_RECORD, SOURCE_ISSUE]
    if taking.height == 0:
        return rows.select(*columns, "_prec", "_src"), {}, 0
    fields = [c for c in BY_NAME[table].columns if c not in (ID, SOURCE, VALUE_SOURCES)]
    # Compared as validation will read them: a code in the extract's spelling (Orphanet:558 is ORPHA:558).
    given = {
        c: _trimmed(c).map_batches(_spelling(CODE_SYSTEMS[c]), return_dtype=pl.String, is_elementwise=True)
        if c in CODE_SYSTEMS
        else _trimmed(c)
        for c in fields
    }
    merged = taking.group_by("_key", maintain_order=True).agg(
        pl.col(ID).first(),
        pl.col("_pos").min(),
        pl.col("_prec").min(),
        pl.col("_src").min(),
        *(_merged_value(c, given[c]) for c in fields),
        *(given[c].str.to_lowercase().filter(given[c] != "").n_unique().alias(f"_n:{c}") for c in fields),
        *(pl.col(SOURCE).filter(given[c] != "").first().alias(f"_s:{c}") for c in fields),
        pl.col(SOURCE).drop_nulls().unique(maintain_order=True).str.join(";").alias(SOURCE),
        pl.col(SOURCE_RECORD).drop_nulls().str.join(" + ").alias(SOURCE_RECORD),
        pl.col(SOURCE_ISSUE).filter(pl.col(SOURCE_ISSUE).fill_null("") != "").str.join(";").alias(SOURCE_ISSUE),
    )
    conflicts = {c: int(n) for c in fields if (n := merged.select((pl.col(f"_n:{c}") > 1).sum()).item())}
    extra: list[pl.Expr] = []
    if table == "patients":
        lead = pl.col(SOURCE).str.split(";").list.first()
        provenance = pl.concat_list(
            pl.when(pl.col(f"_s:{c}").is_not_null() & (pl.col(f"_s:{c}") != lead)).then(
                pl.lit(f"{c}=") + pl.col(f"_s:{c}")
            )
            for c in fields
        ).list.drop_nulls()
        extra.append(pl.when(provenance.list.len() > 0).then(provenance.list.join(";")).alias(VALUE_SOURCES))
    merged = merged.with_columns(
        *extra, pl.when(pl.col(SOURCE_ISSUE) == "").then(None).otherwise(pl.col(SOURCE_ISSUE)).alias(SOURCE_ISSUE)
    )
    keep = ["_pos", *columns, "_prec", "_src"]
    out = pl.concat([merged.select(keep), rest.select(keep)]).sort("_pos").drop("_pos")
    return out, conflicts, taking.height - merged.height
