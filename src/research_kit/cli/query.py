"""``query``: a differentially private query, charged to a study's budget."""

from __future__ import annotations

from typing import Annotated

import typer

from research_kit.actions.query import KINDS
from research_kit.actions.query import query as ask
from research_kit.cli.common import actor, console, numbers, workspace
from research_kit.console import budget as show

app = typer.Typer(add_completion=False)


@app.command()
def query(
    kind: Annotated[str, typer.Argument(help=f"{', '.join(KINDS[:-1])} or {KINDS[-1]}.")],
    table: Annotated[str, typer.Argument(help="patients, diagnoses, phenotypes or encounters.")],
    study: Annotated[str, typer.Option("--study", help="The study whose budget pays.")],
    by: Annotated[list[str] | None, typer.Option("--by", help="Group by this column (repeat for more).")] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", help="Cohort filter, e.g. 'sex = female' (repeat to AND).")
    ] = None,
    column: Annotated[str | None, typer.Option("--column", help="The numeric column (sum, mean, ...).")] = None,
    bounds: Annotated[str | None, typer.Option("--bounds", help="LOWER,UPPER clipping bounds.")] = None,
    q: Annotated[float | None, typer.Option("--q", help="Quantile level (0.5 = median).")] = None,
    candidates: Annotated[
        str | None, typer.Option("--candidates", help="Quantile candidates, comma-separated.")
    ] = None,
    bins: Annotated[str | None, typer.Option("--bins", help="Histogram edges, comma-separated.")] = None,
    per_group: Annotated[int, typer.Option("--per-group", help="Rows a patient may add to a group.")] = 1,
    max_groups: Annotated[int | None, typer.Option("--max-groups", help="Groups a patient may count in.")] = None,
    clamp: Annotated[bool, typer.Option("--clamp", help="Clamp counts at zero (default: signed).")] = False,
    rho: Annotated[str | None, typer.Option("--rho", help="Cost [default: [dp].default_query_rho].")] = None,
    epsilon: Annotated[str | None, typer.Option("--epsilon", help="... or the cost in epsilon.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the interval and the cost; spend nothing.")] = False,
    reuse: Annotated[bool, typer.Option("--reuse", help="Reuse this query's answer from an earlier extract.")] = False,
    extract: Annotated[str | None, typer.Option("--extract", help="Extract id [default: the newest].")] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Ask the synthetic twin (sandbox ledger).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """A differentially private query on the real extract (or the twin), charged to the study's budget."""
    answer = ask(
        workspace(), actor=actor(), kind=kind, table=table, study=study, by=by or (), where=where or (),
        column=column, bounds=numbers(bounds, "--bounds"), q=q, candidates=numbers(candidates, "--candidates"),
        bins=numbers(bins, "--bins"), per_group=per_group, max_groups=max_groups, clamp=clamp, rho=rho,
        epsilon=epsilon, preview=dry_run, reuse=reuse, extract=extract, tier="sandbox" if sandbox else "real",
    )  # fmt: skip
    if as_json:
        print(show.answer_json(answer))
    else:
        show.print_answer(console, answer)
