"""What changed in an output since its last version: rows added and removed, cells changed and by how much.

A table's rows are matched on its text columns (the labels: disease group,
sex, year...); its numeric columns are the values compared. A reviewer sees
which cells moved, by how much absolutely and relatively, which rows appeared
and which disappeared. Other files (figures, text) are compared by content.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = {".csv"}
MAX_LISTED = 50  # changed cells listed one by one; the counts cover all


def diff_outputs(old: Path, new: Path, against: str) -> dict[str, Any]:
    """A JSON-able summary of the change from ``old`` to ``new``; ``against`` says what ``old`` is."""
    if new.suffix.lower() in TABLE_SUFFIXES and old.suffix.lower() == new.suffix.lower():
        try:
            return {"against": against, "kind": "table", **_table_diff(old, new)}
        except ValueError as exc:
            return {"against": against, "kind": "file", "changed": True, "note": f"not comparable as tables: {exc}"}
    return {"against": against, "kind": "file", "changed": _sha(old) != _sha(new)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _table_diff(old_path: Path, new_path: Path) -> dict[str, Any]:
    import polars as pl

    try:
        old = pl.read_csv(old_path, infer_schema_length=10_000)
        new = pl.read_csv(new_path, infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ValueError(str(exc).splitlines()[0]) from None
    numeric = [c for c in new.columns if c in old.columns and new[c].dtype.is_numeric() and old[c].dtype.is_numeric()]
    keys = [c for c in new.columns if c in old.columns and c not in numeric]
    added_columns = sorted(set(new.columns) - set(old.columns))
    removed_columns = sorted(set(old.columns) - set(new.columns))
    if not keys:
        # No label columns: rows are matched by position.
        old, new = old.with_row_index("row"), new.with_row_index("row")
        keys = ["row"]
    old_keys = old.select(keys).with_columns(pl.all().cast(pl.String))
    new_keys = new.select(keys).with_columns(pl.all().cast(pl.String))
    if old_keys.is_duplicated().any() or new_keys.is_duplicated().any():
        raise ValueError(f"the label columns ({', '.join(keys)}) do not identify rows")
    old_c = old_keys.hstack(old.select(numeric).rename({c: f"{c}\x00old" for c in numeric}))
    new_c = new_keys.hstack(new.select(numeric))
    joined = new_c.join(old_c, on=keys, how="full", coalesce=True)
    rows_added = new_keys.join(old_keys, on=keys, how="anti").height
    rows_removed = old_keys.join(new_keys, on=keys, how="anti").height
    changed: list[dict[str, Any]] = []
    cells_changed = 0
    largest_abs = 0.0
    common = joined.join(new_keys.join(old_keys, on=keys, how="semi"), on=keys, how="semi")
    for column in numeric:
        moved = common.filter(pl.col(column).ne_missing(pl.col(f"{column}\x00old")))
        cells_changed += moved.height
        for row in moved.iter_rows(named=True):
            before, after = row[f"{column}\x00old"], row[column]
            delta = None if before is None or after is None else after - before
            if delta is not None:
                largest_abs = max(largest_abs, abs(float(delta)))
            if len(changed) < MAX_LISTED:
                changed.append(
                    {
                        "row": {k: row[k] for k in keys},
                        "column": column,
                        "old": before,
                        "new": after,
                        "change": delta,
                        "relative": None if not before or delta is None else round(float(delta) / abs(before), 4),
                    }
                )
    return {
        "keys": keys,
        "values": numeric,
        "rows_added": rows_added,
        "rows_removed": rows_removed,
        "cells_added": rows_added * len(numeric),
        "cells_removed": rows_removed * len(numeric),
        "cells_changed": cells_changed,
        "largest_change": largest_abs,
        "columns_added": added_columns,
        "columns_removed": removed_columns,
        "changed": changed,
    }
