"""Budgets are exact: amounts are the decimals typed, so a grant of 0.03 pays three queries of 0.01."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tests.conftest import grant
from tests.integration.dp.conftest import Registry

from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.dp import engine, ledger
from research_kit.dp.accounting import PICO, amount, rho_from, rho_text, to_picorho
from research_kit.dp.query import make_query


def _ask(registry: Registry, study: str, rho: object, i: int) -> None:
    query = make_query("count", "patients", rho=rho, where=f"birth_year >= {1900 + i}")  # type: ignore[arg-type]
    engine.run(registry.ws, query, study=study, source=registry.source)


@pytest.mark.parametrize(("granted", "cost", "paid"), [("0.03", 0.01, 3), ("0.03", "0.003", 10), (0.3, 0.1, 3)])
def test_a_grant_pays_exactly_as_many_queries_as_its_decimal_says(
    registry: Registry, granted: object, cost: object, paid: int
) -> None:
    study = f"exact-{str(granted).replace('.', '')}-{str(cost).replace('.', '')}"
    grant(registry.ws, study, granted)  # type: ignore[arg-type]
    for i in range(paid):
        _ask(registry, study, cost, i)
    balance = ledger.balance(registry.ws, study)
    assert balance.remaining == 0, rho_text(balance.remaining)
    with pytest.raises(PolicyRefusal) as refused:
        _ask(registry, study, cost, paid)
    # Cost and remainder to enough digits that they differ.
    assert f"costs rho {Decimal(str(cost)).normalize():f}" in str(refused.value)
    assert "but only rho 0 (" in str(refused.value)


def test_amounts_are_read_as_the_decimal_typed() -> None:
    assert to_picorho("0.03", round_up=False) == 3 * to_picorho(0.01, round_up=True) == 30_000_000_000
    assert to_picorho(0.1, round_up=True) == PICO // 10  # the float 0.1 stands for the decimal 0.1
    assert rho_text(29_999_999_999) == "0.029999999999"
    assert amount("1_000") == Decimal(1000)
    eps = rho_from(None, "1", 1e-7)
    assert eps is not None
    assert eps == Decimal(to_picorho(eps, round_up=False)) / PICO


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1e-300", "smaller than the ledger's unit"),
        ("nan", "finite number"),
        ("inf", "finite number"),
        ("-0.1", "more than 0"),
        ("0", "more than 0"),
        ("abc", "must be a number"),
        ("1e9", "larger than any budget"),
        ("\u0661", "plain decimal digits"),  # an Arabic-Indic one
        ("\uff10.\uff10\uff11", "plain decimal digits"),  # full-width 0.01
        ("0." + "0" * 200_000 + "1", "plain decimal digits"),  # slow to read, and never a budget
        ("1e999999999", "plain decimal digits"),
        ("sNaN", "plain decimal digits"),
    ],
)
def test_an_amount_the_ledger_cannot_hold_is_one_line(value: str, says: str) -> None:
    with pytest.raises(BadInput, match=says):
        rho_from(value, None, 1e-7)


def test_a_query_whose_filter_is_empty_is_refused_before_anything_is_charged(registry: Registry) -> None:
    grant(registry.ws, "empty-filter", 0.1)
    for where in ("", "  ", ["sex = female", ""]):
        with pytest.raises(BadInput, match="an empty filter"):
            make_query("count", "patients", rho=0.01, where=where)
    with pytest.raises(BadInput, match="filter 'and birth_year >= 1950'"):
        make_query("count", "patients", rho=0.01, where="sex = female and  and birth_year >= 1950")
    with pytest.raises(BadInput, match="bounds"):
        make_query("mean", "patients", rho=0.01, column_name="birth_year", bounds=(float("-inf"), 2000))
    with pytest.raises(BadInput, match="within"):
        make_query("sum", "patients", rho=0.01, column_name="birth_year", bounds=(0, 1e300))
    with pytest.raises(BadInput, match="out of range"):
        make_query("count", "patients", rho=0.01, where="birth_year >= 99999999999999999999999")
    assert ledger.balance(registry.ws, "empty-filter").spent == 0
