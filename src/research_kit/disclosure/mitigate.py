"""Mitigations a researcher may ask for when a table fails its checks, registered by name.

Each returns a new table and a record of what was done (method, parameters,
cells changed, positions), which the caller stores in ``sidecar.mitigations``.
A record names cells by position and counts merges; it never holds a value.

``suppress``
    Primary and secondary suppression
    (:mod:`~research_kit.disclosure.suppression`); refused when a suppressed
    cell stays narrower than the protection width, whatever else is hidden.
``round``
    Counts rounded to the nearest multiple of ``[sdc].rounding_base``
    (:mod:`~research_kit.disclosure.rounding`).
``midpoint6``
    Counts rounded to OpenSAFELY's midpoint 6.
``roll-up``
    Small groups' ICD-10 codes replaced by their parents
    (:mod:`~research_kit.disclosure.rollup`); needs the column of codes.

A new mitigation is one function of the :class:`Mitigation` signature,
registered in :data:`MITIGATIONS`.
"""

from __future__ import annotations

from typing import Protocol

import pandas as pd

from research_kit.core.config import SdcPolicy
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.disclosure import sdc
from research_kit.disclosure.results import Mitigated
from research_kit.disclosure.rollup import roll_up
from research_kit.disclosure.rounding import midpoint6, round_counts
from research_kit.disclosure.suppression import suppress
from research_kit.outputs.sidecar import Sidecar

__all__ = [
    "MITIGATIONS",
    "Mitigated",
    "Mitigation",
    "get_mitigation",
    "method_names",
    "midpoint6",
    "roll_up",
    "round_counts",
    "suppress",
]


class Mitigation(Protocol):
    """A table, its sidecar and the SDC policy in; the new table and its record out.

    ``column``: the column a mitigation works on, for those that need one
    (``roll-up``); the others ignore it.
    """

    def __call__(
        self, frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy, *, column: str | None
    ) -> Mitigated: ...


def _suppress(frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy, *, column: str | None) -> Mitigated:
    done = suppress(frame, sidecar, sdc.check(frame, sidecar, policy), policy)
    if done.record.get("unprotected"):
        raise PolicyRefusal(
            f"{sidecar.file}: suppression cannot protect {len(done.record['unprotected'])} cell(s) of this "
            "table to the protection width (its zeros and margins pin them down): round it or roll it up instead"
        )
    return done


def _round(frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy, *, column: str | None) -> Mitigated:
    return round_counts(frame, sidecar, method="base", base=policy.rounding_base)


def _midpoint6(frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy, *, column: str | None) -> Mitigated:
    return round_counts(frame, sidecar, method="midpoint6")


def _roll_up(frame: pd.DataFrame, sidecar: Sidecar, policy: SdcPolicy, *, column: str | None) -> Mitigated:
    if not column:
        raise BadInput("roll-up needs the ICD-10 column to roll up (--column)")
    return roll_up(frame, sidecar, column, policy)


# The mitigations by the name a researcher asks for.
MITIGATIONS: dict[str, Mitigation] = {
    "suppress": _suppress,
    "round": _round,
    "midpoint6": _midpoint6,
    "roll-up": _roll_up,
}


def method_names() -> str:
    """The registered names, as a sentence lists them: ``suppress, round, midpoint6 or roll-up``."""
    names = list(MITIGATIONS)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def get_mitigation(name: str) -> Mitigation:
    """The mitigation registered as ``name``; :class:`BadInput` naming every registered one otherwise."""
    try:
        return MITIGATIONS[name]
    except KeyError:
        raise BadInput(f"mitigation {name!r}: use {method_names()}") from None
