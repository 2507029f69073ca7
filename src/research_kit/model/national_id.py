"""Luxembourg's 13-digit national identification number (matricule).

Layout: ``YYYYMMDD`` (date of birth), a 3-digit sequence number, then a Luhn
check digit and a Verhoeff check digit, each computed over the first 11 digits.
:func:`is_valid` checks one number with python-stdnum's algorithms; the
simulator builds numbers by the million with the vectorised
:func:`check_digits`, which the tests hold to stdnum's results.
"""

from __future__ import annotations

from datetime import date

import numpy as np
from stdnum import luhn, verhoeff
from stdnum.exceptions import ValidationError

# Verhoeff's dihedral-group tables (multiplication, permutation); see stdnum.verhoeff.
_D = np.array(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ],
    dtype=np.int8,
)
_P = np.array(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ],
    dtype=np.int8,
)
_INV = np.array([0, 4, 3, 2, 1, 5, 6, 7, 8, 9], dtype=np.int8)


def check_digits(stems: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luhn and Verhoeff check digits of many 11-digit stems (int64 array)."""
    digits = np.empty((len(stems), 11), dtype=np.int8)
    rest = stems.astype(np.int64)
    for pos in range(10, -1, -1):
        digits[:, pos] = rest % 10
        rest //= 10
    # Luhn: from the right of the full number, the stem's last digit is doubled.
    doubled = digits[:, ::-1].astype(np.int16)
    doubled[:, 0::2] *= 2
    doubled[doubled > 9] -= 9
    luhn_digit = (10 - doubled.sum(axis=1) % 10) % 10
    # Verhoeff over the stem followed by a placeholder 0.
    check = np.zeros(len(stems), dtype=np.int8)
    for i, column in enumerate(range(10, -1, -1), start=1):
        check = _D[check, _P[i % 8, digits[:, column]]]
    return luhn_digit.astype(np.int8), _INV[check]


def make(birth: date, sequence: int) -> str:
    """One national ID for a date of birth and a sequence number (0-999).

    >>> make(date(1985, 3, 14), 42)
    '1985031404207'
    >>> is_valid(make(date(1985, 3, 14), 42))
    True
    """
    stem = f"{birth:%Y%m%d}{sequence:03d}"
    return stem + luhn.calc_check_digit(stem) + verhoeff.calc_check_digit(stem)


def is_valid(number: str) -> bool:
    """Whether a 13-digit string has a real date and both check digits right."""
    if len(number) != 13 or not number.isdigit():
        return False
    try:
        date(int(number[:4]), int(number[4:6]), int(number[6:8]))
    except ValueError:
        return False
    stem = number[:11]
    try:
        return luhn.calc_check_digit(stem) == number[11] and verhoeff.calc_check_digit(stem) == number[12]
    except ValidationError:
        return False
