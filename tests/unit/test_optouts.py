"""The opt-out register: keyed hashes only, idempotent, all or nothing, the steward's to record."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from tests.conftest import MEMBER, STEWARD, people

from research_kit.actions import optouts as actions
from research_kit.core.errors import BadInput, MissingData, PolicyRefusal
from research_kit.core.workspace import Workspace
from research_kit.model.national_id import make
from research_kit.pseudonymise import optouts
from research_kit.pseudonymise.keys import load_key
from research_kit.pseudonymise.pseudonyms import pseudonym

IDS = [make(date(1960 + i, 1 + i, 10 + i), 100 + i) for i in range(4)]


@pytest.fixture
def ws(workspace: Workspace, key_file: Path) -> Workspace:
    people(workspace, rita="researcher")
    return workspace


def stored_bytes(ws: Workspace) -> bytes:
    """Everything the workspace holds on disk: the catalog (and its journal), the audit log, the rest."""
    return b"".join(p.read_bytes() for p in sorted(ws.root.rglob("*")) if p.is_file())


def test_recording_is_idempotent_keeps_the_first_date_and_stores_no_clear_id(ws: Workspace, key_file: Path) -> None:
    first = actions.add(ws, actor=STEWARD, lines=[f"  {IDS[0]}  \n", "\n", IDS[1]], effective=date(2025, 3, 1))
    assert (first.recorded, first.already, first.register.count, first.register.version) == (2, 0, 2, 2)
    # The same people again (one written with dots, as people do), and one new: only the new one is added.
    dotted = f"{IDS[1][:4]}.{IDS[1][4:8]}.{IDS[1][8:]}"
    again = actions.add(ws, actor=STEWARD, lines=[IDS[0], dotted, IDS[2]], effective=date(2025, 6, 1))
    assert (again.recorded, again.already, again.register.version) == (1, 2, 3)
    key = load_key(key_file)
    with ws.catalog() as conn:
        rows = {r["person"]: r["effective"] for r in conn.execute("SELECT person, effective FROM optouts")}
    assert rows[optouts.person_hash(key, IDS[0])] == "2025-03-01"  # the first date is kept
    assert rows[optouts.person_hash(key, IDS[2])] == "2025-06-01"
    assert len(rows) == 3
    for national_id in IDS[:3]:
        # Never the pseudonym of an extract: the register cannot be joined to one without the key.
        assert optouts.person_hash(key, national_id) != pseudonym(key, national_id)
        assert not any(pseudonym(key, national_id) in h for h in rows)
    disk = stored_bytes(ws)
    for national_id in IDS:
        assert national_id.encode() not in disk
        assert national_id[:11].encode() not in disk
    audit_lines = ws.audit_path.read_text(encoding="utf-8")
    recorded = [json.loads(line) for line in audit_lines.splitlines() if '"optout.record"' in line]
    assert [e["details"] for e in recorded] == [
        {"recorded": 2, "already": 0, "register_version": 2},
        {"recorded": 1, "already": 2, "register_version": 3},
    ]
    assert not any(h in audit_lines for h in rows)  # counts only: never a hash


def test_a_bad_line_refuses_every_line_naming_its_number_never_its_value(ws: Workspace) -> None:
    bad = IDS[3][:12] + str((int(IDS[3][12]) + 1) % 10)  # a wrong check digit
    with pytest.raises(BadInput) as refused:
        actions.add(ws, actor=STEWARD, lines=[IDS[0], "", bad, IDS[1]])
    message = str(refused.value)
    assert "standard input: line 3: not a national ID" in message
    assert bad not in message
    assert bad[:8] not in message
    assert "\n" not in message
    assert optouts.current(ws).count == 0  # all or nothing
    with pytest.raises(BadInput, match="no national ID"):
        actions.add(ws, actor=STEWARD, lines=["", "   \n"])


def test_a_file_with_a_header_and_dates_is_read_and_a_bad_row_refuses_it_all(ws: Workspace, tmp_path: Path) -> None:
    good = tmp_path / "optouts.csv"
    good.write_text(f"national_id;effective\n{IDS[0]};2024-02-29\n\n{IDS[1]};\n", encoding="utf-8")
    done = actions.import_file(ws, actor=STEWARD, path=good, effective=date(2025, 1, 1))
    assert (done.recorded, done.already) == (2, 0)
    with ws.catalog() as conn:
        assert sorted(r[0] for r in conn.execute("SELECT effective FROM optouts")) == ["2024-02-29", "2025-01-01"]
    plain = tmp_path / "ids.txt"
    plain.write_text(f"{IDS[2]}\n{IDS[3]}\nnot-an-id\n", encoding="utf-8")
    with pytest.raises(BadInput) as refused:
        actions.import_file(ws, actor=STEWARD, path=plain)
    assert str(refused.value).startswith(f"{plain}: row 3: not a national ID")
    bad_date = tmp_path / "dates.csv"
    bad_date.write_text(f"national_id,date\n{IDS[2]},2024-02-30\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"row 2: date: the date is not a real YYYY-MM-DD date"):
        actions.import_file(ws, actor=STEWARD, path=bad_date)
    future = tmp_path / "future.csv"
    future.write_text(f"{IDS[2]},{date.today() + timedelta(days=2)}\n", encoding="utf-8")
    with pytest.raises(BadInput, match="after today"):
        actions.import_file(ws, actor=STEWARD, path=future)
    with pytest.raises(MissingData):
        actions.import_file(ws, actor=STEWARD, path=tmp_path / "absent.csv")
    assert optouts.current(ws).count == 2  # none of the refused files recorded anything


def test_only_a_steward_records_and_steward_or_committee_read_the_count(ws: Workspace) -> None:
    with pytest.raises(PolicyRefusal, match="recording opt-outs of secondary use needs the steward role"):
        actions.add(ws, actor="rita", lines=[IDS[0]])
    with pytest.raises(PolicyRefusal, match="needs the steward role"):
        actions.add(ws, actor=MEMBER, lines=[IDS[0]])
    assert optouts.current(ws).count == 0
    actions.add(ws, actor=STEWARD, lines=[IDS[0]])
    assert actions.count(ws, actor=MEMBER).count == 1
    assert actions.count(ws, actor=STEWARD).version == 1
    with pytest.raises(PolicyRefusal, match="needs the steward or committee role"):
        actions.count(ws, actor="rita")


def test_an_opt_out_in_any_source_wins_the_merge_whatever_the_precedence() -> None:
    from research_kit.ingest.converted import Converted
    from research_kit.ingest.merge import merge

    def source(name: str, status: str) -> Converted:
        row = {"national_id": IDS[0], "vital_status": status, "consent_reuse": "yes", "source": name}
        return Converted(name=name, kind="csv", tables={"patients": pl.DataFrame([row])}, records_in=1, converted=1)

    first, second = source("hospital", "alive"), source("registry", "Opted out")
    for order in ((first, 1), (second, 2)), ((second, 2), (first, 1)):
        merged = merge(list(order)).tables["patients"]
        assert merged.height == 1
        assert merged["vital_status"].to_list() == ["opted out"]
    assert merge([(first, 1), (source("b", "dead"), 2)]).tables["patients"]["vital_status"].to_list() == ["alive"]


def test_a_file_the_csv_reader_cannot_read_is_refused_in_one_line(tmp_path: Path) -> None:
    """A field longer than Python's csv module takes (131,072 characters) names the file and row, no traceback."""
    path = tmp_path / "ids.csv"
    path.write_text("national_id\n" + "1" * 200_000 + "\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"ids.csv: row 2: not a CSV of national IDs; nothing was recorded"):
        optouts.read_file(path)
