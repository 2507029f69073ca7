"""The dataset catalogue (HealthDCAT-AP): the shipped shapes are the published ones, a valid description passes them,
an invalid one fails them in one line naming the shape and the property, and nothing is ever half-written."""

from __future__ import annotations

import hashlib
from datetime import date
from importlib import resources
from pathlib import Path

import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import DCTERMS, RDF, RDFS, XSD

from research_kit.core.config import Policy, policy_from_dict
from research_kit.core.errors import BadInput, MissingData, PolicyRefusal
from research_kit.transparency import catalogue, catalogue_shapes
from research_kit.transparency.catalogue import JSONLD, TURTLE
from research_kit.transparency.catalogue_facts import ElementFigures, Facts, Twin, Version, rounded
from research_kit.transparency.catalogue_publisher import publisher
from research_kit.transparency.catalogue_variables import TableVariables, Variable
from research_kit.transparency.catalogue_vocabulary import DCAT, DQV, HEALTH, OA, RESTRICTED

PAGE = "https://registry.example.lu/rare-diseases"
DATASET = URIRef(f"{PAGE}#dataset")
SETTINGS = {
    "catalogue_publisher": "Registre national des maladies rares",
    "catalogue_contact": "registry@example.lu",
    "catalogue_landing_page": PAGE,
    "catalogue_hdab": "Health data access body",
    "catalogue_hdab_contact": "https://hdab.example.lu/contact",
}
# What shapes/README.md says of each shipped file: its SHA-256 (the file as published, never edited here).
PUBLISHED = {
    "dcat-ap-3.0.0-SHACL.ttl": "92f76609d78d257123e75bc6b7155df5cc0a63f14c29fbc12b0ac95c56af2059",
    "healthdcat-ap-r8-restricted-shapes.ttl": "f3bb4d39502d46229eeb7d3de87741e02bc5bd8384a8ce46a78e00c26b109e19",
}


def policy(**keys: object) -> Policy:
    return policy_from_dict({"transparency": {**SETTINGS, **keys}})


def facts(*, twins: tuple[Twin, ...] = ()) -> Facts:
    """A registry of two extracts, as :func:`catalogue_facts.gather` would find it."""
    column = Variable("patients", "sex", "Sex", "female, male, undetermined or unknown.", "string")
    return Facts(
        versions=(
            Version("e1", date(2026, 1, 5), {"patients": 560, "diagnoses": 640}),
            Version("e2", date(2026, 4, 6), {"patients": 565, "diagnoses": 643}),
        ),
        individuals=570,
        records=None,  # never published: one person's rows would show (catalogue_facts)
        rounding=10,
        min_count=10,
        typical_ages=(0, 79),
        coverage=(date(1990, 1, 1), date(2026, 4, 6)),
        code_systems=("ORPHA", "ICD-10", "HPO", "OMIM", "HGNC"),
        frequency="QUARTERLY",
        frequency_derived=True,
        twins=twins,
        elements=(
            ElementFigures(3, "Sex", "in the extract", 1.0, 0.98, 565),
            ElementFigures(5, "Date of death", "in the extract", 0.5, 1.0, 4),
            ElementFigures(14, "Biological sample", "not in the model", 0.0, None, 0),
        ),
        variables=(TableVariables("patients", "Patients", (column,)),),
        without_consent_left_out=True,
    )


TWINS = (
    Twin("e2", "default", "e2", date(2026, 4, 7), None),
    Twin("e2@dp", "dp", "e2", date(2026, 4, 8), 4.0),
)


def valid_graph() -> Graph:
    return catalogue.build(facts(twins=TWINS), publisher(policy()))


def test_the_shipped_shapes_are_the_published_files_and_load_from_the_package() -> None:
    for shape_set in catalogue_shapes.SHAPE_SETS:
        data = (resources.files("research_kit.transparency") / "shapes" / shape_set.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == PUBLISHED[shape_set.file], shape_set.file
        assert len(catalogue_shapes.shapes(shape_set)) > 100
    readme = (resources.files("research_kit.transparency") / "shapes" / "README.md").read_text(encoding="utf-8")
    for shape_set in catalogue_shapes.SHAPE_SETS:
        assert shape_set.file in readme
        assert PUBLISHED[shape_set.file] in readme


def test_only_the_documented_pathless_property_shapes_are_left_out() -> None:
    sh = catalogue_shapes.SH
    for shape_set in catalogue_shapes.SHAPE_SETS:
        whole = Graph().parse(data=catalogue_shapes.shapes_text(shape_set), format="turtle")
        kept = catalogue_shapes.shapes(shape_set)
        dropped = len(list(whole.subject_objects(sh.property))) - len(list(kept.subject_objects(sh.property)))
        assert dropped == catalogue_shapes.PATHLESS_LEFT_OUT.get(shape_set.file, 0), shape_set.file
        assert len(whole) - len(kept) == dropped  # only the sh:property links go; every other triple stays


def test_a_full_description_passes_dcat_ap_3_and_healthdcat_ap() -> None:
    graph = valid_graph()
    assert catalogue_shapes.violations(graph) == []
    assert graph.value(DATASET, DCTERMS.accessRights) == RESTRICTED
    assert graph.value(DATASET, HEALTH.numberOfUniqueIndividuals) == Literal(570, datatype=XSD.nonNegativeInteger)
    assert graph.value(DATASET, HEALTH.hasStructuredData) == Literal(True)  # the rule the loader cannot run
    assert graph.value(DATASET, HEALTH.hasVariables) is not None
    systems = {str(s).rsplit("/", 1)[1] for s in graph.objects(DATASET, HEALTH.hasCodingSystem)}
    assert systems == {"ORPHACODE", "ICD-10", "HPO", "HGNC"}  # OMIM is no concept of that vocabulary: a standard
    assert (URIRef(f"{PAGE}#extracts"), DCTERMS.conformsTo, URIRef("https://omim.org/")) in graph
    distributions = set(graph.objects(DATASET, DCAT.distribution))
    assert distributions == {URIRef(f"{PAGE}#extracts"), URIRef(f"{PAGE}#twin-e2"), URIRef(f"{PAGE}#twin-e2%40dp")}
    for distribution in distributions:
        assert graph.value(distribution, DCTERMS.accessRights) == RESTRICTED
        assert graph.value(graph.value(distribution, DCTERMS.rights), RDFS.label) is not None


def test_the_common_data_set_shares_of_too_few_individuals_are_not_given() -> None:
    graph = valid_graph()
    measured = {str(m).rsplit("#", 1)[1] for m in graph.objects(DATASET, DQV.hasQualityMeasurement)}
    assert measured == {"cds-3-completeness", "cds-3-validity", "cds-14-completeness"}  # not 5: 4 people dead
    annotation = graph.value(DATASET, DQV.hasQualityAnnotation)
    summary = str(graph.value(graph.value(annotation, OA.hasBody), RDF.value))
    assert "2 of its 3 elements are in the extract e2; not collected: 14 Biological sample" in summary
    assert "fewer than 10 individuals are concerned: 5 Date of death" in summary


def test_no_number_of_records_is_published() -> None:
    """One person holds tens of rows: two catalogues around one opt-out would tell how many at any useful rounding."""
    assert valid_graph().value(DATASET, HEALTH.numberOfRecords) is None


@pytest.mark.parametrize(
    ("value", "denominator", "shown"),
    [(20 / 76, 76, "0.2"), (20 / 75, 75, "0.2"), (0.98, 565, "1.0"), (0.26, 1000, "0.3"), (0.5, 40, "0.50"),
     (0.6, 12, "1.0")],
)  # fmt: skip
def test_a_share_is_published_no_finer_than_min_count_people_move_it(
    value: float, denominator: int, shown: str
) -> None:
    assert catalogue.shown_share(value, denominator, 10) == shown


def test_the_shares_are_published_coarsely() -> None:
    values = {str(m).rsplit("#", 1)[1]: str(v) for m, v in valid_graph().subject_objects(DQV.value)}
    assert values == {"cds-3-completeness": "1.0", "cds-3-validity": "1.0", "cds-14-completeness": "0.0"}


def test_an_e_mail_contact_an_iri_may_not_hold_is_percent_encoded() -> None:
    graph = catalogue.build(facts(), publisher(policy(catalogue_contact="rare|registry{x}@example.lu")))
    [email] = graph.objects(URIRef(f"{PAGE}#contact"), catalogue.VCARD.hasEmail)
    assert str(email) == "mailto:rare%7Cregistry%7Bx%7D@example.lu"
    assert len(Graph().parse(data=graph.serialize(format="turtle"), format="turtle")) == len(graph)


def test_files_put_in_the_folder_while_the_shapes_are_checked_refuse_the_catalogue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, check = tmp_path / "out", catalogue_shapes.check

    def meanwhile(graph: Graph) -> None:
        check(graph)
        out.mkdir()
        (out / "notes.txt").write_text("someone else's")

    monkeypatch.setattr(catalogue_shapes, "check", meanwhile)
    with pytest.raises(BadInput, match=r"holds other files than a catalogue \(notes.txt\)"):
        catalogue.write(valid_graph(), out)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["notes.txt", "out"]


def test_a_dataset_without_a_title_fails_dcat_ap_naming_the_shape_and_property() -> None:
    graph = valid_graph()
    graph.remove((DATASET, DCTERMS.title, None))
    with pytest.raises(PolicyRefusal) as refused:
        catalogue_shapes.check(graph)
    message = str(refused.value)
    assert message.startswith(f"the catalogue fails DCAT-AP 3.0.0 (dcat:DatasetShape, dct:title) on <{DATASET}>")
    assert "\n" not in message
    assert message.endswith("; nothing written")


def test_a_count_of_the_wrong_datatype_fails_healthdcat_ap() -> None:
    graph = valid_graph()
    graph.set((DATASET, HEALTH.numberOfUniqueIndividuals, Literal("about 570")))
    [violation] = catalogue_shapes.violations(graph)
    assert (violation.shape_set, violation.shape, violation.path) == (
        catalogue_shapes.HEALTHDCAT_AP.name, "Dataset_Shape", "healthdcatap:numberOfUniqueIndividuals"
    )  # fmt: skip


def test_a_distribution_size_of_the_wrong_datatype_fails_dcat_ap() -> None:
    graph = valid_graph()
    graph.add((URIRef(f"{PAGE}#extracts"), DCAT.byteSize, Literal("large")))
    [violation] = catalogue_shapes.violations(graph)
    assert (violation.shape_set, violation.shape, violation.path) == ("DCAT-AP 3.0.0", "dcat:DistributionShape",
                                                                      "dcat:byteSize")  # fmt: skip


def test_a_restricted_dataset_without_its_access_body_fails_healthdcat_ap() -> None:
    graph = valid_graph()
    graph.remove((DATASET, HEALTH.hdab, None))
    assert [(v.shape, v.path) for v in catalogue_shapes.violations(graph)] == [("Dataset_Shape", "healthdcatap:hdab")]


def test_an_invalid_description_writes_nothing(tmp_path: Path) -> None:
    graph = valid_graph()
    graph.remove((DATASET, DCTERMS.description, None))
    with pytest.raises(PolicyRefusal, match=r"\(dcat:DatasetShape, dct:description\)"):
        catalogue.write(graph, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no folder, no scratch folder left beside it


JSONLD_PARSER_WARNING = "ignore:ConjunctiveGraph is deprecated:DeprecationWarning"  # rdflib 7's JSON-LD parser's own


@pytest.mark.filterwarnings(JSONLD_PARSER_WARNING)
def test_a_catalogue_is_written_whole_in_turtle_and_json_ld_and_replaces_an_earlier_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    graph = valid_graph()
    files = catalogue.write(graph, out)
    assert [f.name for f in files] == [TURTLE, JSONLD]
    turtle = Graph().parse(out / TURTLE, format="turtle")
    assert isomorphic(turtle, Graph().parse(out / JSONLD, format="json-ld"))
    assert isomorphic(turtle, graph)
    first = (out / JSONLD).read_bytes()
    catalogue.write(valid_graph(), out)  # the same description again: the same bytes (nodes in a stable order)
    assert (out / JSONLD).read_bytes() == first
    later = catalogue.build(facts(), publisher(policy()))  # the twins withdrawn
    catalogue.write(later, out)
    assert isomorphic(Graph().parse(out / TURTLE, format="turtle"), later)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_folder_is_refused_before_any_work_when_it_cannot_take_the_catalogue(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match="exists and is not a folder"):
        catalogue.check_out(tmp_path / "file")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(BadInput, match=r"holds other files than a catalogue \(notes.txt\)"):
        catalogue.check_out(tmp_path / "busy")
    with pytest.raises(MissingData, match="no such folder"):
        catalogue.check_out(tmp_path / "absent" / "out")
    (tmp_path / "empty").mkdir()
    catalogue.check_out(tmp_path / "empty")


def test_the_policy_must_name_publisher_access_body_and_page() -> None:
    with pytest.raises(BadInput) as refused:
        publisher(policy_from_dict({}))
    for key in SETTINGS:
        assert key in str(refused.value)
    with pytest.raises(BadInput, match=r"\[transparency\]\.catalogue_contact 'registry': give an e-mail"):
        publisher(policy(catalogue_contact="registry"))
    with pytest.raises(BadInput, match=r"catalogue_landing_page 'ftp://x': give a web address"):
        publisher(policy(catalogue_landing_page="ftp://x"))
    who = publisher(policy(catalogue_contact="mailto:dpo@example.lu", catalogue_landing_page=f"{PAGE}#top"))
    assert (who.contact.email, who.landing_page) == ("dpo@example.lu", PAGE)


@pytest.mark.parametrize(("count", "base", "published"), [(565, 10, 570), (565, 100, 600), (1234, 5, 1235)])
def test_counts_are_rounded_to_the_policy_base(count: int, base: int, published: int) -> None:
    assert rounded(count, base) == published


def test_the_rounding_base_may_not_make_counts_exact() -> None:
    with pytest.raises(BadInput, match=r"\[transparency\]\.catalogue_rounding must be >= 5"):
        policy(catalogue_rounding=1)
