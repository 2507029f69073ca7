"""Writing a simulated raw export to disk: chunk by chunk, into a temporary folder renamed at the end.

A simulated export is a folder holding ``patients``, ``diagnoses``,
``phenotypes`` and ``encounters`` as Parquet or CSV files and, with faults,
``faults.json`` (the sidecar). Memory is bounded by the chunk size, not by
the number of patients. Nothing appears under the final name until every file
is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from research_kit.core.checksums import file_sha256
from research_kit.core.errors import BadInput
from research_kit.model.codes import load_code_systems, orpha_id
from research_kit.model.tables import TABLES
from research_kit.simulator import faults as faults_mod
from research_kit.simulator.shape import Shape
from research_kit.simulator.simulate import AS_OF, Model, NationalIds, generate_chunk

FORMATS = ("parquet", "csv")
CHUNK_SIZE = 50_000
SIDECAR = "faults.json"
# The simulator's mark: which files it made (by SHA-256). Ingest records an extract as simulated only when every
# source file matches it, and the sandbox may be switched off only for simulated data (docs/security.md).
SIMULATED_MARK = "simulated.json"
# With faults, patients.csv arrives Latin-1 encoded, as older clinical systems deliver it.
LATIN1_TABLE = "patients"


def mark_simulated(folder: Path, written: list[Path]) -> None:
    """Add ``written`` (files under ``folder``, at any depth) to the simulator's mark in ``folder``: the same
    registry written as another kind of source (a reshaped export, phenopackets, FHIR) is still simulated
    data. Callers mark a source's parent folder, so that the mark is never read as one of its records."""
    mark_path = folder / SIMULATED_MARK
    try:
        mark = json.loads(mark_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        mark = {}
    files = mark.get("files") if isinstance(mark.get("files"), dict) else {}
    files.update({p.relative_to(folder).as_posix(): file_sha256(p) for p in written})
    mark["files"] = dict(sorted(files.items()))
    tmp = mark_path.with_name(f".{SIMULATED_MARK}.tmp")
    tmp.write_text(json.dumps(mark, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, mark_path)


@dataclass(frozen=True)
class SimulationSpec:
    patients: int = 30_000
    seed: int = 1
    format: str = "parquet"
    faults: bool = False
    as_of: date = AS_OF
    chunk_size: int = CHUNK_SIZE

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise BadInput(f"--patients must be at least 1, got {self.patients}")
        if self.seed < 0:
            raise BadInput(f"--seed must be zero or more, got {self.seed}")
        if self.format not in FORMATS:
            raise BadInput(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.chunk_size < 1:
            raise BadInput(f"chunk size must be at least 1, got {self.chunk_size}")

    def default_name(self) -> str:
        return f"sim-n{self.patients}-s{self.seed}" + ("-faults" if self.faults else "")


@dataclass(frozen=True)
class SimulationResult:
    path: Path
    rows: dict[str, int]
    files: dict[str, str]
    faults: int
    shape: dict[str, Any]
    spec: SimulationSpec = field(repr=False)


class _TableWriter:
    def __init__(self, path: Path, fmt: str, columns: tuple[str, ...], encoding: str = "utf-8") -> None:
        self.path, self.fmt, self.columns, self.encoding = path, fmt, columns, encoding
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._csv: Any = None
        if fmt == "parquet":
            schema = pa.schema([(c, pa.string()) for c in columns])
            self._parquet = pq.ParquetWriter(path, schema, compression="zstd")
        else:
            self._csv = path.open("w", encoding=encoding, newline="")

    def write(self, frame: Any) -> None:
        frame = frame[list(self.columns)]
        if self._parquet is not None:
            self._parquet.write_table(pa.Table.from_pandas(frame, preserve_index=False, schema=self._parquet.schema))
        else:
            frame.to_csv(self._csv, index=False, header=self.rows == 0, lineterminator="\n")
        self.rows += len(frame)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._csv is not None:
            self._csv.close()


def simulate_export(
    spec: SimulationSpec,
    out: Path,
    *,
    replace: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Simulate ``spec.patients`` patients into the folder ``out`` (created atomically).

    ``progress`` is called with the number of patients written after each chunk.
    """
    if out.exists() and not replace:
        raise BadInput(f"{out}: already exists (choose another --out, or --replace it)")
    if out.exists() and not (out / SIMULATED_MARK).is_file():  # never a real export, a workspace, a home folder
        raise BadInput(f"{out}: not an export the simulator wrote; --replace replaces only those")
    codes = load_code_systems()
    model = Model(codes)
    shape = Shape()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir(mode=0o700)
    writers: dict[str, _TableWriter] = {}
    try:
        for table in TABLES:
            encoding = "latin-1" if spec.faults and spec.format == "csv" and table.name == LATIN1_TABLE else "utf-8"
            path = tmp / f"{table.name}.{spec.format}"
            writers[table.name] = _TableWriter(path, spec.format, table.required, encoding)
        ids = NationalIds()
        all_faults: list[faults_mod.Fault] = []
        done = 0
        for chunk_no, start in enumerate(range(0, spec.patients, spec.chunk_size)):
            n = min(spec.chunk_size, spec.patients - start)
            rng = np.random.default_rng(np.random.SeedSequence([spec.seed, chunk_no]))
            frames = generate_chunk(rng, n, model, ids, spec.as_of)
            shape.update(frames)
            if spec.faults:
                offsets = {name: w.rows for name, w in writers.items()}
                frames, found = faults_mod.inject(rng, frames, offsets, spec.as_of)
                all_faults += found
            for name, frame in frames.items():
                writers[name].write(frame)
            done += n
            if progress:
                progress(done)
        for w in writers.values():
            w.close()
        if spec.faults:
            if spec.format == "csv":
                all_faults.append(
                    faults_mod.Fault(LATIN1_TABLE, None, None, "latin1_encoding", False, "file encoded Latin-1")
                )
            sidecar = {
                "rows": "numbered from 1 within each table's file, header excluded",
                "seed": spec.seed,
                "patients": spec.patients,
                "faults": [f.as_dict() for f in all_faults],
            }
            (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=1, ensure_ascii=False), encoding="utf-8")
        mark = {
            "made_by": "research-kit simulate",
            "files": {w.path.name: file_sha256(w.path) for w in writers.values()},
        }
        (tmp / SIMULATED_MARK).write_text(json.dumps(mark, indent=1, sort_keys=True), encoding="utf-8")
        _swap_in(tmp, out)
    except BaseException:
        for w in writers.values():
            with contextlib.suppress(Exception):  # already failing; the folder is removed below
                w.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SimulationResult(
        path=out,
        rows={name: w.rows for name, w in writers.items()},
        files={name: f"{name}.{spec.format}" for name in writers},
        faults=len(all_faults),
        shape=shape.summary({orpha_id(d.orpha): d.name for d in codes.diseases}),
        spec=spec,
    )


def _swap_in(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
