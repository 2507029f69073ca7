"""Keyed pseudonyms and date shifts (HMAC-SHA256 from :mod:`hmac`; nothing hand-rolled).

- The pseudonym of a patient is HMAC-SHA256, under the key's ``pseudonym``
  purpose key, of the normalised national ID, as 32 hex characters (128 bits).
  The same key gives the same pseudonym in every extract, so longitudinal
  studies link.
- A study pseudonym is HMAC-SHA256 of the extract pseudonym under the study's
  secret (32 random bytes of its own, kept in the catalog: see
  :mod:`~research_kit.pseudonymise.study_secrets`; never derived from the key),
  as 32 hex characters: stable within a study across every extract version,
  unlinkable across studies without their secrets.
- A date shift is a per-patient whole number of days in [-max, +max], keyed,
  so that every date of a patient moves together and intervals stay exact.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import polars as pl

from research_kit.model.tables import REGISTRY_PREFIX
from research_kit.pseudonymise.keys import Key

PSEUDONYM_HEX = 32
CHUNK = 250_000  # national IDs hashed per batch


def normalise_national_id(value: str) -> str:
    """The identifier as compared and hashed: a national ID's digits only (spaces, dots and dashes removed);
    a registry identifier (``registry:...``) whole, trimmed, so that two of them never share a pseudonym
    with each other or with a national ID."""
    if value.isdigit():
        return value
    if value.startswith(REGISTRY_PREFIX):
        return value.strip()
    return "".join(ch for ch in value if ch.isdigit())


def pseudonym(key: Key, national_id: str) -> str:
    return _mac(key.derive("pseudonym"), normalise_national_id(national_id))


def pseudonyms(key: Key, national_ids: pl.Series) -> pl.Series:
    """Pseudonyms of many national IDs (one HMAC each, in C)."""
    return pseudonyms_with_order(key, national_ids)[0]


def pseudonyms_with_order(key: Key, national_ids: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Pseudonyms, and their first 64 bits as an integer (a row order unrelated to the national IDs).

    Done in chunks, so that only a chunk's Python strings and digests are alive at once.
    """
    keyed = hmac.new(key.derive("pseudonym"), digestmod=hashlib.sha256)

    def mac(national_id: str) -> bytes:
        state = keyed.copy()  # the keyed state, computed once: no re-keying per patient
        state.update(normalise_national_id(national_id).encode())
        return state.digest()

    names: list[pl.Series] = []
    orders: list[np.ndarray] = []
    for start in range(0, len(national_ids), CHUNK):
        raw = [mac(x) for x in national_ids.slice(start, CHUNK).to_list()]
        names.append(pl.Series(raw, dtype=pl.Binary).bin.encode("hex").str.slice(0, PSEUDONYM_HEX))
        orders.append(np.frombuffer(b"".join(d[:8] for d in raw), dtype=">u8").astype(np.uint64))
    joined = pl.concat(names) if names else pl.Series([], dtype=pl.String)
    order = np.concatenate(orders) if orders else np.empty(0, dtype=np.uint64)
    return joined.alias(national_ids.name), pl.Series("_order", order, dtype=pl.UInt64)


def study_pseudonyms(study_secret: bytes, extract_pseudonyms: pl.Series) -> pl.Series:
    """The study pseudonyms of many extract pseudonyms (one HMAC each, in C), in their order.

    Done in chunks from a keyed state computed once, as :func:`pseudonyms_with_order`: about 1 s per
    million pseudonyms. Callers pass each pseudonym once (a table's unique ones) and join.
    """
    keyed = hmac.new(study_secret, digestmod=hashlib.sha256)

    def mac(value: str) -> bytes:
        state = keyed.copy()
        state.update(value.encode())
        return state.digest()

    names: list[pl.Series] = []
    for start in range(0, len(extract_pseudonyms), CHUNK):
        raw = [mac(x) for x in extract_pseudonyms.slice(start, CHUNK).cast(pl.String).to_list()]
        names.append(pl.Series(raw, dtype=pl.Binary).bin.encode("hex").str.slice(0, PSEUDONYM_HEX))
    joined = pl.concat(names) if names else pl.Series([], dtype=pl.String)
    return joined.alias(extract_pseudonyms.name)


def study_fingerprint(study_secret: bytes) -> str:
    """A public name for a study's pseudonyms (16 hex characters of a labelled HMAC, useless for guessing it).

    Equal fingerprints, equal study pseudonyms: the runner's content keys and the view cache hold it.
    """
    return hmac.new(study_secret, b"research-kit/study-pseudonyms/fingerprint", hashlib.sha256).hexdigest()[:16]


def date_shifts(key: Key, national_ids: pl.Series, max_days: int) -> pl.Series:
    """A keyed shift in days, in [-max_days, max_days], per patient."""
    purpose = key.derive("date-shift")
    span = 2 * max_days + 1
    values = [
        int.from_bytes(hmac.digest(purpose, normalise_national_id(x).encode(), "sha256")[:8], "big") % span - max_days
        for x in national_ids.to_list()
    ]
    return pl.Series("shift_days", values, dtype=pl.Int32)


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
