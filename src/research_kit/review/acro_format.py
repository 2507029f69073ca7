"""Our check results as records of ACRO's ``results.json`` (the format ACRO 1.0.2's ``finalise(path, "json")`` writes).

Output checkers who use ACRO's tools can read what research-kit found. A
record holds, in ACRO's order: ``uid``, ``status`` (``pass``/``fail``/
``review``), ``type`` (``table``, ``regression`` for models, ``custom``
otherwise), ``properties`` (a table's method and mitigation; a model's method
and residual degrees of freedom), ``files`` (each ``{"name", "sdc"}``, where a
table's ``sdc`` is ``{"summary": {check: cells flagged}, "cells": {check:
[[row, column], ...]}}``, a model's ``{}``, as ACRO leaves it), ``outcome``
(the table's shape, each cell ``"ok"`` or its checks, ``"NKCheck; PPercentCheck; "``
as ACRO spells them), ``command``, ``summary``, ``timestamp``, ``comments``,
``exception`` and ``fair`` (the checks run and their status).

Cell positions are 0-based row and column numbers of the output file's table
(every column counted, labels included; ACRO counts within its table's values,
its labels being the index). Our rules are named by ACRO's checks where ACRO has
one; the others get names of the same form:

=================  ======================
rule               check
=================  ======================
threshold          MinimumThresholdCheck
dominance          NKCheck
p_percent          PPercentCheck
zero               PresenceOfZeroCheck
residual_df        MinimumDoFCheck
negative           NegativeValueCheck (ACRO reports negatives under NKCheck and PPercentCheck)
min_max            IndividualValueCheck
survival_events    SurvivalEventsCheck
unchecked          ManualCheck
differencing       PresenceOfLinkedTableCheck
mitigated_source   MitigatedSourceCheck
=================  ======================

A flag on a whole column or output has no cell (nor has one naming a cell
the table does not hold): it is in the summary, not in ``cells`` or
``outcome``. ``acro.record.load_records`` reads a ``results.json``
built with :func:`acro_results` (with ``version`` ACRO's own) back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pandas as pd

import research_kit
from research_kit.core.errors import BadInput
from research_kit.disclosure.results import CheckResult, Flag
from research_kit.outputs.sidecar import Sidecar

ACRO_VERSION = "1.0.2"
STATUSES = ("pass", "fail", "review")
ACRO_CHECKS = {
    "threshold": "MinimumThresholdCheck",
    "dominance": "NKCheck",
    "p_percent": "PPercentCheck",
    "zero": "PresenceOfZeroCheck",
    "residual_df": "MinimumDoFCheck",
    "negative": "NegativeValueCheck",
    "min_max": "IndividualValueCheck",
    "survival_events": "SurvivalEventsCheck",
    "unchecked": "ManualCheck",
    "differencing": "PresenceOfLinkedTableCheck",  # ACRO's check for differencing against other outputs
    "mitigated_source": "MitigatedSourceCheck",  # a figure drawn from its table before the table was mitigated
}
MITIGATIONS = {"suppression": "suppress", "rounding": "round"}  # our record's method -> ACRO's property


def check_name(rule: str) -> str:
    return ACRO_CHECKS.get(rule, rule)


def acro_record(
    uid: str,
    output_files: list[str],
    sidecar: Sidecar,
    result: CheckResult,
    frame: pd.DataFrame | None,
    *,
    status: str,
    comments: list[str],
    exception: str,
    timestamp: str,
    command: str,
) -> dict[str, Any]:
    """One output's record, keyed as ACRO writes it."""
    if status not in STATUSES:
        raise BadInput(f"{sidecar.file}: status {status!r} is not one of {', '.join(STATUSES)}")
    if not output_files:
        raise BadInput(f"{sidecar.file}: a record needs at least one output file")
    table = frame if sidecar.type in ("table", "figure") and frame is not None else None
    sdc = table_sdc(result, table) if table is not None else {}
    return {
        "uid": uid,
        "status": status,
        "type": {"table": "table", "model": "regression"}.get(sidecar.type, "custom"),
        "properties": _properties(sidecar),
        "files": [{"name": name, "sdc": sdc} for name in output_files],
        "outcome": _outcome(result, table) if table is not None else {},
        "command": command,
        "summary": _summary(sidecar, result, table),
        "timestamp": timestamp,
        "comments": list(comments),
        "exception": exception,
        "fair": _fair(result),
    }


def acro_results(records: dict[str, dict[str, Any]], *, version: str) -> dict[str, Any]:
    """The whole ``results.json``: ``version`` is the ACRO format's (ACRO's reader insists on its own)."""
    tool = {"@type": "SoftwareApplication", "name": "research-kit", "version": research_kit.__version__}
    return {"version": version, "tool": tool, "results": dict(records)}


def _checks(result: CheckResult) -> list[str]:
    """ACRO names of the rules applied, then of any other rule flagged, once each."""
    rules = [*result.rules, *(f.rule for f in result.flags)]
    return list(dict.fromkeys(check_name(r) for r in rules))


def _cell_flags(result: CheckResult, frame: pd.DataFrame | None) -> Iterable[tuple[Flag, int, str]]:
    """The flags on a cell of ``frame`` (with no frame: on any cell)."""
    for flag in result.flags:
        if flag.row is None or flag.column is None:
            continue
        if frame is None or (flag.column in frame.columns and 0 <= flag.row < len(frame)):
            yield flag, flag.row, flag.column


def table_sdc(result: CheckResult, frame: pd.DataFrame) -> dict[str, Any]:
    """ACRO's per-file ``sdc``: the number of flagged cells per check and their positions."""
    position = {column: i for i, column in enumerate(frame.columns)}
    cells: dict[str, set[tuple[int, int]]] = {name: set() for name in _checks(result)}
    for flag, row, column in _cell_flags(result, frame):
        cells[check_name(flag.rule)].add((row, position[column]))
    return {
        "summary": {name: len(found) for name, found in cells.items()},
        "cells": {name: [[r, c] for r, c in sorted(found)] for name, found in cells.items()},
    }


def _outcome(result: CheckResult, frame: pd.DataFrame) -> dict[str, Any]:
    names: dict[tuple[int, str], list[str]] = {}
    for flag, row, column in _cell_flags(result, frame):
        found = names.setdefault((row, column), [])
        if check_name(flag.rule) not in found:
            found.append(check_name(flag.rule))
    text = {
        column: [
            "".join(f"{n}; " for n in names[(row, column)]) if (row, column) in names else "ok"
            for row in range(len(frame))
        ]
        for column in frame.columns
    }
    parsed: dict[str, Any] = json.loads(pd.DataFrame(text, columns=frame.columns).to_json())
    return parsed


def _properties(sidecar: Sidecar) -> dict[str, Any]:
    if sidecar.type == "model" and sidecar.model is not None:
        dof = sidecar.model.df_resid
        return {"method": sidecar.model.estimator, "dof": None if dof is None else int(dof)}
    if sidecar.type != "table":
        return {}
    properties: dict[str, Any] = {"method": sidecar.kind, "mitigation": "none"}
    for record in sidecar.mitigations:
        method = str(record.get("method", ""))
        properties["mitigation"] = MITIGATIONS.get(method, method)
        if method == "rounding" and "base" in record.get("parameters", {}):
            properties["round_base"] = record["parameters"]["base"]
    return properties


def _summary(sidecar: Sidecar, result: CheckResult, frame: pd.DataFrame | None) -> str:
    lines = [f"{sidecar.kind} : {result.status}"]
    counted: dict[tuple[str, str], set[tuple[int, str]]] = {}
    cell_flags = list(_cell_flags(result, frame))
    for flag, row, column in cell_flags:
        counted.setdefault((check_name(flag.rule), flag.severity), set()).add((row, column))
    for (name, severity), cells in counted.items():
        need = "may need suppressing" if severity == "fail" else "need a reviewer's look"
        lines.append(f"{name}: {severity} - {len(cells)} cells {need}.")
    on_cells = {flag for flag, _, _ in cell_flags}
    for flag in result.flags:
        if flag not in on_cells:
            where = f" ({flag.column})" if flag.column else ""
            lines.append(f"{check_name(flag.rule)}: {flag.severity}{where} - {flag.reason}")
    return "\n".join([*lines, *result.notes])


def _fair(result: CheckResult) -> dict[str, Any]:
    status = {name: "pass" for name in _checks(result)}
    for flag in result.flags:
        name = check_name(flag.rule)
        if status[name] != "fail":
            status[name] = flag.severity
    return {"checks_needed": list(status), "check_status": status, "notes": list(result.notes)}
