"""GA4GH Phenopackets v2 in: a folder, zip or JSON-lines file of phenopackets, read into the registry's raw tables.

**Source.** A folder (every ``*.json`` under it, recursively, in the order
of their relative paths), a ``.zip`` of such files, a JSON-lines file
(``.jsonl``/``.ndjson``: one phenopacket per line; blank lines are skipped)
or one ``.json`` file. A record's locator is its file (relative to the
folder, or its name in the zip) or ``file:line``.

**Validation.** Every record is checked against the Phenopacket schema by
the ``phenopackets`` package through protobuf's ``json_format``: a record is
read iff ``json_format.Parse`` accepts it. A record it refuses (not UTF-8,
not JSON, a key twice in one object, an unknown field, a wrong type, an
unknown enum value...) is :class:`~research_kit.ingest.converted.Refused`
with a one-line reason that names the field's path, never a value.

``json_format.Parse`` walks descriptors in Python (~0.3 ms for a small
packet), so :class:`Checker` does the same check faster. The standard
library decodes the JSON (a key twice in one object refused, as ``Parse``
does). The record's **skeleton** is the same JSON with the value of every
string field emptied and of every timestamp replaced by one valid stamp,
each timestamp checked apart by ``json_format`` (and remembered): whatever
a string field holds, ``json_format`` takes it as long as it is a string
with no unpaired surrogate, so a record is valid iff its skeleton is and its
timestamps are. Ids, labels and codes vary from packet to packet, the
skeletons hardly do: ``json_format.ParseDict`` checks each distinct skeleton
once (the packet's top level with its phenotypic features, diseases and
interpretations emptied, then each of those at the depth limit it has in the
packet; remembered by its exact JSON text, as is each whole skeleton found
valid). Splitting the packet so is exact: ``json_format`` converts a
message's fields independently but for two checks across them (a field
under both its JSON and its proto name, two members of a oneof); the first
the skeleton leaves to ``Parse``, and a part is checked whole, the packet's
top level (which has no oneof) with its parts in place, emptied. Anything
else (a value of the wrong JSON type where a message is expected) and every
record the skeleton fails goes to ``json_format.Parse`` itself, which has
the last word and gives the reason.
A test holds the checker to ``Parse`` on a table of broken records and on
generated ones. Values are then read from the record's JSON (or, for a record
``Parse`` read, from ``MessageToDict`` of its message) as ``json_format``
reads them: a null is the field's default, an enum a name or a number.

**Rows.** Keys of the mapping: ``identity.field`` is where the person's
identifier is: ``id`` (the packet's), ``subject.id`` or
``subject.alternateIds:PREFIX`` (the first alternate id ``PREFIX:...``,
without its prefix); a record with none there is refused ("no identifier at
subject.id"). ``identity.kind`` ``registry`` makes it ``registry:<id>``.

- ``patients``: ``subject.dateOfBirth`` (the UTC date), ``sex`` (FEMALE,
  MALE, OTHER_SEX, UNKNOWN_SEX -> female, male, undetermined, unknown),
  ``vitalStatus`` (ALIVE -> alive, DECEASED -> dead, UNKNOWN_STATUS or none
  left empty: a mapping's constant may fill it), its ``timeOfDeath`` (a timestamp -> ``date_of_death``, an age
  -> ``age_at_death``), ``timeAtLastEncounter``'s age ->
  ``age_at_last_record``.
- ``diagnoses``: one row per ``diseases`` entry: the term's code in its
  system's column (:func:`~research_kit.model.disease_codes.read_code`;
  a prefix of no known system gives the row the issue
  ``diagnoses:unknown_code_system``, and a malformed code of a known system
  is passed on as given, for validation to judge); ``excluded``; the onset:
  an age -> ``onset_age``, an HPO onset class -> ``onset_class``, a
  timestamp -> ``onset_date``. Interpretations: the one whose
  ``diagnosis.disease`` has the disease's code (the k-th such interpretation
  goes with the k-th such disease) gives its **status** (progress SOLVED or
  COMPLETED -> confirmed, IN_PROGRESS -> suspected, UNSOLVED ->
  undiagnosed) and, from its first CAUSATIVE genomic interpretation, the
  gene symbol and one HGVS expression (``hgvs.c`` preferred, then
  ``hgvs.g``, ``hgvs.p``, any other ``hgvs``; the first causative call that
  has one, a structural variant may not); a further causative variant is
  counted (``facts["variants_not_kept"]``), not kept. An interpretation with
  no such disease is a diagnosis row of its own. A status nothing gives is the
  mapping's ``[tables.diagnoses.constants] status`` or else ``confirmed``: a
  phenopacket lists diagnoses (or, ``excluded``, diagnoses ruled out), and its
  schema has no "suspected" but through an interpretation.
- ``phenotypes``: one row per ``phenotypicFeatures`` entry: ``type.id`` ->
  ``hpo_code``, ``excluded``, the onset: an age -> ``onset_age``, an onset
  class -> ``onset_class``, a timestamp -> ``observed_date`` (the earliest
  day the feature is known observed).
- ``encounters``: none (a phenopacket has no encounters).

A time given in a form no column holds (an age range, a gestational age, an
interval) is left empty and counted in ``facts["times_not_read"]``. After
all that, each of the mapping's ``constants`` fills its column where it is
still empty (e.g. ``country``, ``vital_status``). ``source`` is the mapping's
name, ``source_record`` the locator. ``versions`` holds each
``metaData.resources`` prefix's version (distinct ones joined by ``" | "``);
``files`` each file's SHA-256 (the zip's or JSON-lines file's for those);
``facts`` also ``observed_phenotypes_in`` and ``excluded_phenotypes_in``
(rows, plus what the refused records held).

**Draft.** :func:`draft_phenopackets` proposes a mapping from counts over
the records (national IDs among subject or alternate ids, repeated subject
ids, dates of birth, vital statuses), printing no value.

**Speed.** Above :data:`PARALLEL_MIN_RECORDS` records (or as ``workers``
says) the records are read by one spawned process per core, each reading its
own share of the files or lines and sending back Polars frames; a script
that cannot spawn (no ``if __name__ == "__main__":``) is read in this process
instead. About 0.1 ms a small packet a core, against 0.3 ms for
``json_format.Parse`` alone (``benchmarks/cases_phenopackets.py``). Nothing
is written to ``scratch``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import date
from functools import cache, lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import polars as pl
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from phenopackets import (
    Disease,
    GenomicInterpretation,
    Interpretation,
    Phenopacket,
    PhenotypicFeature,
    Sex,
    VitalStatus,
)

from research_kit.core.checksums import file_sha256
from research_kit.core.errors import BadInput, MissingData, quoted
from research_kit.ingest.converted import SOURCE_ISSUE, SOURCE_RECORD, Converted, Refused, no_duplicate_keys
from research_kit.ingest.mapping import Mapping
from research_kit.model.disease_codes import PREFIXES, DiseaseCode, read_code
from research_kit.model.tables import BY_NAME, CODE_COLUMNS, REGISTRY_PREFIX, SOURCE, TABLES

JSONL_SUFFIXES = (".jsonl", ".ndjson")
MAX_RECORD_BYTES = 64 << 20  # a phenopacket is kilobytes; a larger record is refused unread
PARALLEL_MIN_RECORDS = 5_000  # below this, starting processes costs more than it saves
TASKS_PER_WORKER = 8  # shares per process: the slow ones even out
MEMO_LIMIT = 50_000  # skeletons (or stamps) remembered per kind; a memo starts afresh beyond (memory stays bounded)
VERSION_JOIN = " | "

SEXES = {"FEMALE": "female", "MALE": "male", "OTHER_SEX": "undetermined", "UNKNOWN_SEX": "unknown"}
VITAL = {"ALIVE": "alive", "DECEASED": "dead", "UNKNOWN_STATUS": ""}  # not known: a mapping's constant may fill it
PROGRESS = {"SOLVED": "confirmed", "COMPLETED": "confirmed", "IN_PROGRESS": "suspected", "UNSOLVED": "undiagnosed"}
DEFAULT_STATUS = "confirmed"
HGVS_PREFERENCE = ("hgvs.c", "hgvs.g", "hgvs.p")
_CAUSATIVE = GenomicInterpretation.InterpretationStatus.Value("CAUSATIVE")
_CODE_INDEX = {system: i for i, system in enumerate(CODE_COLUMNS)}
_CURIE_SYSTEMS = ("ORPHA", "OMIM", "MONDO")  # written as CURIEs; ICD-10 and ICD-11 bare

# The rows each table gets from a record (then every other column of the table, empty).
PATIENT_COLUMNS = (
    "national_id", "date_of_birth", "sex", "vital_status", "date_of_death", "age_at_last_record", "age_at_death",
)  # fmt: skip
DIAGNOSIS_COLUMNS = (
    "national_id", *CODE_COLUMNS.values(), "status", "excluded", "onset_date", "onset_age", "onset_class",
    "gene_symbol", "variant_hgvs",
)  # fmt: skip
PHENOTYPE_COLUMNS = ("national_id", "hpo_code", "excluded", "observed_date", "onset_age", "onset_class")
CARRIED = {"patients": PATIENT_COLUMNS, "diagnoses": DIAGNOSIS_COLUMNS, "phenotypes": PHENOTYPE_COLUMNS}


# --- where the records are ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """What a worker needs of the mapping (picklable)."""

    name: str
    identity_field: str
    identity_kind: str


@dataclass(frozen=True)
class _Task:
    """A share of the source: some files (of a folder or a zip), or a byte range of a JSON-lines file."""

    kind: str  # "files", "zip" or "jsonl"
    root: str
    names: tuple[str, ...] = ()
    start: int = 0
    end: int = 0
    first_line: int = 1
    settings: _Settings | None = None


def _plan(source: Path, settings: _Settings, workers: int | None) -> tuple[list[_Task], int, dict[str, str]]:
    """The source's shares, how many processes read them, and the hashes known already (none yet)."""
    if not source.exists():
        raise MissingData(f"{source}: no such file or folder")
    cores = len(os.sched_getaffinity(0)) if workers is None else -max(workers, 1)  # negative: as asked, whatever size
    if source.is_dir():
        return _split_names("files", source, tuple(sorted(_json_files(source))), settings, cores)
    suffix = source.suffix.lower()
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(source) as archive:
                names = tuple(sorted(i.filename for i in archive.infolist() if _zip_record(i)))
        except (zipfile.BadZipFile, OSError) as exc:
            raise BadInput(f"{source}: not a readable zip file ({type(exc).__name__})") from None
        return _split_names("zip", source, names, settings, cores)
    if suffix in JSONL_SUFFIXES:
        return _split_lines(source, settings, cores)
    if suffix == ".json":
        return [_Task("files", str(source.parent), (source.name,), settings=settings)], 1, {}
    raise BadInput(f"{source}: not a folder, .zip, .json or JSON-lines (.jsonl, .ndjson) file of phenopackets")


def _json_files(folder: Path, prefix: str = "") -> Iterator[str]:
    """Every ``*.json`` file under ``folder`` (not through links to folders), as a path relative to it."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from _json_files(Path(entry.path), f"{prefix}{entry.name}/")
            elif entry.name.endswith(".json") and entry.is_file():
                yield prefix + entry.name


def _processes(cores: int, large: bool) -> int:
    """How many processes read the source: the number asked for (given negative), else every core if it is large."""
    if cores < 0:
        return -cores
    return cores if large else 1


def _zip_record(info: zipfile.ZipInfo) -> bool:
    return not info.is_dir() and info.filename.endswith(".json") and not info.filename.startswith("__MACOSX/")


def _split_names(
    kind: str, root: Path, names: tuple[str, ...], settings: _Settings, cores: int
) -> tuple[list[_Task], int, dict[str, str]]:
    if not names:
        raise BadInput(f"{root}: no phenopackets (*.json) in it")
    workers = _processes(cores, len(names) >= PARALLEL_MIN_RECORDS)
    shares = workers * TASKS_PER_WORKER if workers > 1 else 1
    size = -(-len(names) // shares)
    tasks = [_Task(kind, str(root), names[i : i + size], settings=settings) for i in range(0, len(names), size)]
    return tasks, workers, {}


def _split_lines(path: Path, settings: _Settings, cores: int) -> tuple[list[_Task], int, dict[str, str]]:
    """Byte ranges of a JSON-lines file, cut after a newline, with the number of their first line; the hash."""
    size = path.stat().st_size
    processes = _processes(cores, size >= PARALLEL_MIN_RECORDS * 2048)  # a packet is ~2 to 10 KB
    shares = processes * TASKS_PER_WORKER if processes > 1 else 1
    targets = [size * k // shares for k in range(1, shares)]
    cuts, lines, digest, offset = [0], [1], hashlib.sha256(), 0
    newlines = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            while targets and targets[0] < offset + len(block):
                at = block.find(b"\n", max(targets[0] - offset, 0))
                if at < 0:
                    break
                cut = offset + at + 1
                targets.pop(0)
                if cut > cuts[-1]:
                    cuts.append(cut)
                    lines.append(1 + newlines + block.count(b"\n", 0, at + 1))
            newlines += block.count(b"\n")
            offset += len(block)
    cuts.append(size)
    tasks = [
        _Task("jsonl", str(path), start=a, end=b, first_line=line, settings=settings)
        for a, b, line in zip(cuts, cuts[1:], lines, strict=False)
        if b > a
    ]
    return tasks, processes, {path.name: digest.hexdigest()}


TOO_LARGE = f"larger than {MAX_RECORD_BYTES >> 20} MB: not read"


def _read_file(path: str) -> bytes | str:
    """A file's bytes (or why not): os.read sized by fstat is several times faster than open().read() here."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size > MAX_RECORD_BYTES:
            return TOO_LARGE
        chunks = []
        while chunk := os.read(fd, max(size + 1, 1 << 16)):
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def _records(task: _Task) -> Iterator[tuple[str, bytes | str]]:
    """Each record of the share: its locator and its bytes, or why they could not be read."""
    root = Path(task.root)
    if task.kind == "files":
        for name in task.names:
            yield name, _read_file(os.path.join(root, name))
    elif task.kind == "zip":
        with zipfile.ZipFile(root) as archive:
            for name in task.names:
                info = archive.getinfo(name)
                if info.file_size > MAX_RECORD_BYTES:
                    yield name, TOO_LARGE
                    continue
                try:
                    yield name, archive.read(info)
                except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, RuntimeError) as exc:
                    yield name, f"not readable in the zip file ({type(exc).__name__})"
    else:
        with root.open("rb") as fh:
            fh.seek(task.start)
            line_no, left = task.first_line, task.end - task.start
            while left > 0:
                line = fh.readline(min(left, MAX_RECORD_BYTES + 1))
                left -= len(line)
                if len(line) > MAX_RECORD_BYTES:  # skip the rest of the line unread
                    while left > 0 and not line.endswith(b"\n"):
                        line = fh.readline(min(left, 1 << 20))
                        left -= len(line)
                    yield f"{root.name}:{line_no}", TOO_LARGE
                elif line.strip():
                    yield f"{root.name}:{line_no}", line
                line_no += 1


# --- what is read of a record ----------------------------------------------------------------------------------

_SEX_ENUM = Sex.DESCRIPTOR
_VITAL_ENUM = VitalStatus.Status.DESCRIPTOR
_PROGRESS_ENUM = Interpretation.ProgressStatus.DESCRIPTOR
_INTERPRETATION_STATUS = GenomicInterpretation.InterpretationStatus.DESCRIPTOR
_PROGRESS_STATUS = {number: PROGRESS.get(name, "") for name, number in Interpretation.ProgressStatus.items()}

Feature = tuple[str, str, str, str, str, int]  # hpo_code, excluded, date, age, class, times not read
# term, codes, issue, excluded, onset date, age, class, times not read
Diagnosis = tuple[str, tuple[str, ...], str, str, str, str, str, int]
Interpreted = tuple[str, str, str, str, int]  # disease, status, gene, variant, causative variants not kept
# date_of_birth, sex, vital_status, date_of_death, age_at_last_record, age_at_death, issue, times not read
Subject = tuple[str, str, str, str, str, str, str, int]


class _Unusual(Exception):
    """A record the checker leaves to ``json_format.Parse`` (not an object, a field spelt both ways...)."""


class Refusal(Exception):
    """A record that cannot be read: the one-line reason (no value in it) and the JSON, when it could be decoded."""

    def __init__(self, reason: str, decoded: Any = None) -> None:
        super().__init__(reason)
        self.reason, self.decoded = reason, decoded


@dataclass
class Read:
    """One valid record's values, and its JSON (keys in their JSON spelling) for the identifier."""

    packet: dict[str, Any]
    subject: Subject
    features: list[Feature]
    diseases: list[Diagnosis]
    interpretations: list[Interpreted]
    versions: tuple[tuple[str, str], ...]


class _Memo(dict[str, Any]):
    """A dict that starts afresh when full: a whole packet's skeleton is ~1 KB of text, 50,000 of them 50 MB."""

    def remember(self, key: str, value: Any) -> Any:
        if len(self) >= MEMO_LIMIT:
            self.clear()
        self[key] = value
        return value


# --- checking a record ------------------------------------------------------------------------------------------

_ENCODE = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False).encode
_SURROGATE = re.compile("[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]")  # json_format's
_STRING, _TIMESTAMP, _MESSAGE, _AS_IS = range(4)
_EPOCH_STAMP = "1970-01-01T00:00:00Z"
# The packet's repeated parts, checked item by item (each item lies at depth 2).
_PART_MESSAGES = {"phenotypicFeatures": PhenotypicFeature, "diseases": Disease, "interpretations": Interpretation}


@dataclass(frozen=True)
class _Field:
    json_name: str
    kind: int  # _STRING, _TIMESTAMP, _MESSAGE or _AS_IS
    repeated: bool
    message: Any = None  # a message field's descriptor


@cache
def _fields(descriptor: Any) -> dict[str, _Field]:
    """A message type's fields by both spellings of their key (json_format accepts the JSON name and the proto
    name), with what the skeleton does with their value."""
    out: dict[str, _Field] = {}
    for f in descriptor.fields:
        repeated = bool(f.is_repeated)
        kind, message = _AS_IS, None
        if f.type == f.TYPE_STRING:
            kind = _STRING
        elif f.message_type is not None and not f.message_type.GetOptions().map_entry:
            if f.message_type.full_name == "google.protobuf.Timestamp":
                kind = _AS_IS if repeated else _TIMESTAMP
            elif not f.message_type.file.name.startswith("google/protobuf/"):  # other well-known types: as they are
                kind, message = _MESSAGE, f.message_type
        out[f.name] = out[f.json_name] = _Field(f.json_name, kind, repeated, message)
    return out


@dataclass(frozen=True)
class _Layout:
    """What the skeleton does with each key of a message's JSON object, for one sequence of keys."""

    actions: tuple[tuple[str, int, bool, Any], ...]  # per key: its JSON name, kind, repeated, message descriptor
    names: tuple[str, ...]  # the keys in their JSON spelling
    strings: bool  # every key a singular string field's
    respelt: tuple[tuple[str, str], ...]  # (key, JSON name) of keys in their proto spelling
    empty: dict[str, str]  # the skeleton when ``strings`` and every value is clean (shared: never changed)


@lru_cache(maxsize=4096)
def _layout(descriptor: Any, keys: tuple[str, ...]) -> _Layout:
    fields = _fields(descriptor)
    actions = []
    for key in keys:
        f = fields.get(key)
        # An unknown key (or an extension) stays as it is: json_format refuses it.
        actions.append((key, _AS_IS, False, None) if f is None else (f.json_name, f.kind, f.repeated, f.message))
    names = tuple(a[0] for a in actions)
    if len(set(names)) < len(names):
        raise _Unusual  # one field under both spellings: Parse merges them in their order
    strings = all(kind == _STRING and not repeated for _, kind, repeated, _ in actions)
    respelt = tuple((key, name) for key, name in zip(keys, names, strict=True) if key != name)
    return _Layout(tuple(actions), names, strings, respelt, dict.fromkeys(names, ""))


def _respell(node: dict[str, Any], respelt: tuple[tuple[str, str], ...]) -> None:
    for key, name in respelt:
        node[name] = node.pop(key)


def _clean(text: Any) -> bool:
    """A string ``json_format`` takes whatever it says (no unpaired surrogate)."""
    return type(text) is str and (text.isascii() or _SURROGATE.search(text) is None)


class Checker:
    """Checks records as ``json_format.Parse`` would, through skeletons remembered by their JSON text (module doc).

    :meth:`read` returns a record's :class:`Read` or raises :class:`Refusal`.
    """

    def __init__(self) -> None:
        self.memos: dict[Any, _Memo] = {Phenopacket: _Memo(), **{m: _Memo() for m in _PART_MESSAGES.values()}}
        self.stamps = _Memo()  # timestamp text -> its UTC date
        self.skeletons = _Memo()  # whole packets' skeletons found valid
        self.fast = self.slow = 0  # records read each way

    def read(self, data: bytes) -> Read:
        decoded: Any = None
        try:
            decoded = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
            if type(decoded) is not dict:
                raise _Unusual
            self._check(self._skeleton(decoded, Phenopacket.DESCRIPTOR))
        except Warning:
            raise  # a warning made an error (tests): never taken for a record's fault
        except Exception:  # noqa: BLE001 - anything the skeleton did not settle: json_format.Parse has the last word
            self.slow += 1
            return self._whole(data, decoded)
        self.fast += 1
        return extract(decoded, self.date)

    def date(self, stamp: str) -> str:
        """A timestamp's UTC date (``YYYY-MM-DD``), as the Timestamp message ``json_format`` makes of it holds."""
        day = self.stamps.get(stamp)
        if day is None:
            seconds = json_format.ParseDict(stamp, Timestamp()).seconds  # raises on a bad one
            day = self.stamps.remember(stamp, _day(seconds))
        return day

    def _skeleton(self, node: dict[str, Any], descriptor: Any) -> dict[str, Any]:
        """``node`` with every clean string field's value emptied and every timestamp's made the same (each checked
        here), keys in their JSON spelling; ``node``'s own keys are respelt likewise, for :func:`extract`."""
        layout = _layout(descriptor, tuple(node))
        if layout.strings:  # every key a string field's (an ontology class, an age...): in one go when all clean
            try:
                clean = "".join(node.values()).isascii()
            except TypeError:  # a value that is not a string
                clean = False
            if clean:
                if layout.respelt:
                    _respell(node, layout.respelt)
                return layout.empty
        out: dict[str, Any] = {}
        for (name, kind, repeated, message), value in zip(layout.actions, node.values()):  # noqa: B905 - as long
            if value is None or kind == _AS_IS:
                out[name] = value
            elif kind == _STRING:
                if repeated:
                    out[name] = [("" if _clean(x) else x) for x in value] if type(value) is list else value
                else:
                    out[name] = "" if _clean(value) else value
            elif kind == _TIMESTAMP:
                if type(value) is str:
                    if value not in self.stamps:
                        self.date(value)  # checks it
                    value = _EPOCH_STAMP
                out[name] = value
            elif repeated:
                if type(value) is not list or any(type(x) is not dict for x in value):
                    raise _Unusual
                out[name] = [self._skeleton(x, message) for x in value]
            else:
                if type(value) is not dict:
                    raise _Unusual
                out[name] = self._skeleton(value, message)
        if layout.respelt:
            _respell(node, layout.respelt)
        return out

    def _check(self, skeleton: dict[str, Any]) -> None:
        """``json_format.ParseDict`` of the packet's skeleton, or rather of its top level (repeated parts emptied)
        and of each part's skeleton, each remembered by its JSON text; and the whole skeleton's text remembered."""
        whole = _ENCODE(skeleton)
        if whole in self.skeletons:
            return
        top = dict(skeleton)
        for key in _PART_MESSAGES:
            if type(top.get(key)) is list:
                top[key] = []
        self._valid(top, Phenopacket, 1)
        for key, message in _PART_MESSAGES.items():
            for item in skeleton.get(key) or ():
                self._valid(item, message, 2)
        self.skeletons.remember(whole, True)

    def _valid(self, skeleton: Any, message: Any, depth: int) -> None:
        memo = self.memos[message]
        key = _ENCODE(skeleton)
        if key not in memo:
            json_format.ParseDict(skeleton, message(), max_recursion_depth=101 - depth)  # raises if invalid
            memo.remember(key, True)

    def _whole(self, data: bytes, decoded: Any) -> Read:
        try:
            packet = json_format.Parse(data, Phenopacket())
        except UnicodeDecodeError:
            raise Refusal("not UTF-8 text") from None
        except json_format.ParseError as exc:
            raise Refusal(parse_reason(exc), decoded) from None
        except Warning:
            raise
        except Exception as exc:  # noqa: BLE001 - Parse lets some errors through unwrapped
            raise Refusal(f"not a valid phenopacket ({type(exc).__name__})", decoded) from None
        return extract(json_format.MessageToDict(packet), self.date)


_AT_PATH = re.compile(r'\bat "?(Phenopacket(?:\.[A-Za-z_]\w*(?:\[[^\]\s]*\])*)*)')
_CHAIN = re.compile(r"Failed to parse (\w+) field: ")
_UNKNOWN = re.compile(r'has no field named "([A-Za-z_]\w{0,63})" at')
_KINDS = (
    ("has no field named", "unknown field"),
    ("Invalid enum value", "not a value of its enum"),
    ("Enum value must be", "not a value of its enum"),
    ("Couldn't parse integer", "not an integer"),
    ("non-integer", "not an integer"),
    ("for integer field", "not an integer"),
    ("parse float", "not a number"),
    ("Float value", "not a number"),
    ("parse NaN", "not a number"),
    ("true or false", "not true or false"),
    ("must be in []", "not a list"),
    ("must be in a dict", "not an object"),
    ("null is not allowed", "null in a list"),
    ("Unpaired surrogate", "an unpaired surrogate in a string"),
    ("Message too deep", "nested too deeply"),
    ("oneof fields", "two members of a oneof"),
    ("should not have multiple", "a field given twice"),
    ("has unexpected type", "a value of the wrong type"),
    ("not iterable", "a value of the wrong type"),
    ("expected string", "a value of the wrong type"),
)


def parse_reason(exc: json_format.ParseError) -> str:
    """``json_format``'s error in one line: what is wrong and where (the field path), never the value."""
    message = str(exc)
    cause = exc.__cause__
    if message.startswith("Failed to load JSON"):
        if isinstance(cause, json.JSONDecodeError):
            return f"not valid JSON ({cause.msg} at line {cause.lineno}, column {cause.colno})"
        if "duplicate key" in message:
            return "not valid JSON for a phenopacket (a key given twice in one object)"
        return "not valid JSON"
    kind = next((label for needle, label in _KINDS if needle in message), "an invalid value")
    paths = _AT_PATH.findall(message)
    if paths:
        path = re.sub(r"\[(?!\d+\])[^\]]*\]", "[key]", paths[-1])  # a map's key may be a value: never shown
        path = path.removeprefix("Phenopacket").lstrip(".")
    else:
        chain, rest = [], message
        while match := _CHAIN.match(rest):
            chain.append(match.group(1))
            rest = rest[match.end() :]
        path = ".".join(chain)
    unknown = _UNKNOWN.search(message) if kind == "unknown field" else None
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
    return f"not a valid phenopacket: {kind} at {path or 'the top level'}"


# --- reading a valid record's values ----------------------------------------------------------------------------
# From its JSON (keys in their JSON spelling): the decoded record the checker passed, or MessageToDict of the
# message json_format.Parse made. Values are read as json_format reads them: null is the field's default, an enum
# may be a name or a number. Being valid (and walked by the skeleton), a message is an object or null, a list a
# list or null, a string a string or null: ``value or _NONE`` reads an absent message as an empty one.

_NONE: dict[str, Any] = {}  # an absent message (shared: never changed)

_EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal()
_NO_TIME = ("", "", "", 0)


def _day(seconds: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + seconds // 86_400).isoformat()


def _text(value: Any) -> str:
    return value if type(value) is str else ""


def _obj(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else {}


def _items(value: Any) -> list[Any]:
    return value if type(value) is list else []


def _enum(value: Any, enum: Any) -> int:
    """The number json_format makes of an enum's JSON value (a name, a number, a number as text; null: 0)."""
    if value is None:
        return 0
    named = enum.values_by_name.get(value)
    return int(named.number if named is not None else int(value))


def _named(value: Any, enum: Any, labels: dict[str, str], column: str) -> tuple[str, str]:
    """An enum's column value, or the number as it was with an issue (an open enum may hold any number)."""
    number = _enum(value, enum)
    known = enum.values_by_number.get(number)
    if known is None:
        return str(number), f"{column}:unmapped_value"
    return labels[known.name], ""


def time_values(element: dict[str, Any] | None, date_of: Callable[[str], str]) -> tuple[str, str, str, int]:
    """A TimeElement as (date, age, onset class, 1 when given in a form no column holds)."""
    if not element:
        return _NO_TIME
    for key, value in element.items():
        if value is None:
            continue  # a oneof member set to null is cleared
        if key == "timestamp":
            return date_of(value), "", "", 0
        if key == "age":
            return "", value.get("iso8601duration") or "", "", 0
        if key == "ontologyClass":
            return "", "", value.get("id") or "", 0
        return "", "", "", 1
    return _NO_TIME


@lru_cache(maxsize=65_536)
def code_columns(term: str) -> tuple[tuple[str, ...], str]:
    """A disease term's code in its system's column (as given if malformed), or the issue when no system is known."""
    codes = [""] * len(CODE_COLUMNS)
    prefix, sep, _ = term.partition(":")
    system = PREFIXES.get(prefix.strip().casefold()) if sep else None
    if system is None:
        return tuple(codes), "diagnoses:unknown_code_system"
    code = read_code(term)
    if isinstance(code, DiseaseCode):
        codes[_CODE_INDEX[system]] = code.curie if system in _CURIE_SYSTEMS else code.code
    else:
        codes[_CODE_INDEX[system]] = term  # validation says what is wrong with it
    return tuple(codes), ""


def _call(genomic: dict[str, Any]) -> tuple[str, str]:
    """A genomic interpretation's gene symbol and HGVS expression."""
    gene = genomic.get("gene")
    if gene is not None:
        return _text(_obj(gene).get("symbol")), ""
    descriptor = _obj(_obj(genomic.get("variantInterpretation")).get("variationDescriptor"))
    expressions: dict[str, str] = {}
    for expression in _items(descriptor.get("expressions")):
        expressions.setdefault(_text(expression.get("syntax")), _text(expression.get("value")))  # the first
    hgvs = next((expressions[s] for s in HGVS_PREFERENCE if s in expressions), "")
    if not hgvs:
        hgvs = next((v for s, v in expressions.items() if s.startswith("hgvs")), "")
    return _text(_obj(descriptor.get("geneContext")).get("symbol")), hgvs


def _interpretation(item: dict[str, Any]) -> Interpreted:
    diagnosis = _obj(item.get("diagnosis"))
    calls = [
        _call(g)
        for g in _items(diagnosis.get("genomicInterpretations"))
        if _enum(g.get("interpretationStatus"), _INTERPRETATION_STATUS) == _CAUSATIVE
    ]
    # The first causative call with an HGVS expression (a structural variant may have none), else the first.
    gene, variant = next((c for c in calls if c[1]), calls[0]) if calls else ("", "")
    status = _PROGRESS_STATUS.get(_enum(item.get("progressStatus"), _PROGRESS_ENUM), "")
    return _text(_obj(diagnosis.get("disease")).get("id")), status, gene, variant, max(len(calls) - 1, 0)


def extract(packet: dict[str, Any], date_of: Callable[[str], str]) -> Read:
    """A valid record's values, from its JSON (see above)."""
    features = []
    for item in packet.get("phenotypicFeatures") or ():
        day, age, onset_class, unread = time_values(item.get("onset"), date_of)
        hpo = (item.get("type") or _NONE).get("id") or ""
        features.append((hpo, "yes" if item.get("excluded") else "no", day, age, onset_class, unread))
    diseases = []
    for item in packet.get("diseases") or ():
        term = (item.get("term") or _NONE).get("id") or ""
        codes, issue = code_columns(term)
        day, age, onset_class, unread = time_values(item.get("onset"), date_of)
        diseases.append((term, codes, issue, "yes" if item.get("excluded") else "no", day, age, onset_class, unread))
    interpretations = [_interpretation(item) for item in packet.get("interpretations") or ()]
    resources = (packet.get("metaData") or _NONE).get("resources") or ()
    versions = tuple((r.get("namespacePrefix") or "", r.get("version") or "") for r in resources)
    subject = _subject(packet.get("subject") or _NONE, date_of)
    return Read(packet, subject, features, diseases, interpretations, versions)


def _subject(subject: dict[str, Any], date_of: Callable[[str], str]) -> Subject:
    sex, sex_issue = _named(subject.get("sex"), _SEX_ENUM, SEXES, "sex")
    vital = _obj(subject.get("vitalStatus"))
    status, status_issue = _named(vital.get("status"), _VITAL_ENUM, VITAL, "vital_status")
    death_date, death_age, _, unread = time_values(vital.get("timeOfDeath"), date_of)
    last = _obj(subject.get("timeAtLastEncounter")).get("age")
    last_age = _text(_obj(last).get("iso8601duration"))
    birth = subject.get("dateOfBirth")
    issue = ";".join(i for i in (sex_issue, status_issue) if i)
    return date_of(birth) if birth is not None else "", sex, status, death_date, last_age, death_age, issue, unread


# --- rows ---------------------------------------------------------------------------------------------------


def identifier(packet: dict[str, Any], identity_field: str) -> str:
    """The person's identifier where ``identity_field`` says (empty when there is none)."""
    if identity_field == "id":
        return _text(packet.get("id"))
    subject = _obj(packet.get("subject"))
    if identity_field == "subject.id":
        return _text(subject.get("id"))
    prefix = identity_field.partition(":")[2].casefold()
    for alternate in _items(subject.get("alternateIds")):
        name, sep, local = _text(alternate).partition(":")
        if sep and name.casefold() == prefix and local.strip():
            return local
    return ""


@dataclass
class _Part:
    """What one share of the source gave: rows per table, refusals, versions, counts, file hashes."""

    rows: dict[str, list[tuple[str, ...]]] = field(default_factory=lambda: {t: [] for t in CARRIED})
    frames: dict[str, pl.DataFrame] = field(default_factory=dict)  # the rows, once read (cheaper to send back)
    refused: list[Refused] = field(default_factory=list)
    versions: dict[str, set[str]] = field(default_factory=dict)
    facts: Counter[str] = field(default_factory=Counter)
    records: int = 0
    converted: int = 0
    hashes: dict[str, str] = field(default_factory=dict)

    def add(self, read: Read, locator: str, settings: _Settings) -> None:
        packet = read.packet
        nid = identifier(packet, settings.identity_field)
        if not nid.strip():
            observed = sum(f[1] == "no" for f in read.features)
            raise Refusal(f"no identifier at {settings.identity_field}", (observed, len(read.features) - observed))
        if settings.identity_kind == "registry":
            nid = REGISTRY_PREFIX + nid.strip()  # trimmed first: " P1" and "P1" are one person
        birth, sex, status, death_date, last_age, death_age, issue, unread = read.subject
        self.rows["patients"].append((nid, birth, sex, status, death_date, last_age, death_age, locator, issue))
        self.facts["times_not_read"] += unread + sum(f[5] for f in read.features) + sum(d[7] for d in read.diseases)
        self.rows["phenotypes"].extend((nid, *f[:5], locator, "") for f in read.features)
        self._diagnoses(nid, locator, read)
        for prefix, version in read.versions:
            if prefix and version:
                self.versions.setdefault(prefix, set()).add(version)
        self.converted += 1

    def _diagnoses(self, nid: str, locator: str, read: Read) -> None:
        rows = self.rows["diagnoses"]
        waiting: dict[str, list[Interpreted]] = {}
        for interpreted in read.interpretations:
            waiting.setdefault(interpreted[0], []).append(interpreted)
            self.facts["variants_not_kept"] += interpreted[4]
        for term, codes, issue, excluded, day, age, onset_class, _ in read.diseases:
            queue = waiting.get(term)
            _, status, gene, variant, _ = queue.pop(0) if queue else ("", "", "", "", 0)
            rows.append((nid, *codes, status, excluded, day, age, onset_class, gene, variant, locator, issue))
        for queue in waiting.values():
            for term, status, gene, variant, _ in queue:  # an interpretation of a disease not listed
                if term or gene:
                    codes, issue = code_columns(term) if term else (("",) * len(CODE_COLUMNS), "")
                    rows.append((nid, *codes, status, "no", "", "", "", gene, variant, locator, issue))


_CHECKER: Checker | None = None  # one per process: its memo serves every share the process reads


def _read_share(task: _Task) -> _Part:
    """Read one share of the source (in a worker process, or in this one)."""
    global _CHECKER  # the process's memo outlives one share
    if _CHECKER is None:
        _CHECKER = Checker()
    checker, settings, part = _CHECKER, task.settings, _Part()
    assert settings is not None
    for locator, data in _records(task):
        part.records += 1
        try:
            if isinstance(data, str):
                raise Refusal(data)
            if task.kind == "files":
                part.hashes[locator] = hashlib.sha256(data).hexdigest()
            part.add(checker.read(data), locator, settings)
        except Refusal as refusal:
            observed, excluded = _counts(refusal.decoded)
            part.refused.append(Refused(locator, refusal.reason, observed, excluded))
    if task.kind == "files" and len(part.hashes) < part.records:  # a file too large to read: hashed in blocks
        for name in task.names:
            if name not in part.hashes:
                part.hashes[name] = file_sha256(Path(task.root) / name)
    for name, rows in part.rows.items():
        columns = (*CARRIED[name], SOURCE_RECORD, SOURCE_ISSUE)
        part.frames[name] = pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String), orient="row")
    part.rows = {}
    return part


def _counts(decoded: Any) -> tuple[int, int]:
    """Observed and excluded phenotypic features of a refused record, as far as its JSON says."""
    if isinstance(decoded, tuple):
        return decoded
    if not isinstance(decoded, dict):
        return 0, 0
    features = decoded.get("phenotypicFeatures", decoded.get("phenotypic_features"))
    if not isinstance(features, list):
        return 0, 0
    excluded = sum(1 for f in features if isinstance(f, dict) and f.get("excluded") is True)
    return sum(1 for f in features if isinstance(f, dict)) - excluded, excluded


# --- the reader -----------------------------------------------------------------------------------------------


def _settings(mapping: Mapping) -> _Settings:
    where = mapping.path or mapping.name
    field_ = mapping.identity_field
    if field_ not in ("id", "subject.id") and not (
        field_.startswith("subject.alternateIds:") and field_.partition(":")[2].strip()
    ):
        raise BadInput(
            f"{where}: identity.field {quoted(field_)}: a phenopacket's identifier is at id, subject.id "
            "or subject.alternateIds:PREFIX"
        )
    if mapping.identity_kind not in ("national", "registry"):
        raise BadInput(f"{where}: identity.kind {quoted(mapping.identity_kind)}: national or registry")
    for name, table in mapping.tables.items():
        columns = BY_NAME[name].columns if name in BY_NAME else ()
        unknown = [c for c in table.constants if c not in columns or c in ("national_id", SOURCE)]
        if unknown:
            raise BadInput(f"{where}: [tables.{name}.constants] {quoted(unknown[0])}: not a column of {name}")
    return _Settings(mapping.name, field_, mapping.identity_kind)


def read_phenopackets(source: Path, mapping: Mapping, scratch: Path, *, workers: int | None = None) -> Converted:
    """Read the phenopackets at ``source`` into the registry's raw tables, as the module docstring says.

    ``workers``: how many processes (default: one per core for a large
    source, else this one). Raises :class:`BadInput` for a source that is
    not one of phenopackets and :class:`MissingData` for none at all; every
    record that cannot be read is a :class:`Refused` in the result.
    ``scratch`` is not used.
    """
    global _CHECKER
    settings = _settings(mapping)
    tasks, processes, hashes = _plan(source, settings, workers)
    parts: list[_Part] = []
    if processes > 1:
        try:
            with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
                results = pool.map(_read_share, tasks)
                if source.suffix.lower() == ".zip":
                    hashes[source.name] = file_sha256(source)  # while the workers read
                parts = list(results)
        except BrokenProcessPool:  # e.g. a script without `if __name__ == "__main__":` cannot spawn: read here
            parts = []
    if not parts:
        parts = [_read_share(task) for task in tasks]
        _CHECKER = None  # read in this process: the memo goes with the read
    if source.suffix.lower() == ".zip" and source.name not in hashes:
        hashes[source.name] = file_sha256(source)
    return _converted(mapping, parts, hashes)


def _converted(mapping: Mapping, parts: list[_Part], hashes: dict[str, str]) -> Converted:
    versions: dict[str, set[str]] = {}
    facts: Counter[str] = Counter()
    for part in parts:
        hashes.update(part.hashes)
        facts.update(part.facts)
        for prefix, found in part.versions.items():
            versions.setdefault(prefix, set()).update(found)
    tables = {t.name: _frame(t.name, [p.frames[t.name] for p in parts if t.name in p.frames], mapping) for t in TABLES}
    refused = [r for p in parts for r in p.refused]
    records, converted = sum(p.records for p in parts), sum(p.converted for p in parts)
    phenotypes = tables["phenotypes"]["excluded"]
    facts_out: dict[str, Any] = {
        "observed_phenotypes_in": int((phenotypes == "no").sum()) + sum(r.observed_phenotypes for r in refused),
        "excluded_phenotypes_in": int((phenotypes == "yes").sum()) + sum(r.excluded_phenotypes for r in refused),
        "times_not_read": facts["times_not_read"],
        "variants_not_kept": facts["variants_not_kept"],
    }
    return Converted(
        name=mapping.name,
        kind="phenopackets",
        tables=tables,
        records_in=records,
        converted=converted,
        refused=refused,
        versions={prefix: VERSION_JOIN.join(sorted(v)) for prefix, v in sorted(versions.items())},
        files=dict(sorted(hashes.items())),
        facts=facts_out,
    )


def _frame(name: str, frames: list[pl.DataFrame], mapping: Mapping) -> pl.DataFrame:
    """A table's rows as text columns: what the packets carry, the mapping's constants where still empty."""
    table = BY_NAME[name]
    carried = (*CARRIED.get(name, ()), SOURCE_RECORD, SOURCE_ISSUE)
    frame = pl.concat(frames, rechunk=False) if frames else pl.DataFrame(schema=dict.fromkeys(carried, pl.String))
    constants = mapping.tables[name].constants if name in mapping.tables else {}
    frame = frame.with_columns(
        *(pl.lit("").alias(c) for c in table.columns if c not in frame.columns and c != SOURCE),
        pl.lit(mapping.name).alias(SOURCE),
    )
    fill = dict(constants)
    if name == "diagnoses":
        fill.setdefault("status", DEFAULT_STATUS)
    frame = frame.with_columns(
        pl.when(pl.col(c) == "").then(pl.lit(v)).otherwise(pl.col(c)).alias(c) for c, v in fill.items()
    )
    return frame.select(*table.columns, SOURCE_RECORD, SOURCE_ISSUE)


# --- a draft mapping ------------------------------------------------------------------------------------------

NATIONAL_SHARE = 0.9  # of the values of an id field that must be valid national IDs for it to be taken as one
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,31}")  # an alternate id's prefix, as a CURIE's (printed only so)


@dataclass
class _Survey:
    """What a draft needs to know of a source: counts only (nothing of a value is kept but alternate id prefixes)."""

    records: int = 0
    objects: int = 0  # records that are JSON objects
    subject_ids: Counter[str] = field(default_factory=Counter)
    national_subject_ids: int = 0
    packet_ids: Counter[str] = field(default_factory=Counter)
    births: int = 0
    no_vital_status: int = 0  # none
    unknown_vital_status: int = 0  # UNKNOWN_STATUS
    no_sex: int = 0  # none, or UNKNOWN_SEX
    dead_untimed: int = 0  # DECEASED with no time of death
    ageless: int = 0  # neither a date of birth nor an age at the last encounter
    prefixes: Counter[str] = field(default_factory=Counter)  # records with an alternate id of the prefix
    national_prefixes: Counter[str] = field(default_factory=Counter)  # ... whose local part is a national ID

    def add(self, packet: dict[str, Any]) -> None:
        from research_kit.model.national_id import is_valid

        self.objects += 1
        subject = _obj(packet.get("subject"))
        subject_id, packet_id = _text(subject.get("id")), _text(packet.get("id"))
        if subject_id.strip():
            self.subject_ids[subject_id] += 1
            self.national_subject_ids += is_valid(subject_id.strip())
        if packet_id.strip():
            self.packet_ids[packet_id] += 1
        born = subject.get("dateOfBirth", subject.get("date_of_birth")) is not None
        last = _obj(subject.get("timeAtLastEncounter", subject.get("time_at_last_encounter")))
        vital = _obj(subject.get("vitalStatus", subject.get("vital_status")))
        self.births += born
        self.ageless += not born and last.get("age") is None
        self.no_vital_status += vital.get("status") is None
        self.unknown_vital_status += vital.get("status") in ("UNKNOWN_STATUS", 0)
        self.dead_untimed += vital.get("status") in ("DECEASED", 2) and vital.get("timeOfDeath") is None
        self.no_sex += subject.get("sex") in (None, "UNKNOWN_SEX", 0)
        seen: set[str] = set()
        for alternate in _items(subject.get("alternateIds", subject.get("alternate_ids"))):
            prefix, sep, local = _text(alternate).partition(":")
            if sep and _PREFIX.fullmatch(prefix) and prefix not in seen:
                seen.add(prefix)
                self.prefixes[prefix] += 1
                self.national_prefixes[prefix] += is_valid(local.strip())


def _survey(source: Path) -> _Survey:
    tasks, _, _ = _plan(source, _Settings("draft", "subject.id", "registry"), 1)
    survey = _Survey()
    for task in tasks:
        for _, data in _records(task):
            survey.records += 1
            try:
                packet = json.loads(data or b"")
            except (ValueError, RecursionError):
                continue
            if type(packet) is dict:
                survey.add(packet)
    return survey


def draft_phenopackets(source: Path) -> str:
    """A draft mapping (TOML) for the phenopackets at ``source``: where the identifier is and of which kind,
    whether dates or ages, and the constants a reader needs, each line with a comment saying why.

    Reads every record's JSON; prints counts and field names only, never a value from the source (an alternate
    id's prefix, a namespace such as ``LU-NIN``, is the one thing named).
    """
    s = _survey(source)
    n = s.objects
    lines = [
        f"# A draft mapping for a source of phenopackets: {s.records} records, {n} of them JSON objects.",
        "# Check every line before using it (research-kit mapping check).",
        "version = 1",
        "",
        "[source]",
        'name = "phenopackets"',
        'kind = "phenopackets"',
        "precedence = 1",
    ]
    if s.births == 0:
        lines += [
            "# No subject has a date of birth: ages (ISO 8601 durations) and HPO onset classes stand in for dates."
        ]
        lines += ['dates = "ages"']
    else:
        lines += [f"# {s.births} of {n} subjects have a date of birth.", 'dates = "dates"']
    lines += ["", "[identity]", *_identity(s)]
    lines += ["", "[tables.patients.constants]"]
    lines += [
        "# TODO: the source does not say where its patients live; ZZ = unknown (set the country).",
        'country = "ZZ"',
        "# A phenopacket carries no consent to the reuse of data: with [pseudonymise].exclude_without_consent",
        "# (the default) every patient is withheld. Uncomment only where the registry holds that consent, or",
        "# the cases are published ones whose reuse the registry's legal basis covers:",
        '# consent_reuse = "yes"',
    ]
    unknown = s.unknown_vital_status
    if s.no_vital_status:
        also = f" (and so would the {unknown} whose status is UNKNOWN_STATUS)" if unknown else ""
        lines += [f"# {s.no_vital_status} of {n} subjects have no vitalStatus: taken as alive{also}."]
        lines += ['vital_status = "alive"']
    elif unknown:
        lines += [f"# Note: {unknown} of {n} have vitalStatus UNKNOWN_STATUS (validation quarantines them)."]
    if s.no_sex:
        lines += [f"# Note: {s.no_sex} of {n} subjects have no sex (none, or UNKNOWN_SEX): read as unknown."]
    if s.dead_untimed:
        lines += [f"# Note: {s.dead_untimed} of {n} are DECEASED with no timeOfDeath: accepted from a source of"]
        lines += ['# ages (dates = "ages"), counted as incomplete in the quality report; quarantined otherwise.']
    if s.ageless:
        lines += [f"# Note: {s.ageless} of {n} have neither a date of birth nor an age at the last encounter:"]
        lines += ['# accepted from a source of ages (dates = "ages"), as incomplete; quarantined otherwise.']
    lines += ["", "[tables.diagnoses.constants]"]
    lines += ["# A disease no interpretation gives a progress status for: confirmed.", 'status = "confirmed"']
    return "\n".join(lines) + "\n"


def _identity(s: _Survey) -> list[str]:
    n = s.objects
    national = [p for p, k in s.prefixes.most_common() if k * 2 >= n and s.national_prefixes[p] >= NATIONAL_SHARE * k]
    if national:
        prefix = national[0]
        why = (
            f"# {s.national_prefixes[prefix]} of {n} subjects have an alternate id {prefix}:... that is a national ID."
        )
        return [why, f'field = "subject.alternateIds:{prefix}"', 'kind = "national"']
    with_id = sum(s.subject_ids.values())
    if with_id and s.national_subject_ids >= NATIONAL_SHARE * with_id:
        why = f"# {s.national_subject_ids} of {n} subject ids are national IDs."
        return [why, 'field = "subject.id"', 'kind = "national"']
    lines = ["# The source carries no national ID (no subject id or alternate id is one): its identifier is a"]
    lines += ["# registry identifier (registry:<id>), which the policy must accept."]
    repeated = with_id > len(s.subject_ids)
    packets_unique = sum(s.packet_ids.values()) == n and len(s.packet_ids) == n
    if (repeated or with_id < n) and packets_unique:
        what = "repeat across records" if repeated else f"are missing in {n - with_id} records"
        lines += [f"# Subject ids {what} ({len(s.subject_ids)} distinct in {n} records): each packet's id is used."]
        lines += ['field = "id"']
    else:
        if with_id < n:
            lines += [f"# {n - with_id} of {n} records have no subject id: they will be refused."]
        lines += ['field = "subject.id"']
    return [*lines, 'kind = "registry"']
