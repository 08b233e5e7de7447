"""Windows Server 2016 as the guest: what NT does differently from Linux on these paths.

* **Time.** The clock interrupt charges every tick elapsed since the CPU's last
  one to the thread current then, in its mode (``KiUpdateRunTime`` ->
  ``KeAccumulateTicks``: TickCount - LastTick). A vCPU the host deschedules keeps
  its thread current, so the gap, steal included, lands in that thread's user or
  sys time at the next tick; interrupt-level time goes to the processor's
  InterruptTime, not to the thread. So a thread's clock is wall time while it is
  current on a vCPU, minus the interrupt work done there. With Hyper-V
  enlightenments the VP runtime MSR tells the guest what was stolen; whether NT
  then leaves steal out is the profile choice ``nt_runtime_discounts_steal`` [U].
* **Shootdown targets** are the process's ``ActiveProcessors`` minus the caller
  (``KeFlushProcessTb``): the processors whose current thread belongs to it.
  ``SwapContext`` clears the bit when a processor switches to another process,
  and the idle thread belongs to the idle process, so an idle vCPU leaves the set
  (NT 5.2 amd64 ctxswap.asm) [U for NT 10: the profile choice
  ``nt_idle_in_active_processors`` keeps it in].
* **Initiator and targets.** The initiator raises to SYNCH_LEVEL (12), sends the
  packet, flushes locally and PAUSE-spins until every target has signalled
  (``KiIpiStallOnPacketTargets``), interrupts enabled. Targets signal *before*
  flushing (``KiFlushTargetProcessTb`` -> ``KiIpiSignalPacketDone``). A deletion
  of many pages overflows the flush list, so each round is a process-wide flush.
* **Scheduling.** A process's threads run in one processor group of at most 64
  processors (WS2016 before Windows 11/Server 2022: "a process is assigned to a
  single group by default", groups handed out round robin, so which one is the
  seed's draw); a readied thread goes to its ideal processor if idle,
  else its last one, else any idle one in the group (``KiSelectReadyThread``,
  simplified: equal priorities, one ready queue). Server quantum: 12 ticks [U].
* **Sleep.** A timer expires at the first clock tick at or after its due time, so
  a "tiny" ``nanosleep`` lasts until the next tick (Cygwin ``cygwait`` ->
  ``NtSetTimer``; the default resolution is 15.625 ms unless a process raised it [U]).
"""

from __future__ import annotations

from random import Random

from workers.guest.kernel import Kernel
from workers.guest.ops import P_THREAD
from workers.guest.thread import GuestThread
from workers.guest.vcpu import VCpu, Wait
from workers.host import RUNNING

#: Logical processors in a Windows processor group.
GROUP_SIZE = 64


class NtKernel(Kernel):
    os_name = "windows"

    def __init__(self, *args, group_rng: Random, enlightened: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        p = self.p
        self.steal_discounted = enlightened and p.flag("nt_runtime_discounts_steal")
        self.active = 0  # Process->ActiveProcessors, a bitmask of vCPU indexes
        self.idle_stays_active = p.flag("nt_idle_in_active_processors")
        self.tick_ns = int(p.nt_tick_ns)
        self.flush_ns = int(p.flush_full_ns)
        # one processor group: the idle pool holds only its processors
        groups = [self.online[i:i + GROUP_SIZE] for i in range(0, len(self.online), GROUP_SIZE)]
        group = groups[group_rng.randrange(len(groups))] if len(groups) > 1 else groups[0]
        for v in self.online:
            if v not in group:
                self._idle_remove(v)
        self.group = group

    # --- time ----------------------------------------------------------------------------
    def clock(self, v: VCpu) -> int:
        now = self.sim.now
        busy = v.irq_booked
        if v.state == RUNNING and v.irq_until > now:
            busy -= v.irq_until - now
        if self.steal_discounted:  # pCPU time only, as Linux with steal time
            return v.oncpu_base + (now - v.dispatched_at if v.state == RUNNING else 0) - busy
        return now - busy

    def thread_quantum_ns(self, threads_per_vcpu: int) -> int:
        return int(self.p.nt_quantum_ns)

    def sleep_end(self, ns: int) -> int:
        due = self.sim.now + ns
        tick = self.tick_ns
        return -(-due // tick) * tick

    # --- threads -------------------------------------------------------------------------
    def home_vcpu(self, t: GuestThread) -> VCpu:
        return self.group[t.ideal_vcpu % len(self.group)]

    def pick_vcpu(self, t: GuestThread) -> VCpu | None:
        if not self.idle:
            return None
        group = self.group
        ideal = group[t.ideal_vcpu % len(group)]
        if ideal.idle_pos >= 0:
            return ideal
        last = self.vcpus[t.last_vcpu]
        if last.idle_pos >= 0:  # the idle pool holds only the group's processors
            return last
        return self.idle[self.rng.randrange(len(self.idle))]

    def switched_in(self, v: VCpu, t: GuestThread) -> int:
        self.active |= v.bit
        return 0

    def went_idle(self, v: VCpu) -> None:
        if not self.idle_stays_active:
            self.active &= ~v.bit

    # --- TB flush --------------------------------------------------------------------------
    def target_mask(self, v: VCpu) -> int:
        return self.active & ~v.bit

    def shootdown_targets(self, v: VCpu) -> list[VCpu]:
        mask = self.active & ~v.bit
        if not mask:
            return []
        out = []
        vcpus = self.vcpus
        while mask:
            low = mask & -mask
            mask ^= low
            out.append(vcpus[low.bit_length() - 1])
        return out

    def book_flush_ipis(self, targets: list[VCpu], wait: Wait, pages: int) -> list[VCpu]:
        """``KiFlushTargetProcessTb`` on each target: signal done, then flush. Every target gets an IPI."""
        handler = self.handler_ns
        work = handler + self.flush_ns
        deliver = self.deliver_ns
        now = self.sim.now
        deadline = wait.deadline
        for tv in targets:
            if tv.state != RUNNING:
                self.post_irq(tv, work, wait, ack_part=handler, deliver=deliver)
                continue
            # post_irq's running case, inlined
            start = now + deliver
            if tv.irq_until > start:
                start = tv.irq_until
            if tv.run_since > start:
                start = tv.run_since
            end = start + work
            tv.irq_until = end
            tv.irq_booked += work
            if tv.piece == P_THREAD:
                tv.piece_end += work
                tv.piece_irq += work
            ack = start + handler
            acks = tv.acks
            while acks and acks[0][1] <= now:
                acks.popleft()
            acks.append((ack, end, wait))
            if ack > deadline:
                deadline = ack
        if deadline > wait.deadline:
            wait.deadline = deadline
        self.c.full_flushes += len(targets)
        return targets


__all__ = ["GROUP_SIZE", "NtKernel"]
