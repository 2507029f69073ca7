"""The SHACL shapes the catalogue must pass, shipped with the package, and the check against them (pySHACL).

The shapes are other people's, copied byte for byte (``shapes/README.md`` names each file's source, commit and
licence); none is written here, so the check is never the code checking itself:

- DCAT-AP 3.0.0 (SEMIC, European Commission): every class and property of the application profile;
- HealthDCAT-AP release 8, the RESTRICTED level's core shapes (DG SANTE, HealthData@EU): the health profile's
  own properties (health data access body, health category, individuals, typical ages, variables, ...).

One constraint of the HealthDCAT-AP file is not valid SHACL: a property shape without ``sh:path`` (the rule
"structured data has variables", written as an ``sh:or``), which pySHACL refuses to run at all. The loader
leaves out property shapes that have no path (:data:`PATHLESS_LEFT_OUT` says which), and nothing else; the
catalogue keeps that rule anyway (it always gives its variables).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from rdflib import Graph, Namespace
from rdflib.namespace import RDF
from rdflib.term import BNode, Node, URIRef

from research_kit.core.errors import PolicyRefusal

SH = Namespace("http://www.w3.org/ns/shacl#")
PACKAGE = "research_kit.transparency"
FOLDER = "shapes"


@dataclass(frozen=True)
class ShapeSet:
    name: str
    file: str  # in shapes/
    source: str


DCAT_AP = ShapeSet(
    "DCAT-AP 3.0.0",
    "dcat-ap-3.0.0-SHACL.ttl",
    "https://github.com/SEMICeu/DCAT-AP/blob/master/releases/3.0.0/shacl/dcat-ap-SHACL.ttl",
)
HEALTHDCAT_AP = ShapeSet(
    "HealthDCAT-AP release 8 (RESTRICTED)",
    "healthdcat-ap-r8-restricted-shapes.ttl",
    "https://code.europa.eu/healthdataeu/healthdcat-ap (release 8, commit cd7841f): "
    "html/shacl/HealthDCAT-AP_validator/config/rdf-validator/ehds/shapes/restricted-shapes.ttl",
)
SHAPE_SETS: tuple[ShapeSet, ...] = (DCAT_AP, HEALTHDCAT_AP)
PATHLESS_LEFT_OUT = {HEALTHDCAT_AP.file: 1}  # how many path-less property shapes each file has (and loses)

# How a path or a shape is named in a message: the prefixes of the profiles.
PREFIXES = {
    "http://purl.org/dc/terms/": "dct:",
    "http://www.w3.org/ns/dcat#": "dcat:",
    "http://data.europa.eu/r5r/": "dcatap:",
    "http://healthdataportal.eu/ns/health#": "healthdcatap:",
    "http://data.europa.eu/m8g/": "cv:",
    "http://data.europa.eu/930/": "geodcatap:",
    "http://www.w3.org/ns/dqv#": "dqv:",
    "http://www.w3.org/ns/csvw#": "csvw:",
    "http://www.w3.org/2006/vcard/ns#": "vcard:",
    "http://xmlns.com/foaf/0.1/": "foaf:",
    "http://www.w3.org/2004/02/skos/core#": "skos:",
    "http://www.w3.org/ns/adms#": "adms:",
    "http://www.w3.org/ns/prov#": "prov:",
}


@dataclass(frozen=True)
class Violation:
    """One result of severity Violation: the shape set, the node shape, the property path, the node, the message."""

    shape_set: str
    shape: str
    path: str
    focus: str
    message: str

    def line(self) -> str:
        where = f"{self.shape}, {self.path}" if self.path else self.shape
        return f"the catalogue fails {self.shape_set} ({where}) on <{self.focus}>: {self.message}"


def shapes_text(shape_set: ShapeSet) -> str:
    """The shipped shapes file, as the package holds it."""
    return (resources.files(PACKAGE) / FOLDER / shape_set.file).read_text(encoding="utf-8")


@functools.cache
def shapes(shape_set: ShapeSet) -> Graph:
    """The shapes graph of ``shape_set``, without property shapes that have no path (see the module's doc)."""
    graph = Graph().parse(data=shapes_text(shape_set), format="turtle")
    for node, prop in list(graph.subject_objects(SH.property)):
        if (prop, SH.path, None) not in graph:
            graph.remove((node, SH.property, prop))
    return graph


def violations(data: Graph) -> list[Violation]:
    """Every violation of ``data`` against every shipped shape set, in a stable order (set, shape, path, node)."""
    import pyshacl  # a second's import: only when a catalogue is checked

    found: list[Violation] = []
    for shape_set in SHAPE_SETS:
        graph = shapes(shape_set)
        conforms, report, text = pyshacl.validate(
            data, shacl_graph=graph, inference="none", advanced=False, allow_warnings=True, allow_infos=True
        )
        if conforms:
            continue
        assert isinstance(report, Graph)
        before = len(found)
        for result in report.subjects(RDF.type, SH.ValidationResult):
            if report.value(result, SH.resultSeverity) != SH.Violation:
                continue
            source = report.value(result, SH.sourceShape)
            found.append(
                Violation(
                    shape_set=shape_set.name,
                    shape=_shape_name(graph, source),
                    path=_name(report.value(result, SH.resultPath)),
                    focus=str(report.value(result, SH.focusNode)),
                    message=" ".join(str(report.value(result, SH.resultMessage) or "").split()),
                )
            )
        if len(found) == before:  # pySHACL said no without naming a violation: its report, on one line
            found.append(Violation(shape_set.name, "(report)", "", "", " ".join(str(text).split())[:300]))
    return sorted(found, key=lambda v: (SHAPE_SETS.index(_set(v.shape_set)), v.shape, v.path, v.focus))


def check(data: Graph) -> None:
    """Refuse ``data`` in one line naming the first violated shape and property, if it violates any shape set."""
    found = violations(data)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise PolicyRefusal(f"{found[0].line()}{more}; nothing written")


def _set(name: str) -> ShapeSet:
    return next(s for s in SHAPE_SETS if s.name == name)


def _shape_name(graph: Graph, shape: Node | None) -> str:
    """The node shape a property shape belongs to (``dcat:DatasetShape``, ``Dataset_Shape``), else the shape."""
    if shape is None:
        return "(unnamed shape)"
    owner = graph.value(predicate=SH.property, object=shape) if isinstance(shape, BNode | URIRef) else None
    named = owner if isinstance(owner, URIRef) else shape
    if isinstance(named, URIRef):
        fragment = str(named).rsplit("#", 1)[-1]
        return fragment.split("/", 1)[0]
    return "(unnamed shape)"


def _name(node: Node | None) -> str:
    if not isinstance(node, URIRef):
        return ""
    text = str(node)
    for namespace, prefix in PREFIXES.items():
        if text.startswith(namespace):
            return prefix + text[len(namespace) :]
    return f"<{text}>"
