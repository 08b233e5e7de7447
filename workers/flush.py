"""Remote TLB shootdown, three ways: native IPIs, Hyper-V PV hypercalls, KVM PV.

Each strategy is a generator the unmapping thread runs with ``yield from``
while it holds the address-space lock, plus a VM-entry hook that performs
flushes the hypervisor deferred to a vCPU's next entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from workers.guest import COMPUTE, SYS, WAIT_ACKS, Guest, GuestThread, VCpu
from workers.host import HALTED, RUNNABLE, RUNNING

if TYPE_CHECKING:
    from workers.profiles import CostProfile

PAGE_SIZE = 4096
#: Where the workload maps its buffers; each thread gets its own 16 GiB window.
MAP_BASE = 0x0000_2000_0000_0000
#: The process's page-table root (CR3), as the guest would pass it in address_space.
PROCESS_CR3 = 0x1AB000


def local_flush_ns(p: "CostProfile", npages: int) -> int:
    """flush_tlb_mm_range(): per-page INVLPG up to the ceiling, a full flush above it."""
    if npages > p.flush_ceiling_pages:
        return int(p.flush_full_ns)
    return int(p.flush_page_base_ns + p.flush_page_ns * npages)


def mapping_range(t: GuestThread, npages: int) -> tuple[int, int]:
    start = MAP_BASE + (t.tid << 34)
    return start, start + npages * PAGE_SIZE


class NativeShootdown:
    """The initiator IPIs every target and spins until each one has flushed and acked.

    Targets acknowledge and return (NT's TB-flush packet routines signal the
    packet done without a reverse stall), so only the initiator waits.
    """

    def __init__(self, guest: Guest, profile: "CostProfile") -> None:
        self.g = guest
        self.p = profile
        self.send_ns = int(profile.ipi_send_ns)
        self.wake_ns = int(profile.wake_ns)
        self.remote_ns = int(profile.ipi_deliver_ns + profile.ipi_handler_ns)

    def send_cost(self, targets: list[VCpu]) -> int:
        """ICR writes; a halted target is also woken from the sender's exit (kvm_vcpu_kick)."""
        halted = sum(1 for tv in targets if tv.state == HALTED)
        return self.send_ns * len(targets) + self.wake_ns * halted

    #: Work the hypervisor does at a vCPU's VM entry; native flushing has none.
    on_vm_entry: Callable[[VCpu], None] | None = None

    def shootdown(self, t: GuestThread, npages: int):
        g = self.g
        start = g.sim.now
        g.c.shootdowns += 1
        targets = g.shootdown_targets(t.vcpu)
        yield (COMPUTE, local_flush_ns(self.p, npages) + self.send_cost(targets), SYS)
        yield from self.send_ipis(t, targets, npages)
        g.c.shootdown_latency_ns.append(g.sim.now - start)

    def send_ipis(self, t: GuestThread, targets: list[VCpu], npages: int):
        """flush_tlb_multi(): one IPI per target, then wait for every acknowledgement."""
        if not targets:
            return
        g = self.g
        t.acks += len(targets)
        handler = self.remote_ns + local_flush_ns(self.p, npages)
        full = npages > self.p.flush_ceiling_pages
        sim = g.sim

        probe = g.probe
        initiator = t.vcpu

        def flushed_and_ack(tv: VCpu) -> None:
            g.flushed(tv)
            if probe is not None:
                probe.ack(sim.now, initiator, tv)
            t.acks -= 1
            if t.acks == 0:
                sim.after(0, g.acks_complete, t)

        for tv in targets:
            g.c.ipis += 1
            g.c.vm_exits += 2 if tv.state == RUNNING else 1  # ICR-write exit, plus the target's kick
            if full:
                g.c.full_flushes += 1
            else:
                g.c.fine_flushes += 1
            g.interrupt(tv, handler, flushed_and_ack)
        yield (WAIT_ACKS,)


class HyperVShootdown(NativeShootdown):
    """HvFlushVirtualAddress{Space,List}{,Ex} through the emulated hypercall ABI.

    KVM flushes running targets (kick + KVM_REQUEST_WAIT for them to leave guest
    mode) and leaves preempted or halted ones a request serviced at their next
    VM entry (KVM_REQUEST_NO_WAKEUP), so nobody waits on a preempted vCPU.
    """

    _COUNTERS = {0x0002: "hc_flush_space", 0x0003: "hc_flush_list", 0x0013: "hc_flush_space_ex", 0x0014: "hc_flush_list_ex"}

    def __init__(self, guest: Guest, profile: "CostProfile", *, semantics: str, trace: list[dict[str, Any]] | None) -> None:
        super().__init__(guest, profile)
        from workers import hyperv

        self.hv = hyperv
        self.partition = hyperv.Partition([v.vp_index for v in guest.vcpus], semantics=semantics)
        self.present = hyperv.vp_mask(v.vp_index for v in guest.online)
        self.by_vp = {v.vp_index: v for v in guest.vcpus}
        self.trace = trace
        self.call_ns = int(profile.hypercall_ns + profile.hv_flush_per_vcpu_ns * len(guest.vcpus))
        self.kick_ns = int(profile.kick_ns)
        self.ack_ns = int(profile.ack_latency_ns)
        self.exit_ns = int(profile.vm_exit_ns)

    def entry_flush_ns(self, v: VCpu) -> int:
        """Drain v's pending request (kvm_hv_vcpu_flush_tlb) and price it."""
        ef = self.partition.vm_entry(v.vp_index)
        g = self.g
        if g.probe is not None:
            g.probe.entry_flush(g.sim.now, v, ef.full)
        if ef.full:
            g.c.full_flushes += 1
            return int(self.p.flush_full_ns)
        if ef.pages:
            g.c.fine_flushes += 1
            return int(self.p.hv_gva_flush_page_ns * len(ef.pages))
        return 0

    def on_vm_entry(self, v: VCpu) -> None:
        if self.partition.pending(v.vp_index):
            v.irq.appendleft([self.entry_flush_ns(v), None])
            self.g.flushed(v)

    def shootdown(self, t: GuestThread, npages: int):
        g = self.g
        c = g.c
        start = g.sim.now
        c.shootdowns += 1
        v = t.vcpu
        targets = g.shootdown_targets(v)
        yield (COMPUTE, local_flush_ns(self.p, npages), SYS)
        if targets:
            lo, hi = mapping_range(t, npages)
            calls = self.hv.encode_flush(
                self.hv.vp_mask(tv.vp_index for tv in targets),
                present=self.present, address_space=PROCESS_CR3, start=lo, end=hi,
            )
            fallback = False
            for call in calls:
                v = t.vcpu
                res = self.partition.hypercall(v.vp_index, call.control, call.input)
                c.hypercalls += 1
                c.vm_exits += 1
                code = call.control & 0xFFFF
                name = self._COUNTERS.get(code)
                if name:
                    setattr(c, name, getattr(c, name) + 1)
                if self.trace is not None:
                    self.trace.append({"time_ns": g.sim.now, "caller": v.vp_index, **_trace_dict(res)})
                if res.status != self.hv.HV_STATUS_SUCCESS:
                    c.hc_errors += 1
                    fallback = True  # Linux: any failure -> native_flush_tlb_multi()
                    continue
                kicked = 0
                for vp in self.hv.vps_of_mask(res.flushed_mask):
                    tv = self.by_vp[vp]
                    if tv is v:
                        continue
                    deferred = tv.state != RUNNING
                    if g.probe is not None:
                        g.probe.flush_request(g.sim.now, tv, deferred)
                    if not deferred:
                        kicked += 1
                        g.interrupt(tv, self.exit_ns + self.entry_flush_ns(tv), None)
                    else:
                        c.deferred_flushes += 1
                    g.flushed(tv)
                cost = self.call_ns + self.kick_ns * kicked + (self.ack_ns if kicked else 0)
                if self.partition.pending(v.vp_index):  # the caller flushes itself on return
                    cost += self.entry_flush_ns(v)
                yield (COMPUTE, cost, SYS)
            if fallback:
                yield (COMPUTE, self.send_cost(targets), SYS)
                yield from self.send_ipis(t, targets, npages)
        c.shootdown_latency_ns.append(g.sim.now - start)


def _trace_dict(res: Any) -> dict[str, Any]:
    tr = res.trace
    return dict(tr.to_dict() if hasattr(tr, "to_dict") else tr)


class KvmPvShootdown(NativeShootdown):
    """kvm_flush_tlb_multi(): preempted targets get KVM_VCPU_FLUSH_TLB in steal time, the rest IPIs."""

    def on_vm_entry(self, v: VCpu) -> None:
        if v.st_flush:  # record_steal_time(): xchg(&st->preempted, 0) & KVM_VCPU_FLUSH_TLB
            v.st_flush = False
            self.g.c.full_flushes += 1
            v.irq.appendleft([int(self.p.flush_full_ns), None])
            self.g.flushed(v)
            if self.g.probe is not None:
                self.g.probe.entry_flush(self.g.sim.now, v, True)

    def shootdown(self, t: GuestThread, npages: int):
        g = self.g
        start = g.sim.now
        g.c.shootdowns += 1
        targets = g.shootdown_targets(t.vcpu)
        ipi_targets = []
        for tv in targets:
            if tv.state == RUNNABLE and tv.preempted:
                if g.probe is not None:
                    g.probe.flush_request(g.sim.now, tv, True)
                tv.st_flush = True
                g.c.deferred_flushes += 1
                g.flushed(tv)
            else:
                ipi_targets.append(tv)
        cost = local_flush_ns(self.p, npages) + int(self.p.steal_check_ns) * len(targets)
        yield (COMPUTE, cost + self.send_cost(ipi_targets), SYS)
        yield from self.send_ipis(t, ipi_targets, npages)
        g.c.shootdown_latency_ns.append(g.sim.now - start)
