"""RunResult: what one simulated run measured, as flat scalars.

Times are guest-visible (as `time` prints them inside the guest: a thread's time
counts while the guest has it on a vCPU, whether or not the host gives that vCPU
a pCPU), because that is what the 2018 measurement reports.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

#: Result fields that depend on the machine, not on the config: excluded from determinism checks.
NONDETERMINISTIC_FIELDS = frozenset({"engine_wall_s"})


@dataclass(frozen=True, slots=True)
class RunResult:
    outcome: str  # "ok" or "crash"
    crash_reason: str  # "" or the Windows bugcheck name, e.g. PAGE_FAULT_IN_NONPAGED_AREA
    effective_vcpus: int  # vCPUs the guest actually uses (Windows ignores vCPUs past 64 sockets)
    real_s: float
    user_s: float
    sys_s: float
    ops: int  # completed workload operations (mmap/munmap iterations, ebizzy records, cpu chunks)
    ops_per_s: float
    shootdowns: int  # remote TLB shootdowns the guest initiated
    ipis: int  # guest IPIs sent (TLB-flush and reschedule)
    vm_exits: int
    hypercalls: int
    hc_flush_space: int  # HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE
    hc_flush_list: int  # HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST
    hc_flush_space_ex: int  # HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX
    hc_flush_list_ex: int  # HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX
    hc_errors: int  # hypercalls that returned a status other than HV_STATUS_SUCCESS
    full_flushes: int  # remote flushes done as a full TLB flush
    fine_flushes: int  # remote flushes done page by page (kvm-current FIFO entries)
    deferred_flushes: int  # flushes of preempted/halted vCPUs left to their next VM entry
    spin_s: float  # guest time spent spinning on shootdown acknowledgements
    lock_wait_s: float  # guest time threads waited for the address-space lock
    lat_p50_us: float  # shootdown latency: initiation to return, per shootdown
    lat_p90_us: float
    lat_p99_us: float
    lat_max_us: float
    preemptions: int  # host preemptions of this VM's vCPUs
    ple_exits: int  # pause-loop exits
    pcpu_util: float  # busy pCPU time / (pcpus x real)
    sim_events: int
    engine_wall_s: float  # wall time of the simulation itself (not deterministic)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def metrics(self) -> dict[str, Any]:
        """The deterministic part: bit-identical for the same config and seed."""
        return {k: v for k, v in self.to_dict().items() if k not in NONDETERMINISTIC_FIELDS}


def metric_names() -> list[str]:
    return [f.name for f in fields(RunResult)]
