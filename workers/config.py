"""RunConfig: one emulated-host experiment, as flat scalar fields.

Flat on purpose: sweep specs, calibration CSVs, Parquet columns, CLI flags and
outside scripts all share this one vocabulary, so a column name is a field name.
A RunConfig is validated and normalised on construction (``topology="auto"``
becomes an explicit ``"SxCxT"``, ``threads=0`` the workload's own default,
``host_kvm="auto"`` the generation ``hv_semantics`` implies), so two configs that
mean the same run have the same canonical JSON and the same content hash.

Every field carries a one-line doc (``field_doc``) that the CLI shows as help.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

GuestOS = Literal["windows-2016", "linux"]
FlushMode = Literal["native", "hyperv-pv", "kvm-pv"]
HvSemantics = Literal["kvm-current", "kvm-2018"]
HostKvm = Literal["auto", "2018", "current"]
Workload = Literal["mmap-munmap", "ebizzy", "cpu-bound"]
EbizzyAlloc = Literal["malloc", "mmap"]

GUEST_OSES: tuple[str, ...] = get_args(GuestOS)
FLUSH_MODES: tuple[str, ...] = get_args(FlushMode)
HV_SEMANTICS: tuple[str, ...] = get_args(HvSemantics)
HOST_KVM: tuple[str, ...] = get_args(HostKvm)
WORKLOADS: tuple[str, ...] = get_args(Workload)
EBIZZY_ALLOCS: tuple[str, ...] = get_args(EbizzyAlloc)

#: Topology keywords resolved against ``vcpus`` (the sweep specs use the same words).
TOPOLOGY_KEYWORDS = ("auto", "flat", "smt2")
#: More VMs than this on one host is a typo, not a plan (and would take minutes per simulated second).
MAX_VMS = 64


class ConfigError(ValueError):
    """A RunConfig field is invalid; the message names the field and the fix."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


def parse_topology(topology: str, vcpus: int) -> tuple[int, int, int]:
    """Resolve a topology string to (sockets, cores, threads) for ``vcpus``.

    ``auto`` is SMT pairs (``vcpus/2 x 1 x 2``, the 2018 test's ``-smp 128,
    sockets=64,cores=1,threads=2``) when vcpus is even and flat otherwise;
    ``flat`` is one vCPU per socket; ``smt2`` is two threads per core.
    """
    text = topology.strip().lower()
    if text == "auto":
        text = "smt2" if vcpus % 2 == 0 else "flat"
    if text == "flat":
        return (vcpus, 1, 1)
    if text == "smt2":
        if vcpus % 2:
            raise ConfigError("topology", f"smt2 needs an even vcpus, got {vcpus}; use 'flat' or 'SxCxT'")
        return (vcpus // 2, 1, 2)
    parts = text.split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            "topology",
            f"{topology!r} is not 'SxCxT' (sockets x cores x threads, e.g. '64x1x2') nor one of {TOPOLOGY_KEYWORDS}",
        )
    s, c, t = (int(p) for p in parts)
    if s * c * t != vcpus:
        raise ConfigError(
            "topology", f"topology {s}x{c}x{t} has {s * c * t} vCPUs, vcpus is {vcpus}; make them match"
        )
    return (s, c, t)


def _f(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One run: a host, the VMs on it, their workload, the cost profile and the seed.

    Defaults are the 2018 test (one 128-vCPU VM as 64x1x2 on a 12-pCPU host, 65
    threads x 50 mmap/munmap of 16384 pages) under the ``literature`` profile.
    """

    # host
    pcpus: int = _f(12, "host pCPUs (hardware threads) the host scheduler runs vCPUs on")
    host_slice_us: int = _f(3000, "host CFS time slice in us (sched_min_granularity 0.75 ms x 4 on >= 8 CPUs)")
    background_vcpus: int = _f(0, "always-runnable co-tenant threads: plain CPU load, never shootdown targets")
    ple: bool = _f(True, "pause-loop exiting on: a spinning vCPU exits and KVM directed-yields (kvm_vcpu_on_spin)")
    ple_window_us: int = _f(2, "PLE window in us (KVM_VMX_DEFAULT_PLE_WINDOW 4096 cycles); reset at every sched-in")
    host_kvm: HostKvm = _f("auto", "host KVM generation: 2018 (steal-time preempted set on every vcpu_put) or "
                                   "current (only on involuntary preemption); auto follows hv_semantics")
    # VMs
    vms: int = _f(1, "identical VMs sharing the host (each its own guest kernel, threads and seed)")
    vcpus: int = _f(128, "vCPUs per VM")
    topology: str = _f("auto", "vCPU topology sockets x cores x threads ('SxCxT'), or auto/flat/smt2")
    guest_os: GuestOS = _f("windows-2016", "guest kernel: Windows Server 2016 (Cygwin test) or Linux 4.19")
    enlightenments: bool = _f(True, "Hyper-V enlightenments exposed to the guest (any)")
    flush_mode: FlushMode = _f("native", "remote TLB flush: native IPIs, Hyper-V PV hypercalls, or KVM PV (Linux)")
    hv_semantics: HvSemantics = _f("kvm-current", "KVM's Hyper-V flush handler: the 2018 series or today's FIFO")
    guest_pcid: bool = _f(False, "Linux guest CPU has PCID: idle vCPUs leave mm_cpumask (no flush IPIs); "
                                 "false (QEMU's default models, pre-Zen 3 AMD) keeps them lazily in it")
    # workload
    workload: Workload = _f("mmap-munmap", "guest workload: the 2018 mmap/munmap test, LTP ebizzy, or a CPU-bound control")
    threads: int = _f(0, "guest threads per VM; 0 = the workload's default (mmap-munmap 65, ebizzy 2 x vCPUs, "
                         "cpu-bound 1 per vCPU)")
    iterations: int = _f(50, "mmap-munmap: map/touch/unmap/sleep rounds per thread")
    pages: int = _f(16384, "mmap-munmap: 4 KiB pages per mapping")
    sleep_max_us: int = _f(100, "mmap-munmap: the random nanosleep between rounds is 0..this many us (requested)")
    duration_s: float = _f(1.0, "ebizzy and cpu-bound: simulated seconds to run")
    ebizzy_alloc: EbizzyAlloc = _f("malloc", "ebizzy allocator: malloc never using mmap (-M) or mmap/munmap (-m)")
    ebizzy_chunk_kib: int = _f(512, "ebizzy chunk size in KiB (-s; default record_size x 64 Ki = 512 KiB)")
    # calibration and randomness
    profile: str = _f("literature", "cost profile: a name under configs/profiles or a YAML path")
    seed: int = _f(0, "random seed; the same config and seed give bit-identical metrics")

    def __post_init__(self) -> None:
        for name, kind in _FIELD_TYPES.items():
            value = getattr(self, name)
            if kind is float and type(value) is int:
                object.__setattr__(self, name, float(value))
            elif type(value) is not kind:
                raise ConfigError(name, f"expected {kind.__name__}, got {value!r}")
        _validate(self)
        s, c, t = parse_topology(self.topology, self.vcpus)
        object.__setattr__(self, "topology", f"{s}x{c}x{t}")
        if self.threads == 0:
            object.__setattr__(self, "threads", default_threads(self.workload, self.vcpus))
        if self.host_kvm == "auto":
            object.__setattr__(self, "host_kvm", implied_host_kvm(self.hv_semantics))

    # --- construction -------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Build from loosely typed input (YAML, CSV, CLI): coerces strings, rejects unknown keys."""
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in _FIELD_TYPES:
                names = field_names()
                shown = key if isinstance(key, str) and key.isprintable() and key.strip() == key and key else repr(key)
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(names)}"
                raise ConfigError(shown, f"unknown RunConfig field; {hint}")
            kwargs[key] = coerce(key, value)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with ``changes``; fields that were derived (auto) follow the fields they derive from."""
        data = self.to_dict()
        for name, inputs, derive in _DERIVED:
            if name not in changes and any(k in changes for k in inputs) and data[name] == derive(data):
                data[name] = _AUTO[name]
        return RunConfig.from_dict({**data, **changes})

    # --- identity -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELD_TYPES}

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace: the same run always serialises to the same bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:32]

    @property
    def sockets_cores_threads(self) -> tuple[int, int, int]:
        s, c, t = (int(p) for p in self.topology.split("x"))
        return (s, c, t)

    @property
    def host_vcpus(self) -> int:
        """All vCPUs on the host: every VM's, plus the background load."""
        return self.vms * self.vcpus + self.background_vcpus

    @property
    def overcommit(self) -> float:
        """All vCPUs on the host per pCPU (the sweep specs' ``overcommit``)."""
        return self.host_vcpus / self.pcpus


def host_vcpus_of(fields: dict[str, Any]) -> int:
    """``RunConfig.host_vcpus`` for field values not yet made into a config (defaults filled in)."""
    get = lambda name: fields.get(name, _FIELDS[name].default)  # noqa: E731
    return int(get("vms")) * int(get("vcpus")) + int(get("background_vcpus"))


def default_threads(workload: str, vcpus: int) -> int:
    """What each workload runs when ``threads`` is 0.

    mmap-munmap: the 2018 test's 65 threads. ebizzy: ``threads = 2 *
    sysconf(_SC_NPROCESSORS_ONLN)`` (LTP ebizzy-0.3 ``read_options``). cpu-bound: one per vCPU.
    """
    if workload == "ebizzy":
        return 2 * vcpus
    if workload == "cpu-bound":
        return vcpus
    return 65


def implied_host_kvm(hv_semantics: str) -> str:
    """The host generation a Hyper-V handler belongs to: the 2018 series ran on 4.16-4.19 hosts."""
    return "2018" if hv_semantics == "kvm-2018" else "current"


#: Derived fields: (name, the fields it derives from, how); ``replace`` re-derives them.
_DERIVED = (
    ("topology", ("vcpus",), lambda d: "x".join(map(str, parse_topology("auto", d["vcpus"])))),
    ("threads", ("workload", "vcpus"), lambda d: default_threads(d["workload"], d["vcpus"])),
    ("host_kvm", ("hv_semantics",), lambda d: implied_host_kvm(d["hv_semantics"])),
)
_AUTO = {"topology": "auto", "threads": 0, "host_kvm": "auto"}


def _kind(f: Any) -> type:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {"int": int, "float": float, "bool": bool, "str": str}.get(t, str)


#: Every RunConfig field and its Python type, in declaration order (built once: configs are made per run).
_FIELD_TYPES: dict[str, type] = {f.name: _kind(f) for f in fields(RunConfig)}
_FIELDS = {f.name: f for f in fields(RunConfig)}
#: Fields with a fixed set of values (shown as choices in --help and in errors).
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "guest_os": GUEST_OSES,
    "flush_mode": FLUSH_MODES,
    "hv_semantics": HV_SEMANTICS,
    "host_kvm": HOST_KVM,
    "workload": WORKLOADS,
    "ebizzy_alloc": EBIZZY_ALLOCS,
}


def field_names() -> list[str]:
    return list(_FIELD_TYPES)


def field_doc(name: str) -> str:
    """The field's one-line description (``KeyError`` for an unknown field)."""
    return str(_FIELDS[name].metadata["doc"])


def field_default(name: str) -> Any:
    return _FIELDS[name].default


def _field_type(name: str) -> Any:
    return _FIELD_TYPES[name]


def coerce(name: str, value: Any) -> Any:
    """Coerce a loosely typed value (e.g. the string '128' from a CSV) to the field's type."""
    kind = _field_type(name)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(name, f"expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(name, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(name, f"expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(name, f"expected a number, got {value!r}")
    if not isinstance(value, str):
        if name in FIELD_CHOICES and isinstance(value, int) and not isinstance(value, bool) and str(value) in FIELD_CHOICES[name]:
            return str(value)  # host_kvm: 2018 from YAML is an int
        raise ConfigError(name, f"expected a string, got {value!r}")
    return value


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not one of {', '.join(allowed)}")


def _validate(cfg: RunConfig) -> None:
    positive = ("pcpus", "host_slice_us", "vms", "vcpus", "iterations", "pages", "ple_window_us",
                "ebizzy_chunk_kib")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(name, f"must be >= 1, got {getattr(cfg, name)}")
    for name in ("background_vcpus", "sleep_max_us", "seed", "threads"):
        if getattr(cfg, name) < 0:
            raise ConfigError(name, f"must be >= 0, got {getattr(cfg, name)}")
    if not 0 < cfg.duration_s <= 3600:
        raise ConfigError("duration_s", f"must be in (0, 3600] seconds, got {cfg.duration_s}")
    if cfg.vcpus > 4096:
        raise ConfigError("vcpus", f"at most 4096 (64 sparse banks of 64 VPs), got {cfg.vcpus}")
    if cfg.vms > MAX_VMS:
        raise ConfigError("vms", f"at most {MAX_VMS} VMs per host, got {cfg.vms}")
    if cfg.pages > 4096 * 509:
        raise ConfigError("pages", f"at most {4096 * 509} pages per mapping, got {cfg.pages}")
    if cfg.ebizzy_chunk_kib % 4:
        raise ConfigError("ebizzy_chunk_kib", f"must be a whole number of 4 KiB pages, got {cfg.ebizzy_chunk_kib}")
    for name, allowed in FIELD_CHOICES.items():
        _choice(name, getattr(cfg, name), allowed)
    if not cfg.profile:
        raise ConfigError("profile", "must name a calibration profile, e.g. 'literature' or 'seed-ws2016'")
    if cfg.flush_mode == "hyperv-pv" and not cfg.enlightenments:
        raise ConfigError("flush_mode", "hyperv-pv is a Hyper-V enlightenment; set enlightenments=true or use native")
    if cfg.flush_mode == "kvm-pv" and cfg.guest_os != "linux":
        raise ConfigError("flush_mode", f"kvm-pv needs a Linux guest (KVM_FEATURE_PV_TLB_FLUSH), guest_os is {cfg.guest_os}; use hyperv-pv")
    if cfg.workload == "ebizzy" and cfg.guest_os != "linux":
        raise ConfigError("workload", f"ebizzy models glibc malloc on Linux, guest_os is {cfg.guest_os}; "
                                      "use guest_os: linux, or mmap-munmap for Windows")


__all__ = [
    "ConfigError",
    "EBIZZY_ALLOCS",
    "FIELD_CHOICES",
    "FLUSH_MODES",
    "GUEST_OSES",
    "HOST_KVM",
    "HV_SEMANTICS",
    "MAX_VMS",
    "RunConfig",
    "TOPOLOGY_KEYWORDS",
    "WORKLOADS",
    "coerce",
    "default_threads",
    "field_default",
    "field_doc",
    "field_names",
    "host_vcpus_of",
    "implied_host_kvm",
    "parse_topology",
]
