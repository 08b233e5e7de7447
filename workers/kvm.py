"""KVM's per-VM host state that shapes overcommit: directed yield and the steal-time byte.

``kvm_vcpu_on_spin`` (virt/kvm/kvm_main.c, 4.19 text, unchanged in substance
since): after a pause-loop exit, scan the VM's vCPUs round robin from the one
after ``kvm->last_boosted_vcpu``; a candidate must be ``vcpu->preempted``
(descheduled while runnable, ``kvm_sched_out``), not the spinner, and, since
``handle_pause`` passes ``yield_to_kernel_mode``, preempted at CPL 0
(``preempted_in_kernel``, set in ``kvm_arch_vcpu_put``). A candidate that is itself
in a spin loop is eligible every other time (``dy_eligible`` toggles). The first
``yield_to`` that succeeds ends the scan and becomes ``last_boosted_vcpu``;
each -ESRCH costs one of three tries. Nothing looks at whom the spinner waits
for: an IPI target preempted in user mode is never a candidate.

The steal-time ``preempted`` byte the guest reads for PV TLB flush
(``kvm_steal_time_set_preempted``) is set on *every* ``vcpu_put`` in the 2018
hosts (4.16-4.19: ``kvm_arch_vcpu_put``), so a halted vCPU reads as preempted
too; later kernels set it only ``if (vcpu->preempted)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.host import RUNNABLE, RUNNING

if TYPE_CHECKING:
    from workers.guest.vcpu import VCpu
    from workers.host import Host, Probe
    from workers.stats import Counters


class KvmVm:
    __slots__ = ("host", "vcpus", "st_on_every_put", "last_boosted", "candidates", "probe", "c")

    def __init__(self, host: "Host", *, st_on_every_put: bool, probe: "Probe | None", counters: "Counters") -> None:
        self.host = host
        self.vcpus: list[VCpu] = []
        self.st_on_every_put = st_on_every_put
        self.last_boosted = -1  # kvm->last_boosted_vcpu
        self.candidates = 0  # bitmask: vcpu->preempted && preempted_in_kernel
        self.probe = probe
        self.c = counters

    def sched_out(self, v: "VCpu", in_kernel: bool) -> None:
        """``kvm_sched_out`` + ``kvm_arch_vcpu_put``: record why and how the vCPU left its pCPU."""
        if v.involuntary:
            self.c.preemptions += 1
            v.kvm_preempted = True
            v.in_kernel = in_kernel
            if in_kernel:
                self.candidates |= v.bit
        v.st_preempted = self.st_on_every_put or v.involuntary

    def sched_in(self, v: "VCpu") -> None:
        """``kvm_sched_in`` (preempted = false) and, for a yielder, the end of ``kvm_vcpu_on_spin``."""
        v.kvm_preempted = False
        self.candidates &= ~v.bit
        if v.spin_loop:
            v.spin_loop = False
            v.dy_eligible = False
        v.st_preempted = False  # record_steal_time(): xchg(&st->preempted, 0)

    def on_spin(self, me: "VCpu") -> None:
        """``kvm_vcpu_on_spin(me, yield_to_kernel_mode=true)``."""
        me.spin_loop = True
        cand = self.candidates & ~me.bit
        last = self.last_boosted
        vcpus = self.vcpus
        host = self.host
        tries = 3
        chosen = None
        # pass 0: indexes after last_boosted_vcpu; pass 1: from the start up to it
        high = (cand >> (last + 1)) << (last + 1) if last >= 0 else cand
        for mask in (high, cand & ~high):
            while mask and tries and chosen is None:
                low = mask & -mask
                mask ^= low
                i = low.bit_length() - 1
                vcpu = vcpus[i]
                if vcpu.state != RUNNABLE:
                    continue
                if vcpu.spin_loop:  # kvm_vcpu_eligible_for_directed_yield()
                    eligible = vcpu.dy_eligible
                    vcpu.dy_eligible = not vcpu.dy_eligible
                    if not eligible:
                        continue
                if self.probe is not None:
                    self.probe.directed_yield(host.sim.now, me, vcpu)
                r = host.yield_to(me, vcpu)
                if r > 0:
                    self.last_boosted = i
                    chosen = vcpu
                elif r < 0:
                    tries -= 1
            if chosen is not None or not tries:
                break
        if chosen is not None:
            self.c.directed_yields += 1
        if me.state == RUNNING:  # it kept its pCPU: the scan is over
            me.spin_loop = False
        me.dy_eligible = False


__all__ = ["KvmVm"]
