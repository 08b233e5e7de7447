"""Report specs (configs/reports/*.yaml): what a capacity-planning report measures and judges.

A report spec names host shapes, VM shapes, workloads, flush modes, the
consolidation ratios to measure, an SLO and a period::

    name: capacity
    period: weekly                      # daily | weekly | monthly: one report per period
    hosts:
      - {name: 2s-24c, pcpus: 48}
    vms:
      - {name: ws2016, guest_os: windows-2016, vcpus: [16, 32, 72], topologies: [smt2, flat]}
    workloads: [mmap-munmap]
    flush_modes: [native, hyperv-pv]    # native is the baseline every PV run is paired with
    overcommit: [1, 1.5, 2, 3, 4]       # consolidation ratios (vCPU:pCPU) to measure
    base: {iterations: 20, pages: 1024} # other RunConfig fields, the same for every run
    replicates: 2
    slo: {metric: lat_p99_us, max: 500} # or {metric: throughput_loss, max: 0.10}
    pool: {hosts: 4}                    # N-host pool: also judge the ratio with one host failed
    search: {study: capacity-search}    # optional: an Optuna study in the store's database

A consolidation ratio r on a host of P pCPUs means r*P vCPUs in all: the VM
under test plus ``r*P - vcpus`` always-runnable co-tenant vCPUs
(``background_vcpus``). Errors are ``file:line: field: problem``, like sweep specs.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, Literal, Mapping

from sweep._model import SpecModel, spec_field, validate_section
from sweep._spec import TopologyRule, _Parser, parse_topology_value
from sweep._yaml import MarkedDocument, Path, SpecError, load_marked, read_spec_file
from workers.config import FLUSH_MODES, GUEST_OSES, WORKLOADS, ConfigError, RunConfig
from workers.profiles import load_profile

PERIODS = ("daily", "weekly", "monthly")
#: SLO metrics: all "lower is better", judged with ``max``.
SLO_METRICS = {
    "lat_p99_us": "shootdown p99 latency (us)",
    "lat_p90_us": "shootdown p90 latency (us)",
    "lat_p50_us": "shootdown p50 latency (us)",
    "real_s": "run time (s)",
    "sys_s": "guest system time (s)",
    "throughput_loss": "throughput loss against no overcommit (fraction)",
}
SLO_AGGREGATES = ("worst", "mean")
#: The compared baseline: every PV run is paired with the native run of the same shape.
BASELINE_MODE = "native"
#: Fields the report sets itself; they cannot go in ``base``.
REPORT_FIELDS = ("pcpus", "vcpus", "background_vcpus", "topology", "guest_os", "enlightenments", "flush_mode",
                 "workload", "overcommit")
DEFAULT_POOL_HOSTS = 4
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_NAME_RE = re.compile(_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class HostShape:
    """A host model: its name and how many pCPUs it schedules vCPUs on."""

    name: str
    pcpus: int


@dataclass(frozen=True, slots=True)
class VmShape:
    """A VM model: guest OS, sizes and topologies (``smt2``, ``flat``, ``SxCxT`` or a rule).

    ``threads`` is the workload's thread count; None means one more than vcpus
    (every vCPU busy and one thread waiting, as in the 2018 test).
    """

    name: str
    guest_os: str
    vcpus: tuple[int, ...]
    topologies: tuple[str | TopologyRule, ...]
    enlightenments: bool = True
    threads: int | None = None

    def threads_for(self, vcpus: int) -> int:
        return self.threads if self.threads is not None else vcpus + 1


@dataclass(frozen=True, slots=True)
class Slo:
    """The service level a ratio must meet: ``metric <= max``, over replicates by ``aggregate``."""

    metric: str
    max: float
    aggregate: str = "worst"

    def describe(self) -> str:
        unit = {"lat_p99_us": " us", "lat_p90_us": " us", "lat_p50_us": " us", "real_s": " s", "sys_s": " s"}.get(self.metric, "")
        limit = f"{self.max:.0%}" if self.metric == "throughput_loss" else f"{self.max:g}{unit}"
        return f"{self.metric} <= {limit} ({self.aggregate} replicate)"

    def meets(self, value: float | None) -> bool | None:
        """True/False, or None when the value is unknown."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return value <= self.max


@dataclass(frozen=True, slots=True)
class ReportSpec:
    """A validated report spec. ``text`` is kept so a published report records what it measured."""

    name: str
    description: str
    period: str
    hosts: tuple[HostShape, ...]
    vms: tuple[VmShape, ...]
    workloads: tuple[str, ...]
    flush_modes: tuple[str, ...]
    overcommit: tuple[float, ...]
    base: Mapping[str, Any]
    replicates: int
    slo: Slo
    pool_hosts: int
    study: str | None
    source: str
    text: str

    @property
    def pv_modes(self) -> tuple[str, ...]:
        return tuple(m for m in self.flush_modes if m != BASELINE_MODE)

    @property
    def spec_hash(self) -> str:
        """Content hash of the spec text: the provenance diff says when it changed."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    @property
    def profile(self) -> str:
        return str(self.base.get("profile", "literature"))


def load_report_spec(path: str | FsPath) -> ReportSpec:
    """Read and validate a report spec.

    Raises:
        SpecError: ``file:line: field: problem`` for anything invalid, or when the file cannot be read.
    """
    return parse_report_spec(read_spec_file(path, "report spec"), source=str(path))


def parse_report_spec(text: str, source: str = "<report>") -> ReportSpec:
    """Validate a report spec's YAML text.

    Example:
        >>> spec = parse_report_spec("name: demo\\nhosts: [{name: h, pcpus: 8}]\\n"
        ...     "vms: [{name: w, guest_os: windows-2016, vcpus: [4], topologies: [smt2]}]\\n"
        ...     "overcommit: [1, 2]\\nslo: {metric: lat_p99_us, max: 500}\\n")
        >>> spec.period, spec.flush_modes, spec.slo.describe()
        ('weekly', ('native', 'hyperv-pv'), 'lat_p99_us <= 500 us (worst replicate)')
    """
    return _ReportParser(load_marked(text, source), text).parse()


_MISSING_HINT = {
    "name": "give the report a name, e.g. 'name: capacity'",
    "hosts": "list host shapes, e.g. 'hosts: [{name: 2s-24c, pcpus: 48}]'",
    "vms": "list VM shapes, e.g. 'vms: [{guest_os: windows-2016, vcpus: [16, 72], topologies: [smt2]}]'",
    "overcommit": "list consolidation ratios (vCPU:pCPU) to measure, e.g. 'overcommit: [1, 2, 4]'",
    "slo": "give the SLO, e.g. 'slo: {metric: lat_p99_us, max: 500}'",
}


def _listed(key: str, default: Any = ..., **constraints: Any) -> Any:
    """A required (or defaulted) non-empty list whose errors repeat how to write it."""
    hint = _MISSING_HINT.get(key, "")
    return spec_field(default, hint=hint, min_length=1, problem=f"expected a non-empty list{'; ' + hint if hint else ''}",
                      **constraints)


class HostEntry(SpecModel):
    name: str | None = None
    pcpus: int = spec_field(ge=1)


class VmEntry(SpecModel):
    name: str | None = None
    guest_os: Literal[GUEST_OSES] = "windows-2016"  # type: ignore[valid-type]
    vcpus: Any = spec_field()
    topologies: list[Any] = spec_field(["auto"], min_length=1,
                                       problem="expected a non-empty list, e.g. [smt2, flat, {cores-per-socket: 4}]")
    enlightenments: bool = True
    threads: int | None = spec_field(None, ge=1, what="default: vcpus + 1")


class SloEntry(SpecModel):
    metric: Literal[tuple(SLO_METRICS)] = spec_field()  # type: ignore[valid-type]
    max: float = spec_field(ge=0, allow_inf_nan=False)
    aggregate: Literal[SLO_AGGREGATES] = "worst"  # type: ignore[valid-type]


class PoolEntry(SpecModel):
    hosts: int = spec_field(ge=2, problem="a pool that survives a host failure has >= 2 hosts, got {input!r}")


class SearchEntry(SpecModel):
    study: str = spec_field(pattern=r"\S", problem="expected the name of an Optuna study (flushsweep search --study NAME)")


class ReportDocument(SpecModel):
    """The keys of a report spec, their types and defaults; shapes and ratios are checked by the parser."""

    NOT_A_MAPPING = "a report spec is a mapping with name, hosts, vms, overcommit and slo"
    name: str = spec_field(hint=_MISSING_HINT["name"], pattern=_NAME_PATTERN,
                           problem="{input!r} is not a report name; use letters, digits, '_' and '-' (at most 64)")
    description: str = ""
    period: Literal[PERIODS] = "weekly"  # type: ignore[valid-type]
    hosts: list[HostEntry] = _listed("hosts")
    vms: list[VmEntry] = _listed("vms")
    workloads: list[Literal[WORKLOADS]] = _listed("workloads", ["mmap-munmap"])  # type: ignore[valid-type]
    flush_modes: list[Literal[FLUSH_MODES]] = _listed("flush_modes", [BASELINE_MODE, "hyperv-pv"])  # type: ignore[valid-type]
    overcommit: list[Any] = _listed("overcommit")
    base: dict[str, Any] | None = spec_field(None, problem="expected a mapping of RunConfig fields, e.g. {iterations: 20}")
    replicates: int = spec_field(1, ge=1, what="seeds per shape")
    slo: SloEntry = spec_field(hint=_MISSING_HINT["slo"])
    pool: PoolEntry | None = None
    search: SearchEntry | None = None


#: Keys a report spec may have at the top level.
REPORT_KEYS = tuple(ReportDocument.model_fields)


class _ReportParser:
    def __init__(self, doc: MarkedDocument, text: str) -> None:
        self.doc = doc
        self.text = text
        self.fields = _Parser(doc, text)  # RunConfig values and topologies, with this document's lines

    def err(self, path: Path, problem: str) -> SpecError:
        return self.doc.error(path, problem)

    def parse(self) -> ReportSpec:
        model = validate_section(ReportDocument, self.doc.value, self.doc)
        hosts = self._hosts(model.hosts)
        vms = self._vms(model.vms)
        workloads = self._unique("workloads", model.workloads)
        flush_modes = self._flush_modes(self._unique("flush_modes", model.flush_modes), vms)
        overcommit = self._overcommit(model.overcommit)
        base = self._base(model.base)
        slo = self._slo(model.slo, overcommit)
        return ReportSpec(
            name=model.name, description=model.description, period=model.period, hosts=hosts, vms=vms,
            workloads=workloads, flush_modes=flush_modes, overcommit=overcommit, base=base, replicates=model.replicates,
            slo=slo, pool_hosts=model.pool.hosts if model.pool else DEFAULT_POOL_HOSTS,
            study=model.search.study if model.search else None, source=self.doc.source, text=self.text,
        )

    # --- sections ---------------------------------------------------------------
    def _hosts(self, entries: list[HostEntry]) -> tuple[HostShape, ...]:
        hosts: list[HostShape] = []
        for i, item in enumerate(entries):
            path: Path = ("hosts", i)
            name = self._label(path, item.name if item.name is not None else f"{item.pcpus}-pcpu")
            for other in hosts:
                if other.pcpus == item.pcpus:
                    raise self.err((*path, "pcpus"), f"host {other.name!r} already has {item.pcpus} pCPUs; one host shape per size")
                if other.name == name:
                    raise self.err((*path, "name"), f"duplicate host name {name!r}")
            hosts.append(HostShape(name, item.pcpus))
        return tuple(hosts)

    def _vms(self, entries: list[VmEntry]) -> tuple[VmShape, ...]:
        vms: list[VmShape] = []
        for i, item in enumerate(entries):
            path: Path = ("vms", i)
            listed = isinstance(item.vcpus, list)
            vcpus_raw = item.vcpus if listed else [item.vcpus]
            if not vcpus_raw:
                raise self.err((*path, "vcpus"), "expected a vCPU count or a non-empty list of them")
            vcpus: list[int] = []
            for j, v in enumerate(vcpus_raw):
                vpath = (*path, "vcpus", j) if listed else (*path, "vcpus")
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096:
                    raise self.err(vpath, f"expected a whole number of vCPUs in [1, 4096], got {v!r}")
                if v in vcpus:
                    raise self.err(vpath, f"{v} is listed twice")
                vcpus.append(v)
            topologies = tuple(parse_topology_value(t, (*path, "topologies", j), self.doc) for j, t in enumerate(item.topologies))
            for j, t in enumerate(topologies):
                if str(t) in [str(u) for u in topologies[:j]]:
                    raise self.err((*path, "topologies", j), f"{t} is listed twice")
            name = self._label(path, item.name if item.name is not None else item.guest_os)
            for other in vms:
                if other.name == name:
                    raise self.err((*path, "name"), f"duplicate VM name {name!r}")
            vms.append(VmShape(name, item.guest_os, tuple(vcpus), topologies, item.enlightenments, item.threads))
        return tuple(vms)

    def _unique(self, key: str, values: list[str]) -> tuple[str, ...]:
        for i, value in enumerate(values):
            if value in values[:i]:
                raise self.err((key, i), f"{value} is listed twice")
        return tuple(values)

    def _flush_modes(self, modes: tuple[str, ...], vms: tuple[VmShape, ...]) -> tuple[str, ...]:
        if BASELINE_MODE not in modes:
            raise self.err(("flush_modes",), f"add {BASELINE_MODE}: it is the baseline every PV run is compared with")
        if len(modes) < 2:
            raise self.err(("flush_modes",), "add a PV mode to compare with native, e.g. [native, hyperv-pv]")
        for i, mode in enumerate(modes):
            if mode == "kvm-pv" and not any(vm.guest_os == "linux" for vm in vms):
                raise self.err(("flush_modes", i), "kvm-pv needs a Linux guest and every VM shape is Windows; use hyperv-pv")
            if mode == "hyperv-pv" and not any(vm.enlightenments for vm in vms):
                raise self.err(("flush_modes", i), "hyperv-pv is an enlightenment and every VM shape has enlightenments: false")
        return modes

    def _overcommit(self, raw: list[Any]) -> tuple[float, ...]:
        values: list[float] = []
        for i, v in enumerate(raw):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise self.err(("overcommit", i), f"a consolidation ratio (vCPU:pCPU) is a number > 0, got {v!r}")
            if float(v) in values:
                raise self.err(("overcommit", i), f"{v} is listed twice")
            values.append(float(v))
        return tuple(sorted(values))

    def _base(self, raw: dict[str, Any] | None) -> dict[str, Any]:
        for key in raw or {}:
            if key in REPORT_FIELDS:
                raise self.err(("base", key), f"{key} is set by the report's hosts, vms, workloads, flush_modes or overcommit; remove it from base")
        base = self.fields._base(raw)
        try:  # the fields alone must make a valid run (cross-field rules are checked when planning)
            RunConfig.from_dict({k: v for k, v in base.items() if k != "topology"})
            load_profile(str(base.get("profile", "literature")))
        except ConfigError as exc:
            raise self.err(("base", exc.field) if exc.field in base else ("base",), exc.problem) from None
        return base

    def _slo(self, entry: SloEntry, overcommit: tuple[float, ...]) -> Slo:
        if entry.metric == "throughput_loss" and entry.max >= 1:
            raise self.err(("slo", "max"), f"throughput loss is a fraction (0.10 is 10%), got {entry.max}")
        if entry.metric == "throughput_loss" and 1.0 not in overcommit:
            raise self.err(("overcommit",), "throughput_loss is measured against no overcommit; add 1 to overcommit")
        return Slo(entry.metric, float(entry.max), entry.aggregate)

    # --- helpers ----------------------------------------------------------------
    def _label(self, path: Path, name: Any) -> str:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise self.err((*path, "name"), f"{name!r} is not a name; use letters, digits, '_' and '-'")
        return name


__all__ = [
    "BASELINE_MODE",
    "HostShape",
    "PERIODS",
    "ReportSpec",
    "SLO_METRICS",
    "Slo",
    "VmShape",
    "load_report_spec",
    "parse_report_spec",
]
