"""``outputs``, ``review``, ``release`` and ``serve``: outputs on their way out, and the committee's decisions."""

from __future__ import annotations

from typing import Annotated

import typer

from research_kit.actions import review
from research_kit.cli.common import actor, console, workspace
from research_kit.console.output import print_json
from research_kit.console.review import print_request, print_requests, request_json, requests_json
from research_kit.disclosure.mitigate import method_names

app = typer.Typer(add_completion=False)
outputs_app = typer.Typer(help="A study's outputs: checks, submission, mitigations.", no_args_is_help=True)
app.add_typer(outputs_app, name="outputs")
review_app = typer.Typer(help="The committee's review of submitted outputs.", no_args_is_help=True)
app.add_typer(review_app, name="review")
RequestArg = Annotated[int, typer.Argument(help="The request's number.")]
Private = Annotated[bool, typer.Option("--private", help="The comment is for the committee only.")]
ListJson = Annotated[bool, typer.Option("--json", help="Print the requests as a JSON array of objects.")]


@outputs_app.command("list")
def list_outputs(
    study: Annotated[str | None, typer.Option(help="Only this study's requests.")] = None,
    state: Annotated[list[str] | None, typer.Option(help="Only requests in this state (repeatable).")] = None,
    as_json: ListJson = False,
) -> None:
    """Review requests and how their outputs fared in the checks."""
    found = review.list_requests(workspace(), actor=actor(), states=tuple(state or ()), study=study)
    if as_json:
        print_json(requests_json(found))
    else:
        print_requests(console, found)


@outputs_app.command("check")
def check(request: RequestArg) -> None:
    """Run every automatic check on a request's outputs again and show each flag with its reason."""
    print_request(console, review.check(workspace(), actor=actor(), request=request))


@outputs_app.command("submit")
def submit(request: RequestArg) -> None:
    """Submit a request to the committee (its author does; gated outputs stay out of review)."""
    done = review.submit(workspace(), actor=actor(), request=request)
    counts = done.counts()
    console.print(
        f"request {done.id} submitted: {len(done.reviewable)} outputs for review ({counts['fail']} flagged by the "
        f"checks), {counts['gated']} gated"
    )


@outputs_app.command("mitigate")
def mitigate(
    request: RequestArg,
    output: Annotated[str, typer.Argument(help="The output: ACTION/NAME, or NAME when unique.")],
    method: Annotated[str, typer.Option(help=f"{method_names()}.")],
    column: Annotated[str | None, typer.Option(help="With roll-up: the ICD-10 column.")] = None,
) -> None:
    """Apply a disclosure-control mitigation to a table: a new version (its votes start again), recorded."""
    done = review.mitigate(workspace(), actor=actor(), request=request, output=output, method=method, column=column)
    console.print(f"{done.key}: {method} applied; new version {done.path}; checks: {done.status}")


@review_app.command("list")
def list_requests(
    all_states: Annotated[bool, typer.Option("--all", help="Every request, not only those awaiting review.")] = False,
    as_json: ListJson = False,
) -> None:
    """Requests awaiting the committee (submitted), or all of them."""
    found = review.list_requests(workspace(), actor=actor(), states=() if all_states else ("submitted",))
    if as_json:
        print_json(requests_json(found))
    else:
        print_requests(console, found)


@review_app.command("show")
def show(
    request: RequestArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the request as one JSON object.")] = False,
) -> None:
    """A request's outputs with their checks, flags and reasons, provenance, votes and comments."""
    found, provenance = review.show(workspace(), actor=actor(), request=request)
    if as_json:
        print_json(request_json(found, provenance))
    else:
        print_request(console, found, provenance=provenance)


def _vote(request: int, decision: str, outputs: list[str] | None, comment: str | None, private: bool) -> None:
    done = review.vote(
        workspace(), actor=actor(), request=request, decision=decision, outputs=tuple(outputs or ()), comment=comment,
        private=private,
    )  # fmt: skip
    console.print(f"request {done.id}: {decision} recorded; the request is {done.state}")


@review_app.command("approve")
def approve(
    request: RequestArg,
    output: Annotated[list[str] | None, typer.Option(help="Only this output (repeatable) [default: all].")] = None,
    comment: Annotated[str | None, typer.Option(help="Why (required for outputs the checks flag).")] = None,
    private: Private = False,
) -> None:
    """Approve a request's outputs (a committee member who is not their author)."""
    _vote(request, "approve", output, comment, private)


@review_app.command("reject")
def reject(
    request: RequestArg,
    comment: Annotated[str, typer.Option(help="Why (the researcher reads it unless --private).")],
    private: Private = False,
) -> None:
    """Reject a request: it is closed."""
    _vote(request, "reject", None, comment, private)


@review_app.command("return")
def send_back(
    request: RequestArg,
    comment: Annotated[str, typer.Option(help="What to change (the researcher reads it unless --private).")],
    private: Private = False,
) -> None:
    """Return a request to its author for changes."""
    _vote(request, "return", None, comment, private)


@review_app.command("comment")
def comment(
    request: RequestArg,
    text: Annotated[str, typer.Argument(help="The comment.")],
    output: Annotated[str | None, typer.Option(help="About this output.")] = None,
    private: Annotated[bool, typer.Option("--private", help="For the committee only.")] = False,
) -> None:
    """Comment on a request: committee members (private or not) and its author."""
    review.comment(workspace(), actor=actor(), request=request, text=text, private=private, output=output)
    console.print(f"comment added to request {request}")


@app.command()
def release(request: Annotated[int, typer.Argument(help="The approved request's number.")]) -> None:
    """Release an approved request: a zip of its outputs with checksums, a summary and ACRO's results.json."""
    console.print(f"released: {review.release(workspace(), actor=actor(), request=request)}")
