"""RunConfig: one emulated-VM experiment, as flat scalar fields.

Flat on purpose: sweep specs, calibration CSVs, Parquet columns, CLI flags and
outside scripts all share this one vocabulary, so a column name is a field name.
A RunConfig is validated and normalised on construction (``topology="auto"``
becomes an explicit ``"SxCxT"``), so two configs that mean the same run have the
same canonical JSON and the same content hash.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

GuestOS = Literal["windows-2016", "linux"]
FlushMode = Literal["native", "hyperv-pv", "kvm-pv"]
HvSemantics = Literal["kvm-current", "kvm-2018"]
Workload = Literal["mmap-munmap", "ebizzy", "cpu-bound"]

GUEST_OSES: tuple[str, ...] = get_args(GuestOS)
FLUSH_MODES: tuple[str, ...] = get_args(FlushMode)
HV_SEMANTICS: tuple[str, ...] = get_args(HvSemantics)
WORKLOADS: tuple[str, ...] = get_args(Workload)

#: Topology keywords resolved against ``vcpus`` (the sweep specs use the same words).
TOPOLOGY_KEYWORDS = ("auto", "flat", "smt2")


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


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One run: host, VM, workload, cost profile and seed.

    Defaults are the 2018 test (128 vCPUs as 64x1x2 on a 12-pCPU host, 65
    threads x 50 mmap/munmap of 16384 pages) under the ``literature`` profile.
    """

    # host
    pcpus: int = 12
    host_slice_us: int = 3000
    background_vcpus: int = 0
    ple: bool = True
    ple_window_us: int = 2  # KVM_VMX_DEFAULT_PLE_WINDOW: 4096 cycles (~1.6 us at 2.6 GHz), reset on sched-in
    # VM
    vcpus: int = 128
    topology: str = "auto"
    guest_os: GuestOS = "windows-2016"
    enlightenments: bool = True
    flush_mode: FlushMode = "native"
    hv_semantics: HvSemantics = "kvm-current"
    # workload
    workload: Workload = "mmap-munmap"
    threads: int = 65
    iterations: int = 50
    pages: int = 16384
    sleep_max_us: int = 100
    duration_s: float = 1.0
    # calibration and randomness
    profile: str = "literature"
    seed: int = 0

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
        return RunConfig.from_dict({**self.to_dict(), **changes})

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


def _kind(f: Any) -> type:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return {"int": int, "float": float, "bool": bool, "str": str}.get(t, str)


#: Every RunConfig field and its Python type, in declaration order (built once: configs are made per run).
_FIELD_TYPES: dict[str, type] = {f.name: _kind(f) for f in fields(RunConfig)}


def field_names() -> list[str]:
    return list(_FIELD_TYPES)


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
        raise ConfigError(name, f"expected a string, got {value!r}")
    return value


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not one of {', '.join(allowed)}")


def _validate(cfg: RunConfig) -> None:
    positive = ("pcpus", "host_slice_us", "vcpus", "threads", "iterations", "pages", "ple_window_us")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(name, f"must be >= 1, got {getattr(cfg, name)}")
    for name in ("background_vcpus", "sleep_max_us", "seed"):
        if getattr(cfg, name) < 0:
            raise ConfigError(name, f"must be >= 0, got {getattr(cfg, name)}")
    if not 0 < cfg.duration_s <= 3600:
        raise ConfigError("duration_s", f"must be in (0, 3600] seconds, got {cfg.duration_s}")
    if cfg.vcpus > 4096:
        raise ConfigError("vcpus", f"at most 4096 (64 sparse banks of 64 VPs), got {cfg.vcpus}")
    if cfg.pages > 4096 * 509:
        raise ConfigError("pages", f"at most {4096 * 509} pages per mapping, got {cfg.pages}")
    _choice("guest_os", cfg.guest_os, GUEST_OSES)
    _choice("flush_mode", cfg.flush_mode, FLUSH_MODES)
    _choice("hv_semantics", cfg.hv_semantics, HV_SEMANTICS)
    _choice("workload", cfg.workload, WORKLOADS)
    if not cfg.profile:
        raise ConfigError("profile", "must name a calibration profile, e.g. 'literature' or 'seed-ws2016'")
    if cfg.flush_mode == "hyperv-pv" and not cfg.enlightenments:
        raise ConfigError("flush_mode", "hyperv-pv is a Hyper-V enlightenment; set enlightenments=true or use native")
    if cfg.flush_mode == "kvm-pv" and cfg.guest_os != "linux":
        raise ConfigError("flush_mode", f"kvm-pv needs a Linux guest (KVM_FEATURE_PV_TLB_FLUSH), guest_os is {cfg.guest_os}; use hyperv-pv")


__all__ = [
    "ConfigError",
    "FLUSH_MODES",
    "GUEST_OSES",
    "HV_SEMANTICS",
    "RunConfig",
    "TOPOLOGY_KEYWORDS",
    "WORKLOADS",
    "coerce",
    "field_names",
    "parse_topology",
]
