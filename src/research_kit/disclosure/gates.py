"""Automatic gates: what stops an output before any reviewer sees it.

A gated output never enters review; the researcher is told why. The gates:

- the declaration: only ``moderately_sensitive`` outputs may leave, and a
  figure drawn from a ``highly_sensitive`` table is gated with it;
- the file type (``[outputs].allowed_types``) and size (``max_file_mb``);
- tables: at most ``max_table_rows`` rows; no column named like an
  identifier (pseudonym, national id, name, address, contact, birth date);
- every table cell and every line of a text file (CSV, JSON, TXT, HTML, SVG):
  no value shaped like a pseudonym (32 hex digits, the extracts' and twins'
  format) and no 13-digit number that is a valid national identification
  number (date, Luhn and Verhoeff check digits). A reason names the column or
  the line, never the value.

Images (PNG) cannot be read for values: their table (``source=``) is checked
instead, and the SDC checks flag a figure declared without one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from research_kit.core.config import OutputsPolicy
from research_kit.disclosure.results import GateResult
from research_kit.model import national_id
from research_kit.outputs.sidecar import Sidecar
from research_kit.pseudonymise.pseudonyms import PSEUDONYM_HEX

TEXT_TYPES = {"csv", "json", "txt", "html", "svg"}
IDENTIFIER_NAMES = re.compile(
    r"(^|_)(pseudonym|patient_?id|person_?id|national_?id|matricule|nin|ssn|name|first_?name|last_?name|surname|"
    r"address|street|phone|e_?mail|postcode|zip_?code|birth_?date|date_?of_?birth|dob)($|_)",
    re.IGNORECASE,
)
PSEUDONYM = re.compile(rf"(?<![0-9A-Fa-f])[0-9a-f]{{{PSEUDONYM_HEX}}}(?![0-9A-Fa-f])")
THIRTEEN_DIGITS = re.compile(r"(?<!\d)\d{13}(?!\d)")


def gate(
    path: Path,
    sensitivity: str,
    sidecar: Sidecar | None,
    policy: OutputsPolicy,
    *,
    source_sensitivity: str | None = None,
) -> GateResult:
    """Every gate on one output file; ``source_sensitivity``: the declaration of a figure's source table."""
    reasons: list[str] = []
    if sensitivity != "moderately_sensitive":
        reasons.append(f"declared {sensitivity}: only moderately_sensitive outputs may leave")
    if source_sensitivity is not None and source_sensitivity != "moderately_sensitive":
        reasons.append(f"drawn from a {source_sensitivity} table")
    kind = path.suffix.lower().lstrip(".")
    if kind not in policy.allowed_types:
        reasons.append(f"file type .{kind or '(none)'} is not allowed (allowed: {', '.join(policy.allowed_types)})")
    size_mb = path.stat().st_size / 2**20
    if size_mb > policy.max_file_mb:
        reasons.append(f"{size_mb:.1f} MiB, over the limit of {policy.max_file_mb:g} MiB")
    elif kind == "csv":
        reasons += _table_reasons(path, policy)
    elif kind in TEXT_TYPES:
        reasons += _text_reasons(path)
    return GateResult(tuple(reasons))


def _table_reasons(path: Path, policy: OutputsPolicy) -> list[str]:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"not a readable CSV table ({str(exc).splitlines()[0]})"]
    reasons = []
    if len(frame) > policy.max_table_rows:
        reasons.append(f"{len(frame):,} rows, over the limit of {policy.max_table_rows:,}")
    for column in frame.columns:
        if IDENTIFIER_NAMES.search(str(column)):
            reasons.append(f"column {column!r} is named like an identifier")
        cells = frame[column]
        if cells.str.contains(PSEUDONYM).any():
            reasons.append(f"column {column!r} holds values shaped like pseudonyms")
        if _national_ids(cells.str.cat(sep="\n")):
            reasons.append(f"column {column!r} holds a value matching the national-ID pattern")
    return reasons


def _text_reasons(path: Path) -> list[str]:
    reasons = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if PSEUDONYM.search(line):
            reasons.append(f"line {number} holds a value shaped like a pseudonym")
        if _national_ids(line):
            reasons.append(f"line {number} holds a value matching the national-ID pattern")
        if len(reasons) >= 5:
            reasons.append("(further lines not listed)")
            break
    return reasons


def _national_ids(text: str) -> bool:
    return any(national_id.is_valid(m) for m in THIRTEEN_DIGITS.findall(text))
