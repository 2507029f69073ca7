"""The privacy-budget ledger: grants and spends per study, in the catalog, safe across processes.

The committee grants a study a budget (rho); every DP query *reserves* its
cost before anything is released and *commits* after. The check and the
reservation happen in one SQLite write transaction (``BEGIN IMMEDIATE``), so
any number of processes racing for the last of a budget are serialised: the
affordable queries get through, the rest are refused, and the balance never
goes below zero. A failed release gives its reservation back; a reservation
whose process died stays counted (nobody can tell whether its answer was seen).

Two ledgers share the tables, told apart by ``tier``:

- ``real``: queries on an extract, against the committee's grants;
- ``sandbox``: the same calls on the synthetic twin, charged as if real, so a
  notebook runs out of budget on the twin where it would on the extract. Its
  grant mirrors the real one (or the policy's default before there is one).

The registry's **DP-twin budget** lives in the same tables under the reserved
study name :data:`TWIN_BUDGET` (``@twin``; no study can be named so, as
:func:`~research_kit.core.workspace.check_name` refuses ``@``). The committee
grants it (:func:`grant_twin`, capped by ``[dp].max_twin_rho``); a steward's
differentially private twin (``research-kit synth ID --model aim|mst``)
reserves its cost (:func:`reserve_twin`) and commits it when the mechanism has
run, whether or not a gate then refuses the twin: the mechanism read the real
extract, so the loss is spent. It has no owners and is never listed as a study.

OpenDP's Context keeps a budget too, but only inside one Python process; this
ledger is the source of truth.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from research_kit.core import audit, permits, users
from research_kit.core import owners as study_owners
from research_kit.core.catalog import transaction
from research_kit.core.errors import BadInput, MissingData, PolicyRefusal
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace, check_name
from research_kit.dp import accounting
from research_kit.dp.accounting import describe, epsilon_of, from_picorho, rho_text, to_picorho
from research_kit.tiers import TIERS, Tier

TWIN_BUDGET = permits.REGISTRY_TWIN  # the registry's DP-twin budget: a name check_name refuses, no study takes it
TWIN_SPEND = "dp-twin"  # the ``kind`` of a DP twin's spend (its ``query``)


@dataclass(frozen=True)
class Balance:
    study: str
    tier: Tier
    granted: int  # picorho
    spent: int
    reserved: int

    @property
    def remaining(self) -> int:
        return self.granted - self.spent - self.reserved


@dataclass(frozen=True)
class Spend:
    id: int
    study: str
    tier: Tier
    state: str
    rho: float
    query: dict[str, Any]
    source: str
    mechanism: str
    scale: float
    who: str
    reserved_at: str
    spent_at: str | None
    answer: dict[str, Any] | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_tier(tier: str) -> Tier:
    if tier not in TIERS:
        raise BadInput(f"tier {tier!r}: use one of {', '.join(TIERS)}")
    return tier


def _real_granted(conn: sqlite3.Connection, study: str) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(picorho), 0) FROM dp_grants WHERE study = ? AND tier = 'real'", (study,)
    ).fetchone()
    return int(row[0])


def _balance(conn: sqlite3.Connection, ws: Workspace, study: str, tier: Tier) -> Balance:
    granted = _real_granted(conn, study)
    if tier == "sandbox" and granted == 0:
        granted = to_picorho(ws.policy().dp.default_study_rho, round_up=False)
    sums = dict(
        conn.execute(
            "SELECT state, COALESCE(SUM(picorho), 0) FROM dp_spends WHERE study = ? AND tier = ? GROUP BY state",
            (study, tier),
        ).fetchall()
    )
    return Balance(study, tier, granted, int(sums.get("spent", 0)), int(sums.get("reserved", 0)))


def balance(ws: Workspace, study: str, tier: Tier = "real") -> Balance:
    check_name(study, "study")
    with ws.catalog() as conn:
        return _balance(conn, ws, study, _check_tier(tier))


def grant(
    ws: Workspace, study: str, rho: Decimal | float | str, *, note: str = "", owners: Sequence[str] = ()
) -> Balance:
    """Add ``rho`` to a study's real budget (a committee member's decision, never an owner's), under its data
    permit in force, whose users ``owners`` join; a study without one gets the shorthand's permit (real tier,
    every table, ``owners`` its users, for ``[permits].default_months``). Audited in the same transaction."""
    check_name(study, "study")
    policy = ws.policy().dp
    amount = to_picorho(accounting.amount(rho, "a grant's rho"), round_up=False)
    who = audit.current_actor()
    with ws.catalog() as conn, transaction(conn):
        users.require(conn, who, Duty.GRANT)
        permits.for_budget_grant(conn, ws.audit_path, study, owners, default_months=ws.policy().permits.default_months)
        study_owners.evict(conn, ws.audit_path, study)
        _add_grant(
            conn, ws, study, amount, who, note, ceiling=policy.max_study_rho, key="max_study_rho",
            what=f"study {study}", action="dp.grant", details={"study": study},
        )  # fmt: skip
        return _balance(conn, ws, study, "real")


def _add_grant(
    conn: sqlite3.Connection,
    ws: Workspace,
    study: str,
    amount: int,
    who: str,
    note: str,
    *,
    ceiling: float,
    key: str,
    what: str,
    action: str,
    details: dict[str, Any],
) -> None:
    """Add a grant under its ceiling (``[dp].key``) and audit it as ``action``, on the caller's transaction."""
    delta = ws.policy().dp.delta
    total = _real_granted(conn, study) + amount
    if total > to_picorho(ceiling, round_up=False):
        raise PolicyRefusal(
            f"{what}: granting {describe(amount, delta)} would bring its budget to rho {rho_text(total)}, "
            f"above [dp].{key} = {ceiling:g}"
        )
    conn.execute(
        "INSERT INTO dp_grants (study, tier, picorho, granted_by, granted_at, note) VALUES (?, 'real', ?, ?, ?, ?)",
        (study, amount, who, _now(), note),
    )
    audit.append(
        conn,
        ws.audit_path,
        action,
        {**details, "rho": from_picorho(amount), "total_rho": from_picorho(total), "note": note},
    )


def reserve(
    ws: Workspace,
    *,
    study: str,
    tier: Tier,
    cost: int,
    query_key: str,
    source: str,
    source_hash: str,
    query: dict[str, Any],
    mechanism: str,
    scale: float,
) -> int:
    """Hold ``cost`` picorho of the study's budget for one query; return the reservation's id.

    Refused (nothing held) when the remaining budget cannot pay for it.
    """
    check_name(study, "study")
    delta = ws.policy().dp.delta
    with ws.catalog() as conn, transaction(conn):
        current = _balance(conn, ws, study, tier)
        if tier == "real" and current.granted == 0:
            raise PolicyRefusal(
                f"study {study} has no privacy budget: the committee grants one with "
                f"'research-kit budget grant {study} --rho R'"
            )
        if cost > current.remaining:
            raise PolicyRefusal(
                f"study {study}: this query costs {describe(cost, delta)} but only "
                f"{describe(max(current.remaining, 0), delta)} of the {tier} budget remains"
            )
        cursor = conn.execute(
            """INSERT INTO dp_spends (study, tier, state, picorho, query_key, source, source_hash, query,
                                      mechanism, scale, who, pid, reserved_at)
               VALUES (?, ?, 'reserved', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                study,
                tier,
                cost,
                query_key,
                source,
                source_hash,
                json.dumps(query, sort_keys=True),
                mechanism,
                scale,
                audit.current_actor(),
                os.getpid(),
                _now(),
            ),
        )
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)


def commit(ws: Workspace, spend_id: int, answer: dict[str, Any]) -> None:
    """Turn a reservation into a spend, with its answer kept for replays; audited in the same transaction
    (``dp.query``; a DP twin's, ``dp.twin_spend``)."""
    with ws.catalog() as conn, transaction(conn):
        row = conn.execute("SELECT * FROM dp_spends WHERE id = ? AND state = 'reserved'", (spend_id,)).fetchone()
        if row is None:
            raise MissingData(f"no open reservation {spend_id}")
        conn.execute(
            "UPDATE dp_spends SET state = 'spent', spent_at = ?, answer = ? WHERE id = ?",
            (_now(), json.dumps(answer, sort_keys=True), spend_id),
        )
        if row["study"] == TWIN_BUDGET:
            _audit_twin_spend(conn, ws, row)
            return
        audit.append(
            conn,
            ws.audit_path,
            "dp.query",
            {
                "study": row["study"],
                "tier": row["tier"],
                "spend": spend_id,
                "rho": from_picorho(row["picorho"]),
                "mechanism": row["mechanism"],
                "scale": row["scale"],
                "source": row["source"],
                "query": json.loads(row["query"]),
            },
        )


def cancel(ws: Workspace, spend_id: int) -> None:
    """Give a reservation back (its release failed before anything was seen)."""
    with ws.catalog() as conn, transaction(conn):
        conn.execute("DELETE FROM dp_spends WHERE id = ? AND state = 'reserved'", (spend_id,))


def stored_answer(
    ws: Workspace, *, study: str, tier: Tier, query_key: str, source_hash: str | None
) -> tuple[dict[str, Any], str] | None:
    """The answer already released for this query (on this source, or on any with ``source_hash=None``)."""
    sql = "SELECT answer, source FROM dp_spends WHERE study = ? AND tier = ? AND query_key = ? AND state = 'spent'"
    args: list[Any] = [study, tier, query_key]
    if source_hash is not None:
        sql += " AND source_hash = ?"
        args.append(source_hash)
    with ws.catalog() as conn:
        row = conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
    return (json.loads(row["answer"]), row["source"]) if row else None


def history(ws: Workspace, study: str, tier: Tier = "real") -> list[Spend]:
    check_name(study, "study")
    with ws.catalog() as conn:
        rows = conn.execute(
            "SELECT * FROM dp_spends WHERE study = ? AND tier = ? ORDER BY id", (study, _check_tier(tier))
        ).fetchall()
    return [_spend(r) for r in rows]


def spends(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, Spend]:
    """The ledger's rows of these ids (any study, tier or state), by id; an id the ledger has not is absent.

    Read on the caller's connection (intake reads them inside its own transaction).
    """
    wanted = sorted({int(i) for i in ids})
    found: dict[int, Spend] = {}
    for start in range(0, len(wanted), 500):  # SQLite's host parameters are limited
        chunk = wanted[start : start + 500]
        rows = conn.execute(f"SELECT * FROM dp_spends WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        found.update((int(r["id"]), _spend(r)) for r in rows)
    return found


def _spend(r: sqlite3.Row) -> Spend:
    return Spend(
        id=r["id"],
        study=r["study"],
        tier=r["tier"],
        state=r["state"],
        rho=from_picorho(r["picorho"]),
        query=json.loads(r["query"]),
        source=r["source"],
        mechanism=r["mechanism"],
        scale=r["scale"],
        who=r["who"],
        reserved_at=r["reserved_at"],
        spent_at=r["spent_at"],
        answer=json.loads(r["answer"]) if r["answer"] else None,
    )


@dataclass(frozen=True)
class Grant:
    study: str
    rho: float
    granted_by: str
    granted_at: str
    note: str


def grants(ws: Workspace, study: str) -> list[Grant]:
    """The committee's grants to a study's real budget, oldest first."""
    check_name(study, "study")
    with ws.catalog() as conn:
        rows = conn.execute(
            "SELECT * FROM dp_grants WHERE study = ? AND tier = 'real' ORDER BY id", (study,)
        ).fetchall()
    return [Grant(r["study"], from_picorho(r["picorho"]), r["granted_by"], r["granted_at"], r["note"]) for r in rows]


def studies(ws: Workspace) -> list[str]:
    """Every study with a grant or a spend, in name order; the registry's DP-twin budget is no study, and is
    left out (``budget show``, the web app's budgets page and the lab list what this returns)."""
    with ws.catalog() as conn:
        rows = conn.execute(
            "SELECT study FROM dp_grants WHERE study != ? UNION SELECT study FROM dp_spends WHERE study != ? "
            "ORDER BY 1",
            (TWIN_BUDGET, TWIN_BUDGET),
        ).fetchall()
    return [r[0] for r in rows]


def reset_sandbox(ws: Workspace, study: str) -> int:
    """Forget a study's sandbox spends (twin only; the real ledger is never reset). Returns how many."""
    check_name(study, "study")
    with ws.catalog() as conn, transaction(conn):
        n = conn.execute("DELETE FROM dp_spends WHERE study = ? AND tier = 'sandbox'", (study,)).rowcount
        audit.append(conn, ws.audit_path, "dp.sandbox_reset", {"study": study, "spends": n})
    return int(n)


# -- the registry's DP-twin budget ----------------------------------------------------------------------------------

_NO_TWIN_BUDGET = (
    "the registry has no DP-twin budget: a committee member grants one with 'research-kit budget grant --twin --rho R "
    "--owner STEWARD'"
)


def twin_balance(ws: Workspace) -> Balance:
    """The registry's DP-twin budget: granted, spent and reserved (study :data:`TWIN_BUDGET`, tier ``real``)."""
    with ws.catalog() as conn:
        return _balance(conn, ws, TWIN_BUDGET, "real")


def grant_twin(ws: Workspace, rho: Decimal | float | str, *, note: str = "", owners: Sequence[str] = ()) -> Balance:
    """Add ``rho`` to the registry's DP-twin budget (a committee member's decision), refused above
    ``[dp].max_twin_rho``; audited as ``dp.twin_grant`` in the same transaction. The budget comes with the
    registry twin's data permit (:data:`~research_kit.core.permits.REGISTRY_TWIN`), naming the stewards who build
    it: ``owners`` join the permit in force, or are named by a new one (the first grant must name them)."""
    policy = ws.policy().dp
    amount = to_picorho(accounting.amount(rho, "a grant's rho"), round_up=False)
    who = audit.current_actor()
    with ws.catalog() as conn, transaction(conn):
        users.require(conn, who, Duty.GRANT)
        permits.for_budget_grant(
            conn, ws.audit_path, TWIN_BUDGET, owners, default_months=ws.policy().permits.default_months
        )
        _add_grant(
            conn, ws, TWIN_BUDGET, amount, who, note, ceiling=policy.max_twin_rho, key="max_twin_rho",
            what="the DP-twin budget", action="dp.twin_grant", details={},
        )  # fmt: skip
        return _balance(conn, ws, TWIN_BUDGET, "real")


def _refuse_unaffordable_twin(current: Balance, cost: int, delta: float) -> None:
    """One line when the DP-twin budget cannot pay ``cost``: none granted, or too little left."""
    if cost < 0:
        raise ValueError(f"a DP twin's cost is a number of picorho >= 0, not {cost!r}")
    if current.granted == 0:
        raise PolicyRefusal(_NO_TWIN_BUDGET)
    if cost > current.remaining:
        raise PolicyRefusal(
            f"this DP twin costs {describe(cost, delta)} but only {describe(max(current.remaining, 0), delta)} "
            "of the registry's DP-twin budget remains"
        )


def check_twin_budget(
    ws: Workspace, cost_picorho: int, *, spender: str | None = None, extract: str | None = None
) -> None:
    """Refuse, in one line, a DP twin the budget cannot pay (or that ``spender`` may not build from ``extract``),
    before anything is read or spent.

    Only an early answer: :func:`reserve_twin` checks again as it reserves (another twin may spend meanwhile).
    """
    with ws.catalog() as conn:
        _refuse_twin(conn, ws, spender, cost_picorho, extract)


def _refuse_twin(conn: sqlite3.Connection, ws: Workspace, who: str | None, cost: int, extract: str | None) -> None:
    """One line when ``who`` may not spend ``cost`` of the DP-twin budget on ``extract``: there is none; the
    registry twin's permit does not name them, or that extract version (or has ended, or was revoked); they
    granted some of it (two people: no one spends a budget they granted, as an owner never grants a study); too
    little is left. (The twin's permit covers every table whole: :func:`permits.amend` never narrows it.)"""
    current = _balance(conn, ws, TWIN_BUDGET, "real")
    if current.granted == 0:
        raise PolicyRefusal(_NO_TWIN_BUDGET)
    if who is not None:
        permits.check(conn, TWIN_BUDGET, who, tier="real", extract=extract, doing="building a DP twin")
        row = conn.execute(
            "SELECT 1 FROM dp_grants WHERE study = ? AND tier = 'real' AND granted_by = ? LIMIT 1", (TWIN_BUDGET, who)
        ).fetchone()
        if row is not None:
            raise PolicyRefusal(
                f"{who} granted the registry's DP-twin budget: another steward builds the DP twin "
                "(no one spends a budget they granted)"
            )
    _refuse_unaffordable_twin(current, cost, ws.policy().dp.delta)


def reserve_twin(ws: Workspace, *, cost: int, extract: str, twin: str, mechanism: str, details: dict[str, Any]) -> int:
    """Hold ``cost`` picorho of the DP-twin budget for one run of ``mechanism`` on ``extract`` (building ``twin``);
    return the reservation's id, which :func:`commit` spends (once the mechanism ran) or :func:`cancel` gives back.

    The check and the reservation are one write transaction: processes racing for the last of the budget are
    serialised, only the affordable ones get a reservation. ``details`` (JSON) is kept as the spend's query;
    its ``extract_hash``, when given, as the spend's source hash (the extract's content hash).
    """
    check_name(extract, "extract")
    query = {**details, "kind": TWIN_SPEND, "extract": extract, "twin": twin, "mechanism": mechanism}
    with ws.catalog() as conn, transaction(conn):
        _refuse_twin(conn, ws, audit.current_actor(), cost, extract)
        cursor = conn.execute(
            """INSERT INTO dp_spends (study, tier, state, picorho, query_key, source, source_hash, query,
                                      mechanism, scale, who, pid, reserved_at)
               VALUES (?, 'real', 'reserved', ?, ?, ?, ?, ?, ?, 0.0, ?, ?, ?)""",
            (
                TWIN_BUDGET,
                cost,
                f"{TWIN_SPEND}:{uuid.uuid4().hex}",  # never replayed: each run draws a new twin
                twin,
                str(details.get("extract_hash", "")),
                json.dumps(query, sort_keys=True),
                mechanism,
                audit.current_actor(),
                os.getpid(),
                _now(),
            ),
        )
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)


def _audit_twin_spend(conn: sqlite3.Connection, ws: Workspace, row: sqlite3.Row) -> None:
    delta = ws.policy().dp.delta
    rho = from_picorho(row["picorho"])
    query = json.loads(row["query"])
    audit.append(
        conn,
        ws.audit_path,
        "dp.twin_spend",
        {
            "spend": row["id"],
            "extract": query.get("extract"),
            "twin": row["source"],
            "mechanism": row["mechanism"],
            "rho": rho,
            "epsilon": epsilon_of(rho, delta),
            "delta": delta,
        },
    )


def twin_history(ws: Workspace) -> list[Spend]:
    """The DP-twin budget's spends and open reservations, oldest first (each ``query`` names its extract)."""
    with ws.catalog() as conn:
        rows = conn.execute(
            "SELECT * FROM dp_spends WHERE study = ? AND tier = 'real' ORDER BY id", (TWIN_BUDGET,)
        ).fetchall()
    return [_spend(r) for r in rows]
