"""``budget grant|show|reset-sandbox``: privacy budgets, a study's or (``--twin``) the registry's DP-twin budget."""

from __future__ import annotations

from typing import Annotated

import typer

from research_kit.actions import budget
from research_kit.cli.common import actor, console, workspace
from research_kit.console import budget as show
from research_kit.console.output import print_json
from research_kit.core.errors import BadInput
from research_kit.tiers import Tier

app = typer.Typer(add_completion=False)
budget_app = typer.Typer(help="Privacy budgets: the committee grants, anyone reads.", no_args_is_help=True)
app.add_typer(budget_app, name="budget")


@budget_app.command("grant")
def grant(
    study: Annotated[str | None, typer.Argument(help="The study (its pipeline's id); or --twin.")] = None,
    twin: Annotated[
        bool, typer.Option("--twin", help="The registry's DP-twin budget (spent by 'synth --model aim|mst').")
    ] = False,
    rho: Annotated[str | None, typer.Option("--rho", help="Budget to add, in rho (zCDP).")] = None,
    epsilon: Annotated[str | None, typer.Option("--epsilon", help="... or in epsilon, at --delta.")] = None,
    delta: Annotated[float | None, typer.Option("--delta", help="Delta for --epsilon [default: [dp].delta].")] = None,
    note: Annotated[str, typer.Option(help="The committee's reference for the decision.")] = "",
    owner: Annotated[
        list[str] | None,
        typer.Option(
            "--owner",
            help="A researcher who owns the study, or with --twin a steward who builds the DP "
            "twin (repeat; needed at the first grant: they are its permit's users).",
        ),
    ] = None,
) -> None:
    """Grant a study privacy budget (a committee member; added to what it has), naming its owners; with --twin,
    the registry's DP-twin budget instead, naming the stewards who build it. Audited."""
    ws = workspace()
    who = actor()  # signed in first, whatever else is wrong with the command
    if (study is None) == (not twin):
        raise BadInput("give a STUDY, or --twin for the registry's DP-twin budget (one of the two)")
    if twin:
        balance = budget.grant_twin(ws, actor=who, rho=rho, epsilon=epsilon, delta=delta, note=note, owners=owner or ())
        show.print_twin_balance(console, balance, ws.policy().dp.delta)
        return
    assert study is not None
    balance = budget.grant(
        ws, actor=who, study=study, rho=rho, epsilon=epsilon, delta=delta, note=note, owners=owner or ()
    )
    show.print_balances(console, [balance], ws.policy().dp.delta)


@budget_app.command("show")
def show_budget(
    study: Annotated[str | None, typer.Argument(help="One study, with its spend history [default: all].")] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="The synthetic twin's sandbox ledger.")] = False,
    twin: Annotated[
        bool, typer.Option("--twin", help="The registry's DP-twin budget, with the DP twins that spent it.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON: an array of budgets; with a study or --twin, one object with its spends.",
        ),
    ] = False,
) -> None:
    """Granted, spent, reserved and remaining budget; with a study (or --twin), its spend history."""
    ws = workspace()
    delta = ws.policy().dp.delta
    if twin:
        who = actor(ws)
        if study is not None or sandbox:
            raise BadInput("--twin shows the registry's DP-twin budget alone: no STUDY, no --sandbox")
        balance = budget.twin_shown(ws, actor=who)
        twin_spends = budget.twin_history(ws, actor=who)
        if as_json:
            print_json(show.twin_budget_json(balance, twin_spends, delta))
        else:
            show.print_twin_balance(console, balance, delta)
            if twin_spends:
                show.print_twin_history(console, twin_spends, delta)
        return
    tier: Tier = "sandbox" if sandbox else "real"
    balances = budget.shown(ws, actor=actor(ws), study=study, tier=tier)
    spends = budget.history(ws, study=study, tier=tier) if study else []
    if as_json:
        print_json(show.study_budget_json(balances[0], spends, delta) if study else show.balances_json(balances, delta))
        return
    show.print_balances(console, balances, delta)
    if study:
        show.print_history(console, spends, delta)


@budget_app.command("reset-sandbox")
def reset_sandbox(study: Annotated[str, typer.Argument(help="The study.")]) -> None:
    """Forget a study's sandbox spends (the twin's ledger only; the real ledger is never reset)."""
    n = budget.reset_sandbox(workspace(), actor=actor(), study=study)
    console.print(f"sandbox ledger of {study}: {n} spends forgotten")
