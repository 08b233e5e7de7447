"""Calibration profiles: the engine's cost constants, loaded from YAML.

A profile is data, not code, so users can fit their own (``flushsweep
calibrate``) and sweep thousands of configurations under it. Every constant is
in nanoseconds of one pCPU's time. The profile's content digest is part of a
run's identity: refitting a profile under the same name must not reuse results
computed with the old constants.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from workers.config import ConfigError

#: Where named profiles live: $FLUSHSWEEP_PROFILES (os.pathsep-separated) first, then the checkout's
#: configs/profiles (the editable source), or in an installed wheel the copy it ships as workers/_bundled_profiles.
_CHECKOUT_PROFILES = Path(__file__).resolve().parent.parent / "configs" / "profiles"
DEFAULT_PROFILE_DIR = _CHECKOUT_PROFILES if _CHECKOUT_PROFILES.is_dir() else Path(__file__).resolve().parent / "_bundled_profiles"


@dataclass(frozen=True)
class CostProfile:
    """Cost constants (ns). Field comments say what each one prices; the YAML says where the value came from."""

    name: str
    # host scheduling and virtualisation
    host_switch_ns: float  # host context switch between two vCPU threads (incl. VMCS load)
    vm_exit_ns: float  # one VM exit + entry round trip for a trivial exit
    halt_ns: float  # HLT exit and scheduling the vCPU thread out
    wake_ns: float  # host cost of waking a halted vCPU (kvm_vcpu_kick + try_to_wake_up)
    kick_ns: float  # host IPI that forces a running vCPU out of guest mode
    ack_latency_ns: float  # time until a kicked vCPU's pCPU acknowledges (KVM_REQUEST_WAIT)
    # guest IPIs
    ipi_send_ns: float  # guest ICR write incl. its exit, per destination
    ipi_deliver_ns: float  # latency from ICR write to the running target taking the interrupt
    ipi_handler_ns: float  # guest interrupt entry, handler and EOI on the target
    # TLB flushing
    flush_full_ns: float  # local full TLB flush
    flush_page_base_ns: float  # fixed part of a local ranged flush
    flush_page_ns: float  # per page of a local ranged flush (INVLPG)
    flush_ceiling_pages: float  # above this many pages the guest flushes all (Linux: 33)
    hv_gva_flush_page_ns: float  # host per-page flush of a fine-grained FIFO entry (kvm_x86_flush_tlb_gva)
    # hypercalls and PV flush
    hypercall_ns: float  # hypercall exit, decode and return
    hv_flush_per_vcpu_ns: float  # kvm_hv_flush_tlb work per vCPU of the partition
    steal_check_ns: float  # kvm-pv: reading/cmpxchg of one target's steal-time preempted flag
    # guest kernel
    guest_switch_ns: float  # guest thread context switch
    guest_quantum_ns: float  # guest scheduler quantum when threads outnumber vCPUs
    lock_spin_ns: float  # how long a waiter spins on the address-space lock before blocking
    syscall_ns: float  # system call entry and exit
    mmap_ns: float  # creating a mapping (VAD insert)
    fault_ns: float  # demand-zero page fault incl. zeroing the page, per page
    touch_user_ns: float  # user-mode work per touched page
    unmap_page_ns: float  # clearing one PTE at unmap
    free_page_ns: float  # freeing one page after the flush
    copy_page_ns: float  # ebizzy: copying one page
    search_page_ns: float  # ebizzy: searching one page of records
    cpu_chunk_ns: float  # cpu-bound: one unit of work

    def cost(self, name: str) -> float:
        return float(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def digest(self) -> str:
        """Content hash of the constants (the name is not part of it).

        Computed once per profile: every run key of a sweep or search trial hashes it in.
        """
        cached = self.__dict__.get("_digest")
        if cached is None:
            costs = {k: float(v) for k, v in self.to_dict().items() if k != "name"}
            cached = hashlib.sha256(json.dumps(costs, sort_keys=True).encode()).hexdigest()[:16]
            object.__setattr__(self, "_digest", cached)
        return cached

    def replace(self, **costs: float) -> "CostProfile":
        return profile_from_mapping({**self.to_dict(), **costs}, source=f"{self.name} (modified)")


def cost_names() -> list[str]:
    return [f.name for f in fields(CostProfile) if f.name != "name"]


def profile_from_mapping(data: Mapping[str, Any], *, source: str) -> CostProfile:
    """Build a profile from ``{name, costs...}``; every cost must be present, positive and known."""
    known = set(cost_names())
    costs = dict(data.get("costs", data))
    costs.pop("name", None)
    unknown = sorted(set(costs) - known)
    if unknown:
        raise ConfigError("profile", f"{source}: unknown cost {unknown[0]!r}; known costs: {', '.join(sorted(known))}")
    missing = [n for n in cost_names() if n not in costs]
    if missing:
        raise ConfigError("profile", f"{source}: missing cost {missing[0]!r}; every cost must be given")
    values: dict[str, float] = {}
    for n in cost_names():
        v = costs[n]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError("profile", f"{source}: cost {n} must be a number >= 0, got {v!r}")
        values[n] = float(v)
    return CostProfile(name=str(data.get("name", source)), **values)


def profile_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("FLUSHSWEEP_PROFILES", "").split(os.pathsep) if p]
    return [*extra, DEFAULT_PROFILE_DIR]


def find_profile(name: str) -> Path:
    """Resolve a profile name (or a path to a YAML file) to its file."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    for d in profile_dirs():
        path = d / f"{name}.yaml"
        if path.is_file():
            return path
    available = sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise ConfigError("profile", f"no calibration profile {name!r}; available: {', '.join(available) or 'none'}")


def read_profile_yaml(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ConfigError("profile", f"{path}: expected a mapping with 'name' and 'costs'")
    return data


def load_profile(name: str) -> CostProfile:
    path = find_profile(name)
    data = read_profile_yaml(path)
    data.setdefault("name", path.stem)
    return profile_from_mapping(data, source=str(path))
