"""The workspace policy: every threshold, rounding base, generalisation rule and budget.

The policy lives in ``research-kit.toml`` at the root of the workspace. ``init``
writes it with every default spelled out and commented; each later step reads
its numbers from :func:`load_policy`, never from literals in code. A policy
file is validated as a whole: an unknown section or key, a value of the wrong
type or out of range is a :class:`~research_kit.core.errors.BadInput` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

from research_kit.core.errors import BadInput, MissingData

POLICY_FILE = "research-kit.toml"


def _opt(default: Any, doc: str, **rules: Any) -> Any:
    """A policy field: its default, the comment written beside it, and its rules."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"doc": doc, **rules})
    return field(default=default, metadata={"doc": doc, **rules})


class _Section:
    """Validates its fields on construction (type, range, allowed values)."""

    name: ClassVar[str]
    title: ClassVar[str]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            _check_value(self.name, f, value)
            if isinstance(f.default, float) and isinstance(value, int):
                object.__setattr__(self, f.name, float(value))


def _check_value(section: str, f: dataclasses.Field[Any], value: Any) -> None:
    where = f"[{section}].{f.name}"
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        kind = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        kind = "a whole number"
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        kind = "a string"
    else:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        kind = "a list of strings"
    if not ok:
        raise BadInput(f"{POLICY_FILE}: {where} must be {kind}, got {value!r}")
    rules = f.metadata
    if "min" in rules and value < rules["min"]:
        raise BadInput(f"{POLICY_FILE}: {where} must be >= {rules['min']}, got {value!r}")
    if "max" in rules and value > rules["max"]:
        raise BadInput(f"{POLICY_FILE}: {where} must be <= {rules['max']}, got {value!r}")
    if "choices" in rules:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v not in rules["choices"]:
                allowed = ", ".join(repr(c) for c in rules["choices"])
                raise BadInput(f"{POLICY_FILE}: {where} must be one of {allowed}, got {v!r}")


@dataclass(frozen=True)
class IngestPolicy(_Section):
    name: ClassVar[str] = "ingest"
    title: ClassVar[str] = "Ingest: validating raw exports"
    max_quarantine_rate: float = _opt(
        0.05,
        "Abort the whole ingest (register nothing) when more than this share of a table's rows is quarantined.",
        min=0.0,
        max=1.0,
    )
    earliest_date: str = _opt(
        "1900-01-01", "A date before this (YYYY-MM-DD) is out of range: a typing error, not a patient's history."
    )
    identifier_kinds: list[str] = _opt(
        ["national", "registry"],
        "Identifiers a patient may have: 'national' (a national ID) and 'registry' (a source's own identifier, "
        "for sources without national IDs such as public case collections). A patient with another kind is "
        "quarantined.",
        choices=["national", "registry"],
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            date.fromisoformat(self.earliest_date)
        except ValueError:
            raise BadInput(
                f"{POLICY_FILE}: [ingest].earliest_date must be a date as YYYY-MM-DD, got {self.earliest_date!r}"
            ) from None


@dataclass(frozen=True)
class PseudonymisePolicy(_Section):
    name: ClassVar[str] = "pseudonymise"
    title: ClassVar[str] = "Pseudonymisation: what is kept, and how coarsely"
    birth_date: str = _opt(
        "year-month", "Generalise date of birth to 'year' or 'year-month'.", choices=["year", "year-month"]
    )
    event_dates: str = _opt(
        "month",
        "Event dates (onset, diagnosis, visits, death): 'month' truncates them, 'shift' moves "
        "each patient's dates by one keyed offset so that intervals stay exact.",
        choices=["month", "shift"],
    )
    max_shift_days: int = _opt(180, "Largest date shift, in days, when event_dates = 'shift'.", min=1, max=3650)
    residence: str = _opt(
        "canton", "Postcode and commune are generalised to this level.", choices=["canton", "country"]
    )
    exclude_without_consent: bool = _opt(
        True, "Leave out of extracts the patients who did not consent to reuse of their data."
    )
    keep_free_text: list[str] = _opt([], "Free-text fields to keep (dropped by default); list them as 'table.column'.")


@dataclass(frozen=True)
class RiskPolicy(_Section):
    name: ClassVar[str] = "risk"
    title: ClassVar[str] = "Re-identification risk of an extract"
    quasi_identifiers: list[str] = _opt(
        ["birth_year", "sex", "canton"],
        "Columns an attacker could know about a patient from outside the registry.",
    )
    quasi_identifiers_without_dates: list[str] = _opt(
        ["age_band_last_record", "sex", "country", "disease"],
        "The same for an extract whose sources have no dates (ages only, e.g. published case collections): "
        "age band at the last record, sex, country, and the (public) disease of a published case.",
    )
    k_anonymity: int = _opt(5, "Smallest equivalence class size considered safe (k).", min=1)
    risk_threshold: float = _opt(
        0.2, "A record whose prosecutor risk (1/class size) exceeds this is at risk.", min=0.0, max=1.0
    )
    max_suppression: float = _opt(
        0.05, "With --enforce-k, the largest share of records that may be suppressed.", min=0.0, max=1.0
    )


@dataclass(frozen=True)
class DpPolicy(_Section):
    name: ClassVar[str] = "dp"
    title: ClassVar[str] = "Differential privacy: budgets (zero-concentrated DP, rho)"
    default_study_rho: float = _opt(1.0, "Budget a study is granted when the committee does not name one.", min=0.0)
    max_study_rho: float = _opt(5.0, "Largest budget the committee may grant one study.", min=0.0)
    max_twin_rho: float = _opt(
        5.0, "Largest DP-twin budget the committee may grant the registry (spent by DP synthetic twins).", min=0.0
    )
    default_query_rho: float = _opt(0.01, "Cost of one query when the caller does not name one.", min=0.0)
    delta: float = _opt(1e-7, "Delta used when budgets are shown as (epsilon, delta).", min=0.0, max=1.0)
    confidence: float = _opt(0.95, "Confidence level of the interval given with every answer.", min=0.5, max=0.999)


@dataclass(frozen=True)
class PermitsPolicy(_Section):
    name: ClassVar[str] = "permits"
    title: ClassVar[str] = "Data permits (EHDS): their periods"
    default_months: int = _opt(
        36, "Period of a permit granted by 'research-kit budget grant' (the shorthand), in months.", min=1, max=120
    )
    notice_days: int = _opt(60, "A permit ending within this many days is listed as ending soon.", min=1, max=365)
    on_end: str = _opt(
        "archive",
        "What 'research-kit permit close' does with the work of a study whose permits have all ended: 'archive' "
        "(moved to archive/permits/, the steward's) or 'delete'. Its unreleased outputs can no longer leave.",
        choices=["archive", "delete"],
    )
    results_due_months: int = _opt(
        18, "A permit's results are due this many months after it ends (EHDS Art. 61); later, they are overdue.",
        min=1, max=120,
    )  # fmt: skip


@dataclass(frozen=True)
class SynthPolicy(_Section):
    name: ClassVar[str] = "synth"
    title: ClassVar[str] = "Synthetic twins: what must hold before one is published"
    rare_category_k: int = _opt(10, "A category held by fewer real patients than this never appears in a twin.", min=1)
    min_quality: float = _opt(
        0.85,
        "Smallest acceptable SDV quality score, against the extract coarsened as the twin is (the raw one is "
        "reported beside it).",
        min=0.0,
        max=1.0,
    )
    min_dcr_baseline_protection: float = _opt(
        0.35,
        "Smallest acceptable SDMetrics DCR baseline protection (held-out real patients score about 0.4).",
        min=0.0,
        max=1.0,
    )
    min_dcr_overfitting_protection: float = _opt(
        0.8, "Smallest acceptable SDMetrics DCR overfitting protection (twin vs held-out patients).", min=0.0, max=1.0
    )
    max_new_row_copies: float = _opt(
        0.0, "Largest share of synthetic rows that copy a real row (new-row synthesis).", min=0.0, max=1.0
    )
    max_singling_out_risk: float = _opt(0.10, "Largest anonymeter singling-out risk.", min=0.0, max=1.0)
    max_linkability_risk: float = _opt(0.10, "Largest anonymeter linkability risk.", min=0.0, max=1.0)
    max_inference_risk: float = _opt(0.20, "Largest anonymeter inference risk.", min=0.0, max=1.0)


@dataclass(frozen=True)
class OutputsPolicy(_Section):
    name: ClassVar[str] = "outputs"
    title: ClassVar[str] = "Outputs: automatic gates before review"
    allowed_types: list[str] = _opt(["csv", "json", "png", "svg", "txt", "html"], "File types that may leave.")
    max_file_mb: float = _opt(10.0, "Largest output file, in MiB.", min=0.0)
    max_table_rows: int = _opt(5000, "Largest number of rows in one output table.", min=1)


@dataclass(frozen=True)
class SdcPolicy(_Section):
    name: ClassVar[str] = "sdc"
    title: ClassVar[str] = "Statistical disclosure control of outputs"
    min_cell_count: int = _opt(10, "Smallest count a released cell may hold.", min=1)
    dominance_n: int = _opt(2, "Dominance (n, k) rule: the n largest contributors ...", min=1)
    dominance_k: float = _opt(90.0, "... may not hold more than k percent of a cell's total.", min=0.0, max=100.0)
    p_percent: float = _opt(
        10.0, "p% rule: no contributor's value may be estimated to within p percent.", min=0.0, max=100.0
    )
    min_residual_df: int = _opt(10, "Smallest residual degrees of freedom of a released model.", min=0)
    survival_min_events: int = _opt(10, "Smallest number of events at each step of a survival table.", min=1)
    flag_zeros: bool = _opt(True, "Flag zero cells for a reviewer (a zero can disclose).")
    rounding_base: int = _opt(5, "Base used when rounding counts on request.", min=1)
    differencing_threshold: int = _opt(10, "Flag two outputs whose comparable counts differ by fewer than this.", min=1)
    protection_width: int = _opt(
        0,
        "Narrowest interval an attacker with a solver may be left with for a suppressed cell, from everything "
        "published (0: min_cell_count).",
        min=0,
    )
    protection_percent: float = _opt(
        0.0,
        "... and at least this percent of the interval's upper end (as tau-Argus's protection levels; 0: none).",
        min=0.0,
        max=100.0,
    )


@dataclass(frozen=True)
class ReviewPolicy(_Section):
    name: ClassVar[str] = "review"
    title: ClassVar[str] = "Committee review"
    approvals_required: int = _opt(2, "Approvals, by committee members other than the author, per output.", min=1)
    max_comment_chars: int = _opt(10_000, "Longest comment on a request, in characters.", min=100)


@dataclass(frozen=True)
class RunnerPolicy(_Section):
    name: ClassVar[str] = "runner"
    title: ClassVar[str] = "Study pipelines: executors"
    workers: int = _opt(0, "Actions run at once by the local executor (0: one per core).", min=0)
    slurm_queue: str = _opt("", "Slurm partition for --executor slurm ('' for the site's default).")
    slurm_account: str = _opt("", "Slurm account charged ('' for none).")
    slurm_cores: int = _opt(2, "Cores booked per Slurm job (one action runs per job at a time).", min=1)
    slurm_memory: str = _opt("8GB", "Memory booked per Slurm job.")
    slurm_walltime: str = _opt("02:00:00", "Wall time of each Slurm job.")
    slurm_jobs: int = _opt(2, "Slurm jobs (Dask workers) started by default.", min=1)
    sandbox: str = _opt(
        "bwrap",
        "How researcher code is confined: 'bwrap' (kernel namespaces: the default), 'container' (the operator states "
        "that the whole platform runs in a container or VM that confines it), 'off' (development on simulated data "
        "only). See docs/security.md.",
        choices=["bwrap", "container", "off"],
    )
    memory_mb: int = _opt(4096, "Memory one action (or the lab) may use, in MiB, all its processes together.", min=64)
    cpu_seconds: int = _opt(3600, "CPU time one action may use, in seconds, all its processes together.", min=1)
    wall_seconds: int = _opt(7200, "Wall-clock time one action may take, in seconds.", min=1)
    work_mb: int = _opt(2048, "Size of an action's work folder (its outputs and scratch files), in MiB.", min=1)
    max_processes: int = _opt(64, "Processes (and threads) one action may have at once.", min=4)
    max_files: int = _opt(100_000, "Files and folders an action's work folder may hold.", min=10)


@dataclass(frozen=True)
class WebPolicy(_Section):
    name: ClassVar[str] = "web"
    title: ClassVar[str] = "Review web app"
    session_idle_minutes: int = _opt(30, "A session unused for this long signs its user out.", min=1)
    session_max_hours: int = _opt(8, "A session ends this long after sign-in, however busy.", min=1)
    min_password_length: int = _opt(12, "Shortest password accepted by 'research-kit users password'.", min=8)
    max_failed_signins: int = _opt(
        5, "Failed sign-ins (for one user name, or from one address) before every further attempt is slowed ...", min=1
    )
    lockout_minutes: int = _opt(
        15, "... within this many minutes; the slowing ends this long after the last failure.", min=1
    )
    max_signin_delay_seconds: float = _opt(
        60.0,
        "The longest an attempt must wait after the last failure (the wait doubles with each): never a lock-out.",
        min=0.0,
    )


@dataclass(frozen=True)
class AuthPolicy(_Section):
    name: ClassVar[str] = "auth"
    title: ClassVar[str] = "Who is acting: signing in on the command line and the web app"
    mode: str = _opt(
        "embedded",
        "'embedded': one machine, the workspace's file owner is its administrator, everyone signs in "
        "('research-kit login'); 'service': people reach the workspace only through 'research-kit serve', "
        "under a service account; 'demo': identities are NOT verified (--as NAME is believed), for the "
        "simulator's data only, and every command says so.",
        choices=["embedded", "service", "demo"],
    )
    second_factor: str = _opt(
        "service",
        "When committee members and stewards also give a one-time code (TOTP, RFC 6238) to sign in: "
        "'service' (in the service mode only), 'always' or 'never'.",
        choices=["service", "always", "never"],
    )
    session_hours: int = _opt(
        12,
        "A command-line sign-in ('research-kit login') lasts this long, then the user signs in again.",
        min=1,
        max=24 * 30,
    )


@dataclass(frozen=True)
class TransparencyPolicy(_Section):
    name: ClassVar[str] = "transparency"
    title: ClassVar[str] = (
        "Transparency: the public register, a person's 'where was my data used?' letter, the HealthDCAT-AP catalogue"
    )
    default_language: str = _opt(
        "fr",
        "Language of a person's letter when 'research-kit transparency person' is not given --lang (the register "
        "is written in every language).",
        choices=["en", "fr", "de"],
    )
    extra_catalogs: str = _opt(
        "",
        "A folder (relative to the workspace, or absolute) holding the catalogs of more languages, as "
        "LANG/LC_MESSAGES/messages.po (e.g. lb, Luxembourgish): each is offered by the register, the letter and the "
        "web app only if it translates every message of this version's messages.pot ('': none).",
    )
    publish_user_names: bool = _opt(
        False, "Name each permit's users (its researchers) in the public register; off, it names the holder only."
    )
    optout_min_count: int = _opt(
        10,
        "The register shows a quarter's opt-out count (and the total) below this as 'fewer than N': a small count "
        "could point to someone.",
        min=1,
    )
    optout_rounding: int = _opt(
        5, "... and rounds the counts it shows to a multiple of this (1: exact).", min=1, max=100
    )
    catalogue_publisher: str = _opt(
        "", "Who publishes the registry's HealthDCAT-AP description ('research-kit catalogue'): the data holder's name."
    )
    catalogue_contact: str = _opt("", "... and its contact: an e-mail address or an https:// page.")
    catalogue_landing_page: str = _opt(
        "",
        "The registry's public page (https://...): the catalogue's resources are named under it, and it is where "
        "the catalogue says access is asked for.",
    )
    catalogue_hdab: str = _opt("", "The health data access body that grants access to the registry's data (EHDS).")
    catalogue_hdab_contact: str = _opt("", "... and its contact: an e-mail address or an https:// page.")
    catalogue_rounding: int = _opt(
        10, "The catalogue rounds the number of individuals to a multiple of this: never the exact count.",
        min=5, max=1000,
    )  # fmt: skip
    catalogue_frequency: str = _opt(
        "",
        "How often the registry is updated, as an EU frequency code; '' derives it from the extracts' dates.",
        choices=["", "DAILY", "WEEKLY", "BIWEEKLY", "MONTHLY", "BIMONTHLY", "QUARTERLY", "ANNUAL_3", "ANNUAL_2",
                 "ANNUAL", "BIENNIAL", "IRREG", "UNKNOWN"],
    )  # fmt: skip


SECTIONS: tuple[type[_Section], ...] = (
    IngestPolicy,
    PseudonymisePolicy,
    RiskPolicy,
    DpPolicy,
    PermitsPolicy,
    SynthPolicy,
    OutputsPolicy,
    SdcPolicy,
    ReviewPolicy,
    RunnerPolicy,
    WebPolicy,
    AuthPolicy,
    TransparencyPolicy,
)


@dataclass(frozen=True)
class Policy:
    """The whole policy, one frozen section per step of the flow."""

    ingest: IngestPolicy = field(default_factory=IngestPolicy)
    pseudonymise: PseudonymisePolicy = field(default_factory=PseudonymisePolicy)
    risk: RiskPolicy = field(default_factory=RiskPolicy)
    dp: DpPolicy = field(default_factory=DpPolicy)
    permits: PermitsPolicy = field(default_factory=PermitsPolicy)
    synth: SynthPolicy = field(default_factory=SynthPolicy)
    outputs: OutputsPolicy = field(default_factory=OutputsPolicy)
    sdc: SdcPolicy = field(default_factory=SdcPolicy)
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    runner: RunnerPolicy = field(default_factory=RunnerPolicy)
    web: WebPolicy = field(default_factory=WebPolicy)
    auth: AuthPolicy = field(default_factory=AuthPolicy)
    transparency: TransparencyPolicy = field(default_factory=TransparencyPolicy)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


def policy_from_dict(data: dict[str, Any]) -> Policy:
    """Build a validated policy; missing keys take their defaults."""
    by_name = {s.name: s for s in SECTIONS}
    sections: dict[str, Any] = {}
    for name, values in data.items():
        if name not in by_name:
            known = ", ".join(sorted(by_name))
            raise BadInput(f"{POLICY_FILE}: unknown section [{name}] (known: {known})")
        if not isinstance(values, dict):
            raise BadInput(f"{POLICY_FILE}: [{name}] must be a table of settings")
        cls = by_name[name]
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in values:
            if key not in fields:
                raise BadInput(f"{POLICY_FILE}: unknown key [{name}].{key}")
        sections[name] = cls(**values)
    return Policy(**sections)


def load_policy(root: Path) -> Policy:
    """Read and validate the workspace's ``research-kit.toml``."""
    path = root / POLICY_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingData(f"{path}: no policy file (run 'research-kit init')") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise BadInput(f"{path}: line {line} is not UTF-8 text (save the file as UTF-8)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: not valid TOML ({exc})") from None
    return policy_from_dict(data)


def render_policy(policy: Policy | None = None) -> str:
    """The policy as commented TOML: every key, its value and what it means."""
    policy = policy or Policy()
    lines = [
        "# research-kit policy for this workspace.",
        "# Every threshold the platform applies is read from here. Edit with care: changes are",
        "# recorded in the audit log by the command that reads them, and a key that is",
        "# missing takes the default shown in the README.",
        "",
    ]
    for cls in SECTIONS:
        section = getattr(policy, cls.name)
        lines += [f"# {cls.title}", f"[{cls.name}]"]
        for f in dataclasses.fields(section):
            lines.append(f"# {f.metadata['doc']}")
            lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # JSON string and list syntax is valid TOML for the plain values used here.
    return json.dumps(value, ensure_ascii=False)
