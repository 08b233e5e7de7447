"""The host: pCPUs, one runqueue per pCPU, and the fair scheduler of its kernel generation.

What must emerge here is preemption. With more runnable vCPUs than pCPUs a vCPU
waits on *its own* pCPU's runqueue until the task ahead of it has used its
slice, and whoever waits on that vCPU (a shootdown initiator, a lock waiter)
waits too. A single global runqueue would hand a preempted vCPU the first pCPU
that frees up and hide most of that wait, so this host keeps per-pCPU queues as
Linux does (``struct rq`` per CPU), places wakeups like ``select_task_rq_fair``
and pulls work into an idle pCPU like ``newidle_balance``.

Two scheduler generations, chosen with the host's KVM generation (``host_kvm``):

* ``CFS`` (4.16-4.19, the 2018 hosts; ``kernel/sched/fair.c``): the slice is
  ``sched_slice()`` = max(sched_latency, nr * min_granularity) / nr with
  ``sched_nr_latency`` 8; a woken task gets GENTLE_FAIR_SLEEPERS credit
  (``place_entity``: min_vruntime - latency/2) and preempts the current task when
  it is more than the wakeup granularity ahead (``check_preempt_wakeup``);
  ``yield_to`` sets the next buddy, which ``pick_next_entity`` honours when it is
  not unfair (``wakeup_preempt_entity(next, left) < 1``).
* ``EEVDF`` (6.6+): a fixed base slice; pick the eligible task (vruntime <= the
  queue's average) with the earliest virtual deadline; a sleeper keeps its lag;
  RUN_TO_PARITY lets the current task finish its slice before a wakeup preempts
  it; NEXT_BUDDY is off by default, so ``yield_to``'s next buddy is ignored unless
  the profile says otherwise [U: a later kernel may honour it for yield_to].

Tasks are equal-weight (nice 0). Times are integer ns.
"""

from __future__ import annotations

from heapq import heappop, heappush
from random import Random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.des import Simulation

RUNNING, RUNNABLE, HALTED, WAKING = 0, 1, 2, 3
STATE_NAMES = ("RUNNING", "RUNNABLE", "HALTED", "WAKING")

#: ``sched_nr_latency``: above this many tasks CFS's period grows with nr_running.
SCHED_NR_LATENCY = 8


class Probe:
    """Observation hooks for tests and debugging; every method is optional (no-op by default)."""

    def dispatch(self, now: int, pcpu: int, task: "HostTask") -> None: ...

    def deschedule(self, now: int, pcpu: int, task: "HostTask") -> None: ...

    def guest_code(self, now: int, vcpu: "HostTask") -> None:
        """The vCPU starts (or resumes) running its thread's code."""

    def entry_flush(self, now: int, vcpu: "HostTask", full: bool) -> None:
        """A flush the hypervisor deferred is performed at the vCPU's VM entry."""

    def flush_request(self, now: int, vcpu: "HostTask", deferred: bool) -> None:
        """A PV flush targets the vCPU: performed now (running) or deferred to its next entry."""

    def ple_exit(self, now: int, vcpu: "HostTask", window_ns: int) -> None:
        """A spinning vCPU took a pause-loop exit after spinning ``window_ns`` (its PLE window)."""

    def directed_yield(self, now: int, spinner: "HostTask", target: "HostTask") -> None:
        """kvm_vcpu_on_spin() is about to try ``yield_to(target)``."""


class HostTask:
    """A host thread: a vCPU of some VM, or a co-tenant's always-runnable thread."""

    __slots__ = (
        "state", "pcpu", "rq", "vruntime", "deadline", "vlag", "dispatched_at", "runnable_since",
        "rq_seq", "run_ns", "wait_ns", "involuntary", "fresh",
    )

    def __init__(self) -> None:
        self.state = HALTED
        self.pcpu = -1  # the pCPU running it, or -1
        self.rq = 0  # the runqueue it belongs to (task_cpu()); a woken task goes back to it
        self.vruntime = 0
        self.deadline = 0  # EEVDF virtual deadline
        self.vlag = 0  # EEVDF lag kept across sleep
        self.dispatched_at = 0
        self.runnable_since = 0
        self.rq_seq = -1
        self.run_ns = 0
        self.wait_ns = 0  # runnable but not running: steal, as the guest's steal-time page reports it
        self.involuntary = False  # descheduled while runnable (KVM: vcpu->preempted = true in kvm_sched_out)
        self.fresh = True  # not dispatched yet in this run

    def on_dispatch(self, switch_ns: int) -> None:
        """Called when the task gets a pCPU; it starts doing work after ``switch_ns``."""

    def on_deschedule(self) -> None:
        """Called when the task loses its pCPU (preempted, yielded or halted); ``involuntary`` is set."""


class RunQueue:
    """One pCPU's queue of runnable tasks that are not running (``struct cfs_rq``)."""

    __slots__ = ("cpu", "heap", "waiting", "curr", "min_vruntime", "next_buddy", "skip_buddy",
                 "slice_end", "timer_tok", "timer_at")

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.heap: list[tuple[int, int, HostTask]] = []  # (key, seq, task), lazily deleted
        self.waiting = 0
        self.curr: HostTask | None = None
        self.min_vruntime = 0
        self.next_buddy: HostTask | None = None
        self.skip_buddy: HostTask | None = None
        self.slice_end = 0
        self.timer_tok = 0
        self.timer_at = -1

    def nr_running(self) -> int:
        return self.waiting + (self.curr is not None)


class Host:
    """pCPUs and their runqueues; ``eevdf`` picks the scheduler generation."""

    def __init__(self, sim: "Simulation", pcpus: int, *, min_granularity_ns: int, switch_ns: int, tick_ns: int,
                 eevdf: bool, rng: Random, eevdf_yield_next_buddy: bool = False) -> None:
        self.sim = sim
        self.tick_ns = max(1, tick_ns)
        self.rng = rng
        self.pcpus = pcpus
        self.switch_ns = switch_ns
        self.eevdf = eevdf
        self.eevdf_yield_next_buddy = eevdf_yield_next_buddy
        # host_slice_us is the scaled min granularity: 0.75 ms x get_update_sysctl_factor(), which is
        # 1 + ilog2(min(ncpus, 8)) (SCHED_TUNABLESCALING_LOG); the others scale alike.
        self.min_gran = min_granularity_ns
        self.latency = SCHED_NR_LATENCY * min_granularity_ns  # 6 ms x factor
        self.wakeup_gran = min_granularity_ns * 4 // 3  # 1 ms x factor
        self.rqs = [RunQueue(c) for c in range(pcpus)]
        self._slices = [self._slice_for(n) for n in range(64)]
        self.idle: set[int] = set(range(pcpus))
        self._idle_rr = 0
        self._seq = 0
        self.busy_ns = 0
        self.probe: Probe | None = None
        self._wake_batch: list[HostTask] = []
        self._rq_of_new = 0

    # --- queue primitives -----------------------------------------------------------
    def _key(self, task: HostTask) -> int:
        return task.deadline if self.eevdf else task.vruntime

    def _enqueue(self, rq: RunQueue, task: HostTask) -> None:
        task.state = RUNNABLE
        task.rq = rq.cpu
        task.runnable_since = self.sim.now
        self._seq += 1
        task.rq_seq = self._seq
        heappush(rq.heap, (self._key(task), self._seq, task))
        rq.waiting += 1

    def _dequeue(self, rq: RunQueue, task: HostTask) -> None:
        """Take a waiting task out of its queue (lazy: the heap entry goes stale)."""
        task.rq_seq = -1
        rq.waiting -= 1
        task.wait_ns += self.sim.now - task.runnable_since

    def _leftmost(self, rq: RunQueue, skip: HostTask | None = None) -> HostTask | None:
        """The first live waiting task (optionally not ``skip``), without removing it."""
        heap = rq.heap
        while heap and (heap[0][2].rq_seq != heap[0][1] or heap[0][2].state != RUNNABLE):
            heappop(heap)
        if not heap:
            return None
        first = heap[0][2]
        if first is not skip:
            return first
        second = None
        for key, seq, t in heap[1:]:
            if t.rq_seq == seq and t.state == RUNNABLE and (second is None or (key, seq) < second[0]):
                second = ((key, seq), t)
        return second[1] if second is not None else None

    def _avg_vruntime(self, rq: RunQueue, extra: HostTask | None = None) -> int:
        """EEVDF ``avg_vruntime()`` over the queue, the current task and ``extra``."""
        total = 0
        n = 0
        for _, seq, t in rq.heap:
            if t.rq_seq == seq and t.state == RUNNABLE:
                total += t.vruntime
                n += 1
        cur = rq.curr
        if cur is not None:
            total += cur.vruntime + (self.sim.now - cur.dispatched_at)
            n += 1
        if extra is not None:
            total += extra.vruntime
            n += 1
        return total // n if n else rq.min_vruntime

    def _pick(self, rq: RunQueue) -> HostTask | None:
        """``pick_next_entity()`` once the current task has been put back."""
        if not rq.waiting:
            return None
        if self.eevdf:
            return self._pick_eevdf(rq)
        left = self._leftmost(rq)
        se = left
        if rq.skip_buddy is not None and rq.skip_buddy is left:
            second = self._leftmost(rq, skip=left)
            if second is not None and second.vruntime - left.vruntime <= self.wakeup_gran:
                se = second
        nb = rq.next_buddy
        if nb is not None and nb.state == RUNNABLE and nb.rq_seq != -1 and nb.rq == rq.cpu:
            if nb.vruntime - left.vruntime <= self.wakeup_gran:  # wakeup_preempt_entity(next, left) < 1
                se = nb
        rq.next_buddy = rq.skip_buddy = None
        return se

    def _pick_eevdf(self, rq: RunQueue) -> HostTask | None:
        nb = rq.next_buddy
        rq.next_buddy = rq.skip_buddy = None
        avg = self._avg_vruntime(rq)
        if nb is not None and nb.state == RUNNABLE and nb.rq_seq != -1 and nb.rq == rq.cpu and nb.vruntime <= avg:
            return nb
        best = None
        fallback = None
        for key, seq, t in rq.heap:
            if t.rq_seq != seq or t.state != RUNNABLE:
                continue
            if fallback is None or t.vruntime < fallback.vruntime:
                fallback = t
            if t.vruntime <= avg and (best is None or (t.deadline, t.rq_seq) < (best.deadline, best.rq_seq)):
                best = t
        return best if best is not None else fallback

    # --- running and stopping -----------------------------------------------------------
    def _dispatch(self, rq: RunQueue, task: HostTask) -> None:
        now = self.sim.now
        if task.rq_seq != -1:
            self._dequeue(rq, task)
        task.state = RUNNING
        task.pcpu = rq.cpu
        task.rq = rq.cpu
        task.dispatched_at = now
        rq.curr = task
        self.idle.discard(rq.cpu)
        if self.eevdf:
            if task.deadline <= task.vruntime:
                task.deadline = task.vruntime + self.min_gran
            rq.slice_end = now + (task.deadline - task.vruntime)
        else:
            rq.slice_end = now + self._sched_slice(rq)
        if task.fresh:
            # The host ran before the measurement: each task is at a random point of its
            # slice, so the VMs' vCPUs are not in lockstep (they would be gang-scheduled).
            task.fresh = False
            left = self.rng.randint(1, max(1, rq.slice_end - now))
            rq.slice_end = now + left
            if self.eevdf:
                task.deadline = task.vruntime + left
        if self.probe is not None:
            self.probe.dispatch(now, rq.cpu, task)
        task.on_dispatch(self.switch_ns)
        if rq.curr is task and rq.waiting:
            self._arm(rq)

    def _min_vruntime(self, rq: RunQueue) -> int:
        """``update_min_vruntime()``: the smallest vruntime on the queue, current task included; it
        only moves forward. Updated where it is read (placement, migration), not at every switch."""
        cur = rq.curr
        low = self._leftmost(rq)
        mv = rq.min_vruntime
        if cur is not None:
            cv = cur.vruntime + (self.sim.now - cur.dispatched_at)
            mv = max(mv, min(cv, low.vruntime) if low is not None else cv)
        elif low is not None:
            mv = max(mv, low.vruntime)
        rq.min_vruntime = mv
        return mv

    def _sched_slice(self, rq: RunQueue) -> int:
        """CFS ``sched_slice()`` for equal weights, floored at the min granularity."""
        nr = rq.waiting + (rq.curr is not None)
        table = self._slices
        if nr < len(table):
            return table[nr]
        return self._slice_for(nr)

    def _slice_for(self, nr: int) -> int:
        period = self.latency if nr <= SCHED_NR_LATENCY else nr * self.min_gran
        s = period // max(nr, 1)
        return s if s > self.min_gran else self.min_gran

    def _put(self, task: HostTask) -> RunQueue:
        """Take the running task off its pCPU (``put_prev_entity``) and account its run."""
        rq = self.rqs[task.pcpu]
        ran = self.sim.now - task.dispatched_at
        task.vruntime += ran
        task.run_ns += ran
        self.busy_ns += ran
        if self.probe is not None:
            self.probe.deschedule(self.sim.now, rq.cpu, task)
        rq.curr = None
        task.pcpu = -1
        task.on_deschedule()
        return rq

    def _schedule(self, rq: RunQueue) -> None:
        """``__schedule()`` on an rq whose pCPU has just freed: run the pick, or pull, or idle."""
        nxt = self._pick(rq)
        if nxt is None:
            nxt = self._pull(rq)
        if nxt is None:
            self.idle.add(rq.cpu)
            return
        self._dispatch(rq, nxt)

    def _pull(self, rq: RunQueue) -> HostTask | None:
        """``newidle_balance()``: steal a waiting task from the busiest other runqueue."""
        busiest = None
        for other in self.rqs:
            if other.waiting and (busiest is None or other.waiting > busiest.waiting):
                busiest = other
        if busiest is None:
            return None
        task = self._leftmost(busiest)
        if task is None:
            return None
        self._dequeue(busiest, task)
        # migrate: renormalise against both queues' min_vruntime (update_min_vruntime() at the move)
        task.vruntime = task.vruntime - self._min_vruntime(busiest) + self._min_vruntime(rq)
        if self.eevdf:
            task.deadline = task.vruntime + self.min_gran
        task.rq = rq.cpu
        return task

    # --- what tasks do ------------------------------------------------------------------
    def start(self, task: HostTask, halted: bool = False) -> None:
        """A new task at time 0: on the next runqueue round robin, running if its pCPU is idle."""
        rq = self.rqs[self._rq_of_new % self.pcpus]
        self._rq_of_new += 1
        task.rq = rq.cpu
        task.vruntime = self._min_vruntime(rq)
        task.deadline = task.vruntime + self.min_gran
        if halted:
            task.state = HALTED
            return
        if rq.curr is None:
            self._dispatch(rq, task)
        else:
            self._enqueue(rq, task)
            self._arm(rq)

    def block(self, task: HostTask) -> None:
        """The running task halts (HLT exit, kvm_vcpu_block): it leaves its pCPU until woken."""
        task.involuntary = False
        self._min_vruntime(self.rqs[task.pcpu])  # dequeue_entity -> update_curr: the halting task counts
        rq = self._put(task)
        task.state = HALTED
        if self.eevdf:
            task.vlag = self._avg_vruntime(rq) - task.vruntime
        self._schedule(rq)

    def wake(self, task: HostTask) -> None:
        """``try_to_wake_up()``: place a halted task and run it, or queue it and check for preemption.

        On an idle pCPU it runs at once. Otherwise the preemption check runs as its
        own event (one for every wakeup of this instant), so a waker is never
        preempted in the middle of what it is doing.
        """
        if task.state != HALTED:
            return
        cpu = self._select_rq(task)
        rq = self.rqs[cpu]
        self._place(rq, task)
        task.rq = cpu
        if rq.curr is None:
            self._dispatch(rq, task)
            return
        task.state = WAKING
        task.runnable_since = self.sim.now
        if not self._wake_batch:
            self.sim.after(0, self._finish_wakes, None)
        self._wake_batch.append(task)

    def _select_rq(self, task: HostTask) -> int:
        """``select_task_rq_fair()`` -> ``select_idle_sibling()``: the previous pCPU if idle,
        else an idle pCPU (searched round robin), else the previous pCPU."""
        prev = task.rq
        if self.rqs[prev].curr is None:
            return prev
        if self.idle:
            n = self.pcpus
            start = self._idle_rr
            for k in range(n):
                c = (start + k) % n
                if c in self.idle:
                    self._idle_rr = c + 1
                    return c
        return prev

    def _place(self, rq: RunQueue, task: HostTask) -> None:
        """``place_entity()`` for a wakeup on ``rq``."""
        if self.eevdf:
            lag = task.vlag
            lag = max(-self.min_gran, min(self.min_gran, lag))
            task.vruntime = self._avg_vruntime(rq) - lag
            task.deadline = task.vruntime + self.min_gran
            return
        mv = self._min_vruntime(rq)
        floor = mv - self.latency // 2  # GENTLE_FAIR_SLEEPERS: half a latency of sleeper credit
        if task.vruntime < floor:
            task.vruntime = floor

    def _finish_wakes(self, _: None) -> None:
        batch, self._wake_batch = self._wake_batch, []
        for task in batch:
            if task.state != WAKING:
                continue
            rq = self.rqs[task.rq]
            if rq.curr is None:
                task.wait_ns += self.sim.now - task.runnable_since
                self._dispatch(rq, task)
                continue
            if self.idle:  # a pCPU freed up meanwhile
                cpu = self._select_rq(task)
                if self.rqs[cpu].curr is None:
                    task.wait_ns += self.sim.now - task.runnable_since
                    self._dispatch(self.rqs[cpu], task)
                    continue
            cur = rq.curr
            self._enqueue(rq, task)
            if self._wakeup_preempts(rq, cur, task):
                self._preempt(cur)
            else:
                self._arm(rq)

    def _wakeup_preempts(self, rq: RunQueue, cur: HostTask, woken: HostTask) -> bool:
        now = self.sim.now
        cv = cur.vruntime + (now - cur.dispatched_at)
        if self.eevdf:
            # RUN_TO_PARITY: the current task keeps its pCPU until its slice is used, unless
            # it is no longer eligible; then a woken task with an earlier deadline goes first.
            if now >= rq.slice_end:
                return True
            avg = self._avg_vruntime(rq)
            return cv > avg and woken.deadline < cur.deadline
        return cv - woken.vruntime > self.wakeup_gran  # check_preempt_wakeup()

    def _preempt(self, victim: HostTask, successor: HostTask | None = None) -> None:
        """Involuntary deschedule (slice end, wakeup preemption, resched_curr from yield_to).

        ``successor``: the task the pick already chose (yield_to decides before it switches).
        """
        victim.involuntary = True
        rq = self._put(victim)
        if self.eevdf and victim.vruntime >= victim.deadline:
            victim.deadline = victim.vruntime + self.min_gran
        self._enqueue(rq, victim)
        if successor is None:
            self._schedule(rq)
        else:
            rq.next_buddy = rq.skip_buddy = None
            self._dispatch(rq, successor)

    def yield_to(self, spinner: HostTask, target: HostTask) -> int:
        """``yield_to(target, preempt=1)`` from the running ``spinner`` (kvm_vcpu_yield_to).

        Returns -1 (-ESRCH: both runqueues hold one task), 0 (the target runs or is
        not runnable) or 1 (yielded). On success the target is the next buddy of its
        *own* queue (``yield_to_task_fair``), which is rescheduled if it is another
        pCPU's (``resched_curr(p_rq)``); the spinner steps aside on its queue
        (``yield_task_fair``: CFS skip buddy, EEVDF deadline pushed a slice), which
        leaves it running when nobody else there may go first. A pick that keeps the
        current task switches nothing.
        """
        rq = self.rqs[spinner.pcpu]
        p_rq = self.rqs[target.rq]
        if rq.nr_running() == 1 and p_rq.nr_running() == 1:
            return -1
        if target.state != RUNNABLE or target.rq_seq == -1:
            return 0
        buddy = target if (not self.eevdf or self.eevdf_yield_next_buddy) else None
        if self.eevdf:
            spinner.deadline += self.min_gran
        if p_rq is not rq:
            cur = p_rq.curr
            if cur is not None:
                nxt = self._resched_pick(p_rq, cur, buddy=buddy, skip=None)
                if nxt is not cur:
                    self._preempt(cur, nxt)
            buddy = None
        nxt = self._resched_pick(rq, spinner, buddy=buddy, skip=spinner)
        if nxt is not spinner:
            self._preempt(spinner, nxt)
        return 1

    def _resched_pick(self, rq: RunQueue, cur: HostTask, *, buddy: HostTask | None,
                      skip: HostTask | None) -> HostTask:
        """Who runs after ``resched_curr(rq)``: ``pick_next_entity`` with ``cur`` still a candidate."""
        now = self.sim.now
        cv = cur.vruntime + (now - cur.dispatched_at)
        left_waiting = self._leftmost(rq)
        if self.eevdf:
            avg = self._avg_vruntime(rq)
            if buddy is not None and buddy.rq_seq != -1 and buddy.vruntime <= avg:
                return buddy
            if skip is None and cv <= avg and now < rq.slice_end:
                return cur  # RUN_TO_PARITY
            best, best_dl = (cur, cur.deadline) if cv <= avg else (None, 0)
            for _, seq, t in rq.heap:
                if t.rq_seq == seq and t.state == RUNNABLE and t.vruntime <= avg and (best is None or t.deadline < best_dl):
                    best, best_dl = t, t.deadline
            return best if best is not None else (left_waiting or cur)
        if left_waiting is None:
            return cur
        if cv <= left_waiting.vruntime:
            left, lv = cur, cv
        else:
            left, lv = left_waiting, left_waiting.vruntime
        se = left
        if skip is not None and left is skip:
            if left_waiting.vruntime - lv <= self.wakeup_gran:
                se = left_waiting
        if buddy is not None and buddy.rq_seq != -1 and buddy.vruntime - lv <= self.wakeup_gran:
            se = buddy
        return se

    # --- time slices ------------------------------------------------------------------------
    def _arm(self, rq: RunQueue) -> None:
        """One timer per runqueue, for its current task's slice end, armed while someone waits."""
        cur = rq.curr
        if cur is None:
            return
        if not self.eevdf:  # CFS: the ideal slice shrinks as the queue grows
            rq.slice_end = min(rq.slice_end, cur.dispatched_at + self._sched_slice(rq))
        # the scheduler tick notices the used-up slice (check_preempt_tick; HRTICK is off by default)
        tick = self.tick_ns
        at = -(-rq.slice_end // tick) * tick
        if at < self.sim.now:
            at = self.sim.now
        pending = rq.timer_at
        if pending >= 0 and pending <= at:
            return  # the pending timer fires first and re-arms for this slice (one heap entry per queue)
        rq.timer_tok += 1
        rq.timer_at = at
        self.sim.at(at, self._slice_tick, (rq, rq.timer_tok))

    def _slice_tick(self, arg: tuple[RunQueue, int]) -> None:
        rq, tok = arg
        if tok != rq.timer_tok:
            return
        rq.timer_at = -1
        cur = rq.curr
        if cur is None or not rq.waiting:
            return
        now = self.sim.now
        tick = self.tick_ns
        if -(-rq.slice_end // tick) * tick > now:  # armed for an earlier task's slice
            self._arm(rq)
            return
        self._preempt(cur)

    def finish(self) -> None:
        """Account the tasks still on a pCPU at the end of the run."""
        now = self.sim.now
        for rq in self.rqs:
            cur = rq.curr
            if cur is not None:
                ran = now - cur.dispatched_at
                self.busy_ns += ran
                cur.run_ns += ran
                cur.vruntime += ran
                cur.dispatched_at = now
            for _, seq, t in rq.heap:
                if t.rq_seq == seq and t.state == RUNNABLE:
                    t.wait_ns += now - t.runnable_since
                    t.runnable_since = now
        for t in self._wake_batch:
            if t.state == WAKING:
                t.wait_ns += now - t.runnable_since
                t.runnable_since = now


class Hog(HostTask):
    """A co-tenant thread that is always runnable (``background_vcpus``): plain CPU load."""

    __slots__ = ()


__all__ = ["HALTED", "Host", "HostTask", "Hog", "Probe", "RUNNABLE", "RUNNING", "RunQueue", "STATE_NAMES",
           "WAKING"]
