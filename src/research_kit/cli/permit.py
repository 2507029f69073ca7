"""``permit apply|grant|refuse|amend|revoke|show|list``: data permits, as a health data access body runs them."""

from __future__ import annotations

from typing import Annotated

import typer

from research_kit.actions import permits
from research_kit.cli.common import actor, console, workspace
from research_kit.console import permits as show
from research_kit.console.output import print_json
from research_kit.core.errors import BadInput
from research_kit.core.permits import CATEGORIES, PUBLICATION, TIERS, results_due

app = typer.Typer(add_completion=False)
permit_app = typer.Typer(
    help="Data permits (EHDS): researchers apply, the committee decides; every use of the data is checked "
    "against its study's permit.",
    no_args_is_help=True,
)
app.add_typer(permit_app, name="permit")

Purpose = Annotated[str, typer.Option("--purpose", help="What the data is used for, in words.")]
Category = Annotated[str, typer.Option("--category", help=f"The regulation's purpose: {', '.join(CATEGORIES)}.")]
Tier = Annotated[str, typer.Option("--tier", help=f"{' | '.join(TIERS)}: each allows the ones before it.")]
Tables = Annotated[str, typer.Option("--tables", help="Tables, comma-separated (patients,diagnoses), or 'all'.")]
Columns = Annotated[
    str | None,
    typer.Option("--columns", help="Only these columns of their tables, comma-separated (patients.sex,...); the "
                 "other tables whole."),
]  # fmt: skip
Versions = Annotated[
    str | None,
    typer.Option("--versions", help="Extract versions, comma-separated, or 'new' (every one built until the end)."),
]
Until = Annotated[str, typer.Option("--until", help="The permit's last day, YYYY-MM-DD.")]
Holder = Annotated[str, typer.Option("--holder", help="The organisation holding the permit (a legal person).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _id(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 2**63 - 1:
        raise BadInput(f"permit {text!r}: a permit is named by its number (research-kit permit list)")
    return int(text)


@permit_app.command("apply")
def apply(
    study: Annotated[str, typer.Argument(help="The study (its pipeline's id).")],
    purpose: Purpose,
    tier: Tier,
    tables: Tables,
    until: Until,
    holder: Holder,
    category: Category = "scientific-research",
    users: Annotated[str | None, typer.Option("--users", help="Other researchers, comma-separated.")] = None,
    rho: Annotated[str | None, typer.Option("--rho", help="The privacy budget asked, in rho.")] = None,
    columns: Columns = None,
    versions: Versions = None,
    as_json: Json = False,
) -> None:
    """Apply for a data permit (a researcher; you are one of its users). The committee decides."""
    ws = workspace()
    permit = permits.apply(
        ws, actor=actor(ws), study=study, holder=holder, purpose=purpose, category=category, tier=tier,
        tables=tables, until=until, users_named=users, rho=rho, columns=columns, versions=versions,
    )  # fmt: skip
    if as_json:
        print_json(permit.to_dict())
        return
    console.print(
        f"permit {permit.id} applied for: it waits for the committee ('research-kit permit show {permit.id}')"
    )


@permit_app.command("grant")
def grant(
    target: Annotated[str, typer.Argument(help="An application's number; or, with --users, a study to grant.")],
    legal_basis: Annotated[str, typer.Option("--legal-basis", help="The law or decision the grant rests on.")],
    users: Annotated[str | None, typer.Option("--users", help="Grant directly: its researchers.")] = None,
    purpose: Annotated[str | None, typer.Option("--purpose", help="Grant directly: its purpose.")] = None,
    tier: Annotated[str | None, typer.Option("--tier", help="Grant directly: twin | dp | real.")] = None,
    tables: Annotated[str | None, typer.Option("--tables", help="Grant directly: its tables, or 'all'.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Grant directly: its last day.")] = None,
    holder: Annotated[str | None, typer.Option("--holder", help="Grant directly: its organisation.")] = None,
    category: Category = "scientific-research",
    rho: Annotated[str | None, typer.Option("--rho", help="The study's budget granted with it, in rho.")] = None,
    note: Annotated[str, typer.Option("--note", help="The committee's reference for the decision.")] = "",
    optout_exception: Annotated[
        str,
        typer.Option(
            "--optout-exception",
            help="The legal basis for using the data of people who opted out (shown wherever the permit is).",
        ),
    ] = "",
    continues: Annotated[
        str | None, typer.Option("--continues", help="The permit this one continues (same pseudonyms).")
    ] = None,
    columns: Columns = None,
    versions: Versions = None,
    as_json: Json = False,
) -> None:
    """Grant a data permit (a committee member who is none of its users), with its legal basis. Audited."""
    ws = workspace()
    who = actor(ws)
    direct = (users, purpose, tier, tables, until, holder)
    if users is None:
        if any(v is not None for v in (*direct, columns, versions)):
            raise BadInput("--purpose, --tier, --tables, --columns, --versions, --until and --holder grant directly: "
                           "name --users too (or amend the application)")  # fmt: skip
        permit = permits.decide(ws, actor=who, permit_id=_id(target), legal_basis=legal_basis, note=note, rho=rho,
                                optout_exception=optout_exception,
                                continues=_id(continues) if continues is not None else None)  # fmt: skip
    else:
        flags = ("--purpose", "--tier", "--tables", "--until", "--holder")
        missing = [f for f, v in zip(flags, direct[1:], strict=True) if v is None]
        if missing:
            raise BadInput(f"granting study {target} directly needs {', '.join(missing)}")
        if continues is not None:
            raise BadInput("--continues goes with an application's number")
        permit = permits.grant_directly(
            ws, actor=who, study=target, users_named=users, holder=str(holder), purpose=str(purpose),
            category=category, tier=str(tier), tables=str(tables), until=str(until), legal_basis=legal_basis,
            rho=rho, note=note, optout_exception=optout_exception, columns=columns, versions=versions,
        )  # fmt: skip
    if as_json:
        print_json(permit.to_dict())
        return
    console.print(f"permit {permit.id} granted: study {permit.study}, {permit.tier} tier, until {permit.until}")


@permit_app.command("refuse")
def refuse(
    permit_id: Annotated[str, typer.Argument(help="The application's number.")],
    note: Annotated[str, typer.Option("--note", help="Why (the applicants read it).")],
) -> None:
    """Refuse an application (a committee member), saying why. Audited."""
    ws = workspace()
    permit = permits.refuse(ws, actor=actor(ws), permit_id=_id(permit_id), note=note)
    console.print(f"permit {permit.id} refused")


@permit_app.command("amend")
def amend(
    permit_id: Annotated[str, typer.Argument(help="The permit's number.")],
    note: Annotated[str, typer.Option("--note", help="Why it changes.")],
    users: Annotated[str | None, typer.Option("--users", help="Its researchers, all of them, comma-separated.")] = None,
    tier: Annotated[str | None, typer.Option("--tier", help="twin | dp | real.")] = None,
    tables: Annotated[str | None, typer.Option("--tables", help="Its tables, or 'all'.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Its last day.")] = None,
    purpose: Annotated[str | None, typer.Option("--purpose", help="Its purpose.")] = None,
    holder: Annotated[str | None, typer.Option("--holder", help="Its organisation.")] = None,
    category: Annotated[str | None, typer.Option("--category", help=f"One of: {', '.join(CATEGORIES)}.")] = None,
    optout_exception: Annotated[
        str | None, typer.Option("--optout-exception", help="The opt-out exception's legal basis ('' ends it).")
    ] = None,
    columns: Columns = None,
    versions: Versions = None,
    as_json: Json = False,
) -> None:
    """Change an application or a permit in force (a committee member); what is not given stays. Audited with
    what changed."""
    ws = workspace()
    permit = permits.amend(
        ws, actor=actor(ws), permit_id=_id(permit_id), note=note, users_named=users, tier=tier, tables=tables,
        until=until, purpose=purpose, holder=holder, category=category, optout_exception=optout_exception,
        columns=columns, versions=versions,
    )  # fmt: skip
    if as_json:
        print_json(permit.to_dict())
        return
    console.print(f"permit {permit.id} amended")


@permit_app.command("revoke")
def revoke(
    permit_id: Annotated[str, typer.Argument(help="The permit's number.")],
    note: Annotated[str, typer.Option("--note", help="Why.")],
) -> None:
    """Revoke a permit in force (a committee member): its study's runs, reruns and queries stop. Audited."""
    ws = workspace()
    permit = permits.revoke(ws, actor=actor(ws), permit_id=_id(permit_id), note=note)
    console.print(f"permit {permit.id} revoked: study {permit.study} may no longer use the data")


@permit_app.command("results")
def results(
    permit_id: Annotated[str, typer.Argument(help="The permit's number.")],
    status: Annotated[str, typer.Option("--status", help=f"One of: {', '.join(PUBLICATION)}.")],
    reference: Annotated[str, typer.Option("--reference", help="Where it was published (a DOI), or why not.")] = "",
) -> None:
    """Record where a permit's results stand (its users or the committee): EHDS asks that they be published
    within [permits].results_due_months of its end. Audited."""
    ws = workspace()
    permit = permits.record_results(ws, actor=actor(ws), permit_id=_id(permit_id), status=status, reference=reference)
    console.print(f"permit {permit.id}: results {permit.publication}", highlight=False)


@permit_app.command("close")
def close() -> None:
    """Close every ended or revoked permit of a study with no permit in force (a steward): its study's work is
    archived or deleted as [permits].on_end says, and its unreleased outputs can no longer leave. Audited."""
    ws = workspace()
    closed = permits.close_ended(ws, actor=actor(ws))
    if not closed:
        console.print("no ended permit to close")
    for c in closed:
        console.print(f"permit {c.permit.id} (study {c.permit.study}): {c.done}", highlight=False)


@permit_app.command("show")
def show_permit(permit_id: Annotated[str, typer.Argument(help="The permit's number.")], as_json: Json = False) -> None:
    """One permit: its purpose, holder, users, data, tier, period and decisions."""
    ws = workspace()
    permit = permits.shown(ws, actor=actor(ws), permit_id=_id(permit_id))
    if as_json:
        print_json(permit.to_dict())
        return
    show.print_permit(console, permit)


@permit_app.command("list")
def list_permits(
    study: Annotated[str | None, typer.Option("--study", help="One study's permits.")] = None,
    ending: Annotated[
        bool, typer.Option("--ending", help="Only permits in force that end within [permits].notice_days.")
    ] = False,
    as_json: Json = False,
) -> None:
    """The permits you may see (the committee and stewards: all; a researcher: their own), newest first; those
    ending soon are named below the table."""
    ws = workspace()
    who = actor(ws)
    found = permits.ending_soon(ws, actor=who) if ending else permits.listed(ws, actor=who, study=study)
    if as_json:
        print_json(show.permits_json(found))
        return
    show.print_permits(console, found)
    if not ending:
        soon = permits.ending_soon(ws, actor=who)
        for p in soon:
            console.print(f"permit {p.id} (study {p.study}) ends on {p.until}", highlight=False)
        months = ws.policy().permits.results_due_months
        for p in permits.overdue(ws, actor=who):
            due = results_due(p, months)
            console.print(f"permit {p.id} (study {p.study}): results overdue since {due} ({p.publication})",
                          highlight=False)  # fmt: skip
