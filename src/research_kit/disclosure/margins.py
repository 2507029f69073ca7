"""What a table's margins are: the label values and column names that mark a total, and the additive columns.

A row whose label is ``Total``, ``All`` or ``Overall`` (any case, as ACRO and
pandas margins write them) is a margin of the rows sharing its other labels;
in a wide table, a ``Total`` count (or sum) column is the margin of the
others. The attacker (:mod:`research_kit.disclosure.attack`) reads tables
through these definitions; so do differencing and roll-up.
"""

from __future__ import annotations

from research_kit.disclosure.differencing_views import MARGIN_LABELS
from research_kit.disclosure.sdc_counts import count_columns
from research_kit.outputs.sidecar import Sidecar

Cell = tuple[int, str]  # (row, column)


def is_total(label: object) -> bool:
    """Whether a label value (or a wide table's column name) marks a margin."""
    return isinstance(label, str) and label.strip().lower() in MARGIN_LABELS


def additive_columns(sidecar: Sidecar) -> list[str]:
    """Columns whose cells add up along lines: counts, the n column and sums."""
    return list(dict.fromkeys(count_columns(sidecar) + sidecar.columns("sum")))
