"""The raw export's tables: what a registry's sources deliver, in the registry's own layout.

Every column of a raw table is text (as exports are), dates ISO 8601
(``YYYY-MM-DD``), ages ISO 8601 durations (``P6Y3M``), flags ``yes``/``no``.
Child tables refer to patients by ``national_id``, the person's identifier:
a national ID (13 digits), or, for a source without one that the policy
accepts (a public case collection), a registry identifier written
``registry:<id>`` (:data:`REGISTRY_PREFIX`), which can never be mistaken for
a national ID. ``mandatory`` columns must be non-empty in every row;
``optional`` columns may be left out of a file altogether (they came with
later sources: phenopackets, FHIR, mapped exports), and are then read empty.

Other sources (a mapped CSV or Excel export, phenopackets, FHIR) are turned
into these tables first (:mod:`research_kit.ingest.converted`), so that one
set of rules validates every source.

A diagnosis carries one or more codes, one column per system
(:data:`CODE_COLUMNS`); a phenotype or a diagnosis may be ``excluded`` (a
finding or disease ruled out); onsets may be dates, ages or HPO onset
classes (:mod:`research_kit.model.onsets`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    mandatory: tuple[str, ...]
    direct_identifiers: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()  # may be absent from a file (read as empty)

    @property
    def required(self) -> tuple[str, ...]:
        """The columns a file of this table must have."""
        return tuple(c for c in self.columns if c not in self.optional)


REGISTRY_PREFIX = "registry:"  # a registry identifier (no national ID), e.g. registry:PMID_28446873_Case_1
SOURCE = "source"  # every table's column naming the source a row came from (a mapping's [source].name)
VALUE_SOURCES = "value_sources"  # a merged patient's fields whose value came from another source (ingest/merge.py)

PATIENTS = Table(
    "patients",
    (
        "national_id", "first_name", "last_name", "street", "house_number", "postcode", "commune",
        "canton", "country", "date_of_birth", "sex", "vital_status", "date_of_death",
        "cross_border_insured", "first_contact_date", "consent_reuse", "agrees_to_contact",
        "age_at_last_record", "age_at_death", SOURCE, VALUE_SOURCES,
    ),
    mandatory=("national_id", "sex", "vital_status", "country"),  # and a date of birth or an age (validate.py)
    direct_identifiers=("national_id", "first_name", "last_name", "street", "house_number"),
    optional=("age_at_last_record", "age_at_death", SOURCE, VALUE_SOURCES),
)  # fmt: skip

# A diagnosis's codes, one column per system (ORPHA preferred; at least one code given).
CODE_COLUMNS: dict[str, str] = {
    "ORPHA": "orpha_code", "OMIM": "omim_code", "ICD10": "icd10_code", "ICD11": "icd11_code", "MONDO": "mondo_code",
}  # fmt: skip

DIAGNOSES = Table(
    "diagnoses",
    (
        "national_id", *CODE_COLUMNS.values(), "status", "excluded", "onset_date", "onset_age", "onset_class",
        "diagnosis_date", "diagnosis_age", "gene_symbol", "variant_hgvs", SOURCE,
    ),
    mandatory=("national_id", "status"),  # and at least one code (validate.py)
    direct_identifiers=("national_id",),
    optional=("omim_code", "icd11_code", "mondo_code", "excluded", "onset_age", "onset_class", "diagnosis_age", SOURCE),
)  # fmt: skip

PHENOTYPES = Table(
    "phenotypes",
    ("national_id", "hpo_code", "excluded", "observed_date", "onset_age", "onset_class", SOURCE),
    mandatory=("national_id", "hpo_code"),
    direct_identifiers=("national_id",),
    optional=("excluded", "onset_age", "onset_class", SOURCE),
)

ENCOUNTERS = Table(
    "encounters",
    ("national_id", "encounter_date", "centre_code", "centre_country", "encounter_type", SOURCE),
    mandatory=("national_id", "encounter_date", "centre_code", "encounter_type"),
    direct_identifiers=("national_id",),
    optional=(SOURCE,),
)

TABLES: tuple[Table, ...] = (PATIENTS, DIAGNOSES, PHENOTYPES, ENCOUNTERS)
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)  # also an extract's, a twin's and the DP views' tables
CHILD_TABLES: tuple[str, ...] = TABLE_NAMES[1:]  # one row per diagnosis, phenotype, encounter of a patient
EXTRACT_KEY = "pseudonym"  # how an extract's (and a twin's) child tables refer to their patient
BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}

SEXES = ("female", "male", "undetermined")  # what the simulator draws
SEX_VALUES = (*SEXES, "unknown")  # what a source may say (the EU common data set's "unknown": not recorded)
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
