"""Privacy budgets: the committee grants, everyone reads what they may."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from research_kit.actions.acting import as_user
from research_kit.core import owners, users
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.workspace import Workspace
from research_kit.dp import ledger
from research_kit.dp.accounting import Typed, rho_from
from research_kit.review.requests import studies_authored_by
from research_kit.studies.records import studies_registered_by
from research_kit.tiers import Tier


@dataclass(frozen=True)
class StudyBudget:
    """A study's real budget with its grants and spends."""

    study: str
    balance: ledger.Balance
    grants: list[ledger.Grant]
    spends: list[ledger.Spend]


def grant(
    ws: Workspace,
    *,
    actor: str,
    study: str,
    rho: Typed | None = None,
    epsilon: Typed | None = None,
    delta: float | None = None,
    note: str = "",
    owners: Sequence[str] = (),
) -> ledger.Balance:
    """A committee member adds to a study's real budget, in rho or in epsilon at ``delta`` (default: the
    policy's), naming its owners at its first grant."""
    return as_user(actor, ledger.grant, ws, study, _amount(ws, rho, epsilon, delta), note=note, owners=owners)


def grant_twin(
    ws: Workspace,
    *,
    actor: str,
    rho: Typed | None = None,
    epsilon: Typed | None = None,
    delta: float | None = None,
    note: str = "",
    owners: Sequence[str] = (),
) -> ledger.Balance:
    """A committee member adds to the registry's DP-twin budget (spent by the DP twins of the stewards its permit
    names: ``owners`` join them), in rho or in epsilon at ``delta`` (default: the policy's)."""
    return as_user(actor, ledger.grant_twin, ws, _amount(ws, rho, epsilon, delta), note=note, owners=owners)


def _amount(ws: Workspace, rho: Typed | None, epsilon: Typed | None, delta: float | None) -> Decimal:
    """A grant given as rho or as epsilon at ``delta`` (default: the policy's), in exact rho; one line if not."""
    if rho is None and epsilon is None:
        raise BadInput("give the grant as --rho R or as --epsilon E [--delta D]")
    if delta is not None and epsilon is None:
        raise BadInput("--delta goes with --epsilon")
    amount = rho_from(rho, epsilon, ws.policy().dp.delta if delta is None else delta)
    assert amount is not None
    return amount


def balances(ws: Workspace, *, study: str | None = None, tier: Tier = "real") -> list[ledger.Balance]:
    """One study's balance, or every study's."""
    names = [study] if study else ledger.studies(ws)
    return [ledger.balance(ws, s, tier) for s in names]


def history(ws: Workspace, *, study: str, tier: Tier = "real") -> list[ledger.Spend]:
    return ledger.history(ws, study, tier)


def reset_sandbox(ws: Workspace, *, actor: str, study: str) -> int:
    """Forget a study's spends on the twin (the real ledger is never reset); how many."""
    return as_user(actor, ledger.reset_sandbox, ws, study)


def _reads_every_budget(user: users.User | None) -> bool:
    """The committee and stewards read every budget; a researcher (or a stranger) only their own studies'."""
    return user is not None and user.active and bool(user.roles) and not user.researcher_only


def visible_studies(ws: Workspace, *, actor: str) -> list[str]:
    """The studies whose budget ``actor`` may read: every one for the committee and stewards, else their own
    (owned, registered or with a request they wrote)."""
    names = ledger.studies(ws)
    with ws.catalog() as conn:
        user = users.get(conn, actor)
        mine = studies_registered_by(conn, actor) | owners.owned_by(conn, actor)
    if not _reads_every_budget(user):
        mine |= studies_authored_by(ws, actor)
        names = [n for n in names if n in mine]
    return names


def shown(ws: Workspace, *, actor: str, study: str | None = None, tier: Tier = "real") -> list[ledger.Balance]:
    """``budget show``: the balances ``actor`` may read (one study's, refused when not theirs to read)."""
    names = visible_studies(ws, actor=actor)
    if study is not None and study not in names:
        raise PolicyRefusal(f"study {study}: its budget is read by its owners, the committee and stewards")
    return balances(ws, study=study, tier=tier) if study is not None else [ledger.balance(ws, n, tier) for n in names]


def visible_budgets(ws: Workspace, *, actor: str) -> list[StudyBudget]:
    """The real budgets ``actor`` may read: every study's for the committee and stewards, a researcher's own."""
    names = visible_studies(ws, actor=actor)
    return [
        StudyBudget(n, ledger.balance(ws, n, "real"), ledger.grants(ws, n), ledger.history(ws, n, "real"))
        for n in names
    ]


def twin_shown(ws: Workspace, *, actor: str) -> ledger.Balance:
    """``budget show --twin``: the registry's DP-twin budget, read by those who read every study's budget (the
    committee and stewards); a researcher is refused in one line."""
    with ws.catalog() as conn:
        user = users.get(conn, actor)
    if not _reads_every_budget(user):
        raise PolicyRefusal("the registry's DP-twin budget is read by the committee and stewards")
    return ledger.twin_balance(ws)


def twin_history(ws: Workspace, *, actor: str) -> list[ledger.Spend]:
    """The DP-twin budget's spends, oldest first (read under :func:`twin_shown`'s rule)."""
    twin_shown(ws, actor=actor)
    return ledger.twin_history(ws)
