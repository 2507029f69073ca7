"""``research-kit catalogue OUT`` on a real (small, simulated, ingested) registry: the HealthDCAT-AP description
passes the shipped shapes, publishes the individuals rounded as the policy says, names no patient, and every
mistake is one line with nothing written.

The command line runs in process (its real entry point), signed in as the suite's users.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import polars as pl
import pytest
from rdflib import Graph, URIRef
from rdflib.namespace import DCTERMS
from tests.conftest import MEMBER, STEWARD, Project, sign_in
from tests.generative.test_fuzz_cli import run

from research_kit.core import audit, errors
from research_kit.core.config import POLICY_FILE, policy_from_dict, render_policy
from research_kit.core.extracts import list_extracts
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.model.tables import TABLE_NAMES
from research_kit.transparency import catalogue, catalogue_shapes
from research_kit.transparency.catalogue import JSONLD, TURTLE
from research_kit.transparency.catalogue_facts import rounded
from research_kit.transparency.catalogue_variables import MEANINGS
from research_kit.transparency.catalogue_vocabulary import DCAT, HEALTH

# With the slow tests (CI runs them too), so that make test stays under six minutes on two cores.
pytestmark = pytest.mark.slow

PAGE = "https://registry.example.lu/rare-diseases"
SETTINGS = {
    "catalogue_publisher": "Registre national des maladies rares",
    "catalogue_contact": "registry@example.lu",
    "catalogue_landing_page": PAGE,
    "catalogue_hdab": "Health data access body",
    "catalogue_hdab_contact": "hdab@example.lu",
}


def set_policy(ws: Workspace, **keys: object) -> None:
    """The workspace's policy with these [transparency] keys (the rest as it is)."""
    path = ws.root / POLICY_FILE
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data.setdefault("transparency", {}).update(keys)
    path.write_text(render_policy(policy_from_dict(data)), encoding="utf-8")


def publish_twin_manifest(ws: Workspace, twin_id: str, extract: str, kind: str, dp: dict[str, object] | None) -> None:
    """A published twin's manifest as synth/publish.py writes it: the catalogue reads manifests only (building a
    twin takes a minute, which its own tests spend)."""
    folder = ws.synthetic_dir / twin_id
    folder.mkdir(parents=True)
    manifest = {"extract": extract, "twin": twin_id, "kind": kind, "published_at": "2026-12-01T10:00:00+00:00",
                "content_hash": "0" * 64, "reference_year": 2026, **({"dp": dp} if dp else {})}  # fmt: skip
    (folder / "twin.json").write_text(json.dumps(manifest), encoding="utf-8")


@pytest.fixture
def registry(project: Project) -> Workspace:
    """The suite's registry (extracts e1 and e2 of 600 simulated patients), its steward signed in, the policy's
    catalogue keys set."""
    sign_in(project.ws)
    set_policy(project.ws, **SETTINGS)
    return project.ws


def identifiers(ws: Workspace, raw: Path) -> set[str]:
    """Every pseudonym in every table of every extract, and every national ID of the raw exports."""
    found: set[str] = set()
    for extract in list_extracts(ws):
        for table in TABLE_NAMES:
            found |= set(pl.read_parquet(extract.table_path(table), columns=["pseudonym"])["pseudonym"])
    for export in sorted(raw.glob("raw-*")):
        found |= set(pl.read_parquet(export / "patients.parquet", columns=["national_id"])["national_id"])
    return found


def test_the_catalogue_of_a_registry_passes_the_shapes_and_names_no_patient(
    registry: Workspace, registry_template: Path, tmp_path: Path
) -> None:
    publish_twin_manifest(registry, "e2", "e2", "default", None)
    publish_twin_manifest(registry, "e2@dp", "e2", "dp", {"mechanism": "mst", "epsilon": 4.0, "rho": 0.3})
    out = tmp_path / "hub"
    code, stdout, stderr = run("catalogue", str(out))
    assert (code, stderr) == (0, "")
    assert f"catalogue: {out} ({TURTLE}, {JSONLD})" in " ".join(stdout.split())  # as wrapped to the terminal
    assert sorted(p.name for p in out.iterdir()) == [JSONLD, TURTLE]

    graph = Graph().parse(out / TURTLE, format="turtle")
    assert catalogue_shapes.violations(graph) == []
    dataset = URIRef(f"{PAGE}#dataset")
    newest = list_extracts(registry)[-1]
    published = int(graph.value(dataset, HEALTH.numberOfUniqueIndividuals).toPython())
    assert published == rounded(newest.patients, 10)
    assert published % 10 == 0
    distributions = {str(d) for d in graph.objects(dataset, DCAT.distribution)}
    assert distributions == {f"{PAGE}#extracts", f"{PAGE}#twin-e2", f"{PAGE}#twin-e2%40dp"}

    text = (out / TURTLE).read_text(encoding="utf-8") + (out / JSONLD).read_text(encoding="utf-8")
    known = identifiers(registry, registry_template.parent)
    assert len(known) > 1000
    assert not [i for i in known if i in text]

    entry = audit.read_entries(registry.audit_path)[-1]
    assert (entry["action"], entry["actor"]) == ("catalogue.write", STEWARD)
    assert entry["details"]["individuals"] == published
    assert entry["details"]["twins"] == ["e2", "e2@dp"]


def test_the_individuals_are_rounded_as_the_policy_says(registry: Workspace, tmp_path: Path) -> None:
    set_policy(registry, catalogue_rounding=100)
    code, stdout, _ = run("catalogue", str(tmp_path / "hub"), "--json")
    assert code == 0
    shown = json.loads(stdout)
    patients = list_extracts(registry)[-1].patients
    assert shown["individuals"] == rounded(patients, 100) == round(patients, -2)
    assert (shown["rounding"], shown["extract"], shown["versions"]) == (100, "e2", 2)
    graph = Graph().parse(tmp_path / "hub" / TURTLE, format="turtle")
    value = graph.value(URIRef(f"{PAGE}#dataset"), HEALTH.numberOfUniqueIndividuals)
    assert int(value.toPython()) == shown["individuals"]


def test_every_column_of_an_extract_has_its_meaning_in_the_catalogue(registry: Workspace) -> None:
    extract = list_extracts(registry)[-1]
    for table in TABLE_NAMES:
        columns = pl.read_parquet_schema(extract.table_path(table))
        assert set(columns) <= set(MEANINGS[table]), table


def test_mistakes_are_one_line_and_write_nothing(registry: Workspace, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    cases = [
        (("catalogue", str(tmp_path / "a-file")), errors.BadInput, "exists and is not a folder"),
        (("catalogue", str(tmp_path / "busy")), errors.BadInput, "holds other files than a catalogue (notes.txt)"),
        (("catalogue", str(tmp_path / "no" / "such")), errors.MissingData, "no such folder"),
        (("--as", MEMBER, "catalogue", str(tmp_path / "by-committee")), None, ""),  # the committee may
    ]
    sign_in(registry, **{MEMBER: "committee", "rita": "researcher"})
    for argv, error, says in cases:
        argv = argv if argv[0] == "--as" else ("--as", STEWARD, *argv)
        code, _, stderr = run(*argv)
        if error is None:
            assert (code, stderr) == (0, "")
            continue
        assert code == error.exit_code, stderr
        assert stderr.count("\n") == 1, stderr
        assert says in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(("ws", "run", "project"))) == [
        "a-file", "busy", "by-committee"
    ]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]

    code, _, stderr = run("--as", "rita", "catalogue", str(tmp_path / "rita"))
    assert code == errors.PolicyRefusal.exit_code
    assert "'rita' is a researcher; writing the registry's dataset description (HealthDCAT-AP) needs" in stderr

    set_policy(registry, catalogue_hdab="", catalogue_hdab_contact="")
    code, _, stderr = run("--as", STEWARD, "catalogue", str(tmp_path / "unset"))
    assert code == errors.BadInput.exit_code
    assert "set [transparency] catalogue_hdab, catalogue_hdab_contact:" in stderr
    assert not (tmp_path / "rita").exists()
    assert not (tmp_path / "unset").exists()


def test_a_description_that_fails_the_shapes_is_one_line_and_writes_nothing(
    registry: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Valid settings cannot make the description fail (they are checked first): a fault is put in the graph.
    build = catalogue.build

    def untitled(*args: object, **kwargs: object) -> Graph:
        graph = build(*args, **kwargs)  # type: ignore[arg-type]
        graph.remove((URIRef(f"{PAGE}#dataset"), DCTERMS.title, None))
        return graph

    monkeypatch.setattr(catalogue, "build", untitled)
    code, _, stderr = run("catalogue", str(tmp_path / "hub"))
    assert code == errors.PolicyRefusal.exit_code
    assert stderr.count("\n") == 1
    assert "the catalogue fails DCAT-AP 3.0.0 (dcat:DatasetShape, dct:title)" in stderr
    assert stderr.rstrip().endswith("nothing written")
    assert not (tmp_path / "hub").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hub")]  # no scratch folder left
    assert audit.read_entries(registry.audit_path)[-1]["action"] != "catalogue.write"


def test_a_workspace_without_an_extract_is_told_to_ingest_first(home: Path, tmp_path: Path) -> None:
    ws, _ = init_workspace(home)
    sign_in(ws)
    set_policy(ws, **SETTINGS)
    code, _, stderr = run("catalogue", str(tmp_path / "hub"))
    assert code == errors.MissingData.exit_code
    assert "no extract yet" in stderr
    assert "research-kit ingest" in stderr
    assert not (tmp_path / "hub").exists()
