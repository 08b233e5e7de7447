"""Report specs (configs/reports/*.yaml): what a capacity plan measures and judges.

A report spec names host shapes, VM shapes, workloads, flush modes, the KVM
Hyper-V handler generations, an SLO and a period. For each host shape and VM
shape the report runs ``vms`` = 1, 2, ... identical VMs on the host until the
SLO fails or ``max_vms`` is reached; the answer is VMs per host::

    name: capacity
    period: weekly                      # daily | weekly | monthly: one report per period
    hosts:
      - {name: 2s-48t, pcpus: 48}
    vms:
      - {name: ws2016, guest_os: windows-2016, vcpus: [8, 16], topologies: [smt2]}
    workloads: [mmap-munmap]
    flush_modes: [native, hyperv-pv]    # with and without PV flush
    hv_semantics: [kvm-current, kvm-2018]  # KVM's Hyper-V handler (the host generation follows it)
    max_vms: 16                         # the ladder's cap
    base: {iterations: 3, pages: 16384} # other RunConfig fields, the same for every run
    replicates: 1
    slo:                                # every SLO given must hold; a crash fails them all
      throughput: 0.8                   # the slowest VM's ops/s >= 80 % of one VM alone
      real_s_stretch: 1.5               # run time <= 1.5 x one VM alone's
      lat_p99_us: 500                   # shootdown p99 latency
      crash_free: true                  # the default
    pool: {hosts: 4}                    # N-host pool: also answer with one host down
    search: {study: capacity-search}    # optional: an Optuna study in the store's database

"One VM alone" is the same VM shape alone on the same host (``vms: 1``) with
the flush mode that serves it best, so every flush mode is held to the same
floor and a mode slower than the others already alone fails at once. Errors are
``file:line: field: problem``, like sweep specs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, Literal, Mapping

from sweep._model import SpecModel, spec_field, validate_section
from sweep._spec import TopologyRule, _Parser, parse_topology_value
from sweep._yaml import MarkedDocument, Path, SpecError, load_marked, read_spec_file
from workers.config import FLUSH_MODES, GUEST_OSES, HV_SEMANTICS, MAX_VMS, WORKLOADS, ConfigError, RunConfig
from workers.profiles import load_profile

PERIODS = ("daily", "weekly", "monthly")
SLO_AGGREGATES = ("worst", "mean")
#: The flush mode without PV flush; every other mode is compared with it.
BASELINE_MODE = "native"
#: Fields the report sets itself; they cannot go in ``base``.
REPORT_FIELDS = ("pcpus", "vms", "vcpus", "background_vcpus", "topology", "guest_os", "enlightenments", "threads",
                 "flush_mode", "workload", "hv_semantics", "overcommit")
DEFAULT_POOL_HOSTS = 4
DEFAULT_MAX_VMS = 16
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_NAME_RE = re.compile(_NAME_PATTERN)
_SLO_EXAMPLE = "slo: {throughput: 0.8, crash_free: true}"


@dataclass(frozen=True, slots=True)
class HostShape:
    """A host model: its name and how many pCPUs it schedules vCPUs on."""

    name: str
    pcpus: int


@dataclass(frozen=True, slots=True)
class VmShape:
    """A VM model: guest OS, sizes and topologies (``smt2``, ``flat``, ``SxCxT`` or a rule).

    ``threads`` is the workload's thread count per VM; None means one more than
    vcpus (every vCPU busy and one thread waiting, as in the 2018 test).
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
    """What ``vms`` VMs on a host must all get; None leaves a term out.

    ``throughput``: the slowest VM's ops/s at least this fraction of one VM alone's.
    ``real_s_stretch``: the VMs' run time at most this multiple of one VM alone's.
    ``lat_p99_us``: shootdown p99 latency at most this. A crash fails every term
    (a crashed VM serves nothing), so ``crash_free`` is always on. Over replicates
    the ``worst`` one counts, or their ``mean``.
    """

    throughput: float | None = None
    real_s_stretch: float | None = None
    lat_p99_us: float | None = None
    crash_free: bool = True
    aggregate: str = "worst"

    def terms(self) -> list[str]:
        out = []
        if self.throughput is not None:
            out.append(f"slowest VM >= {self.throughput:.0%} of one VM alone (ops/s)")
        if self.real_s_stretch is not None:
            out.append(f"real_s <= {self.real_s_stretch:g}x one VM alone")
        if self.lat_p99_us is not None:
            out.append(f"shootdown p99 <= {self.lat_p99_us:g} us")
        out.append("crash-free")
        return out

    def describe(self) -> str:
        return f"{', '.join(self.terms())} ({self.aggregate} replicate)"


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
    hv_semantics: tuple[str, ...]
    max_vms: int
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
        ...     "max_vms: 4\\nslo: {throughput: 0.8}\\n")
        >>> spec.period, spec.flush_modes, spec.hv_semantics, spec.slo.describe()
        ('weekly', ('native', 'hyperv-pv'), ('kvm-current',), 'slowest VM >= 80% of one VM alone (ops/s), crash-free (worst replicate)')
    """
    return _ReportParser(load_marked(text, source), text).parse()


_MISSING_HINT = {
    "name": "give the report a name, e.g. 'name: capacity'",
    "hosts": "list host shapes, e.g. 'hosts: [{name: 2s-24c, pcpus: 48}]'",
    "vms": "list VM shapes, e.g. 'vms: [{guest_os: windows-2016, vcpus: [16, 72], topologies: [smt2]}]'",
    "slo": f"give the SLO, e.g. '{_SLO_EXAMPLE}'",
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
    threads: int | None = spec_field(None, ge=1, what="per VM; default: vcpus + 1")


class SloEntry(SpecModel):
    NOT_A_MAPPING = f"expected a mapping of SLO terms, e.g. '{_SLO_EXAMPLE}'"
    throughput: float | None = spec_field(
        None, gt=0, le=1, allow_inf_nan=False,
        problem="the slowest VM's share of one VM alone's ops/s, a fraction in (0, 1] (0.8 is 80 %), got {input!r}")
    real_s_stretch: float | None = spec_field(
        None, ge=1, allow_inf_nan=False,
        problem="run time as a multiple of one VM alone's, a number >= 1 (1.5: at most 50 % longer), got {input!r}")
    lat_p99_us: float | None = spec_field(None, gt=0, allow_inf_nan=False,
                                          problem="shootdown p99 latency in us, a number > 0, got {input!r}")
    crash_free: bool = True
    aggregate: Literal[SLO_AGGREGATES] = "worst"  # type: ignore[valid-type]


class PoolEntry(SpecModel):
    hosts: int = spec_field(ge=2, problem="a pool that survives a host failure has >= 2 hosts, got {input!r}")


class SearchEntry(SpecModel):
    study: str = spec_field(pattern=r"\S", problem="expected the name of an Optuna study (flushsweep search --study NAME)")


class ReportDocument(SpecModel):
    """The keys of a report spec, their types and defaults; shapes are checked by the parser."""

    NOT_A_MAPPING = "a report spec is a mapping with name, hosts, vms and slo"
    name: str = spec_field(hint=_MISSING_HINT["name"], pattern=_NAME_PATTERN,
                           problem="{input!r} is not a report name; use letters, digits, '_' and '-' (at most 64)")
    description: str = ""
    period: Literal[PERIODS] = "weekly"  # type: ignore[valid-type]
    hosts: list[HostEntry] = _listed("hosts")
    vms: list[VmEntry] = _listed("vms")
    workloads: list[Literal[WORKLOADS]] = _listed("workloads", ["mmap-munmap"])  # type: ignore[valid-type]
    flush_modes: list[Literal[FLUSH_MODES]] = _listed("flush_modes", [BASELINE_MODE, "hyperv-pv"])  # type: ignore[valid-type]
    hv_semantics: list[Literal[HV_SEMANTICS]] = _listed("hv_semantics", ["kvm-current"])  # type: ignore[valid-type]
    max_vms: int = spec_field(DEFAULT_MAX_VMS, ge=1, le=MAX_VMS, what="the most VMs per host to try")
    base: dict[str, Any] | None = spec_field(None, problem="expected a mapping of RunConfig fields, e.g. {iterations: 20}")
    replicates: int = spec_field(1, ge=1, what="seeds per rung")
    slo: SloEntry = spec_field(hint=_MISSING_HINT["slo"])
    pool: PoolEntry | None = None
    search: SearchEntry | None = None


#: Keys of earlier report specs, and how to say the same now.
_RETIRED = {
    ("overcommit",): "the report counts VMs per host now, trying vms = 1, 2, ... up to max_vms; "
                     "remove overcommit and set e.g. 'max_vms: 16'",
    ("slo", "metric"): f"SLO terms are keys of slo now, e.g. '{_SLO_EXAMPLE}' "
                       "(throughput, real_s_stretch, lat_p99_us, crash_free)",
    ("slo", "max"): f"SLO terms are keys of slo now, e.g. 'slo: {{lat_p99_us: 500}}' or '{_SLO_EXAMPLE}'",
}


class _ReportParser:
    def __init__(self, doc: MarkedDocument, text: str) -> None:
        self.doc = doc
        self.text = text
        self.fields = _Parser(doc, text)  # RunConfig values and topologies, with this document's lines

    def err(self, path: Path, problem: str) -> SpecError:
        return self.doc.error(path, problem)

    def parse(self) -> ReportSpec:
        self._retired(self.doc.value)
        model = validate_section(ReportDocument, self.doc.value, self.doc)
        hosts = self._hosts(model.hosts)
        vms = self._vms(model.vms)
        workloads = self._unique("workloads", model.workloads)
        flush_modes = self._flush_modes(self._unique("flush_modes", model.flush_modes), vms)
        hv_semantics = self._unique("hv_semantics", model.hv_semantics)
        base = self._base(model.base)
        slo = self._slo(model.slo)
        return ReportSpec(
            name=model.name, description=model.description, period=model.period, hosts=hosts, vms=vms,
            workloads=workloads, flush_modes=flush_modes, hv_semantics=hv_semantics, max_vms=model.max_vms, base=base,
            replicates=model.replicates, slo=slo, pool_hosts=model.pool.hosts if model.pool else DEFAULT_POOL_HOSTS,
            study=model.search.study if model.search else None, source=self.doc.source, text=self.text,
        )

    # --- sections ---------------------------------------------------------------
    def _retired(self, value: Any) -> None:
        for path, fix in _RETIRED.items():
            node = value
            for part in path:
                node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
            if node is not _ABSENT:
                raise self.err(path, fix)

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
            raise self.err(("flush_modes",), f"add {BASELINE_MODE}: the plan without PV flush is what PV is compared with")
        if len(modes) < 2:
            raise self.err(("flush_modes",), "add a PV mode to compare with native, e.g. [native, hyperv-pv]")
        for i, mode in enumerate(modes):
            if mode == "kvm-pv" and not any(vm.guest_os == "linux" for vm in vms):
                raise self.err(("flush_modes", i), "kvm-pv needs a Linux guest and every VM shape is Windows; use hyperv-pv")
            if mode == "hyperv-pv" and not any(vm.enlightenments for vm in vms):
                raise self.err(("flush_modes", i), "hyperv-pv is an enlightenment and every VM shape has enlightenments: false")
        return modes

    def _base(self, raw: dict[str, Any] | None) -> dict[str, Any]:
        for key in raw or {}:
            if key in REPORT_FIELDS:
                fix = ("the report tries vms = 1 .. max_vms itself" if key == "vms" else
                       "the report counts VMs per host, not vCPU:pCPU ratios" if key == "overcommit" else
                       f"{key} is set by the report's hosts, vms, workloads, flush_modes or hv_semantics")
                raise self.err(("base", key), f"{fix}; remove it from base")
        base = self.fields._base(raw)
        try:  # the fields alone must make a valid run (cross-field rules are checked when planning)
            RunConfig.from_dict({k: v for k, v in base.items() if k != "topology"})
            load_profile(str(base.get("profile", "literature")))
        except ConfigError as exc:
            raise self.err(("base", exc.field) if exc.field in base else ("base",), exc.problem) from None
        return base

    def _slo(self, entry: SloEntry) -> Slo:
        if not entry.crash_free:
            raise self.err(("slo", "crash_free"), "a crashed VM serves nothing, so a crash fails every SLO; "
                                                  "leave crash_free at true (the default)")
        return Slo(entry.throughput, entry.real_s_stretch, entry.lat_p99_us, True, entry.aggregate)

    # --- helpers ----------------------------------------------------------------
    def _label(self, path: Path, name: Any) -> str:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise self.err((*path, "name"), f"{name!r} is not a name; use letters, digits, '_' and '-'")
        return name


_ABSENT = object()

__all__ = [
    "BASELINE_MODE",
    "DEFAULT_MAX_VMS",
    "HostShape",
    "PERIODS",
    "REPORT_FIELDS",
    "ReportSpec",
    "Slo",
    "VmShape",
    "load_report_spec",
    "parse_report_spec",
]
