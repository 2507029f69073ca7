"""The words the public pages show for the catalog's codes, marked for translation (``N_``): a template shows
``_(label)`` in its language. The codes themselves (``scientific-research``, ``real``) stay in the JSON;
``tests/unit/test_i18n.py`` checks that every code the catalog may hold has its words here."""

from __future__ import annotations

from research_kit.core.i18n import N_
from research_kit.core.permits import EXPIRED

# The purposes of Article 53(1) EHDS, as core.permits.CATEGORIES says them.
CATEGORY: dict[str, str] = {
    "public-health": N_("public interest in public or occupational health"),
    "policy-making": N_("policy-making and regulatory activities"),
    "statistics": N_("official statistics"),
    "education": N_("education or teaching in health or care"),
    "scientific-research": N_("scientific research in the health or care sectors"),
    "care-improvement": N_("improving the delivery of care, treatment and personalised medicine"),
}

TIER: dict[str, str] = {
    "twin": N_("synthetic twin only (artificial records)"),
    "dp": N_("differentially private answers and the synthetic twin"),
    "real": N_("pseudonymised extract in the secure environment"),
}

STATUS: dict[str, str] = {
    "applied": N_("applied for"),
    "granted": N_("in force"),
    "refused": N_("refused"),
    "revoked": N_("revoked"),
    EXPIRED: N_("ended"),
}

PUBLICATION_STATUS: dict[str, str] = {
    "not yet": N_("not yet published"),
    "submitted": N_("submitted for publication"),
    "published": N_("published"),
    "not to be published": N_("not to be published"),
}

TABLE: dict[str, str] = {
    "patients": N_("patients"),
    "diagnoses": N_("diagnoses"),
    "phenotypes": N_("phenotypes (signs and symptoms)"),
    "encounters": N_("care encounters"),
}

REGISTRY_TWIN = N_("The registry's differentially private synthetic twin")
# The register's landing page shows these in every language at once.
REGISTER_TITLE = N_("Transparency register")
REGISTER_SUBTITLE = N_("How the data of the national rare disease registry are used for research")
