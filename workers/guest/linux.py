"""Linux 4.19 as the guest: mm_cpumask, lazy TLB, csd queues, steal-time accounting.

* **Time.** With KVM steal time the guest's tick accounting charges the time its
  vCPU waited for a pCPU as steal (``steal_account_process_time``), not to the
  task; interrupt time lands in the interrupted task's stime
  (``account_system_index_time``). So a thread's clock is its vCPU's pCPU time.
* **Shootdown targets** are ``mm_cpumask(mm)`` minus the caller
  (``flush_tlb_mm_range`` -> ``native_flush_tlb_others``). A CPU joins the mask in
  ``switch_mm_irqs_off``. An idle CPU enters lazy TLB mode: it keeps the mm
  loaded and stays in the mask unless the CPU has PCID, when
  ``tlb_defer_switch_to_init_mm()`` is false and it switches to init_mm at once
  (``enter_lazy_tlb``). A lazy CPU that takes a flush IPI switches to init_mm and
  leaves the mask (``flush_tlb_func_common``); when it runs the mm again it flushes
  if the mm's tlb_gen moved on.
* **IPIs coalesce.** ``smp_call_function_many`` queues a csd per target and sends an
  IPI only when the target's ``call_single_queue`` was empty (``llist_add``); the
  target runs every queued csd in one interrupt, and once it has caught up with
  the mm's tlb_gen the later ones have nothing to flush. The sender then waits
  for every csd (``csd_lock_wait``), interrupts enabled.
* **Scheduling.** Guest CFS slices: max(latency / nr, min granularity) with nr
  the threads per vCPU; a readied thread goes to its last vCPU if idle, else to
  any idle one (``select_idle_sibling``), else the ready queue (simplified: one
  queue). ``nanosleep`` ends after the request plus the default 50 us timer slack.
"""

from __future__ import annotations

from workers.guest.kernel import Kernel
from workers.guest.thread import GuestThread
from workers.guest.vcpu import VCpu, Wait
from workers.guest.ops import P_THREAD
from workers.host import RUNNING

#: ``init_task.timer_slack_ns``: hrtimer sleeps may end this much after their expiry.
TIMER_SLACK_NS = 50_000


class LinuxKernel(Kernel):
    os_name = "linux"

    def __init__(self, *args, pcid: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        p = self.p
        self.pcid = pcid
        self.mm_mask = 0  # mm_cpumask(mm)
        self._targets: dict[int, list[VCpu]] = {}  # mask -> its vCPUs
        self.ceiling = int(p.flush_ceiling_pages)
        self.csd_ns = int(p.csd_check_ns)  # a coalesced csd: the tlb_gen check and csd_unlock
        self.flush_full = int(p.flush_full_ns)

    # --- time ----------------------------------------------------------------------------
    def clock(self, v: VCpu) -> int:
        if v.state == RUNNING:
            return v.oncpu_base + self.sim.now - v.dispatched_at
        return v.oncpu_base

    def thread_quantum_ns(self, threads_per_vcpu: int) -> int:
        nr = max(1, threads_per_vcpu)
        s = int(self.p.linux_sched_latency_ns) // nr
        return max(s, int(self.p.linux_min_granularity_ns))

    def sleep_end(self, ns: int) -> int:
        return self.sim.now + ns + TIMER_SLACK_NS

    # --- threads -------------------------------------------------------------------------
    def pick_vcpu(self, t: GuestThread) -> VCpu | None:
        if not self.idle:
            return None
        last = self.vcpus[t.last_vcpu]
        if last.idle_pos >= 0:
            return last
        return self.idle[self.rng.randrange(len(self.idle))]

    def switched_in(self, v: VCpu, t: GuestThread) -> int:
        """``switch_mm_irqs_off``: join mm_cpumask; flush if shootdowns went by meanwhile."""
        v.lazy = False
        if not v.in_mm:
            v.in_mm = True
            self.mm_mask |= v.bit
        if v.missed_flush:
            v.missed_flush = False
            self.c.full_flushes += 1
            return self.flush_full
        return 0

    def went_idle(self, v: VCpu) -> None:
        """``enter_lazy_tlb``: stay lazy without PCID, switch to init_mm with it."""
        if self.pcid:
            self._leave_mm(v)
        else:
            v.lazy = True

    def _leave_mm(self, v: VCpu) -> None:
        if v.in_mm:
            v.in_mm = False
            self.mm_mask &= ~v.bit
            v.missed_flush = True

    # --- TLB flush --------------------------------------------------------------------------
    def target_mask(self, v: VCpu) -> int:
        return self.mm_mask & ~v.bit

    def shootdown_targets(self, v: VCpu) -> list[VCpu]:
        mask = self.mm_mask & ~v.bit
        cached = self._targets.get(mask)
        if cached is not None:
            return cached
        out = []
        vcpus = self.vcpus
        m = mask
        while m:
            low = m & -m
            m ^= low
            out.append(vcpus[low.bit_length() - 1])
        if len(self._targets) > 4096:
            self._targets.clear()
        self._targets[mask] = out  # callers only read it: mm_cpumask rarely changes under a busy mm
        return out

    def flush_cost(self, pages: int) -> int:
        """``flush_tlb_func_common`` work for ``pages`` (a full flush above the ceiling)."""
        if pages > self.ceiling:
            return self.flush_full
        return int(self.p.flush_page_base_ns + self.p.flush_page_ns * pages)

    def book_flush_ipis(self, targets: list[VCpu], wait: Wait, pages: int) -> list[VCpu]:
        """Queue a csd on every target; returns those whose queue was empty (they get an IPI).

        A target whose queued csds have not run yet will catch up with the mm's
        tlb_gen when they do, so a csd queued behind them only costs its check.
        The running-target case is inlined: it is the engine's hottest loop.
        """
        now = self.sim.now
        csd = self.csd_ns
        full = pages > self.ceiling
        work = self.handler_ns + self.flush_cost(pages)
        lazy_work = self.handler_ns + self.flush_full
        deliver = self.deliver_ns
        deadline = wait.deadline
        sent = []
        for tv in targets:
            fs = tv.flush_start
            if tv.state == RUNNING and not tv.lazy:
                iu = tv.irq_until
                if fs > now:
                    cost = csd
                    start = iu if iu > now else now
                else:
                    cost = work
                    start = now + deliver
                    if iu > start:
                        start = iu
                    if tv.run_since > start:
                        start = tv.run_since
                    tv.flush_start = start
                    sent.append(tv)
                end = start + cost
                tv.irq_until = end
                tv.irq_booked += cost
                if tv.piece == P_THREAD:
                    tv.piece_end += cost
                    tv.piece_irq += cost
                acks = tv.acks
                while acks and acks[0][1] <= now:
                    acks.popleft()
                acks.append((end, end, wait))
                if end > deadline:
                    deadline = end
                continue
            if fs > now or fs == -2:
                self.post_irq(tv, csd, wait)
                continue
            if tv.lazy:  # a lazy CPU switches to init_mm and leaves mm_cpumask
                self._leave_mm(tv)
                running = self.post_irq(tv, lazy_work, wait, deliver=deliver)
                cost = lazy_work
            else:
                running = self.post_irq(tv, work, wait, deliver=deliver)
                cost = work
            tv.flush_start = tv.irq_until - cost if running else -2
            if tv.irq_until > deadline and running:
                deadline = tv.irq_until
            sent.append(tv)
        if deadline > wait.deadline:
            wait.deadline = deadline
        n = len(sent)
        if full:
            self.c.full_flushes += n
        else:
            self.c.fine_flushes += n
        return sent


__all__ = ["LinuxKernel", "TIMER_SLACK_NS"]
