"""Privacy-loss arithmetic: zero-concentrated DP (rho) inside, (epsilon, delta) shown beside it.

zCDP composes by addition: a study that spent rho_1 and rho_2 has spent
rho_1 + rho_2. The ledger keeps rho as an integer number of 1e-12 rho
("picorho") so that sums and the comparison with a grant are exact: a grant
is rounded down, a spend rounded up, and a budget never goes below zero by a
rounding error.

Amounts are exact decimals. Text (the command line, a web form, the API) is
read as the decimal it spells; a Python float (a notebook's ``rho=0.01``, a
policy or pipeline file's number) as the shortest decimal that is the same
float, which is the text typed for any amount of up to 15 significant digits.
So a grant of 0.03 pays exactly three queries of 0.01. OpenDP reports a
query's loss as a float and is read the same way, then rounded up.

For people used to (epsilon, delta), a rho is shown as the epsilon it implies
at the policy's delta, by the standard conversion (Bun and Steinke 2016,
proposition 1.3): epsilon = rho + 2 * sqrt(rho * ln(1 / delta)). The inverse
turns a grant made in epsilon into rho. Conversion is applied to totals, never
summed: epsilons of separate queries do not add up to the epsilon of their sum.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

from research_kit.core.errors import BadInput, quoted

PICO = 10**12
UNIT = Decimal(1).scaleb(-12)  # the ledger's unit: the smallest amount that can be granted or charged
LARGEST = Decimal(10) ** 6  # far beyond any meaningful budget; bounds what a typo can ask for


_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?")
_LONGEST = 40  # characters of an amount typed: more is a mistake (or an attempt to make parsing slow)


def exact(value: Decimal | float | int | str) -> Decimal:
    """``value`` as the decimal it was typed as (a float: the shortest decimal that is the same float).

    Text must be a plain decimal in ASCII digits (``0.01``, ``1e-3``, ``1_000``), at most 40 characters.
    """
    if isinstance(value, bool):
        raise ValueError("not an amount")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int):
        if value.bit_length() > 128:
            raise ValueError("a number far too large")
        return Decimal(value)
    text = str(value).strip().replace("_", "")
    if text.lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
        return Decimal(text)
    if len(text) > _LONGEST or not _DECIMAL.fullmatch(text):
        raise ValueError("not a decimal number")
    return Decimal(text)


def amount(value: Decimal | float | int | str, what: str = "rho") -> Decimal:
    """A grant or cost the user typed, exactly; a one-line error unless it is a number the ledger can hold."""
    try:
        d = exact(value)
    except ValueError:
        raise BadInput(f"{what} must be a number (plain decimal digits), not {quoted(value)}") from None
    if not d.is_finite():
        raise BadInput(f"{what} must be a finite number, not {quoted(value)}")
    if d <= 0:
        raise BadInput(f"{what} must be more than 0, not {quoted(value)}")
    if d < UNIT:
        raise BadInput(f"{what} {quoted(value)} is smaller than the ledger's unit, rho 1e-12")
    if d > LARGEST:
        raise BadInput(f"{what} {quoted(value)} is larger than any budget the ledger holds (at most 1e6)")
    return d


def to_picorho(rho: Decimal | float | int | str, *, round_up: bool) -> int:
    """``rho`` (read by :func:`exact`) as an integer of 1e-12 rho, rounded up (spends) or down (grants)."""
    d = exact(rho)
    if not d.is_finite() or d < 0:
        raise ValueError(f"rho must be a finite number >= 0, not {rho!r}")
    scaled = Fraction(d) * PICO
    return math.ceil(scaled) if round_up else math.floor(scaled)


def from_picorho(picorho: int) -> float:
    return picorho / PICO


def decimal_of(picorho: int) -> Decimal:
    """A ledger amount as the exact decimal it is."""
    return (Decimal(picorho) / PICO).normalize()


def rho_text(picorho: int) -> str:
    """A ledger amount, exactly, for a person: "0.03", "0.009999999999"."""
    return format(decimal_of(picorho), "f")


def epsilon_of(rho: float, delta: float) -> float:
    """The epsilon of (epsilon, delta)-DP implied by rho-zCDP."""
    if rho <= 0:
        return 0.0
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def rho_of(epsilon: float, delta: float) -> float:
    """The largest rho whose (epsilon, delta) guarantee is within ``epsilon`` (inverse of :func:`epsilon_of`)."""
    if epsilon <= 0:
        raise ValueError("epsilon must be > 0")
    if not 0 < delta < 1:
        raise ValueError("delta must be between 0 and 1 (exclusive)")
    log_term = math.log(1.0 / delta)
    return (math.sqrt(epsilon + log_term) - math.sqrt(log_term)) ** 2


Typed = Decimal | float | int | str


def rho_from(rho: Typed | None, epsilon: Typed | None, delta: float) -> Decimal | None:
    """A cost or grant given as ``rho`` or as ``epsilon`` (at ``delta``), in exact rho; ``None`` when neither.

    The one place both ways of saying an amount are checked, for queries and grants alike. An epsilon's rho
    is irrational in general: it is rounded down to the ledger's unit (never more than was asked).
    """
    if rho is not None and epsilon is not None:
        raise BadInput("give the amount as rho or as epsilon, not both")
    if epsilon is None:
        return None if rho is None else amount(rho, "rho")
    eps = amount(epsilon, "epsilon")
    try:
        converted = rho_of(float(eps), delta)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"epsilon {quoted(epsilon)}: {exc}") from None
    return amount(decimal_of(to_picorho(converted, round_up=False)), f"the rho of epsilon {quoted(epsilon)}")


def describe(picorho: int, delta: float) -> str:
    """A ledger amount for a person: "rho 0.01 (epsilon 0.91 at delta 1e-07)", the rho exact."""
    return f"rho {rho_text(picorho)} (epsilon {epsilon_of(picorho / PICO, delta):.3g} at delta {delta:.0e})"
