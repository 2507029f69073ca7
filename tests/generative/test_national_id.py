from __future__ import annotations

from datetime import date

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn, verhoeff

from research_kit.model import national_id

stems = st.builds(
    lambda d, seq: int(f"{d:%Y%m%d}{seq:03d}"),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 12, 31)),
    st.integers(0, 999),
)


@given(st.lists(stems, min_size=1, max_size=50))
def test_vectorised_check_digits_agree_with_stdnum(batch: list[int]) -> None:
    luhn_digits, verhoeff_digits = national_id.check_digits(np.array(batch, dtype=np.int64))
    for stem, lu, ve in zip(batch, luhn_digits, verhoeff_digits, strict=True):
        assert str(lu) == luhn.calc_check_digit(str(stem))
        assert str(ve) == verhoeff.calc_check_digit(str(stem))


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 12, 31)), st.integers(0, 999))
def test_a_made_number_is_valid_and_any_changed_digit_is_caught(birth: date, seq: int) -> None:
    number = national_id.make(birth, seq)
    assert national_id.is_valid(number)
    for pos in range(13):
        for digit in "0123456789":
            if digit != number[pos]:
                changed = number[:pos] + digit + number[pos + 1 :]
                # A changed check digit or stem digit breaks at least one of the two checks,
                # unless the change lands on another real date with matching digits (impossible
                # for a single change: Verhoeff catches every single-digit error).
                assert not national_id.is_valid(changed)


def test_impossible_dates_and_wrong_shapes_are_invalid() -> None:
    good = national_id.make(date(1985, 3, 14), 42)
    assert national_id.is_valid(good)
    assert not national_id.is_valid(good[:-1])
    assert not national_id.is_valid(good + "0")
    assert not national_id.is_valid("abcdefghijklm")
    stem = "19850230042"  # 30 February
    assert not national_id.is_valid(stem + luhn.calc_check_digit(stem) + verhoeff.calc_check_digit(stem))
