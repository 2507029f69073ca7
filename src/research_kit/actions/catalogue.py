"""The registry's dataset description for the national Health Data Hub (HealthDCAT-AP): a steward or a committee
member writes it, audited. It holds rounded counts, age bands, years and shares, never a row."""

from __future__ import annotations

from pathlib import Path

from research_kit.actions.acting import on_duty
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace
from research_kit.transparency.catalogue import Written, check_out, describe
from research_kit.transparency.catalogue_facts import gather
from research_kit.transparency.catalogue_publisher import publisher
from research_kit.transparency.catalogue_shapes import SHAPE_SETS


def write(ws: Workspace, *, actor: str, out: Path) -> Written:
    """Write the catalogue of the newest extract to the folder ``out`` (``catalogue.ttl``, ``catalogue.jsonld``),
    checked against the shipped DCAT-AP 3 and HealthDCAT-AP shapes: whole, or nothing when a check fails."""
    return on_duty(ws, actor, Duty.DESCRIBE_DATASET, _write, ws, out.absolute())


def _write(ws: Workspace, out: Path) -> Written:
    policy = ws.policy()
    who = publisher(policy)  # the policy's keys and the folder first: refused before any extract is read
    check_out(out)
    facts = gather(ws, policy)
    done = describe(facts, who, out)
    ws.audit(
        "catalogue.write",
        folder=str(out),
        extract=facts.newest.id,
        individuals=facts.individuals,
        records=facts.records,
        rounding=facts.rounding,
        twins=[t.id for t in facts.twins],
        shapes=[s.name for s in SHAPE_SETS],
    )
    return done
