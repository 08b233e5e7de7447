"""Remote TLB shootdown, three ways: native IPIs, Hyper-V PV hypercalls, KVM PV.

Each strategy's ``shootdown(t, pages, work_ns)`` is a generator the unmapping
thread runs with ``yield from`` (under whatever locks its OS holds there): it
first runs ``work_ns`` of kernel work (clearing the PTEs), then picks its targets
and flushes. It returns the kernel time it still owes (its local flush, when no
remote flush had to be waited for), which the caller adds to its next COMPUTE:
one piece instead of two when nothing else happens in between. Each strategy
also has an ``on_vm_entry`` hook: the host work KVM does before a vCPU re-enters
the guest (flushes it deferred), returned as nanoseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workers.guest.ops import COMPUTE, SYS, WAIT_ACKS
from workers.guest.vcpu import VCpu, Wait
from workers.host import HALTED, RUNNING

if TYPE_CHECKING:
    from workers.guest.kernel import Kernel
    from workers.guest.thread import GuestThread
    from workers.profiles import CostProfile

PAGE_SIZE = 4096
#: Where the workload maps its buffers; each thread gets its own 16 GiB window.
MAP_BASE = 0x0000_2000_0000_0000
#: The process's page-table root (CR3), as the guest would pass it in address_space.
PROCESS_CR3 = 0x1AB000


def mapping_range(t: "GuestThread", pages: int) -> tuple[int, int]:
    start = MAP_BASE + (t.tid << 34)
    return start, start + pages * PAGE_SIZE


class Shootdown:
    """What every strategy shares: the local flush and the counters."""

    #: Does KVM do deferred work for this strategy at VM entry (``on_vm_entry``)?
    has_entry_work = False

    def __init__(self, kernel: "Kernel", profile: "CostProfile") -> None:
        self.k = kernel
        self.p = profile
        self.windows = kernel.os_name == "windows"
        self.ceiling = int(profile.flush_ceiling_pages)
        self._full_ns = int(profile.flush_full_ns)

    def local_flush_ns(self, pages: int) -> int:
        """The initiator's own flush: NT flushes the process's TB per round; Linux flushes
        per page up to ``tlb_single_page_flush_ceiling`` and everything above it."""
        if self.windows or pages > self.ceiling:
            return self._full_ns
        return int(self.p.flush_page_base_ns + self.p.flush_page_ns * pages)

    def on_vm_entry(self, v: VCpu) -> int:
        return 0


class NativeShootdown(Shootdown):
    """IPI every target and spin until each has acknowledged (NT packet / Linux csds)."""

    def __init__(self, kernel: "Kernel", profile: "CostProfile") -> None:
        super().__init__(kernel, profile)
        self.send_ns = int(profile.ipi_send_ns)
        self.wake_ns = int(profile.wake_ns)

    def shootdown(self, t: "GuestThread", pages: int, work_ns: int = 0):
        k = self.k
        if work_ns:
            yield (COMPUTE, work_ns, SYS)
        k.c.shootdowns += 1
        targets = k.shootdown_targets(t.vcpu)
        local = self.local_flush_ns(pages)
        if not targets:
            k.c.shootdown_latency_ns.append(local)
            return local
        yield from self.send_ipis(t, targets, pages, k.sim.now, local)
        return 0

    def send_ipis(self, t: "GuestThread", targets: list[VCpu], pages: int, start: int, local_ns: int):
        """Flush locally, one csd/packet per target with an ICR write for each that needs an
        IPI, then wait for every acknowledgement."""
        k = self.k
        c = k.c
        now = k.sim.now
        wait = Wait(t, start)
        halted = [tv for tv in targets if tv.state == HALTED]
        sent = k.book_flush_ipis(targets, wait, pages)
        n = len(sent)
        c.ipis += n
        c.vm_exits += 2 * n  # the sender's ICR-write exit, and the target's interrupt exit
        cost = local_ns + self.send_ns * n + self.wake_ns * len(halted)
        for tv in halted:  # kvm_vcpu_kick() wakes it from the sender's exit
            k.host.wake(tv)
        if k.probe is not None:
            for tv in targets:
                k.probe.flush_request(now, tv, False)
        yield (COMPUTE, cost, SYS)
        k.arm(wait)
        yield (WAIT_ACKS, wait)


class HyperVShootdown(Shootdown):
    """HvFlushVirtualAddress{Space,List}{,Ex} through the emulated hypercall ABI.

    KVM flushes running targets (a kick, and KVM_REQUEST_WAIT until they have left
    guest mode) and leaves the others a request serviced at their next VM entry
    (KVM_REQUEST_NO_WAKEUP), so nobody waits for a preempted vCPU.

    What the guest sends: Linux (``hyperv_flush_tlb_multi``) sends a space flush
    for a full flush (``end == TLB_FLUSH_ALL``, above its ceiling) and a GVA list
    otherwise. Windows: a GVA list for a round of at most ``nt_pv_list_max_pages``
    pages, a space flush above it [U].
    """

    has_entry_work = True
    _COUNTERS = {0x0002: "hc_flush_space", 0x0003: "hc_flush_list", 0x0013: "hc_flush_space_ex",
                 0x0014: "hc_flush_list_ex"}

    def __init__(self, kernel: "Kernel", profile: "CostProfile", *, semantics: str,
                 trace: list[dict[str, Any]] | None) -> None:
        super().__init__(kernel, profile)
        from workers import hyperv

        self.hv = hyperv
        self.partition = hyperv.Partition([v.vp_index for v in kernel.vcpus], semantics=semantics)
        self.present = hyperv.vp_mask(v.vp_index for v in kernel.online)
        self.by_vp = {v.vp_index: v for v in kernel.vcpus}
        self.trace = trace
        self.call_ns = int(profile.hypercall_ns + profile.hv_flush_per_vcpu_ns * len(kernel.vcpus))
        self.kick_ns = int(profile.kick_ns)
        self.ack_ns = int(profile.ack_latency_ns)
        self.exit_ns = int(profile.vm_exit_ns)
        self.entry_ns = int(profile.hv_list_entry_ns)
        self.list_max = int(profile.nt_pv_list_max_pages)
        self._encoded: dict[tuple, list] = {}  # (targets, range) -> the calls encode_flush builds
        self._gva_page_ns = int(profile.hv_gva_flush_page_ns)
        self._native = NativeShootdown(kernel, profile)  # the fallback when no hypercall can be made

    def entry_flush_ns(self, v: VCpu) -> int:
        """Drain ``v``'s pending request (kvm_hv_vcpu_flush_tlb) and price it."""
        ef = self.partition.vm_entry(v.vp_index)
        k = self.k
        if k.probe is not None:
            k.probe.entry_flush(k.sim.now, v, ef.full)
        if ef.full:
            k.c.full_flushes += 1
            return self._full_ns
        if ef.pages:
            k.c.fine_flushes += 1
            return self._gva_page_ns * len(ef.pages)
        return 0

    def on_vm_entry(self, v: VCpu) -> int:
        if (self.partition.pending_mask >> v.vp_index) & 1:
            return self.entry_flush_ns(v)
        return 0

    def _range(self, t: "GuestThread", pages: int) -> tuple[int, int | None]:
        lo, hi = mapping_range(t, pages)
        space = pages > self.list_max if self.windows else pages > self.ceiling
        return lo, (None if space else hi)

    def shootdown(self, t: "GuestThread", pages: int, work_ns: int = 0):
        k = self.k
        c = k.c
        if work_ns:
            yield (COMPUTE, work_ns, SYS)
        start_ns = k.sim.now
        c.shootdowns += 1
        mask = k.target_mask(t.vcpu)  # vp_index == vCPU index, KVM's default
        local = self.local_flush_ns(pages)
        if not mask:
            c.shootdown_latency_ns.append(local)
            return local
        lo, hi = self._range(t, pages)
        key = (mask, lo if hi is not None else -1, hi)
        calls = self._encoded.get(key)
        if calls is None:
            calls = self.hv.encode_flush(mask, present=self.present, address_space=PROCESS_CR3, start=lo, end=hi)
            if len(self._encoded) > 4096:
                self._encoded.clear()
            self._encoded[key] = calls
        fallback = not calls  # no hypercall possible (Linux: VP >= 64 without EX): native IPIs
        owed = local  # the local flush, then each hypercall: one piece each
        for call in calls:
            v = t.vcpu
            res = self.partition.hypercall(v.vp_index, call.control, call.input)
            c.hypercalls += 1
            c.vm_exits += 1
            name = self._COUNTERS.get(call.control & 0xFFFF)
            if name:
                setattr(c, name, getattr(c, name) + 1)
            if self.trace is not None:
                self.trace.append({"time_ns": k.sim.now, "vm": k.vm_index, "caller": v.vp_index, **_trace_dict(res)})
            if res.status != self.hv.HV_STATUS_SUCCESS:
                c.hc_errors += 1
                fallback = True  # Linux: any failure -> native_flush_tlb_multi()
                continue
            kicked = 0
            by_vp = self.by_vp
            probe = k.probe
            for vp in self.partition.vps_of(res.flushed_mask & ~v.bit):
                tv = by_vp[vp]
                if tv.state != RUNNING:
                    c.deferred_flushes += 1
                    if probe is not None:
                        probe.flush_request(k.sim.now, tv, True)
                    continue
                if probe is not None:
                    probe.flush_request(k.sim.now, tv, False)
                kicked += 1
                k.post_irq(tv, self.exit_ns + self.entry_flush_ns(tv))
            cost = self.call_ns + self.kick_ns * kicked + (self.ack_ns if kicked else 0)
            cost += self.entry_ns * max(0, len(call.input) // 8 - 3)  # the GVA entries and banks written
            if (self.partition.pending_mask >> v.vp_index) & 1:  # the caller flushes itself on return
                cost += self.entry_flush_ns(v)
            yield (COMPUTE, owed + cost, SYS)
            owed = 0
        if owed:
            yield (COMPUTE, owed, SYS)
        if fallback:
            yield from self._native.send_ipis(t, k.shootdown_targets(t.vcpu), pages, start_ns, 0)
            return 0
        c.shootdown_latency_ns.append(k.sim.now - start_ns)
        return 0


def _trace_dict(res: Any) -> dict[str, Any]:
    tr = res.trace
    return dict(tr.to_dict() if hasattr(tr, "to_dict") else tr)


class KvmPvShootdown(NativeShootdown):
    """``kvm_flush_tlb_others`` (arch/x86/kernel/kvm.c): skip targets whose steal-time byte says
    preempted (setting KVM_VCPU_FLUSH_TLB for their next entry), IPI the rest and wait for them."""

    has_entry_work = True

    def on_vm_entry(self, v: VCpu) -> int:
        if v.st_flush:  # record_steal_time(): xchg(&st->preempted, 0) & KVM_VCPU_FLUSH_TLB
            v.st_flush = False
            k = self.k
            k.c.full_flushes += 1
            if k.probe is not None:
                k.probe.entry_flush(k.sim.now, v, True)
            return int(self.p.flush_full_ns)
        return 0

    def shootdown(self, t: "GuestThread", pages: int, work_ns: int = 0):
        k = self.k
        c = k.c
        if work_ns:
            yield (COMPUTE, work_ns, SYS)
        c.shootdowns += 1
        start = k.sim.now
        targets = k.shootdown_targets(t.vcpu)
        ipi_targets = []
        for tv in targets:
            if tv.st_preempted and tv.state != RUNNING:
                if k.probe is not None:
                    k.probe.flush_request(k.sim.now, tv, True)
                tv.st_flush = True
                c.deferred_flushes += 1
            else:
                ipi_targets.append(tv)
        local = self.local_flush_ns(pages) + int(self.p.steal_check_ns) * len(targets)
        if not ipi_targets:
            c.shootdown_latency_ns.append(local)
            return local
        yield from self.send_ipis(t, ipi_targets, pages, start, local)
        return 0


STRATEGIES = {"native": NativeShootdown, "hyperv-pv": HyperVShootdown, "kvm-pv": KvmPvShootdown}

__all__ = ["HyperVShootdown", "KvmPvShootdown", "MAP_BASE", "NativeShootdown", "PROCESS_CR3", "STRATEGIES",
           "Shootdown", "mapping_range"]
