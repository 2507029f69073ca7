"""Budgets and answers on screen (rich), for the CLI and for notebooks."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from research_kit.dp.accounting import epsilon_of, from_picorho
from research_kit.dp.answer import Answer
from research_kit.dp.ledger import Balance, Spend


def _rho(picorho: int, delta: float) -> str:
    rho = from_picorho(picorho)
    return f"{rho:.4g} (ε {epsilon_of(max(rho, 0.0), delta):.3g})"


def print_balances(console: Console, balances: list[Balance], delta: float) -> None:
    table = Table(title=f"Privacy budgets (rho, zCDP; ε at δ = {delta:.0e})")
    for name in ("study", "ledger", "granted", "spent", "reserved", "remaining"):
        table.add_column(name, justify="left" if name in ("study", "ledger") else "right")
    for b in balances:
        table.add_row(
            b.study,
            b.tier,
            _rho(b.granted, delta),
            _rho(b.spent, delta),
            _rho(b.reserved, delta),
            _rho(max(b.remaining, 0), delta),
        )
    if not balances:
        console.print("no budget granted yet ('research-kit budget grant STUDY --rho R')")
        return
    console.print(table)


def print_history(console: Console, spends: list[Spend], delta: float) -> None:
    table = Table(title="Spend history")
    for name in ("#", "when", "who", "query", "source", "mechanism", "noise scale", "rho", "ε", "state"):
        table.add_column(name, justify="right" if name in ("#", "noise scale", "rho", "ε") else "left")
    for s in spends:
        what = (s.answer or {}).get("description") or s.query.get("kind", "")
        table.add_row(
            str(s.id),
            (s.spent_at or s.reserved_at).replace("T", " ").removesuffix("+00:00"),
            s.who,
            what,
            s.source,
            s.mechanism,
            f"{s.scale:.4g}",
            f"{s.rho:.4g}",
            f"{epsilon_of(s.rho, delta):.3g}",
            s.state,
        )
    console.print(table)


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
    console.print(table)
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
