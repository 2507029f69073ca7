"""Who may do what to a review request, in one table: every action on a request is checked here.

A request moves ``pending -> submitted -> (approved | rejected | returned) -> released``.
:data:`RULES` lists, for each action, the states it may start from, who may
take it and the state it leads to. Who is a relation as much as a role: the
request's *author* submits, mitigates and comments; a *reviewer* is a
committee member who is neither the author of the request nor an owner of its
study; only a reviewer writes private comments and releases. The actions (:mod:`research_kit.actions`)
and through them the CLI, the web app and the demo ask :func:`check` before
they change anything; the web app asks :func:`allowed` to decide which forms
to show. ``docs/reference.md`` shows this table, generated from it
(``make docs``), and a test walks every state x action x relation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from research_kit.core.errors import PolicyRefusal


class Role(StrEnum):
    RESEARCHER = "researcher"
    COMMITTEE = "committee"
    STEWARD = "steward"


class State(StrEnum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    RETURNED = "returned"
    APPROVED = "approved"
    REJECTED = "rejected"
    RELEASED = "released"


class Act(StrEnum):
    READ = "read"
    RECHECK = "recheck"
    SUBMIT = "submit"
    MITIGATE = "mitigate"
    COMMENT = "comment"
    COMMENT_PRIVATELY = "comment privately"
    APPROVE = "approve"
    REJECT = "reject"
    RETURN = "return"
    RELEASE = "release"


class Who(StrEnum):
    """A person's relation to a request, from their roles and whether they wrote it or own its study."""

    AUTHOR = "its author or an owner of its study"
    REVIEWER = "a committee member who is not its author nor an owner of its study"
    COMMITTEE = "a committee member"
    READER = "its author, an owner of its study, a committee member or a steward"
    AUTHOR_OR_COMMITTEE = "its author, an owner of its study or a committee member"


OPEN = frozenset({State.PENDING, State.SUBMITTED, State.RETURNED, State.APPROVED})
ANY = frozenset(State)


@dataclass(frozen=True)
class Rule:
    act: Act
    states: frozenset[State]
    who: Who
    to: tuple[State, ...] = ()  # the states it may lead to; () leaves the state as it is
    why: str = ""  # why a state is refused, said after "request N is STATE: "
    refusal: str = "{name} may not {act} request {request}: only {who} may"  # why a person is refused
    reopens: bool = False  # an approved request goes back to submitted (its changed outputs need votes again)

    def leads_to(self, state: State) -> tuple[State, ...]:
        """The states this action may lead to from ``state``."""
        if self.reopens:
            return (State.SUBMITTED,) if state is State.APPROVED else (state,)
        return self.to or (state,)


REVIEWING = "{name!r} is {role}; reviewing outputs needs the committee role"
SUBMITTED = frozenset({State.SUBMITTED})
SUBMITTING = "only the request's author ({author}) or its study's owners submit it"
CHANGING = "only the request's author ({author}) or its study's owners change its outputs"

RULES: tuple[Rule, ...] = (
    Rule(Act.READ, ANY, Who.READER, refusal="there is no review request {request}"),
    Rule(Act.RECHECK, OPEN, Who.READER, why="its checks are final"),
    Rule(Act.SUBMIT, frozenset({State.PENDING, State.RETURNED}), Who.AUTHOR, (State.SUBMITTED,),
         why="only a pending or returned one is submitted", refusal=SUBMITTING),
    Rule(Act.MITIGATE, OPEN, Who.AUTHOR, why="its outputs no longer change",
         refusal=CHANGING, reopens=True),
    Rule(Act.COMMENT, ANY, Who.AUTHOR_OR_COMMITTEE, refusal="{name} may not comment on request {request}"),
    Rule(Act.COMMENT_PRIVATELY, ANY, Who.REVIEWER,
         refusal="only committee members who do not review their own work write private comments"),
    Rule(Act.APPROVE, SUBMITTED, Who.REVIEWER, (State.SUBMITTED, State.APPROVED),
         why="only a submitted request is reviewed", refusal=REVIEWING),
    Rule(Act.REJECT, SUBMITTED, Who.REVIEWER, (State.REJECTED,), why="only a submitted request is reviewed",
         refusal=REVIEWING),
    Rule(Act.RETURN, SUBMITTED, Who.REVIEWER, (State.RETURNED,), why="only a submitted request is reviewed",
         refusal=REVIEWING),
    Rule(Act.RELEASE, frozenset({State.APPROVED}), Who.REVIEWER, (State.RELEASED,),
         why="only an approved request is released",
         refusal="{name!r} is {role}; releasing outputs needs the committee role"),
)  # fmt: skip
_BY_ACT = {r.act: r for r in RULES}


@dataclass(frozen=True)
class Person:
    """Who is acting, as far as a request is concerned (an unknown or disabled user holds no role)."""

    name: str
    roles: frozenset[Role]
    author: bool = False  # wrote the request
    owner: bool = False  # owns the request's study
    standing: str = ""  # how to name them when they hold no role: "not a user of this workspace", "disabled"
    active: bool = True  # a disabled user may do nothing, not even to their own requests

    def described(self) -> str:
        if not self.roles:
            return self.standing or "without a role"
        return " and ".join(f"a {r}" for r in sorted(self.roles))


def relations(person: Person) -> frozenset[Who]:
    """Every :class:`Who` that ``person`` is (none for a disabled user)."""
    if not person.active:
        return frozenset()
    committee = Role.COMMITTEE in person.roles
    out = set()
    if person.author or person.owner:
        out |= {Who.AUTHOR, Who.READER, Who.AUTHOR_OR_COMMITTEE}
    if committee:
        out |= {Who.COMMITTEE, Who.READER, Who.AUTHOR_OR_COMMITTEE}
        if not person.author and not person.owner:
            out.add(Who.REVIEWER)
    if Role.STEWARD in person.roles:
        out.add(Who.READER)
    return frozenset(out)


def rule(act: Act) -> Rule:
    return _BY_ACT[act]


def allowed(act: Act, state: State, person: Person) -> bool:
    """Whether ``person`` may take ``act`` on a request in ``state``."""
    found = _BY_ACT[act]
    return state in found.states and found.who in relations(person)


def check(act: Act, state: State, person: Person, *, request: int, author: str = "") -> Rule:
    """:func:`allowed`, or a one-line :class:`PolicyRefusal` saying who may, or from which state."""
    found = _BY_ACT[act]
    if found.who not in relations(person):
        if found.who is Who.REVIEWER and Role.COMMITTEE in person.roles:
            if person.author:
                raise PolicyRefusal(f"{person.name} is the author of request {request}: an author never reviews "
                                    "their own outputs")  # fmt: skip
            raise PolicyRefusal(f"{person.name} owns the study of request {request}: an owner never reviews its "
                                "outputs")  # fmt: skip
        raise PolicyRefusal(
            found.refusal.format(name=person.name, act=act, request=request, who=found.who, author=author,
                                 role=person.described())
        )  # fmt: skip
    if state not in found.states:
        raise PolicyRefusal(f"request {request} is {state}: {found.why or 'nothing more is done to it'}")
    return found


def next_state(act: Act, state: State, proposed: State | None = None) -> State:
    """The state ``act`` leads to from ``state`` (``proposed`` where the table allows several); the code's
    changes of state all pass here, so none can differ from the table."""
    found = _BY_ACT[act]
    options = found.leads_to(state)
    chosen = proposed if proposed is not None else options[0]
    if state not in found.states or chosen not in options or (proposed is None and len(options) > 1):
        raise ValueError(f"the permissions table has no {act} from {state} to {chosen}")
    return chosen


def table() -> list[tuple[Act, State, Who, tuple[State, ...]]]:
    """Every allowed (action, from state, who, to states), in the order of :data:`RULES` and :class:`State`."""
    return [(r.act, s, r.who, r.leads_to(s)) for r in RULES for s in State if s in r.states]


def markdown(rows: Iterable[tuple[Act, State, Who, tuple[State, ...]]] | None = None) -> str:
    """The permissions table as Markdown (``docs/permissions.md``)."""
    lines = [
        "| action | from state | who | to state |",
        "| --- | --- | --- | --- |",
    ]
    for act, state, who, to in rows if rows is not None else table():
        lines.append(f"| {act} | {state} | {who} | {' or '.join(to)} |")
    return "\n".join(lines) + "\n"


class Duty(StrEnum):
    """What a role is for in the workspace (outside a review request): each is checked through :data:`DUTIES`."""

    ADD_USER = "adding a user"
    DISABLE_USER = "disabling a user"
    SET_PASSWORD = "setting a password"
    RESET_CODES = "resetting a user's one-time codes"
    HANDLE_KEY = "handling the pseudonymisation key"
    INGEST = "ingesting an export"
    ASSESS_RISK = "assessing an extract's re-identification risk"
    BUILD_TWIN = "building a synthetic twin"
    EXPORT_TWIN = "exporting a synthetic twin (as phenopackets)"
    REPORT_QUALITY = "reporting an extract's data quality"
    WAIVE_SANDBOX = "waiving the sandbox"
    ALLOW_DEMO = "allowing demo mode on real data"
    RERUN = "rerunning every study"
    GRANT = "granting a study budget or a data permit"
    APPLY_PERMIT = "applying for a data permit"
    CLOSE_PERMITS = "closing ended data permits (archiving or deleting their studies' work)"
    START_LAB = "starting a lab"
    READ_AUDIT = "reading the audit log"
    BACKUP = "backing the workspace up"
    RESTORE = "restoring a workspace from a snapshot"
    RECORD_OPTOUT = "recording opt-outs of secondary use"
    READ_OPTOUTS = "reading the opt-out register's count"
    DESCRIBE_DATASET = "writing the registry's dataset description (HealthDCAT-AP)"
    PUBLISH_REGISTER = "publishing the transparency register"
    ANSWER_PERSON = "answering a person who asks where their data was used"


# Who may do each duty. A study's own acts (running its pipeline, spending its budget) are its owners'
# (research_kit.core.owners); reruns act as a service identity (research_kit.core.identity.RERUN_SERVICE).
DUTIES: dict[Duty, tuple[Role, ...]] = {
    Duty.ADD_USER: (Role.STEWARD,),
    Duty.DISABLE_USER: (Role.STEWARD,),
    Duty.SET_PASSWORD: (Role.STEWARD,),
    Duty.RESET_CODES: (Role.STEWARD,),
    Duty.HANDLE_KEY: (Role.STEWARD,),
    Duty.INGEST: (Role.STEWARD,),
    Duty.ASSESS_RISK: (Role.STEWARD,),
    Duty.BUILD_TWIN: (Role.STEWARD,),
    Duty.EXPORT_TWIN: (Role.STEWARD, Role.RESEARCHER),  # the twin is the shareable tier
    Duty.REPORT_QUALITY: (Role.STEWARD, Role.COMMITTEE),  # counts and shares only
    Duty.WAIVE_SANDBOX: (Role.STEWARD,),
    Duty.ALLOW_DEMO: (Role.STEWARD,),
    Duty.RERUN: (Role.STEWARD,),
    Duty.GRANT: (Role.COMMITTEE,),
    Duty.APPLY_PERMIT: (Role.RESEARCHER,),
    Duty.CLOSE_PERMITS: (Role.STEWARD,),
    Duty.START_LAB: (Role.RESEARCHER,),
    Duty.READ_AUDIT: (Role.COMMITTEE, Role.STEWARD),  # it names every user's actions
    Duty.BACKUP: (Role.STEWARD,),
    Duty.RESTORE: (Role.STEWARD,),
    Duty.RECORD_OPTOUT: (Role.STEWARD,),
    Duty.READ_OPTOUTS: (Role.STEWARD, Role.COMMITTEE),  # a count and a version, never an entry
    Duty.DESCRIBE_DATASET: (Role.STEWARD, Role.COMMITTEE),  # rounded counts, bands, shares: never a row
    Duty.PUBLISH_REGISTER: (Role.STEWARD, Role.COMMITTEE),  # public facts: permits, releases, counts
    Duty.ANSWER_PERSON: (Role.STEWARD,),  # holds the key: finds one person in the extracts
}


def duties_markdown() -> str:
    """Who may do each duty, as Markdown (``docs/reference.md``)."""
    lines = ["| duty | who |", "| --- | --- |"]
    lines += [f"| {duty} | {' or '.join(r.value for r in roles)} |" for duty, roles in DUTIES.items()]
    return "\n".join(lines) + "\n"
