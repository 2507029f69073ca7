"""The registry's dataset description for the national Health Data Hub, in HealthDCAT-AP (DCAT-AP 3's health
profile): a catalogue of one dataset, the registry, with its distributions (the pseudonymised extract series and
each published synthetic twin), built with rdflib, checked against the shipped SHACL shapes
(:mod:`~research_kit.transparency.catalogue_shapes`) and written as Turtle and JSON-LD.

What it says comes from the workspace (:mod:`~research_kit.transparency.catalogue_facts`: counts rounded, bands
and years that hold enough people, shares) and from the policy's ``[transparency].catalogue_*`` keys (who
publishes, who grants access, where to ask). Nothing in it is a patient's row or a pseudonym. Every resource is
named under the landing page (``PAGE#dataset``, ``PAGE#extracts``, ...), so that two runs on the same workspace
write the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rdflib import Graph, Literal, URIRef
from rdflib.namespace import DCTERMS, FOAF, RDF, RDFS, SKOS, XSD

from research_kit.core.errors import BadInput, MissingData
from research_kit.ingest.quality import IN_EXTRACT
from research_kit.tiers import place_twin
from research_kit.transparency import catalogue_shapes
from research_kit.transparency.catalogue_facts import Facts, Twin
from research_kit.transparency.catalogue_publisher import Contact, Publisher
from research_kit.transparency.catalogue_vocabulary import (
    CDS,
    CODING_SYSTEMS,
    CONTEXT,
    CSVW,
    CV,
    DCAT,
    DCATAP,
    DQV,
    EHDS,
    ELI,
    ENGLISH,
    EU,
    GENETIC,
    GEODCATAP,
    HDEU,
    HEALTH,
    HEALTH_CATEGORIES,
    HEALTH_THEME,
    LUXEMBOURG,
    OA,
    PARQUET,
    RESTRICTED,
    SCHEMES,
    STANDARDS,
    VCARD,
)

TURTLE, JSONLD = "catalogue.ttl", "catalogue.jsonld"
Names = Callable[[str], URIRef]  # a resource's IRI under the landing page, by its name
WRITTEN = (TURTLE, JSONLD)


@dataclass(frozen=True)
class Written:
    folder: Path
    files: tuple[Path, ...]
    facts: Facts
    triples: int


# ------------------------------------------------------------------------------------------------------- the graph


def build(facts: Facts, who: Publisher) -> Graph:
    """The catalogue as an RDF graph (not yet checked: :func:`write` checks it)."""
    g = Graph(bind_namespaces="none")
    for prefix, namespace in CONTEXT.items():
        g.bind(prefix, namespace)
    page = URIRef(who.landing_page)

    def node(name: str) -> URIRef:
        return URIRef(f"{who.landing_page}#{name}")

    catalogue, dataset, extracts = node("catalogue"), node("dataset"), node("extracts")
    agent, hdab = node("publisher"), node("health-data-access-body")
    newest = facts.newest
    _vocabulary(g, facts)

    g.add((catalogue, RDF.type, DCAT.Catalog))
    g.add((catalogue, DCTERMS.title, _en(f"{who.name}: rare disease registry catalogue (HealthDCAT-AP)")))
    g.add((catalogue, DCTERMS.description, _en(
        f"The HealthDCAT-AP description of the rare disease registry that {who.name} holds, for the national "
        "Health Data Hub and HealthData@EU."
    )))  # fmt: skip
    g.add((catalogue, DCTERMS.publisher, agent))
    g.add((catalogue, DCAT.dataset, dataset))
    g.add((catalogue, DCATAP.applicableLegislation, EHDS))
    g.add((catalogue, DCTERMS.language, ENGLISH))
    g.add((catalogue, DCTERMS.spatial, LUXEMBOURG))
    g.add((catalogue, DCTERMS.modified, Literal(modified(facts), datatype=XSD.date)))

    _agent(g, agent, who.name, who.contact, node("publisher-contact"))
    _agent(g, hdab, who.hdab, who.hdab_contact, node("health-data-access-body-contact"))
    contact = node("contact")
    g.add((contact, RDF.type, VCARD.Kind))
    g.add((contact, VCARD.fn, Literal(who.name)))
    if who.contact.email:
        # Percent-encoded: an address the policy accepts may hold ``|``, ``{`` or ``^``, which an IRI may not.
        g.add((contact, VCARD.hasEmail, URIRef(f"mailto:{quote(who.contact.email, safe='@')}")))
    else:
        g.add((contact, VCARD.hasURL, URIRef(who.contact.page)))
    g.add((page, RDF.type, FOAF.Document))
    g.add((page, RDF.type, RDFS.Resource))  # what an access URL is, said outright (no inference runs)

    g.add((dataset, RDF.type, DCAT.Dataset))
    g.add((dataset, DCTERMS.title, _en(f"{who.name}: rare disease registry")))
    g.add((dataset, DCTERMS.description, _en(_description(facts))))
    g.add((dataset, DCTERMS.identifier, Literal(str(dataset))))
    g.add((dataset, DCTERMS.accessRights, RESTRICTED))
    g.add((dataset, DCATAP.applicableLegislation, EHDS))
    g.add((dataset, DCAT.theme, HEALTH_THEME))
    for keyword in ("rare diseases", "disease registry", "pseudonymised", "EU common data set", *facts.code_systems):
        g.add((dataset, DCAT.keyword, _en(keyword)))
    g.add((dataset, DCTERMS.spatial, LUXEMBOURG))
    g.add((dataset, DCTERMS.language, ENGLISH))
    g.add((dataset, DCTERMS.accrualPeriodicity, URIRef(f"{EU}frequency/{facts.frequency}")))
    g.add((dataset, DCTERMS.issued, Literal(facts.versions[0].created, datatype=XSD.date)))
    g.add((dataset, DCTERMS.modified, Literal(newest.created, datatype=XSD.date)))
    g.add((dataset, DCAT.version, Literal(newest.id)))
    g.add((dataset, DCTERMS.publisher, agent))
    g.add((dataset, GEODCATAP.custodian, agent))
    g.add((dataset, DCAT.contactPoint, contact))
    g.add((dataset, DCAT.landingPage, page))
    g.add((dataset, HEALTH.hdab, hdab))
    provenance = node("provenance")
    g.add((provenance, RDF.type, DCTERMS.ProvenanceStatement))
    g.add((provenance, RDFS.label, _en(_provenance(facts))))
    g.add((dataset, DCTERMS.provenance, provenance))
    if facts.coverage is not None:
        period = node("temporal-coverage")
        g.add((period, RDF.type, DCTERMS.PeriodOfTime))
        g.add((period, DCAT.startDate, Literal(facts.coverage[0], datatype=XSD.date)))
        g.add((period, DCAT.endDate, Literal(facts.coverage[1], datatype=XSD.date)))
        g.add((dataset, DCTERMS.temporal, period))

    # The health profile's own properties.
    for category in _health_categories(facts):
        g.add((dataset, HEALTH.healthCategory, URIRef(f"{HDEU}healthcategories/{category}")))
    for system in facts.code_systems:
        if system in CODING_SYSTEMS:
            g.add((dataset, HEALTH.hasCodingSystem, URIRef(f"{HDEU}coding-system/{CODING_SYSTEMS[system][0]}")))
    g.add((dataset, HEALTH.numberOfUniqueIndividuals, Literal(facts.individuals, datatype=XSD.nonNegativeInteger)))
    if facts.records is not None:  # never, as gathered: one person's rows would show (catalogue_facts)
        g.add((dataset, HEALTH.numberOfRecords, Literal(facts.records, datatype=XSD.nonNegativeInteger)))
    if facts.typical_ages is not None:
        g.add((dataset, HEALTH.minTypicalAge, Literal(facts.typical_ages[0], datatype=XSD.nonNegativeInteger)))
        g.add((dataset, HEALTH.maxTypicalAge, Literal(facts.typical_ages[1], datatype=XSD.nonNegativeInteger)))
    g.add((dataset, HEALTH.populationCoverage, _en(_population(facts))))
    g.add((dataset, HEALTH.hasStructuredData, Literal(True)))
    g.add((dataset, HEALTH.hasVariables, _variables(g, node, facts)))
    _quality(g, node, dataset, facts)

    _extracts(g, extracts, page, facts)
    g.add((dataset, DCAT.distribution, extracts))
    for twin in facts.twins:
        distribution = node(f"twin-{quote(twin.id, safe='')}")
        _twin(g, distribution, page, twin)
        g.add((dataset, DCAT.distribution, distribution))
    return g


def _en(text: str) -> Literal:
    return Literal(text, lang="en")


def _vocabulary(g: Graph, facts: Facts) -> None:
    """The EU vocabularies' concepts the description uses, typed as the profile's classes ask."""
    g.add((RESTRICTED, RDF.type, DCTERMS.RightsStatement))
    g.add((EHDS, RDF.type, ELI.LegalResource))
    g.add((LUXEMBOURG, RDF.type, DCTERMS.Location))
    g.add((ENGLISH, RDF.type, DCTERMS.LinguisticSystem))
    g.add((PARQUET, RDF.type, DCTERMS.MediaTypeOrExtent))
    g.add((URIRef(f"{EU}frequency/{facts.frequency}"), RDF.type, DCTERMS.Frequency))
    _concept(g, HEALTH_THEME, f"{EU}data-theme", "Health")
    for category in _health_categories(facts):
        label = HEALTH_CATEGORIES[category]
        _concept(g, URIRef(f"{HDEU}healthcategories/{category}"), f"{HDEU}healthcategories", label)
    for system in facts.code_systems:
        if system in CODING_SYSTEMS:
            code, label = CODING_SYSTEMS[system]
            concept = URIRef(f"{HDEU}coding-system/{code}")
            _concept(g, concept, f"{HDEU}coding-system", label)
            g.add((concept, RDF.type, DCTERMS.Standard))  # HealthDCAT-AP's ranges ask a coding system to be both
            g.add((concept, DCTERMS.title, _en(label)))


def _concept(g: Graph, concept: URIRef, scheme: str, label: str) -> None:
    g.add((concept, RDF.type, SKOS.Concept))
    g.add((concept, SKOS.prefLabel, _en(label)))
    g.add((concept, SKOS.inScheme, URIRef(scheme)))
    g.add((URIRef(scheme), RDF.type, SKOS.ConceptScheme))
    g.add((URIRef(scheme), DCTERMS.title, _en(SCHEMES[scheme])))


def _agent(g: Graph, agent: URIRef, name: str, contact: Contact, point: URIRef) -> None:
    g.add((agent, RDF.type, FOAF.Agent))
    g.add((agent, FOAF.name, Literal(name)))
    g.add((agent, CV.contactPoint, point))
    g.add((point, RDF.type, CV.ContactPoint))
    if contact.email:
        g.add((point, CV.email, Literal(contact.email)))
    else:
        g.add((point, CV.contactPage, URIRef(contact.page)))


def _health_categories(facts: Facts) -> list[str]:
    """Population-based registry and medical registry; genetic data too when the extract holds genes or variants."""
    return ["PHDR", "MRMR", *(["HGPD"] if any(s in facts.code_systems for s in GENETIC) else [])]


def _description(facts: Facts) -> str:
    tables = ", ".join(t.name for t in facts.variables)
    return (
        f"A national rare disease registry, pseudonymised: {tables}, coded in "
        f"{', '.join(facts.code_systems) or 'the registry model'}. Each ingest of the registry's sources makes a "
        f"new immutable extract version ({len(facts.versions)} so far, the newest {facts.newest.id} of "
        f"{facts.newest.created.isoformat()}). Researchers use it only under a data permit, inside the registry's "
        "trusted research environment: on a synthetic twin, through differentially private queries, and in "
        "sandboxed pipelines whose outputs leave after disclosure checks and two committee approvals. The counts "
        f"given here are rounded to a multiple of {facts.rounding}."
    )


def _provenance(facts: Facts) -> str:
    left_out = "who opted out of secondary use" + (
        " or did not consent to the reuse of their data" if facts.without_consent_left_out else ""
    )
    return (
        "Built by research-kit from the registry's own exports and other sources (mapped exports, GA4GH "
        "phenopackets, FHIR): every row validated, faulty rows quarantined, direct identifiers dropped, patients "
        "given keyed pseudonyms, dates and residence generalised as the registry's policy says, and the people "
        f"{left_out} left out."
    )


def _population(facts: Facts) -> str:
    ages = f", mostly aged {facts.typical_ages[0]} to {facts.typical_ages[1]}" if facts.typical_ages else ""
    return (
        "People with a rare disease (confirmed, suspected or undiagnosed) recorded by the national registry: "
        f"residents of Luxembourg and people insured in Luxembourg who live across the border{ages}. People who "
        "opted out of secondary use are not in it."
    )


def _variables(g: Graph, node: Names, facts: Facts) -> URIRef:
    """The extract's tables and columns as a CSVW table group (names, titles, meanings, types: never values)."""
    group = node("variables")
    g.add((group, RDF.type, CSVW.TableGroup))
    g.add((group, DCTERMS.title, _en("The tables and columns of an extract")))
    for table in facts.variables:
        subject = node(f"table-{table.name}")
        g.add((group, CSVW.table, subject))
        g.add((subject, RDF.type, CSVW.Table))
        g.add((subject, DCTERMS.title, _en(table.title)))
        g.add((subject, DCAT.keyword, _en(table.name)))
        for variable in table.variables:
            column = node(f"column-{table.name}-{variable.name}")
            g.add((subject, CSVW.column, column))
            g.add((column, RDF.type, CSVW.Column))
            g.add((column, CSVW.name, Literal(variable.name)))
            g.add((column, CSVW.title, _en(variable.title)))
            g.add((column, DCTERMS.description, _en(variable.description)))
            g.add((column, CSVW.datatype, Literal(variable.datatype)))
    return group


def _quality(g: Graph, node: Names, dataset: URIRef, facts: Facts) -> None:
    """The EU common data set figures: each element's completeness (and validity) as a DQV measurement, and a
    quality annotation that says which elements the registry collects."""
    dimensions = {"completeness": node("dimension-completeness"), "validity": node("dimension-validity")}
    for name, dimension in dimensions.items():
        g.add((dimension, RDF.type, DQV.Dimension))
        g.add((dimension, SKOS.prefLabel, _en(name)))
    few = [e for e in facts.elements if e.status == IN_EXTRACT and e.denominator < facts.min_count]
    for element in facts.elements:
        if element in few:  # a share of a handful of people could tell about one of them
            continue
        figures = {"completeness": element.completeness, "validity": element.validity}
        for name, value in figures.items():
            if value is None:
                continue
            metric, measurement = node(f"metric-cds-{element.number}-{name}"), node(f"cds-{element.number}-{name}")
            g.add((metric, RDF.type, DQV.Metric))
            g.add((metric, SKOS.prefLabel, _en(f"{name} of EU common data element {element.number}: {element.name}")))
            g.add((metric, DQV.expectedDataType, XSD.decimal))
            g.add((metric, DQV.inDimension, dimensions[name]))
            g.add((measurement, RDF.type, DQV.QualityMeasurement))
            g.add((measurement, DQV.computedOn, dataset))
            g.add((measurement, DQV.isMeasurementOf, metric))
            g.add((measurement, DQV.value, Literal(shown_share(value, element.denominator, facts.min_count),
                                                   datatype=XSD.decimal)))  # fmt: skip
            g.add((dataset, DQV.hasQualityMeasurement, measurement))
    collected = [e for e in facts.elements if e.status == IN_EXTRACT]
    missing = [f"{e.number} {e.name}" for e in facts.elements if e.status != IN_EXTRACT]
    hidden = (
        f"; not measured here, as fewer than {facts.min_count} individuals are concerned: "
        f"{', '.join(f'{e.number} {e.name}' for e in few)}"
        if few
        else ""
    )
    annotation, body = node("common-data-set"), node("common-data-set-summary")
    g.add((annotation, RDF.type, DQV.QualityAnnotation))
    g.add((annotation, OA.hasTarget, dataset))
    g.add((annotation, OA.motivatedBy, DQV.qualityAssessment))
    g.add((annotation, OA.hasBody, body))
    g.add((body, RDF.type, OA.TextualBody))
    g.add((body, RDF.value, _en(
        f"EU RD Platform common data set for rare disease registration: {len(collected)} of its "
        f"{len(facts.elements)} elements are in the extract {facts.newest.id}"
        + (f"; not collected: {', '.join(missing)}" if missing else "")
        + hidden
        + ". Completeness and validity per element are given as quality measurements."
    )))  # fmt: skip
    g.add((dataset, DQV.hasQualityAnnotation, annotation))


SHARE_STEPS = (0.1, 0.2, 0.25, 0.5)  # the steps a published share is rounded to, the finest that fits first


def shown_share(value: float, denominator: int, min_count: int) -> str:
    """``value``, a share of ``denominator`` people, as published: rounded to the finest step of
    :data:`SHARE_STEPS` no finer than ``min_count`` people move it (``min_count / denominator``), at least one
    decimal; so one person's arrival or departure moves it by one step at most, mostly not at all.

    >>> shown_share(20 / 76, 76, 10), shown_share(20 / 75, 75, 10), shown_share(0.98, 565, 10)
    ('0.2', '0.2', '1.0')
    >>> shown_share(0.6, 12, 10), shown_share(0.26, 1000, 10)
    ('1.0', '0.3')
    """
    fine = min_count / denominator if denominator else 1.0
    step = next((s for s in SHARE_STEPS if s >= fine), 1.0)
    return f"{round(value / step) * step:.{2 if step == 0.25 else 1}f}"


def _extracts(g: Graph, distribution: URIRef, page: URIRef, facts: Facts) -> None:
    first, newest = facts.versions[0], facts.newest
    g.add((distribution, RDF.type, DCAT.Distribution))
    g.add((distribution, DCTERMS.title, _en("Pseudonymised extracts (a versioned series)")))
    g.add((distribution, DCTERMS.description, _en(
        f"One immutable, content-hashed extract per ingest, as Parquet tables ({len(facts.versions)} so far; "
        f"the newest, {newest.id}, of {newest.created.isoformat()}). Read only inside the registry's trusted "
        "research environment, never downloaded."
    )))  # fmt: skip
    _restricted(g, distribution, page, (
        "Restricted: used only under a data permit the health data access body grants (purpose, people, tables, "
        "period), inside the registry's trusted research environment; researchers see DP answers and outputs "
        "that passed disclosure checks and two committee approvals, never rows."
    ))  # fmt: skip
    g.add((distribution, DCTERMS.issued, Literal(first.created, datatype=XSD.date)))
    g.add((distribution, DCTERMS.modified, Literal(newest.created, datatype=XSD.date)))
    g.add((distribution, DCTERMS.conformsTo, CDS))
    g.add((CDS, RDF.type, DCTERMS.Standard))
    g.add((CDS, DCTERMS.title, _en("EU RD Platform: set of common data elements for rare disease registration")))
    for system in facts.code_systems:
        if system in STANDARDS:
            url, title = STANDARDS[system]
            g.add((distribution, DCTERMS.conformsTo, URIRef(url)))
            g.add((URIRef(url), RDF.type, DCTERMS.Standard))
            g.add((URIRef(url), DCTERMS.title, _en(title)))


def _twin(g: Graph, distribution: URIRef, page: URIRef, twin: Twin) -> None:
    dp = twin.kind == "dp"
    kind = "differentially private synthetic twin" if dp else "synthetic twin"
    guarantee = f" (epsilon {twin.epsilon:g})" if dp and twin.epsilon is not None else ""
    g.add((distribution, RDF.type, DCAT.Distribution))
    g.add((distribution, DCTERMS.title, _en(f"The {kind} {twin.id} of extract {twin.extract}")))
    g.add((distribution, DCTERMS.description, _en(
        f"A {kind}{guarantee} of extract {twin.extract}: made-up patients with the extract's structure, "
        "published only after its quality and privacy figures met the registry's policy; it holds no real "
        "person's record."
    )))  # fmt: skip
    _restricted(g, distribution, page, (
        "Restricted to the registry's researchers, signed in: they read it in the workspace's JupyterLab and may "
        "export it as GA4GH phenopackets; stewards may too."
    ))  # fmt: skip
    if twin.published is not None:
        g.add((distribution, DCTERMS.issued, Literal(twin.published, datatype=XSD.date)))


def _restricted(g: Graph, distribution: URIRef, page: URIRef, rights: str) -> None:
    statement = URIRef(f"{distribution}-rights")
    g.add((distribution, DCAT.accessURL, page))
    g.add((distribution, DCTERMS.format, PARQUET))
    g.add((distribution, DCTERMS.accessRights, RESTRICTED))
    g.add((distribution, DCTERMS.rights, statement))
    g.add((statement, RDF.type, DCTERMS.RightsStatement))
    g.add((statement, RDFS.label, _en(rights)))
    g.add((distribution, DCATAP.applicableLegislation, EHDS))


# ------------------------------------------------------------------------------------------------------- writing


def check_out(out: Path) -> None:
    """Refuse, before any work, a folder ``out`` the catalogue may not take: a file, a folder holding anything but
    an earlier catalogue, or one in a folder that does not exist."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BadInput(f"{out}: exists and is not a folder: give a new folder for the catalogue")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in WRITTEN)
        if other:
            raise BadInput(
                f"{out}: holds other files than a catalogue ({', '.join(other[:3])}"
                f"{', ...' if len(other) > 3 else ''}): give a new or empty folder"
            )
    if not out.parent.is_dir():
        raise MissingData(f"{out.parent}: no such folder")


def write(graph: Graph, out: Path) -> tuple[Path, ...]:
    """Check ``graph`` against the shipped shapes, then write it to ``out``/catalogue.ttl and catalogue.jsonld,
    whole or not at all: written in a scratch folder beside ``out`` and moved into place (replacing an earlier
    catalogue there in one step). A violation refuses in one line and writes nothing."""
    check_out(out)
    catalogue_shapes.check(graph)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        graph.serialize(scratch / TURTLE, format="turtle", encoding="utf-8")
        (scratch / JSONLD).write_text(jsonld(graph), encoding="utf-8")
        for name in WRITTEN:
            os.chmod(scratch / name, 0o644)  # a public description: readable by whoever publishes it
        os.chmod(scratch, 0o755)
        # OUT again, just before placing: files put in it while the shapes were checked (a sync agent, another
        # program) refuse the catalogue in one line rather than being swapped out and removed with the scratch.
        check_out(out)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        place_twin(scratch, out)  # an atomic exchange with an earlier catalogue (tiers.place_twin is generic)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # after an exchange: the earlier catalogue
    return tuple(out / name for name in WRITTEN)


def jsonld(graph: Graph) -> str:
    """``graph`` as compacted JSON-LD, its nodes and every list of values in a stable order (rdflib's follows
    Python's set order, which changes from run to run: the same catalogue gives the same file)."""
    document = json.loads(graph.serialize(format="json-ld", context=CONTEXT))

    def ordered(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ordered(v) for k, v in value.items()}
        if isinstance(value, list):
            return sorted((ordered(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
        return value

    return json.dumps({k: ordered(v) for k, v in document.items()}, indent=2, ensure_ascii=False) + "\n"


def describe(facts: Facts, who: Publisher, out: Path) -> Written:
    """Build, check and write the catalogue of ``facts`` to ``out``."""
    graph = build(facts, who)
    return Written(out, write(graph, out), facts, len(graph))


def modified(facts: Facts) -> date:
    """The newest date the catalogue describes (extract or twin)."""
    return max([facts.newest.created, *(t.published for t in facts.twins if t.published)])
