"""Luxembourg's resident population by canton, sex and 5-year age band: the denominator of journalist risk.

The table ships with the package (``data/lu_population.csv``). It is an
approximation, not an official STATEC table: see :data:`SOURCE` for how it was
built. Its keys are ``canton`` (the 12 cantons, spelt as in
:data:`research_kit.model.geography.CANTONS`), ``sex`` (``"female"`` or
``"male"``) and ``age_band`` (``"0-4"`` ... ``"80-84"``, ``"85+"``, as
:func:`age_band` labels them).
"""

from __future__ import annotations

import io
from importlib import resources

import polars as pl

SOURCE = (
    "Approximate resident population of Luxembourg on 1 January 2024 (not an official table). "
    "Each canton's total (Capellen and Clervaux as published by STATEC; the other ten approximate, "
    "to the nearest 100, summing to about STATEC's national 672,050) times the national share of each "
    "sex x 5-year age band (an approximate structure consistent with STATEC/Eurostat headline figures: "
    "0-14 about 15.8 %, 65+ about 15.5 %, women about 50.3 %), rounded to whole persons. Every canton "
    "gets the national age/sex structure. The inputs are listed in the header of data/lu_population.csv."
)

_DATA = "data/lu_population.csv"
_TOP_BAND = 85  # the last band is open: "85+"


def age_band(age_years: pl.Expr) -> pl.Expr:
    """The 5-year band of an age in completed years: ``"0-4"``, ``"5-9"``, ..., ``"80-84"``, ``"85+"``.

    The result keeps the input's name. A null or negative age gives null.
    Fractional ages are truncated first, so
    pass completed years (an age on a reference date, not a difference of years
    of birth, if the month is known).

    >>> pl.DataFrame({"age": [0, 4, 5, 84, 85, 101]}).select(age_band(pl.col("age")))["age"].to_list()
    ['0-4', '0-4', '5-9', '80-84', '85+', '85+']
    """
    years = age_years.cast(pl.Int64)
    low = (years // 5) * 5
    return (
        pl.when(years.is_null() | (years < 0))
        .then(pl.lit(None, dtype=pl.String))
        .when(years >= _TOP_BAND)
        .then(pl.lit(f"{_TOP_BAND}+"))
        .otherwise(pl.format("{}-{}", low, low + 4))
        .name.keep()
    )


def load_population() -> pl.DataFrame:
    """The shipped table: columns ``canton``, ``sex``, ``age_band`` (strings) and ``population`` (Int64).

    432 rows (12 cantons x 2 sexes x 18 bands); read from the package on each
    call, nothing is cached or written.
    """
    raw = resources.files("research_kit.pseudonymise").joinpath(_DATA).read_bytes()
    return pl.read_csv(
        io.BytesIO(raw),
        comment_prefix="#",
        schema={"canton": pl.String, "sex": pl.String, "age_band": pl.String, "population": pl.Int64},
    )
