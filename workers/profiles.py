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


#: Modelling choices a profile makes where the sources leave a mechanism unconfirmed ([U]):
#: name -> (allowed values, literature default, what it decides). They are part of the
#: profile's digest, and ``bench/sensitivity.py`` measures what each one moves.
CHOICES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "nt_fault_ws_lock": (
        ("none", "shared", "exclusive"), "none",
        "how a page fault takes the process working-set lock that unmapping holds exclusively "
        "(NT 5.2 freevm.c): exclusive as in NT 5.2 MmAccessFault (LOCK_WS), shared, or none "
        "(faults never wait for an unmap in progress) [U for WS2016: with either lock no thread "
        "of the process runs during an unmap, so a flush has no target and native = PV, which "
        "the 2018 measurement rules out]",
    ),
    "nt_idle_in_active_processors": (
        ("false", "true"), "false",
        "false: a processor that goes idle leaves the process's ActiveProcessors (NT 5.2 SwapContext, "
        "ctxswap.asm); true: it keeps the address space loaded and stays a flush target [U for NT 10]",
    ),
    "nt_runtime_discounts_steal": (
        ("true", "false"), "true",
        "with Hyper-V enlightenments (hv-runtime: HV_X64_MSR_VP_RUNTIME, which QEMU documents as "
        "giving the guest 'an idea of how much time was stolen from it'), NT leaves host-preempted "
        "time out of thread times; without them a tick gap, steal included, is charged [U]",
    ),
    "eevdf_yield_next_buddy": (
        ("false", "true"), "false",
        "EEVDF hosts: whether yield_to's next buddy is honoured (NEXT_BUDDY is off by default in 6.6+) [U]",
    ),
}


@dataclass(frozen=True)
class CostProfile:
    """Cost constants (ns unless named otherwise) and modelling choices.

    Field comments say what each one prices; the YAML says where the value came from.
    """

    name: str
    # host scheduling and virtualisation
    host_switch_ns: float  # host context switch between two vCPU threads (incl. VMCS load)
    host_tick_ns: float  # host scheduler tick: when a used-up slice is noticed (CONFIG_HZ) [U]
    vm_exit_ns: float  # one VM exit + entry round trip for a trivial exit
    halt_ns: float  # HLT exit and scheduling the vCPU thread out
    wake_ns: float  # host cost of waking a halted vCPU (kvm_vcpu_kick + try_to_wake_up), paid by the waker
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
    flush_ceiling_pages: float  # Linux tlb_single_page_flush_ceiling: above this many pages, flush all
    hv_gva_flush_page_ns: float  # host per-page flush of a fine-grained FIFO entry (kvm_x86_flush_tlb_gva)
    # hypercalls and PV flush
    hypercall_ns: float  # hypercall exit, decode and return
    hv_flush_per_vcpu_ns: float  # kvm_hv_flush_tlb work per vCPU of the partition
    steal_check_ns: float  # kvm-pv: reading/cmpxchg of one target's steal-time preempted flag
    csd_check_ns: float  # Linux: a csd queued behind unrun ones: its tlb_gen check and csd_unlock [U]
    hv_list_entry_ns: float  # guest: writing one GVA entry of a flush-list hypercall's input page
    # guest kernel
    guest_switch_ns: float  # guest thread context switch
    lock_spin_ns: float  # how long a lock waiter spins before it sleeps (pushlock spin, rwsem optimistic spin)
    syscall_ns: float  # system call entry and exit
    mmap_ns: float  # creating a mapping (VAD insert / vma insert)
    fault_ns: float  # demand-zero page fault incl. zeroing the page, per page
    touch_user_ns: float  # user-mode work per touched page
    unmap_page_ns: float  # clearing one PTE at unmap
    free_page_ns: float  # freeing one page after the flush
    # Windows (NT) guest
    nt_tick_ns: float  # clock interval: the timer resolution nanosleep expiries wait for [U: 15.625 ms default]
    nt_quantum_ns: float  # Windows Server thread quantum (12 clock ticks) [U]
    nt_flush_batch_pages: float  # PTEs torn down per TB-flush round (MiFlushPteList per page directory: 512)
    nt_pv_list_max_pages: float  # pages per round Windows sends as a GVA list; above it, a space flush [U]
    # Linux guest
    linux_sched_latency_ns: float  # guest CFS sched_latency (6 ms x (1 + ilog2(min(ncpus, 8))))
    linux_min_granularity_ns: float  # guest CFS sched_min_granularity (0.75 ms x the same factor)
    mmu_gather_pages: float  # pages an mmu_gather batches before it must flush (MAX_GATHER_BATCH_COUNT)
    # workloads
    copy_page_ns: float  # ebizzy: memcpy of one page
    search_ns: float  # ebizzy: one bsearch of a chunk's records
    cpu_chunk_ns: float  # cpu-bound: one unit of work
    # modelling choices ([U]; see CHOICES)
    nt_fault_ws_lock: str = "none"
    nt_idle_in_active_processors: str = "false"
    nt_runtime_discounts_steal: str = "true"
    eevdf_yield_next_buddy: str = "false"

    def cost(self, name: str) -> float:
        return float(getattr(self, name))

    def choice(self, name: str) -> str:
        return str(getattr(self, name))

    def flag(self, name: str) -> bool:
        """A true/false choice as a bool."""
        return getattr(self, name) == "true"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def digest(self) -> str:
        """Content hash of the constants and choices (the name is not part of it).

        Computed once per profile: every run key of a sweep or search trial hashes it in.
        """
        cached = self.__dict__.get("_digest")
        if cached is None:
            content = {k: (v if k in CHOICES else float(v)) for k, v in self.to_dict().items() if k != "name"}
            cached = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
            object.__setattr__(self, "_digest", cached)
        return cached

    def replace(self, **values: Any) -> "CostProfile":
        return profile_from_mapping({**self.to_dict(), **values}, source=f"{self.name} (modified)")


def cost_names() -> list[str]:
    """The numeric constants (what ``calibrate --fit`` can fit)."""
    return [f.name for f in fields(CostProfile) if f.name != "name" and f.name not in CHOICES]


def choice_names() -> list[str]:
    return list(CHOICES)


def profile_from_mapping(data: Mapping[str, Any], *, source: str) -> CostProfile:
    """Build a profile from ``{name, costs: {...}, choices: {...}}``.

    Every cost must be present, known and >= 0; choices are optional (each
    defaults to its literature value) but must be known and one of their values.
    """
    known = set(cost_names())
    costs = dict(data.get("costs", data))
    costs.pop("name", None)
    raw_choices = dict(data.get("choices") or {})
    for k in list(costs):
        if k in CHOICES:  # a flat mapping may carry choices beside costs
            raw_choices.setdefault(k, costs.pop(k))
    costs.pop("choices", None)
    costs.pop("description", None)
    costs.pop("fitted_to", None)
    unknown = sorted(set(costs) - known)
    if unknown:
        raise ConfigError("profile", f"{source}: unknown cost {unknown[0]!r}; known costs: {', '.join(sorted(known))}")
    missing = [n for n in cost_names() if n not in costs]
    if missing:
        raise ConfigError("profile", f"{source}: missing cost {missing[0]!r}; every cost must be given")
    values: dict[str, Any] = {}
    for n in cost_names():
        v = costs[n]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError("profile", f"{source}: cost {n} must be a number >= 0, got {v!r}")
        values[n] = float(v)
    for n, v in raw_choices.items():
        if n not in CHOICES:
            raise ConfigError("profile", f"{source}: unknown choice {n!r}; known choices: {', '.join(CHOICES)}")
        text = str(v).lower() if isinstance(v, bool) else str(v)
        allowed = CHOICES[n][0]
        if text not in allowed:
            raise ConfigError("profile", f"{source}: choice {n} must be one of {', '.join(allowed)}, got {v!r}")
        values[n] = text
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
