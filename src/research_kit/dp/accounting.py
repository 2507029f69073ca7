"""Privacy-loss arithmetic: zero-concentrated DP (rho) inside, (epsilon, delta) shown beside it.

zCDP composes by addition: a study that spent rho_1 and rho_2 has spent
rho_1 + rho_2. The ledger keeps rho as an integer number of 1e-12 rho
("picorho") so that sums and the comparison with a grant are exact: a grant
is rounded down, a spend rounded up, and a budget never goes below zero by a
rounding error.

For people used to (epsilon, delta), a rho is shown as the epsilon it implies
at the policy's delta, by the standard conversion (Bun and Steinke 2016,
proposition 1.3): epsilon = rho + 2 * sqrt(rho * ln(1 / delta)). The inverse
turns a grant made in epsilon into rho. Conversion is applied to totals, never
summed: epsilons of separate queries do not add up to the epsilon of their sum.
"""

from __future__ import annotations

import math
from fractions import Fraction

from research_kit.core.errors import BadInput

PICO = 10**12


def to_picorho(rho: float, *, round_up: bool) -> int:
    """``rho`` as an integer of 1e-12 rho, rounded up (spends) or down (grants), exactly."""
    if not math.isfinite(rho) or rho < 0:
        raise ValueError(f"rho must be a finite number >= 0, not {rho!r}")
    exact = Fraction(rho) * PICO
    return math.ceil(exact) if round_up else math.floor(exact)


def from_picorho(picorho: int) -> float:
    return picorho / PICO


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


def rho_from(rho: float | None, epsilon: float | None, delta: float) -> float | None:
    """A cost or grant given as ``rho`` or as ``epsilon`` (at ``delta``), in rho; ``None`` when neither is given.

    The one place both ways of saying an amount are checked, for queries and grants alike.
    """
    if rho is not None and epsilon is not None:
        raise BadInput("give the amount as rho or as epsilon, not both")
    if epsilon is None:
        return rho
    try:
        return rho_of(epsilon, delta)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"epsilon {epsilon!r}: {exc}") from None


def describe(rho: float, delta: float) -> str:
    """``rho`` for a person: "rho 0.0100 (epsilon 0.91 at delta 1e-07)"."""
    return f"rho {rho:.4g} (epsilon {epsilon_of(rho, delta):.3g} at delta {delta:.0e})"
