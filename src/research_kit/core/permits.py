"""Data permits: who may use which data, for what, in which tier and until when (EHDS, Regulation (EU) 2025/327).

A study works under a permit that names its purpose (free text and a category
from the regulation's list), the organisation holding it, its users, the data
(tables, or some of their columns), the tier and the period. Its life:

    applied --grant--> granted --revoke--> revoked
            --refuse-> refused
    granted --(its end date passes)--> expired (read from the date, never stored)

A committee member decides (never one of the permit's users), with a legal
basis; every change is one catalog transaction with its audit line. A study
has at most one permit in force at a time: the committee amends it, or grants
a new one when the old has ended. Tiers nest: ``real`` allows DP queries and
the twin as well, ``dp`` allows the twin.

:func:`check` is the one place that says whether a person may use a study's
data now, in a tier, on some tables: the runner, reruns, the DP broker and
the front ends ask it, and its refusal names the permit and the rule.
A study's *owners* (:mod:`research_kit.core.owners`) are its permits' users.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from research_kit.core import audit, users
from research_kit.core.errors import BadInput, MissingData, PolicyRefusal
from research_kit.core.permissions import Duty, Role
from research_kit.core.workspace import check_name

TIERS = ("twin", "dp", "real")  # each allows the ones before it
STATES = ("applied", "granted", "refused", "revoked")
EXPIRED = "expired"  # a granted permit past its end date
# The purposes Article 53(1) of the regulation allows, by the key a command line takes.
CATEGORIES: dict[str, str] = {
    "public-health": "public interest in public or occupational health",
    "policy-making": "policy-making and regulatory activities",
    "statistics": "official statistics",
    "education": "education or teaching in health or care",
    "scientific-research": "scientific research in the health or care sectors",
    "care-improvement": "improving the delivery of care, treatment and personalised medicine",
}
EVERY_TABLE = "*"
# The registry's DP twin is built under a permit too: the committee grants it to the stewards who build it, with
# the DP-twin budget (``budget grant --twin``). Its name is the ledger's for that budget: one no study can take.
REGISTRY_TWIN = "@twin"
NEW_VERSIONS = "new"  # every extract version built until the permit ends
KEEP = object()  # an amendment that leaves the permit's data as it is


@dataclass(frozen=True)
class Permit:
    id: int
    study: str
    state: str  # as stored: applied, granted, refused, revoked
    holder: str
    purpose: str
    category: str
    tier: str
    data: Mapping[str, tuple[str, ...] | None] | None  # None: every table; a table's None: every column
    until: date
    users: tuple[str, ...]
    applied_by: str
    applied_at: str
    legal_basis: str = ""
    optout_exception: str = ""
    rho_asked: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
    decision_note: str = ""
    revoked_by: str | None = None
    revoked_at: str | None = None
    continuation_of: int | None = None
    publication: str = "not yet"
    versions: str = NEW_VERSIONS
    closed_at: str | None = None  # when 'permit close' archived or deleted its study's work
    extra: dict[str, Any] = field(default_factory=dict)

    def status(self, today: date | None = None) -> str:
        """Its state, or ``expired`` for a granted permit whose end date has passed."""
        if self.state == "granted" and self.until < (today or _today()):
            return EXPIRED
        return self.state

    def in_force(self, today: date | None = None) -> bool:
        return self.status(today) == "granted"

    def allows_tier(self, tier: str) -> bool:
        return TIERS.index(tier) <= TIERS.index(self.tier)

    def covers(self, table: str, column: str | None = None) -> bool:
        if self.data is None:
            return True
        if table not in self.data:
            return False
        columns = self.data[table]
        return columns is None or column is None or column in columns

    def covers_version(self, extract: str) -> bool:
        return self.versions == NEW_VERSIONS or extract in self.versions.split(",")

    def versions_text(self) -> str:
        """The extract versions it covers, as a person reads it."""
        if self.versions == NEW_VERSIONS:
            return "every version built until it ends"
        return self.versions.replace(",", ", ")

    def data_text(self) -> str:
        """The data it covers, as a person reads it: "every table", "patients, diagnoses (icd10_code, status)"."""
        if self.data is None:
            return "every table"
        return ", ".join(t if c is None else f"{t} ({', '.join(c)})" for t, c in self.data.items())

    def to_dict(self, today: date | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "study": self.study,
            "status": self.status(today),
            "holder": self.holder,
            "purpose": self.purpose,
            "category": self.category,
            "tier": self.tier,
            "data": None if self.data is None else {t: list(c) if c else None for t, c in self.data.items()},
            "versions": self.versions,
            "until": self.until.isoformat(),
            "users": list(self.users),
            "rho_asked": self.rho_asked,
            "legal_basis": self.legal_basis,
            "optout_exception": self.optout_exception,
            "applied_by": self.applied_by,
            "applied_at": self.applied_at,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "decision_note": self.decision_note,
            "revoked_by": self.revoked_by,
            "revoked_at": self.revoked_at,
            "continuation_of": self.continuation_of,
            "publication": self.publication,
            "closed_at": self.closed_at,
        }


def _today() -> date:
    return datetime.now(UTC).date()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- reading --------------------------------------------------------------------------------------------------------


def _data(text: str) -> Mapping[str, tuple[str, ...] | None] | None:
    if text == EVERY_TABLE:
        return None
    raw = json.loads(text)
    return {t: tuple(c) if c else None for t, c in raw.items()}


def _permit(conn: sqlite3.Connection, row: sqlite3.Row) -> Permit:
    names = tuple(
        r[0] for r in conn.execute("SELECT user FROM permit_users WHERE permit = ? ORDER BY user", (row["id"],))
    )
    return Permit(
        id=row["id"], study=row["study"], state=row["state"], holder=row["holder"], purpose=row["purpose"],
        category=row["category"], tier=row["tier"], data=_data(row["data"]), until=date.fromisoformat(row["until"]),
        users=names, applied_by=row["applied_by"], applied_at=row["applied_at"], legal_basis=row["legal_basis"],
        optout_exception=row["optout_exception"], rho_asked=row["rho_asked"], decided_by=row["decided_by"],
        decided_at=row["decided_at"], decision_note=row["decision_note"], revoked_by=row["revoked_by"],
        revoked_at=row["revoked_at"], continuation_of=row["continuation_of"], publication=row["publication"],
        versions=row["versions"], closed_at=row["ended_handled_at"],
    )  # fmt: skip


def get(conn: sqlite3.Connection, permit_id: int) -> Permit:
    row = conn.execute("SELECT * FROM permits WHERE id = ?", (permit_id,)).fetchone()
    if row is None:
        raise MissingData(f"there is no permit {permit_id}")
    return _permit(conn, row)


def of_study(conn: sqlite3.Connection, study: str) -> list[Permit]:
    """Every permit of ``study``, newest first."""
    rows = conn.execute("SELECT * FROM permits WHERE study = ? ORDER BY id DESC", (study,)).fetchall()
    return [_permit(conn, r) for r in rows]


def listed(conn: sqlite3.Connection) -> list[Permit]:
    """Every permit, newest first."""
    return [_permit(conn, r) for r in conn.execute("SELECT * FROM permits ORDER BY id DESC").fetchall()]


def in_force(conn: sqlite3.Connection, study: str, today: date | None = None) -> Permit | None:
    """The study's permit in force today (at most one), or None."""
    return next((p for p in of_study(conn, study) if p.in_force(today)), None)


def users_of(conn: sqlite3.Connection, study: str) -> tuple[str, ...]:
    """Everyone a granted permit of ``study`` names (in force, ended or revoked), in name order: the study's owners.

    A past user stays one: nobody reviews the outputs of a study they worked on.
    """
    rows = conn.execute(
        "SELECT DISTINCT u.user FROM permit_users u JOIN permits p ON p.id = u.permit"
        " WHERE p.study = ? AND p.state IN ('granted', 'revoked') ORDER BY u.user",
        (study,),
    )
    return tuple(r[0] for r in rows)


def studies_of(conn: sqlite3.Connection, name: str) -> set[str]:
    """The studies a granted permit names ``name`` a user of."""
    rows = conn.execute(
        "SELECT DISTINCT p.study FROM permit_users u JOIN permits p ON p.id = u.permit"
        " WHERE u.user = ? AND p.state IN ('granted', 'revoked')",
        (name,),
    )
    return {r[0] for r in rows}


def ending_soon(conn: sqlite3.Connection, notice_days: int, today: date | None = None) -> list[Permit]:
    """Permits in force that end within ``notice_days``."""
    day = today or _today()
    return [p for p in listed(conn) if p.in_force(day) and (p.until - day).days <= notice_days]


def pseudonym_line(conn: sqlite3.Connection, study: str, today: date | None = None) -> str:
    """The name the pseudonym secret of the study's permit in force is kept under (its first permit's, when the
    committee recorded it as a continuation): a new permit for the same study sees new pseudonyms, as the EHDS
    guidance asks, and a continuation keeps its predecessor's."""
    permit = in_force(conn, study, today)
    if permit is None:
        raise PolicyRefusal(f"study {study} has no data permit in force: its pseudonyms belong to a permit")
    while permit.continuation_of is not None:
        permit = get(conn, permit.continuation_of)
    return f"{study}#permit-{permit.id}"


def _label(study: str) -> str:
    """How a refusal names what a permit is for: a study, or the registry's DP twin."""
    return "the registry's DP twin" if study == REGISTRY_TWIN else f"study {study}"


# -- the one check --------------------------------------------------------------------------------------------------


def check(
    conn: sqlite3.Connection,
    study: str,
    name: str | None,
    *,
    tier: str,
    tables: Iterable[str] = (),
    columns: Iterable[tuple[str, str]] = (),
    extract: str | None = None,
    doing: str,
    after_end: bool = False,
    today: date | None = None,
) -> Permit:
    """The study's permit in force if it lets ``name`` use ``tier`` (and ``tables``, ``columns``, the extract
    version ``extract``) now; otherwise a one-line :class:`PolicyRefusal` naming the permit and the rule broken.

    ``doing`` says what was attempted ("running its pipeline"), for the refusal. ``after_end``: a permit that
    has ended still counts (its results are due after it: submitting and releasing outputs), a revoked one
    never. ``name`` None: anyone (a committee member releasing outputs is none of the permit's users).
    """
    if tier not in TIERS:
        raise ValueError(tier)
    user = users.get(conn, name) if name is not None else None
    if user is not None and not user.active:
        raise PolicyRefusal(f"user {name!r} is disabled")
    day = today or _today()
    found = of_study(conn, study)
    permit = next((p for p in found if p.in_force(day)), None)
    if permit is None and after_end:  # the newest permit ended (not revoked) and is not closed: results are due
        newest = next((p for p in found if p.state in ("granted", "revoked")), None)
        if newest is not None and newest.state == "granted" and newest.closed_at is None:
            permit = newest
    if permit is None:
        last = next((p for p in found if p.state in ("granted", "revoked")), None)
        if last is None:
            pending = " (its application waits for the committee)" if any(p.state == "applied" for p in found) else ""
            raise PolicyRefusal(f"{_label(study)} has no data permit{pending}: {doing} needs one")
        if last.state == "revoked":
            raise PolicyRefusal(f"permit {last.id} ({_label(study)}) was revoked on {last.revoked_at}: {doing} is over")
        closed = f" and was closed on {last.closed_at[:10]}" if last.closed_at else ""
        raise PolicyRefusal(f"permit {last.id} ({_label(study)}) ended on {last.until}{closed}: {doing} is over")
    if name is not None and name not in permit.users:
        raise PolicyRefusal(f"permit {permit.id} ({_label(study)}) does not name {name}: {doing} is for its users only")
    if not permit.allows_tier(tier):
        raise PolicyRefusal(
            f"permit {permit.id} ({_label(study)}) grants the {permit.tier} tier, not {tier}: {doing} is not covered"
        )
    for table in tables:
        if not permit.covers(table):
            raise PolicyRefusal(f"permit {permit.id} ({_label(study)}) does not cover table {table}")
    for table, column in columns:
        if not permit.covers(table, column):
            raise PolicyRefusal(f"permit {permit.id} ({_label(study)}) does not cover column {table}.{column}")
    if extract is not None and not permit.covers_version(extract):
        raise PolicyRefusal(
            f"permit {permit.id} ({_label(study)}) covers extract versions {permit.versions_text()}, not {extract}"
        )
    return permit


# -- changes (each on the caller's open transaction, audited) -------------------------------------------------------


def _check_given(category: str | None, tier: str | None, until: date | None, today: date) -> None:
    if category is not None and category not in CATEGORIES:
        raise BadInput(f"--category {category!r}: one of {', '.join(CATEGORIES)}")
    if tier is not None and tier not in TIERS:
        raise BadInput(f"--tier {tier!r}: one of {', '.join(TIERS)}")
    if until is not None and until <= today:
        raise BadInput(f"--until {until}: a permit ends after today ({today})")


def _text(value: str, flag: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise BadInput(f"{flag}: say it in words")
    if len(text) > 2000:
        raise BadInput(f"{flag}: at most 2,000 characters")
    return text


def _data_json(data: Mapping[str, Sequence[str] | None] | None) -> str:
    if data is None:
        return EVERY_TABLE
    if not data:
        raise BadInput("--tables: name at least one table")
    return json.dumps({t: sorted(set(c)) if c else None for t, c in data.items()}, sort_keys=True)


def _set_users(conn: sqlite3.Connection, permit_id: int, names: Iterable[str]) -> tuple[str, ...]:
    """Name ``names`` the permit's users: researchers (the registry twin's permit: stewards, who build it)."""
    chosen = tuple(sorted(dict.fromkeys(n.strip() for n in names if n.strip())))
    if not chosen:
        raise BadInput("--users: a permit names at least one user")
    study = conn.execute("SELECT study FROM permits WHERE id = ?", (permit_id,)).fetchone()[0]
    role, who = (Role.STEWARD, "a steward") if study == REGISTRY_TWIN else (Role.RESEARCHER, "a researcher")
    for name in chosen:
        user = users.get(conn, name)
        if user is None or not user.active:
            raise BadInput(f"--users {name!r}: not an active user of this workspace")
        if role not in user.roles:
            raise BadInput(f"--users {name!r}: this permit's user is {who}, not a {user.role}")
    conn.execute("DELETE FROM permit_users WHERE permit = ?", (permit_id,))
    conn.executemany("INSERT INTO permit_users (permit, user) VALUES (?, ?)", [(permit_id, n) for n in chosen])
    return chosen


def _require_decider(conn: sqlite3.Connection, who: str, names: Iterable[str], study: str) -> None:
    users.require(conn, who, Duty.GRANT)
    if who in set(names) | set(users_of(conn, study)):
        raise PolicyRefusal(f"{who} is a user of study {study}: a user never decides on their own permit")


def _refuse_second(conn: sqlite3.Connection, study: str, today: date, but: int | None = None) -> None:
    current = in_force(conn, study, today)
    if current is not None and current.id != but:
        raise PolicyRefusal(
            f"study {study} already has permit {current.id} in force until {current.until}: amend it, or revoke "
            "it first"
        )


def apply(
    conn: sqlite3.Connection,
    audit_path: Any,
    *,
    study: str,
    holder: str,
    purpose: str,
    category: str,
    tier: str,
    data: Mapping[str, Sequence[str] | None] | None,
    until: date,
    users_named: Sequence[str] = (),
    rho_asked: str | None = None,
    by_committee: bool = False,
    versions: str = NEW_VERSIONS,
    today: date | None = None,
) -> Permit:
    """A researcher applies for a permit (the applicant is one of its users); or, ``by_committee``, a committee
    member files one for ``users_named``, to grant it at once (``permit grant STUDY --users ...``)."""
    check_name(study, "study")
    day = today or _today()
    who = audit.current_actor()
    users.require(conn, who, Duty.GRANT if by_committee else Duty.APPLY_PERMIT)
    _check_given(category, tier, until, day)
    cursor = conn.execute(
        "INSERT INTO permits (study, state, holder, purpose, category, tier, data, versions, until, rho_asked,"
        " applied_by, applied_at) VALUES (?, 'applied', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (study, _text(holder, "--holder"), _text(purpose, "--purpose"), category, tier, _data_json(data), versions,
         until.isoformat(), rho_asked, who, _now()),
    )  # fmt: skip
    permit_id = int(cursor.lastrowid or 0)
    _set_users(conn, permit_id, [*users_named] if by_committee else [who, *users_named])
    applied = get(conn, permit_id)
    audit.append(conn, audit_path, "permit.apply", {**_terms(applied), "by_committee": by_committee})
    return applied


def _terms(permit: Permit) -> dict[str, Any]:
    """What a permit grants, as its audit lines record it."""
    shown = permit.to_dict()
    return {"permit": permit.id, **{k: shown[k] for k in ("study", "holder", "purpose", "category", "tier", "data",
                                                          "versions", "until", "users", "rho_asked")}}  # fmt: skip


def grant(
    conn: sqlite3.Connection,
    audit_path: Any,
    permit_id: int,
    *,
    legal_basis: str,
    note: str = "",
    optout_exception: str = "",
    continuation_of: int | None = None,
    today: date | None = None,
) -> Permit:
    """A committee member grants an application, with its legal basis."""
    day = today or _today()
    permit = get(conn, permit_id)
    who = audit.current_actor()
    _require_decider(conn, who, permit.users, permit.study)
    if permit.state != "applied":
        raise PolicyRefusal(f"permit {permit_id} is {permit.status(day)}: only an application is granted or refused")
    if permit.until <= day:
        raise PolicyRefusal(f"permit {permit_id} would end on {permit.until}, which has passed: amend its end date")
    _refuse_second(conn, permit.study, day)
    if continuation_of is not None:
        earlier = get(conn, continuation_of)
        if earlier.study != permit.study or earlier.id >= permit_id or earlier.state != "granted":
            raise BadInput(f"--continues {continuation_of}: not an earlier granted (and not revoked) permit of "
                           f"study {permit.study}")  # fmt: skip
    conn.execute(
        "UPDATE permits SET state = 'granted', legal_basis = ?, decision_note = ?, optout_exception = ?,"
        " continuation_of = ?, decided_by = ?, decided_at = ? WHERE id = ?",
        (_text(legal_basis, "--legal-basis"), note.strip(), optout_exception.strip(), continuation_of, who, _now(),
         permit_id),
    )  # fmt: skip
    granted = get(conn, permit_id)
    audit.append(conn, audit_path, "permit.grant", {
        **_terms(granted), "legal_basis": granted.legal_basis, "optout_exception": granted.optout_exception,
        "continuation_of": continuation_of,
    })  # fmt: skip
    return granted


def refuse(conn: sqlite3.Connection, audit_path: Any, permit_id: int, *, note: str) -> Permit:
    """A committee member refuses an application, saying why."""
    return _end(conn, audit_path, permit_id, note, "applied", "refused", "only an application is granted or refused")


def amend(
    conn: sqlite3.Connection,
    audit_path: Any,
    permit_id: int,
    *,
    note: str,
    users_named: Sequence[str] | None = None,
    tier: str | None = None,
    data: Mapping[str, Sequence[str] | None] | object | None = KEEP,
    until: date | None = None,
    purpose: str | None = None,
    holder: str | None = None,
    category: str | None = None,
    optout_exception: str | None = None,
    versions: str | None = None,
    today: date | None = None,
) -> Permit:
    """A committee member changes a permit in force or an application (``data`` :data:`KEEP` leaves it as it is,
    None covers every table); the audit line holds what changed, before and after."""
    day = today or _today()
    permit = get(conn, permit_id)
    who = audit.current_actor()
    _require_decider(conn, who, [*permit.users, *(users_named or ())], permit.study)
    if permit.status(day) not in ("applied", "granted"):
        raise PolicyRefusal(f"permit {permit_id} is {permit.status(day)}: only an application or a permit in force is "
                            "amended (grant a new one)")  # fmt: skip
    if permit.study == REGISTRY_TWIN and ((data is not KEEP and data is not None) or tier not in (None, "real")):
        raise PolicyRefusal(f"permit {permit_id} is the registry's DP twin's: a DP twin is made from every table, "
                            "whole, at the real tier")  # fmt: skip
    before = permit.to_dict(day)
    _check_given(category, tier, until, day)  # what is not given stays as it is, unchecked
    conn.execute(
        "UPDATE permits SET tier = ?, until = ?, purpose = ?, holder = ?, category = ?, optout_exception = ?,"
        " data = ?, versions = ? WHERE id = ?",
        (tier or permit.tier, (until or permit.until).isoformat(),
         _text(purpose, "--purpose") if purpose is not None else permit.purpose,
         _text(holder, "--holder") if holder is not None else permit.holder, category or permit.category,
         optout_exception.strip() if optout_exception is not None else permit.optout_exception,
         _data_json(permit.data if data is KEEP else data), versions or permit.versions,  # type: ignore[arg-type]
         permit_id),
    )  # fmt: skip
    if users_named is not None:
        _set_users(conn, permit_id, users_named)
    after = get(conn, permit_id)
    changed = {k: {"from": before[k], "to": v} for k, v in after.to_dict(day).items() if before[k] != v}
    if not changed:
        raise BadInput(f"permit {permit_id}: the amendment changes nothing")
    details = {"permit": permit_id, "study": permit.study, "changed": changed, "note": _text(note, "--note")}
    audit.append(conn, audit_path, "permit.amend", details)
    return after


def revoke(conn: sqlite3.Connection, audit_path: Any, permit_id: int, *, note: str) -> Permit:
    """A committee member revokes a permit in force: its study's runs, reruns and queries stop at once."""
    return _end(conn, audit_path, permit_id, note, "granted", "revoked", "only a granted permit is revoked")


def _end(
    conn: sqlite3.Connection, audit_path: Any, permit_id: int, note: str, state: str, to: str, rule: str
) -> Permit:
    """Move a permit from ``state`` to ``to`` (refused or revoked): a committee member who is none of its users,
    saying why; audited as ``permit.refuse`` or ``permit.revoke``."""
    permit = get(conn, permit_id)
    who = audit.current_actor()
    _require_decider(conn, who, permit.users, permit.study)
    if permit.state != state:
        raise PolicyRefusal(f"permit {permit_id} is {permit.status()}: {rule}")
    why = _text(note, "--note")
    # Who decided and when: the decision's columns for a refusal, the revocation's for a revocation.
    by, at = ("decided_by", "decided_at") if to == "refused" else ("revoked_by", "revoked_at")
    conn.execute(
        f"UPDATE permits SET state = ?, decision_note = ?, {by} = ?, {at} = ? WHERE id = ?",
        (to, why, who, _now(), permit_id),
    )
    action = {"refused": "permit.refuse", "revoked": "permit.revoke"}[to]
    audit.append(conn, audit_path, action, {"permit": permit_id, "study": permit.study, "note": why})
    return get(conn, permit_id)


def for_budget_grant(
    conn: sqlite3.Connection, audit_path: Any, study: str, owners: Sequence[str], *, default_months: int
) -> Permit:
    """``budget grant STUDY --owner NAME``, the shorthand: the study's permit in force, its users joined by
    ``owners``; or, if none, a granted permit of the real tier over every table, ``owners`` its users, until
    ``default_months`` from today. Inside the caller's transaction (the grant's), audited."""
    day = _today()
    who = audit.current_actor()
    owners = [n for n in dict.fromkeys(o.strip() for o in owners) if n]  # as _set_users will name them
    twin = study == REGISTRY_TWIN
    if who in {*owners, *users_of(conn, study)}:  # the rule _require_decider keeps for the permit commands
        if twin:
            raise PolicyRefusal(f"{who} builds the registry's DP twin: a builder never grants its budget nor names "
                                "its builders")  # fmt: skip
        raise PolicyRefusal(f"{who} owns study {study}: an owner never grants their own study a budget")
    current = in_force(conn, study, day)
    if current is not None:
        new = [n for n in owners if n not in current.users]
        if new:
            named = _set_users(conn, current.id, [*current.users, *new])
            audit.append(conn, audit_path, "permit.amend", {
                "permit": current.id, "study": study, "changed": {"users": {"from": list(current.users),
                                                                            "to": list(named)}},
                "note": "named by a budget grant",
            })  # fmt: skip
        return get(conn, current.id)
    last = next((p for p in of_study(conn, study) if p.state in ("granted", "revoked")), None)
    # A top-up never brings back a study's permit that was revoked or has ended, nor widens it. The registry
    # twin's has no pseudonyms to keep: a grant naming its stewards again makes a new one.
    if last is not None and not twin:
        ended = "was revoked" if last.state == "revoked" else f"ended on {last.until}"
        keep = f" (--continues {last.id} to keep its pseudonyms)" if last.state == "granted" else ""
        raise PolicyRefusal(
            f"study {study}: permit {last.id} {ended}; the committee grants a new one with 'research-kit permit "
            f"grant'{keep}, not with a budget grant"
        )
    if not owners:
        if twin:
            raise BadInput("the registry's DP twin has no permit in force: name the steward(s) who build it with "
                           "--owner NAME")  # fmt: skip
        raise BadInput(f"study {study} has no permit in force: name its researcher(s) with --owner NAME")
    until = _add_months(day, default_months)
    holder, purpose = (("the registry", "building the registry's differentially private synthetic twin") if twin
                       else ("(not named: a budget grant)", f"study {study}"))  # fmt: skip
    cursor = conn.execute(
        "INSERT INTO permits (study, state, holder, purpose, category, tier, data, until, legal_basis, applied_by,"
        " applied_at, decided_by, decided_at, decision_note) VALUES (?, 'granted', ?, ?, 'scientific-research',"
        " 'real', '*', ?, ?, ?, ?, ?, ?, 'granted with a budget (research-kit budget grant)')",
        (study, holder, purpose, until.isoformat(), "(a budget grant)", who, _now(), who, _now()),
    )  # fmt: skip
    permit_id = int(cursor.lastrowid or 0)
    _set_users(conn, permit_id, owners)
    granted = get(conn, permit_id)
    audit.append(conn, audit_path, "permit.grant", {
        **_terms(granted), "legal_basis": granted.legal_basis, "optout_exception": "", "continuation_of": None,
    })  # fmt: skip
    return granted


def to_close(conn: sqlite3.Connection, today: date | None = None) -> list[Permit]:
    """Permits that have ended (their last day passed, or revoked) and are not closed yet, of studies with no
    permit in force (a renewed study keeps its work), oldest first."""
    day = today or _today()
    found = [
        p
        for p in listed(conn)
        if p.state in ("granted", "revoked") and not p.in_force(day) and not p.closed_at and p.study != REGISTRY_TWIN
    ]  # the twin's permit has no work folder: the twins are published
    return sorted((p for p in found if in_force(conn, p.study, day) is None), key=lambda p: p.id)


def mark_closed(conn: sqlite3.Connection, audit_path: Any, permit: Permit, details: Mapping[str, Any]) -> None:
    """Record that ``permit``'s study's work was archived or deleted (the caller's transaction), audited."""
    conn.execute("UPDATE permits SET ended_handled_at = ? WHERE id = ?", (_now(), permit.id))
    audit.append(conn, audit_path, "permit.close", {"permit": permit.id, "study": permit.study, **details})


PUBLICATION = ("not yet", "submitted", "published", "not to be published")


def results_due(permit: Permit, months: int) -> date:
    """When a permit's results are due: ``months`` after it ends (its last day, or the day it was revoked)."""
    ended = date.fromisoformat(permit.revoked_at[:10]) if permit.revoked_at else permit.until
    return _add_months(ended, months)


def overdue(conn: sqlite3.Connection, months: int, today: date | None = None) -> list[Permit]:
    """Granted permits that have ended, whose results are due and not recorded as published."""
    day = today or _today()
    return [
        p for p in listed(conn)
        if p.state in ("granted", "revoked") and not p.in_force(day) and not p.publication.startswith("published")
        and results_due(p, months) < day and p.study != REGISTRY_TWIN  # its result, the twin, is published
    ]  # fmt: skip


def record_publication(
    conn: sqlite3.Connection, audit_path: Any, permit_id: int, *, status: str, reference: str
) -> Permit:
    """A permit's user or a committee member records where its results stand (published: with a reference)."""
    permit = get(conn, permit_id)
    who = audit.current_actor()
    user = users.get(conn, who)
    if user is None or not user.active or (who not in permit.users and Role.COMMITTEE not in user.roles):
        raise PolicyRefusal(f"{who}: only permit {permit_id}'s users and the committee record its results")
    if permit.state not in ("granted", "revoked"):
        raise PolicyRefusal(f"permit {permit_id} is {permit.status()}: only a granted permit has results")
    if status not in PUBLICATION:
        raise BadInput(f"--status {status!r}: one of {', '.join(PUBLICATION)}")
    text = " ".join(reference.split())
    if status in ("published", "not to be published") and not text:
        raise BadInput(f"--reference: a {status} result names where (a DOI, a report) or why")
    shown = f"{status}: {text}" if text else status
    conn.execute("UPDATE permits SET publication = ? WHERE id = ?", (shown, permit_id))
    audit.append(conn, audit_path, "permit.results", {"permit": permit_id, "study": permit.study, "status": status,
                                                      "reference": text})  # fmt: skip
    return get(conn, permit_id)


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError(day)
