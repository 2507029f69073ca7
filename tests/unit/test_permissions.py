"""The one permissions table: every state x action x kind of person, against the documented rules."""

from __future__ import annotations

import pytest

from research_kit.core.errors import PolicyRefusal
from research_kit.core.permissions import Act, Person, Role, State, allowed, check, next_state

R, C, S = Role.RESEARCHER, Role.COMMITTEE, Role.STEWARD
PEOPLE = {
    "author": Person("ana", frozenset({R}), author=True),
    "other researcher": Person("rob", frozenset({R})),
    "reviewer": Person("cora", frozenset({C})),
    "committee author": Person("cai", frozenset({C}), author=True),
    "committee owner": Person("col", frozenset({C}), owner=True),
    "steward": Person("sam", frozenset({S})),
    "stranger": Person("eve", frozenset(), standing="not a user of this workspace"),
    "owner": Person("oli", frozenset({R}), owner=True),  # a co-owner of the study who did not run it
    "disabled author": Person("dan", frozenset(), author=True, standing="disabled", active=False),
    "steward on the committee": Person("sue", frozenset({S, C})),
}
OPEN = {"pending", "submitted", "returned", "approved"}
ALL = {s.value for s in State}
REVIEWERS = {"reviewer", "steward on the committee"}  # committee members who neither wrote it nor own its study
COMMITTEE = {*REVIEWERS, "committee author", "committee owner"}
MINE = {"author", "owner", "committee author", "committee owner"}  # wrote the request, or own its study
# The rules as docs/reference.md states them, written out by hand: action -> (states, who).
DOCUMENTED: dict[str, tuple[set[str], set[str]]] = {
    "read": (ALL, {*MINE, *COMMITTEE, "steward"}),
    "recheck": (OPEN, {*MINE, *COMMITTEE, "steward"}),
    "submit": ({"pending", "returned"}, MINE),
    "mitigate": (OPEN, MINE),
    "comment": (ALL, {*MINE, *COMMITTEE}),
    "comment privately": (ALL, REVIEWERS),
    "approve": ({"submitted"}, REVIEWERS),
    "reject": ({"submitted"}, REVIEWERS),
    "return": ({"submitted"}, REVIEWERS),
    "release": ({"approved"}, REVIEWERS),
}


def test_every_state_action_and_person_is_allowed_exactly_as_documented() -> None:
    assert set(DOCUMENTED) == {a.value for a in Act}
    for act in Act:
        states, who = DOCUMENTED[act.value]
        for state in State:
            for kind, person in PEOPLE.items():
                expected = state.value in states and kind in who
                assert allowed(act, state, person) is expected, (act, state, kind)
                if expected:
                    check(act, state, person, request=1)
                else:
                    with pytest.raises(PolicyRefusal):
                        check(act, state, person, request=1)


def test_a_refusal_says_in_one_line_who_may_or_from_which_state() -> None:
    with pytest.raises(PolicyRefusal, match="only the request's author \\(ana\\) or its study's owners submit it"):
        check(Act.SUBMIT, State.PENDING, PEOPLE["reviewer"], request=3, author="ana")
    with pytest.raises(PolicyRefusal, match="request 3 is approved: only a pending or returned one is submitted"):
        check(Act.SUBMIT, State.APPROVED, PEOPLE["author"], request=3)
    with pytest.raises(PolicyRefusal, match="'rob' is a researcher; reviewing outputs needs the committee role"):
        check(Act.APPROVE, State.SUBMITTED, PEOPLE["other researcher"], request=3)
    with pytest.raises(PolicyRefusal, match="cai is the author of request 3: an author never reviews"):
        check(Act.APPROVE, State.SUBMITTED, PEOPLE["committee author"], request=3)
    with pytest.raises(PolicyRefusal, match="col owns the study of request 3"):
        check(Act.REJECT, State.SUBMITTED, PEOPLE["committee owner"], request=3)
    with pytest.raises(PolicyRefusal, match="'eve' is not a user of this workspace; releasing outputs needs"):
        check(Act.RELEASE, State.APPROVED, PEOPLE["stranger"], request=3)


def test_every_change_of_state_is_one_the_table_lists() -> None:
    assert next_state(Act.SUBMIT, State.RETURNED) is State.SUBMITTED
    assert next_state(Act.APPROVE, State.SUBMITTED, State.APPROVED) is State.APPROVED
    assert next_state(Act.MITIGATE, State.APPROVED) is State.SUBMITTED  # changed outputs need votes again
    assert next_state(Act.MITIGATE, State.PENDING) is State.PENDING
    assert next_state(Act.RELEASE, State.APPROVED) is State.RELEASED
    for act, state, proposed in (
        (Act.RELEASE, State.SUBMITTED, None),  # not from that state
        (Act.APPROVE, State.SUBMITTED, State.RELEASED),  # not to that state
        (Act.APPROVE, State.SUBMITTED, None),  # two possible: the caller must say which
    ):
        with pytest.raises(ValueError, match="the permissions table has no"):
            next_state(act, state, proposed)
