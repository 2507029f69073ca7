"""Malformed input fed to the command line, in process: one line and a non-zero exit, never a traceback.

Each target generates what a careless user or a broken export produces (notebooks, pipeline files, policies,
request ids, query arguments, CSV exports) and runs the real ``research-kit`` entry point on it. Whatever the
input, the command either succeeds or answers with exactly one line on stderr and one of the documented exit
codes for a user's mistake; an internal error (a traceback, exit 70) fails the test.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import itertools
import json
import shutil
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import MEMBER, STEWARD, grant, sign_in

from research_kit.cli import common, main
from research_kit.core import audit
from research_kit.core.errors import EXIT_CODES, INTERNAL_ERROR
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.ingest.pipeline import ingest
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.simulator.export import SimulationSpec, simulate_export

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
COUNTER = itertools.count()
MISTAKES = {code for code in EXIT_CODES.values() if code not in (0, INTERNAL_ERROR)}


def run(*argv: str) -> tuple[int, str, str]:
    """``research-kit ARGV`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    common._acting.clear()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            contextvars.copy_context().run(main, list(argv))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_one_line_or_ok(argv: tuple[str, ...], code: int, err: str) -> None:
    assert "Traceback" not in err, (argv, err[-2000:])
    assert code != INTERNAL_ERROR, (argv, err[-2000:])
    if code:
        assert code in MISTAKES, (argv, code, err)
        lines = [line for line in err.split("\n") if line.strip()]
        # click's usage errors come in a small box; everything of ours is one line
        assert len(lines) == 1 or "Usage:" in err, (argv, err)


@pytest.fixture(scope="module")
def fuzz_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """A workspace with a small ingested extract, a study with a budget, a steward signed in."""
    base = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESEARCH_KIT_HOME", str(base / "ws"))
        patch.setenv("XDG_RUNTIME_DIR", str(base / "run"))
        patch.delenv("RESEARCH_KIT_USER", raising=False)
        ws, _ = init_workspace(base / "ws")
        simulate_export(SimulationSpec(patients=300, seed=3, format="csv"), base / "raw")
        key_path, _ = new_key(base / "k.key")
        with audit.acting(STEWARD):
            sign_in(ws, ana="researcher", **{MEMBER: "committee", STEWARD: "steward"})
            ingest(ws, [base / "raw"], "e1", load_key(key_path))
        with audit.acting("ana"):
            grant(ws, "fuzz", 5.0, owner="ana")
        yield ws


notebooks = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
shaped = st.fixed_dictionaries(
    {"cells": notebooks, "metadata": notebooks, "nbformat": notebooks, "nbformat_minor": notebooks}
)


@FUZZ
@given(notebook=notebooks | shaped, raw=st.binary(max_size=64))
def test_malformed_notebooks(tmp_path_factory: pytest.TempPathFactory, notebook: object, raw: bytes) -> None:
    folder = tmp_path_factory.mktemp("nb")
    (folder / "a.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    (folder / "b.ipynb").write_bytes(raw)
    (folder / "p.yml").write_text(
        "study: s\ntitle: t\nbudget: {rho: 0.1}\nactions:\n  a: {notebook: a.ipynb}\n  b: {notebook: b.ipynb}\n",
        encoding="utf-8",
    )
    argv = ("pipeline", "check", str(folder / "p.yml"))
    code, _, err = run(*argv)
    assert code != 0
    assert_one_line_or_ok(argv, code, err)
    shutil.rmtree(folder)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=15),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=15,
)


@FUZZ
@given(
    spec=st.fixed_dictionaries(
        {}, optional={"study": yaml_values, "title": yaml_values, "budget": yaml_values, "actions": yaml_values}
    ),
    text=st.text(max_size=200),
)
def test_malformed_pipeline_files(tmp_path_factory: pytest.TempPathFactory, spec: dict[str, object], text: str) -> None:
    import yaml

    folder = tmp_path_factory.mktemp("pipe")
    (folder / "a.yml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    (folder / "b.yml").write_text(text, encoding="utf-8")
    for name in ("a.yml", "b.yml"):
        argv = ("pipeline", "check", str(folder / name))
        code, _, err = run(*argv)
        assert_one_line_or_ok(argv, code, err)
    shutil.rmtree(folder)


toml_scalars = st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e400", "true", '"x"', "[]", "1.5", "99999999999"])


@FUZZ
@given(
    section=st.sampled_from(["dp", "sdc", "ingest", "pseudonymise", "synth", "review", "web", "auth", "nope"]),
    key=st.sampled_from(["default_query_rho", "min_cell_count", "k_anonymity", "delta", "confidence", "x", "mode"]),
    value=toml_scalars | st.text(max_size=10).map(json.dumps),
    noise=st.binary(max_size=40),
)
def test_malformed_policies(fuzz_home: Workspace, section: str, key: str, value: str, noise: bytes) -> None:
    policy = fuzz_home.root / "research-kit.toml"
    kept = policy.read_bytes()
    try:
        policy.write_bytes(f"[{section}]\n{key} = {value}\n".encode() + noise)
        argv = ("--as", STEWARD, "budget", "show", "fuzz")
        code, _, err = run(*argv)
        assert_one_line_or_ok(argv, code, err)
        assert "sign in" not in err
        assert "--as" not in err
    finally:
        policy.write_bytes(kept)


@FUZZ
@given(
    number=st.integers(min_value=-(2**80), max_value=2**80).map(str) | st.text(max_size=12),
    command=st.sampled_from([("review", "show"), ("review", "comment"), ("release",), ("outputs", "check")]),
)
def test_malformed_request_ids(fuzz_home: Workspace, number: str, command: tuple[str, ...]) -> None:
    argv = ("--as", MEMBER, *command, number, *(["a comment"] if command == ("review", "comment") else []))
    code, _, err = run(*argv)
    assert code != 0
    assert_one_line_or_ok(argv, code, err)


words = st.sampled_from(["", " ", "sex", "=", "female", "and", "in", "(", ")", ",", "nan", "1e400", "-", "'",
                         "birth_year", ">=", "1950", "diagnosis_year", "<", "x", "\x00", "é"])  # fmt: skip
numbers = st.sampled_from(["0.01", "1e-300", "nan", "inf", "-1", "0", "abc", "", "1e9", "0.0000000000001", "1,2"])


@pytest.mark.slow  # hypothesis drives the CLI with many examples, ~15 s
@FUZZ
@given(
    kind=st.sampled_from(["count", "crosstab", "sum", "mean", "median", "quantile", "histogram", "nope"]),
    table=st.sampled_from(["patients", "diagnoses", "nope"]),
    where=st.lists(words, max_size=5).map(" ".join),
    rho=numbers,
    bounds=st.sampled_from(["0,90", "90,0", "nan,1", "a,b", "1", "", "-inf,inf"]),
    by=st.sampled_from(["sex", "status", "nope", ""]),
)
def test_malformed_query_arguments(
    fuzz_home: Workspace, kind: str, table: str, where: str, rho: str, bounds: str, by: str
) -> None:
    argv = ("--as", "ana", "query", kind, table, "--study", "fuzz", "--where", where, "--rho", rho,
            "--bounds", bounds, "--by", by, "--column", "birth_year", "--dry-run")  # fmt: skip
    code, _, err = run(*argv)
    assert_one_line_or_ok(argv, code, err)
    assert code != 2
    assert "sign in" not in err


cells = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


@pytest.mark.slow  # hypothesis drives the CLI with many examples, ~15 s
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(
    header=st.lists(cells, min_size=0, max_size=4),
    rows=st.lists(st.lists(cells, max_size=12), max_size=6),
    separator=st.sampled_from([",", ";"]),
    tail=st.binary(max_size=30),
)
def test_malformed_csv_exports(
    fuzz_home: Workspace, header: list[str], rows: list[list[str]], separator: str, tail: bytes
) -> None:
    raw = fuzz_home.root.parent / "raw"
    folder = fuzz_home.root.parent / "fuzz-export"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(raw, folder)
    target = folder / "phenotypes.csv"
    lines = target.read_bytes().splitlines(keepends=True)
    made = [separator.join(r) for r in rows]
    if header:
        lines[0] = (separator.join(header) + "\n").encode()
    target.write_bytes(b"".join(lines[:5]) + "\n".join(made).encode() + tail)
    extract = f"fz{next(COUNTER)}"
    argv = ("--as", STEWARD, "ingest", str(folder), "--extract", extract, "--key", str(fuzz_home.root.parent / "k.key"))
    code, _, err = run(*argv)
    assert_one_line_or_ok(argv, code, err)
    assert code != 2
    assert "sign in" not in err
    shutil.rmtree(folder)
