"""Ingest of simulated phenopackets: research-kit's reader against json_format.Parse and pandas (issue 23, part 9).

The packets are a simulated export (seed 7) written by
``research_kit.simulator.phenopackets.write_phenopackets``, once as one file
each and once as JSON lines, made once under ``RK_BENCH_DATA`` (or the
benchmark's scratch) and kept.

Both sides validate every record with the ``phenopackets`` package through
``json_format`` and write the raw tables (patients, diagnoses, phenotypes) to
Parquet. Ours is ``read_phenopackets`` (validation through remembered
skeletons, values read from the JSON, one process per core) followed by one
``write_parquet`` per table. The baseline is the straightforward version the
issue names: ``json_format.Parse`` of each record into a list of messages,
the rows read from the messages, one pandas DataFrame per table, ``to_parquet``.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from research_kit.ingest.mapping import Mapping
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.simulator.phenopackets import Layout, write_phenopackets

LAYOUTS: dict[Layout, str] = {"files": "packets", "jsonl": "packets.jsonl"}


def _packets(params: dict[str, Any], scratch: Path) -> Path:
    """The packets in the layout asked for, made once per size (with the other layout) and kept."""
    base = Path(os.environ.get("RK_BENCH_DATA") or scratch.parent) / f"phenopackets-{params['packets']}"
    raw = base / "raw"
    if not (raw / "encounters.parquet").exists():
        shutil.rmtree(raw, ignore_errors=True)
        simulate_export(SimulationSpec(patients=params["packets"], seed=7, format="parquet"), raw)
    for layout, name in LAYOUTS.items():
        if not (base / f"{name}.done").exists():
            target = base / name
            if target.is_dir():
                shutil.rmtree(target)
            target.unlink(missing_ok=True)
            write_phenopackets(raw, target, layout=layout)
            (base / f"{name}.done").touch()
    return base / LAYOUTS[params["layout"]]


def _fresh(scratch: Path) -> Path:
    shutil.rmtree(scratch, ignore_errors=True)
    out = scratch / "tables"
    out.mkdir(parents=True)
    return out


def ours(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    from research_kit.ingest.phenopackets_in import read_phenopackets

    source = _packets(params, scratch)
    out = _fresh(scratch)
    mapping = Mapping(name="phenopackets", kind="phenopackets", identity_field="subject.id")
    start = time.perf_counter()
    converted = read_phenopackets(source, mapping, scratch)
    read_s = time.perf_counter() - start
    rows = 0
    for name, frame in converted.tables.items():
        frame.write_parquet(out / f"{name}.parquet")
        rows += frame.height
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "items": converted.records_in,
        "rows": rows,
        "refused": len(converted.refused),
        "read_s": round(read_s, 3),  # read_phenopackets alone (the rest: Parquet)
        # The reading processes' peak resident set, each (peak_mb counts this process only): at most
        # peak_mb + processes x workers_peak_mb in all.
        "workers_peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def whole_ingest(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    """``research-kit ingest --mapping``: the packets read, every row validated by the registry's rules,
    pseudonymised and registered as an extract, with its quarantine, manifest and reconciliation."""
    from research_kit.core.workspace import init_workspace
    from research_kit.ingest.mapping import TableMapping
    from research_kit.ingest.pipeline import ingest
    from research_kit.pseudonymise.keys import load_key, new_key

    source = _packets(params, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    ws, _ = init_workspace(scratch / "ws")
    key_path, _ = new_key(scratch / "keys" / "bench.key")
    # What the simulated packets do not carry, as a steward's mapping states it.
    constants = {"consent_reuse": "yes", "vital_status": "alive", "country": "ZZ"}
    mapping = Mapping(
        name="phenopackets", kind="phenopackets", identity_field="subject.id",
        tables={"patients": TableMapping(constants=constants)},
    )  # fmt: skip
    start = time.perf_counter()
    result = ingest(ws, [source], "bench", load_key(key_path), mappings=[mapping])
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "items": params["packets"],
        "rows": sum(c.rows_in for c in result.counts.values()),
        "accepted": sum(c.accepted for c in result.counts.values()),
        "workers_peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def baseline(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    from google.protobuf import json_format
    from phenopackets import Phenopacket

    source = _packets(params, scratch)
    out = _fresh(scratch)
    start = time.perf_counter()
    if params["layout"] == "files":
        texts = (path.read_bytes() for path in sorted(source.rglob("*.json")))
    else:
        texts = (line for line in source.open("rb") if line.strip())
    packets = [json_format.Parse(text, Phenopacket()) for text in texts]
    parse_s = time.perf_counter() - start
    tables = _baseline_rows(packets)
    rows = 0
    for name, records in tables.items():
        frame = pd.DataFrame(records)
        frame.to_parquet(out / f"{name}.parquet")
        rows += len(frame)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "items": len(packets), "rows": rows, "refused": 0, "parse_s": round(parse_s, 3)}


def _baseline_rows(packets: list[Any]) -> dict[str, list[dict[str, str]]]:
    """The raw tables' rows from the messages, as one would write it without thinking of speed."""
    from phenopackets import Sex, VitalStatus

    patients, diagnoses, phenotypes = [], [], []
    for p in packets:
        nid = p.subject.id
        patients.append(
            {
                "national_id": nid,
                "date_of_birth": p.subject.date_of_birth.ToDatetime().date().isoformat()
                if p.subject.HasField("date_of_birth")
                else "",
                "sex": Sex.Name(p.subject.sex),
                "vital_status": VitalStatus.Status.Name(p.subject.vital_status.status),
                "age_at_last_record": p.subject.time_at_last_encounter.age.iso8601duration,
            }
        )
        for f in p.phenotypic_features:
            phenotypes.append(
                {
                    "national_id": nid,
                    "hpo_code": f.type.id,
                    "excluded": "yes" if f.excluded else "no",
                    "observed_date": f.onset.timestamp.ToDatetime().date().isoformat()
                    if f.onset.HasField("timestamp")
                    else "",
                    "onset_age": f.onset.age.iso8601duration,
                }
            )
        genes = {}
        for i in p.interpretations:
            for g in i.diagnosis.genomic_interpretations:
                descriptor = g.variant_interpretation.variation_descriptor
                hgvs = next((e.value for e in descriptor.expressions if e.syntax == "hgvs.c"), "")
                genes[i.diagnosis.disease.id] = (descriptor.gene_context.symbol, hgvs)
        for d in p.diseases:
            gene, variant = genes.get(d.term.id, ("", ""))
            diagnoses.append(
                {
                    "national_id": nid,
                    "code": d.term.id,
                    "excluded": "yes" if d.excluded else "no",
                    "onset_date": d.onset.timestamp.ToDatetime().date().isoformat()
                    if d.onset.HasField("timestamp")
                    else "",
                    "gene_symbol": gene,
                    "variant_hgvs": variant,
                }
            )
    return {"patients": patients, "diagnoses": diagnoses, "phenotypes": phenotypes}
