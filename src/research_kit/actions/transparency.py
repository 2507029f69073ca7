"""Transparency: the public register (a steward or a committee member publishes it) and a person's "where was my
data used?" letter (a steward answers, with the person's national ID read like an opt-out's)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from research_kit.actions.acting import as_user, on_duty
from research_kit.core import users
from research_kit.core.errors import BadInput
from research_kit.core.i18n import offered
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace
from research_kit.pseudonymise import optouts
from research_kit.pseudonymise.keys import load_key
from research_kit.transparency import person as letters
from research_kit.transparency import register
from research_kit.transparency.register import Published

NO_LETTER = "no letter was written"


@dataclass(frozen=True)
class Letter:
    """A letter written: where, in which language, and how many extract versions hold the person."""

    out: Path
    lang: str
    extracts: int


def publish(ws: Workspace, *, actor: str, out: Path) -> Published:
    """Write the public transparency register to ``out`` (a new folder, or a previous register: replaced whole);
    a steward or a committee member; audited."""
    return on_duty(ws, actor, Duty.PUBLISH_REGISTER, register.publish, ws, out)


def person(
    ws: Workspace,
    *,
    actor: str,
    lines: Iterable[str],
    out: Path,
    lang: str | None = None,
    key_file: Path | None = None,
) -> Letter:
    """Write the "where was my data used?" letter of the one person whose national ID ``lines`` holds (the CLI's
    standard input), in ``lang`` (default: ``[transparency].default_language``), to ``out`` (mode 0600). A steward
    only, checked before anything is read; the ID is read as an opt-out's (one implementation), hashed with the
    key, and never shown, kept or audited: the audit line holds the language and the number of extract versions
    found. A language the policy supplies (``[transparency].extra_catalogs``) is refused, before the ID is read,
    in one line naming its catalog and first missing message unless the catalog is complete."""
    with ws.catalog() as conn:
        users.require(conn, actor, Duty.ANSWER_PERSON)
    rule = ws.policy().transparency
    wanted = lang if lang is not None else rule.default_language
    languages = offered(ws.root, rule.extra_catalogs, strict=[wanted])
    chosen = languages.check(wanted)
    letters.check_target(out)
    key = load_key(key_file)
    entries = optouts.read_lines(lines, outcome=NO_LETTER)
    if len(entries) != 1:
        raise BadInput(f"standard input: {len(entries)} national IDs; a letter answers one person; {NO_LETTER}")
    report = letters.find(ws, key, entries[0])
    del entries
    page = letters.render(report, chosen, languages)
    written = as_user(actor, letters.write, ws, out, page, lang=chosen, found=len(report.extracts))
    return Letter(written, chosen, len(report.extracts))
