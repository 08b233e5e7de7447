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
from typing import Any, Mapping

from sweep._spec import TopologyRule, _Parser, parse_topology_value
from sweep._spec import did_you_mean as _did_you_mean
from sweep._yaml import MarkedDocument, Path, SpecError, load_marked, read_spec_file
from workers.config import FLUSH_MODES, GUEST_OSES, WORKLOADS, ConfigError, RunConfig
from workers.profiles import load_profile

#: Keys a report spec may have at the top level.
REPORT_KEYS = ("name", "description", "period", "hosts", "vms", "workloads", "flush_modes", "overcommit", "base",
               "replicates", "slo", "pool", "search")
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
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


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


class _ReportParser:
    def __init__(self, doc: MarkedDocument, text: str) -> None:
        self.doc = doc
        self.text = text
        self.fields = _Parser(doc, text)  # RunConfig values and topologies, with this document's lines

    def err(self, path: Path, problem: str) -> SpecError:
        return self.doc.error(path, problem)

    def parse(self) -> ReportSpec:
        top = self.doc.value
        if not isinstance(top, dict):
            raise self.err((), "a report spec is a mapping with name, hosts, vms, overcommit and slo")
        for key in top:
            if key not in REPORT_KEYS:
                raise self.doc.error((key,), f"unknown key; {_did_you_mean(key, list(REPORT_KEYS))}", field=_shown(key))
        for key in ("name", "hosts", "vms", "overcommit", "slo"):
            if key not in top:
                raise self.doc.error((), f"missing; {_MISSING_HINT[key]}", field=key)
        name = top["name"]
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise self.err(("name",), f"{name!r} is not a report name; use letters, digits, '_' and '-' (at most 64)")
        description = top.get("description", "")
        if not isinstance(description, str):
            raise self.err(("description",), "expected a string")
        period = top.get("period", "weekly")
        if period not in PERIODS:
            raise self.err(("period",), f"{period!r} is not one of {', '.join(PERIODS)}")
        hosts = self._hosts(top["hosts"])
        vms = self._vms(top["vms"])
        workloads = self._choices("workloads", top.get("workloads", ["mmap-munmap"]), WORKLOADS)
        flush_modes = self._flush_modes(top.get("flush_modes", [BASELINE_MODE, "hyperv-pv"]), vms)
        overcommit = self._overcommit(top["overcommit"])
        base = self._base(top.get("base"))
        replicates = top.get("replicates", 1)
        if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
            raise self.err(("replicates",), f"expected a whole number >= 1 (seeds per shape), got {replicates!r}")
        slo = self._slo(top["slo"], overcommit)
        pool_hosts = self._pool(top.get("pool"))
        study = self._search(top.get("search"))
        return ReportSpec(
            name=name, description=description, period=period, hosts=hosts, vms=vms, workloads=workloads,
            flush_modes=flush_modes, overcommit=overcommit, base=base, replicates=replicates, slo=slo,
            pool_hosts=pool_hosts, study=study, source=self.doc.source, text=self.text,
        )

    # --- sections ---------------------------------------------------------------
    def _list(self, key: str, raw: Any) -> list[Any]:
        if not isinstance(raw, list) or not raw:
            raise self.err((key,), f"expected a non-empty list; {_MISSING_HINT.get(key, '')}".rstrip("; "))
        return raw

    def _hosts(self, raw: Any) -> tuple[HostShape, ...]:
        hosts: list[HostShape] = []
        for i, item in enumerate(self._list("hosts", raw)):
            path: Path = ("hosts", i)
            item = self._mapping(path, item, ("name", "pcpus"), required=("pcpus",))
            pcpus = item["pcpus"]
            if isinstance(pcpus, bool) or not isinstance(pcpus, int) or pcpus < 1:
                raise self.err((*path, "pcpus"), f"expected a whole number >= 1, got {pcpus!r}")
            name = self._label(path, item.get("name", f"{pcpus}-pcpu"))
            for other in hosts:
                if other.pcpus == pcpus:
                    raise self.err((*path, "pcpus"), f"host {other.name!r} already has {pcpus} pCPUs; one host shape per size")
                if other.name == name:
                    raise self.err((*path, "name"), f"duplicate host name {name!r}")
            hosts.append(HostShape(name, pcpus))
        return tuple(hosts)

    def _vms(self, raw: Any) -> tuple[VmShape, ...]:
        vms: list[VmShape] = []
        keys = ("name", "guest_os", "vcpus", "topologies", "enlightenments", "threads")
        for i, item in enumerate(self._list("vms", raw)):
            path: Path = ("vms", i)
            item = self._mapping(path, item, keys, required=("vcpus",))
            guest_os = item.get("guest_os", "windows-2016")
            if guest_os not in GUEST_OSES:
                raise self.err((*path, "guest_os"), f"{guest_os!r} is not one of {', '.join(GUEST_OSES)}")
            vcpus_raw = item["vcpus"] if isinstance(item["vcpus"], list) else [item["vcpus"]]
            if not vcpus_raw:
                raise self.err((*path, "vcpus"), "expected a vCPU count or a non-empty list of them")
            vcpus: list[int] = []
            for j, v in enumerate(vcpus_raw):
                vpath = (*path, "vcpus", j) if isinstance(item["vcpus"], list) else (*path, "vcpus")
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096:
                    raise self.err(vpath, f"expected a whole number of vCPUs in [1, 4096], got {v!r}")
                if v in vcpus:
                    raise self.err(vpath, f"{v} is listed twice")
                vcpus.append(v)
            topo_raw = item.get("topologies", ["auto"])
            if not isinstance(topo_raw, list) or not topo_raw:
                raise self.err((*path, "topologies"), "expected a non-empty list, e.g. [smt2, flat, {cores-per-socket: 4}]")
            topologies = tuple(parse_topology_value(t, (*path, "topologies", j), self.fields.doc) for j, t in enumerate(topo_raw))
            for j, t in enumerate(topologies):
                if str(t) in [str(u) for u in topologies[:j]]:
                    raise self.err((*path, "topologies", j), f"{t} is listed twice")
            enlightenments = item.get("enlightenments", True)
            if not isinstance(enlightenments, bool):
                raise self.err((*path, "enlightenments"), f"expected true or false, got {enlightenments!r}")
            threads = item.get("threads")
            if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
                raise self.err((*path, "threads"), f"expected a whole number >= 1 (default: vcpus + 1), got {threads!r}")
            name = self._label(path, item.get("name", guest_os))
            for other in vms:
                if other.name == name:
                    raise self.err((*path, "name"), f"duplicate VM name {name!r}")
            vms.append(VmShape(name, guest_os, tuple(vcpus), topologies, enlightenments, threads))
        return tuple(vms)

    def _choices(self, key: str, raw: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for i, value in enumerate(self._list(key, raw)):
            if value not in allowed:
                raise self.err((key, i), f"{value!r} is not one of {', '.join(allowed)}")
            if value in out:
                raise self.err((key, i), f"{value} is listed twice")
            out.append(value)
        return tuple(out)

    def _flush_modes(self, raw: Any, vms: tuple[VmShape, ...]) -> tuple[str, ...]:
        modes = self._choices("flush_modes", raw, FLUSH_MODES)
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

    def _overcommit(self, raw: Any) -> tuple[float, ...]:
        values: list[float] = []
        for i, v in enumerate(self._list("overcommit", raw)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise self.err(("overcommit", i), f"a consolidation ratio (vCPU:pCPU) is a number > 0, got {v!r}")
            if float(v) in values:
                raise self.err(("overcommit", i), f"{v} is listed twice")
            values.append(float(v))
        return tuple(sorted(values))

    def _base(self, raw: Any) -> dict[str, Any]:
        if isinstance(raw, dict):
            for key in raw:
                if key in REPORT_FIELDS:
                    raise self.err(("base", key), f"{key} is set by the report's hosts, vms, workloads, flush_modes or overcommit; remove it from base")
        base = self.fields._base(raw)
        try:  # the fields alone must make a valid run (cross-field rules are checked when planning)
            RunConfig.from_dict({k: v for k, v in base.items() if k != "topology"})
            load_profile(str(base.get("profile", "literature")))
        except ConfigError as exc:
            raise self.err(("base", exc.field) if exc.field in base else ("base",), exc.problem) from None
        return base

    def _slo(self, raw: Any, overcommit: tuple[float, ...]) -> Slo:
        path: Path = ("slo",)
        item = self._mapping(path, raw, ("metric", "max", "aggregate"), required=("metric", "max"))
        metric = item["metric"]
        if not isinstance(metric, str) or metric not in SLO_METRICS:
            raise self.err((*path, "metric"), f"{metric!r} is not one of {', '.join(SLO_METRICS)}")
        limit = item["max"]
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit < 0:
            raise self.err((*path, "max"), f"expected a number >= 0, got {limit!r}")
        if metric == "throughput_loss" and limit >= 1:
            raise self.err((*path, "max"), f"throughput loss is a fraction (0.10 is 10%), got {limit}")
        aggregate = item.get("aggregate", "worst")
        if aggregate not in SLO_AGGREGATES:
            raise self.err((*path, "aggregate"), f"{aggregate!r} is not one of {', '.join(SLO_AGGREGATES)}")
        if metric == "throughput_loss" and 1.0 not in overcommit:
            raise self.err(("overcommit",), "throughput_loss is measured against no overcommit; add 1 to overcommit")
        return Slo(metric, float(limit), aggregate)

    def _pool(self, raw: Any) -> int:
        if raw is None:
            return DEFAULT_POOL_HOSTS
        item = self._mapping(("pool",), raw, ("hosts",), required=("hosts",))
        n = item["hosts"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise self.err(("pool", "hosts"), f"a pool that survives a host failure has >= 2 hosts, got {n!r}")
        return n

    def _search(self, raw: Any) -> str | None:
        if raw is None:
            return None
        item = self._mapping(("search",), raw, ("study",), required=("study",))
        study = item["study"]
        if not isinstance(study, str) or not study.strip():
            raise self.err(("search", "study"), "expected the name of an Optuna study (flushsweep search --study NAME)")
        return study

    # --- helpers ----------------------------------------------------------------
    def _mapping(self, path: Path, raw: Any, keys: tuple[str, ...], *, required: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.err(path, f"expected a mapping with {', '.join(keys)}")
        for key in raw:
            if key not in keys:
                raise self.doc.error((*path, key), f"unknown key; {_did_you_mean(str(key), list(keys))}",
                                     field=_dotted_key(path, _shown(key)))
        for key in required:
            if key not in raw:
                raise self.doc.error(path, f"missing; this mapping takes {', '.join(keys)}", field=_dotted_key(path, key))
        return raw

    def _label(self, path: Path, name: Any) -> str:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise self.err((*path, "name"), f"{name!r} is not a name; use letters, digits, '_' and '-'")
        return name


def _shown(key: str) -> str:
    """A key as an error message shows it: one line, quoted when it is not plain text."""
    return key if key.isprintable() and key.strip() == key and key else repr(key)


def _dotted_key(path: Path, key: str) -> str:
    from sweep._yaml import dotted

    return dotted((*path, key))


_MISSING_HINT = {
    "name": "give the report a name, e.g. 'name: capacity'",
    "hosts": "list host shapes, e.g. 'hosts: [{name: 2s-24c, pcpus: 48}]'",
    "vms": "list VM shapes, e.g. 'vms: [{guest_os: windows-2016, vcpus: [16, 72], topologies: [smt2]}]'",
    "overcommit": "list consolidation ratios (vCPU:pCPU) to measure, e.g. 'overcommit: [1, 2, 4]'",
    "slo": "give the SLO, e.g. 'slo: {metric: lat_p99_us, max: 500}'",
}


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
