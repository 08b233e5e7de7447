"""RunResult: what one simulated run measured, as flat scalars.

With several VMs on the host every VM runs the same workload; a metric is the
mean over the VMs (counters rounded to integers), ``ops_per_s_min`` is the
slowest VM's throughput, shootdown latency percentiles pool every shootdown of
every VM, and ``pcpu_util``/``steal_frac`` describe the host.

Times are guest-visible, as the guest's own ``time``/``getrusage`` report them:
a Windows thread's user/sys time includes time its vCPU waited for a pCPU
(tick-gap accounting), a Linux thread's does not (it is steal, ``steal_s``).
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
    effective_vcpus: int  # vCPUs each guest uses (Windows ignores vCPUs past 64 sockets)
    real_s: float  # per VM: the workload's wall time (mmap-munmap), or duration_s
    user_s: float
    sys_s: float
    steal_s: float  # per VM: time its vCPUs were runnable but waiting for a pCPU
    ops: int  # completed workload operations (mmap/munmap iterations, ebizzy records, cpu chunks)
    ops_per_s: float
    ops_per_s_min: float  # the slowest VM's ops/s
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
    fine_flushes: int  # remote flushes done page by page (ranged IPIs, kvm-current FIFO entries)
    deferred_flushes: int  # flushes of preempted/halted vCPUs left to their next VM entry
    spin_s: float  # guest time spent spinning on shootdown acknowledgements
    lock_wait_s: float  # guest time threads waited for locks (mmap_guard, working set, mmap_sem)
    lat_p50_us: float  # shootdown latency: initiation to the last acknowledgement, per shootdown
    lat_p90_us: float
    lat_p99_us: float
    lat_max_us: float
    preemptions: int  # involuntary host deschedules of the VM's vCPUs
    ple_exits: int  # pause-loop exits
    directed_yields: int  # kvm_vcpu_on_spin() yields that found a candidate
    pcpu_util: float  # host: busy pCPU time / (pcpus x simulated time)
    steal_frac: float  # host: share of the VMs' runnable vCPU time spent waiting for a pCPU
    sim_events: int
    engine_wall_s: float  # wall time of the simulation itself (not deterministic)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def metrics(self) -> dict[str, Any]:
        """The deterministic part: bit-identical for the same config and seed."""
        return {k: v for k, v in self.to_dict().items() if k not in NONDETERMINISTIC_FIELDS}


def metric_names() -> list[str]:
    return [f.name for f in fields(RunResult)]
