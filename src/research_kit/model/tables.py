"""The raw export's tables: what a registry's clinical systems deliver.

Every column of a raw export is text (as exports are), dates ISO 8601
(``YYYY-MM-DD``), flags ``yes``/``no``. Child tables refer to patients by
national ID. ``mandatory`` columns must be non-empty in every row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    mandatory: tuple[str, ...]
    direct_identifiers: tuple[str, ...] = ()


PATIENTS = Table(
    "patients",
    (
        "national_id", "first_name", "last_name", "street", "house_number", "postcode", "commune",
        "canton", "country", "date_of_birth", "sex", "vital_status", "date_of_death",
        "cross_border_insured", "first_contact_date", "consent_reuse", "agrees_to_contact",
    ),
    mandatory=("national_id", "date_of_birth", "sex", "vital_status", "country"),
    direct_identifiers=("national_id", "first_name", "last_name", "street", "house_number"),
)  # fmt: skip

DIAGNOSES = Table(
    "diagnoses",
    (
        "national_id", "orpha_code", "icd10_code", "status", "onset_date", "diagnosis_date",
        "gene_symbol", "variant_hgvs",
    ),
    mandatory=("national_id", "orpha_code", "status", "diagnosis_date"),
    direct_identifiers=("national_id",),
)  # fmt: skip

PHENOTYPES = Table(
    "phenotypes",
    ("national_id", "hpo_code", "observed_date"),
    mandatory=("national_id", "hpo_code"),
    direct_identifiers=("national_id",),
)

ENCOUNTERS = Table(
    "encounters",
    ("national_id", "encounter_date", "centre_code", "centre_country", "encounter_type"),
    mandatory=("national_id", "encounter_date", "centre_code", "encounter_type"),
    direct_identifiers=("national_id",),
)

TABLES: tuple[Table, ...] = (PATIENTS, DIAGNOSES, PHENOTYPES, ENCOUNTERS)
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)  # also an extract's, a twin's and the DP views' tables
CHILD_TABLES: tuple[str, ...] = TABLE_NAMES[1:]  # one row per diagnosis, phenotype, encounter of a patient
EXTRACT_KEY = "pseudonym"  # how an extract's (and a twin's) child tables refer to their patient

SEXES = ("female", "male", "undetermined")
VITAL_STATUSES = ("alive", "dead", "lost to follow-up", "opted out")
DIAGNOSIS_STATUSES = ("confirmed", "suspected", "undiagnosed")
ENCOUNTER_TYPES = (
    "outpatient", "day hospital", "inpatient", "teleconsultation", "genetic counselling",
    "ERN virtual consultation",
)  # fmt: skip


@dataclass(frozen=True)
class Centre:
    code: str
    name: str
    country: str
    ern: bool  # a member of a European Reference Network


CENTRES: tuple[Centre, ...] = (
    Centre("LU-CHL", "Centre Hospitalier de Luxembourg", "LU", True),
    Centre("LU-CHEM", "Centre Hospitalier Emile Mayrisch", "LU", False),
    Centre("LU-HRS", "Hôpitaux Robert Schuman", "LU", False),
    Centre("LU-CHDN", "Centre Hospitalier du Nord", "LU", False),
    Centre("LU-LNS", "Laboratoire national de santé, génétique", "LU", False),
    Centre("BE-UCL", "Cliniques universitaires Saint-Luc, Bruxelles", "BE", True),
    Centre("BE-CHULG", "CHU de Liège", "BE", True),
    Centre("BE-UZL", "UZ Leuven", "BE", True),
    Centre("FR-NCK", "Hôpital Necker-Enfants malades, Paris", "FR", True),
    Centre("FR-NCY", "CHRU de Nancy", "FR", True),
    Centre("FR-STR", "Hôpitaux universitaires de Strasbourg", "FR", True),
    Centre("DE-UKS", "Universitätsklinikum des Saarlandes, Homburg", "DE", True),
    Centre("DE-HD", "Universitätsklinikum Heidelberg", "DE", True),
    Centre("DE-CHA", "Charité Universitätsmedizin Berlin", "DE", True),
    Centre("NL-RUMC", "Radboudumc, Nijmegen", "NL", True),
)
