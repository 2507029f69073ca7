"""The vocabularies of the dataset catalogue: the namespaces of DCAT-AP 3 and HealthDCAT-AP, and the EU and
HealthData@EU controlled vocabularies' concepts the registry's description uses (with their English labels)."""

from __future__ import annotations

from rdflib import Namespace, URIRef
from rdflib.namespace import DCTERMS, FOAF, RDF, RDFS, SKOS, XSD

DCAT = Namespace("http://www.w3.org/ns/dcat#")  # open: rdflib's closed DCAT lacks DCAT 3's dcat:version
DCATAP = Namespace("http://data.europa.eu/r5r/")
HEALTH = Namespace("http://healthdataportal.eu/ns/health#")  # HealthDCAT-AP's namespace, as its shapes spell it
CV = Namespace("http://data.europa.eu/m8g/")
GEODCATAP = Namespace("http://data.europa.eu/930/")
DQV = Namespace("http://www.w3.org/ns/dqv#")
OA = Namespace("http://www.w3.org/ns/oa#")
CSVW = Namespace("http://www.w3.org/ns/csvw#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
ELI = Namespace("http://data.europa.eu/eli/ontology#")
EU = "http://publications.europa.eu/resource/authority/"
HDEU = "https://hdeu-dcat.data.health.europa.eu/resource/authority/"
EHDS = URIRef("http://data.europa.eu/eli/reg/2025/327/oj")  # Regulation (EU) 2025/327, the EHDS
RESTRICTED = URIRef(f"{EU}access-right/RESTRICTED")
LUXEMBOURG = URIRef(f"{EU}country/LUX")
ENGLISH = URIRef(f"{EU}language/ENG")
HEALTH_THEME = URIRef(f"{EU}data-theme/HEAL")
PARQUET = URIRef(f"{EU}file-type/PARQUET")
CDS = URIRef("https://eu-rd-platform.jrc.ec.europa.eu/sites/default/files/CDS/EU_RD_Platform_CDS_Final.pdf")
# The systems in HealthDCAT-AP's coding-system vocabulary (healthdcatap:hasCodingSystem), by our name: code, label.
CODING_SYSTEMS = {
    "ORPHA": ("ORPHACODE", "ORPHAcodes (Orphanet nomenclature of rare diseases)"),
    "ICD-10": ("ICD-10", "International Classification of Diseases, 10th revision"),
    "ICD-11": ("ICD-11", "International Classification of Diseases, 11th revision"),
    "HPO": ("HPO", "Human Phenotype Ontology"),
    "HGNC": ("HGNC", "HUGO Gene Nomenclature Committee gene symbols"),
}
# HealthDCAT-AP's health data categories (EHDS Art. 51) the registry falls in, with their English labels.
HEALTH_CATEGORIES = {
    "PHDR": "Data from population-based health data registries such as public health registries",
    "MRMR": "Data from medical registries and mortality registries",
    "HGPD": "Human genetic, epigenomic and genomic data",
}
SCHEMES = {
    f"{EU}data-theme": "Data theme",
    f"{HDEU}healthcategories": "Health data categories",
    f"{HDEU}coding-system": "Coding Systems",
}
# The others, named as standards the extracts conform to (dct:conformsTo on their distribution).
STANDARDS = {
    "OMIM": ("https://omim.org/", "OMIM, Online Mendelian Inheritance in Man"),
    "MONDO": ("http://purl.obolibrary.org/obo/mondo.owl", "Mondo Disease Ontology"),
    "HGVS": ("https://hgvs-nomenclature.org/", "HGVS nomenclature of sequence variants"),
}
GENETIC = ("HGNC", "HGVS")  # a system of genetic data: the dataset is of the human genetic data category too
CONTEXT = {
    "dcat": str(DCAT), "dct": str(DCTERMS), "dcatap": str(DCATAP), "healthdcatap": str(HEALTH), "cv": str(CV),
    "geodcatap": str(GEODCATAP), "dqv": str(DQV), "oa": str(OA), "csvw": str(CSVW), "vcard": str(VCARD),
    "foaf": str(FOAF), "skos": str(SKOS), "eli": str(ELI), "rdf": str(RDF), "rdfs": str(RDFS), "xsd": str(XSD),
}  # fmt: skip
