from __future__ import annotations

import hashlib
import hmac
import secrets

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from research_kit.pseudonymise.keys import Key
from research_kit.pseudonymise.pseudonyms import (
    date_shifts,
    pseudonym,
    pseudonyms,
    study_fingerprint,
    study_pseudonyms,
)

KEY = Key(secrets.token_bytes(32))
ids = st.text(alphabet="0123456789", min_size=13, max_size=13)


@given(ids)
def test_a_pseudonym_is_stable_and_ignores_spacing(nid: str) -> None:
    spaced = f" {nid[:4]} {nid[4:8]}-{nid[8:]} "
    assert pseudonym(KEY, nid) == pseudonym(KEY, spaced) == pseudonym(KEY, nid)
    assert len(pseudonym(KEY, nid)) == 32
    assert int(pseudonym(KEY, nid), 16) >= 0


@given(st.lists(ids, min_size=2, max_size=40, unique=True))
def test_distinct_people_get_distinct_pseudonyms_and_the_batch_matches_one_by_one(batch: list[str]) -> None:
    many = pseudonyms(KEY, pl.Series(batch)).to_list()
    assert many == [pseudonym(KEY, x) for x in batch]
    assert len(set(many)) == len(batch)


@given(ids)
def test_another_key_gives_unrelated_pseudonyms(nid: str) -> None:
    assert pseudonym(KEY, nid) != pseudonym(Key(secrets.token_bytes(32)), nid)
    assert nid not in pseudonym(KEY, nid)


@given(st.lists(ids, min_size=1, max_size=20, unique=True), st.binary(min_size=32, max_size=32))
def test_study_pseudonyms_are_stable_within_a_study_and_unlinkable_across(batch: list[str], secret: bytes) -> None:
    base = pseudonyms(KEY, pl.Series(batch))
    a = study_pseudonyms(secret, base).to_list()
    assert a == study_pseudonyms(secret, base).to_list()
    assert a == [hmac.new(secret, p.encode(), hashlib.sha256).hexdigest()[:32] for p in base.to_list()]
    assert a == study_pseudonyms(secret, base.reverse()).to_list()[::-1]  # each is its pseudonym's alone
    other_secret = secrets.token_bytes(32)
    other = study_pseudonyms(other_secret, base).to_list()
    assert not set(a) & set(other)
    assert not set(a) & set(base.to_list())
    assert len(set(a)) == len(batch)
    assert study_fingerprint(secret) != study_fingerprint(other_secret)
    assert all(len(p) == 32 for p in a)


@given(st.lists(ids, min_size=1, max_size=30), st.integers(1, 3650))
def test_date_shifts_stay_within_bounds_and_are_the_same_for_every_row_of_a_patient(
    batch: list[str], max_days: int
) -> None:
    shifts = date_shifts(KEY, pl.Series(batch), max_days).to_list()
    assert all(-max_days <= s <= max_days for s in shifts)
    again = date_shifts(KEY, pl.Series(batch + batch), max_days).to_list()
    assert again == shifts + shifts
