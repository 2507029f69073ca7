"""Budgets and answers on screen (rich), for the CLI and for notebooks; and as JSON, for scripts."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from research_kit.console.output import print_table
from research_kit.dp.accounting import epsilon_of, from_picorho
from research_kit.dp.answer import Answer
from research_kit.dp.ledger import Balance, Spend

AMOUNTS = ("granted", "spent", "reserved", "remaining")


def _amounts(balance: Balance) -> dict[str, int]:
    """A balance's amounts in picorho, by name; what remains is never shown below zero."""
    return {
        "granted": balance.granted,
        "spent": balance.spent,
        "reserved": balance.reserved,
        "remaining": max(balance.remaining, 0),
    }


def _rho_epsilon(picorho: int, delta: float) -> tuple[float, float]:
    """An amount as rho (zCDP) and as the epsilon it implies at ``delta``."""
    rho = from_picorho(picorho)
    return rho, epsilon_of(max(rho, 0.0), delta)


def _rho(picorho: int, delta: float) -> str:
    rho, epsilon = _rho_epsilon(picorho, delta)
    return f"{rho:.4g} (ε {epsilon:.3g})"


def print_balances(console: Console, balances: list[Balance], delta: float) -> None:
    table = Table(title=f"Privacy budgets (rho, zCDP; ε at δ = {delta:.0e})")
    for name in ("study", "ledger", *AMOUNTS):
        table.add_column(name, justify="left" if name in ("study", "ledger") else "right")
    for b in balances:
        table.add_row(b.study, b.tier, *(_rho(amount, delta) for amount in _amounts(b).values()))
    if not balances:
        console.print("no budget granted yet ('research-kit budget grant STUDY --rho R')")
        return
    print_table(console, table)


def balance_json(balance: Balance, delta: float) -> dict[str, Any]:
    """One study's budget on one ledger: ``study``, ``ledger``, ``delta``, and ``granted``, ``spent``,
    ``reserved``, ``remaining`` each as ``NAME_rho`` and ``NAME_epsilon`` (at ``delta``)."""
    out: dict[str, Any] = {"study": balance.study, "ledger": balance.tier, "delta": delta}
    for name, picorho in _amounts(balance).items():
        out[f"{name}_rho"], out[f"{name}_epsilon"] = _rho_epsilon(picorho, delta)
    return out


def balances_json(balances: list[Balance], delta: float) -> list[dict[str, Any]]:
    """``budget show --json``: one :func:`balance_json` object per study."""
    return [balance_json(b, delta) for b in balances]


def _what(spend: Spend) -> str:
    """What a spend paid for, in a few words."""
    return str((spend.answer or {}).get("description") or spend.query.get("kind", ""))


def spend_json(spend: Spend, delta: float) -> dict[str, Any]:
    """One spend of the history: the same facts as a row of its table, with both of its times."""
    return {
        "id": spend.id,
        "reserved_at": spend.reserved_at,
        "spent_at": spend.spent_at,
        "who": spend.who,
        "query": _what(spend),
        "source": spend.source,
        "mechanism": spend.mechanism,
        "noise_scale": spend.scale,
        "rho": spend.rho,
        "epsilon": epsilon_of(spend.rho, delta),
        "state": spend.state,
    }


def study_budget_json(balance: Balance, spends: list[Spend], delta: float) -> dict[str, Any]:
    """``budget show STUDY --json``: :func:`balance_json` with ``spends``, its history (:func:`spend_json`)."""
    return {**balance_json(balance, delta), "spends": [spend_json(s, delta) for s in spends]}


def print_history(console: Console, spends: list[Spend], delta: float) -> None:
    table = Table(title="Spend history")
    for name in ("#", "when", "who", "query", "source", "mechanism", "noise scale", "rho", "ε", "state"):
        table.add_column(name, justify="right" if name in ("#", "noise scale", "rho", "ε") else "left")
    for s in spends:
        table.add_row(
            str(s.id),
            (s.spent_at or s.reserved_at).replace("T", " ").removesuffix("+00:00"),
            s.who,
            _what(s),
            s.source,
            s.mechanism,
            f"{s.scale:.4g}",
            f"{s.rho:.4g}",
            f"{epsilon_of(s.rho, delta):.3g}",
            s.state,
        )
    print_table(console, table)


def print_twin_balance(console: Console, balance: Balance, delta: float) -> None:
    """The registry's DP-twin budget: granted, spent, reserved, remaining."""
    if balance.granted == 0 and balance.spent == 0 and balance.reserved == 0:
        console.print("no DP-twin budget granted yet ('budget grant --twin --rho R --owner STEWARD')")
        return
    table = Table(title=f"DP-twin budget of the registry (rho, zCDP; ε at δ = {delta:.0e})")
    for name in AMOUNTS:
        table.add_column(name, justify="right")
    table.add_row(*(_rho(amount, delta) for amount in _amounts(balance).values()))
    print_table(console, table)


def print_twin_history(console: Console, spends: list[Spend], delta: float) -> None:
    """The DP twins that spent the registry's DP-twin budget: when, who, extract, twin, mechanism, rho."""
    history = Table(title="DP twins that spent it")
    for name in ("#", "when", "who", "extract", "twin", "mechanism", "rho", "ε", "state"):
        history.add_column(name, justify="right" if name in ("#", "rho", "ε") else "left")
    for s in spends:
        history.add_row(
            str(s.id),
            (s.spent_at or s.reserved_at).replace("T", " ").removesuffix("+00:00"),
            s.who,
            str(s.query.get("extract", "")),
            s.source,
            s.mechanism,
            f"{s.rho:.4g}",
            f"{epsilon_of(s.rho, delta):.3g}",
            s.state,
        )
    print_table(console, history)


def twin_spend_json(spend: Spend, delta: float) -> dict[str, Any]:
    """One DP twin's spend: ``id``, ``reserved_at``, ``spent_at``, ``who``, ``extract``, ``twin``, ``mechanism``,
    ``rho``, ``epsilon`` (at ``delta``), ``state``."""
    return {
        "id": spend.id,
        "reserved_at": spend.reserved_at,
        "spent_at": spend.spent_at,
        "who": spend.who,
        "extract": spend.query.get("extract"),
        "twin": spend.source,
        "mechanism": spend.mechanism,
        "rho": spend.rho,
        "epsilon": epsilon_of(spend.rho, delta),
        "state": spend.state,
    }


def twin_budget_json(balance: Balance, spends: list[Spend], delta: float) -> dict[str, Any]:
    """``budget show --twin --json``: :func:`balance_json` of the DP-twin budget (``study`` is ``@twin``) with
    ``spends``, its history (:func:`twin_spend_json`)."""
    return {**balance_json(balance, delta), "spends": [twin_spend_json(s, delta) for s in spends]}


def print_answer(console: Console, answer: Answer, *, max_rows: int = 60) -> None:
    console.print(answer.summary())
    if answer.table is None:
        console.print("preview: nothing released, nothing spent")
        return
    frame = answer.table
    table = Table(show_edge=False)
    for name in frame.columns:
        table.add_column(name, justify="right" if frame[name].dtype.is_numeric() else "left")
    for row in frame.head(max_rows).iter_rows():
        table.add_row(*(_cell(v) for v in row))
    print_table(console, table)
    if frame.height > max_rows:
        console.print(f"... {frame.height - max_rows} more rows (use --json for all)")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def answer_json(answer: Answer) -> str:
    import json

    data = answer.to_dict()
    data.pop("schema", None)
    if answer.table is not None:
        data["table"] = answer.table.to_dicts()
    return json.dumps(data, indent=2, default=str)
