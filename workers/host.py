"""The host: pCPUs and a CFS-like fair scheduler for vCPU threads.

What must emerge here is preemption: with more runnable vCPUs than pCPUs, a vCPU
waits in the runqueue for whole time slices, and whoever waits on it (a guest
spinning for a TLB-shootdown acknowledgement, or for a lock) waits too.

Model: one global runqueue ordered by vruntime (CFS picks the leftmost task);
a running task is preempted when its slice ends and someone is waiting; a woken
task takes an idle pCPU if there is one, else gets CFS's sleeper credit
(``min_vruntime - latency/2``) and preempts the task on its previous pCPU when
the lag exceeds the wakeup granularity (``check_preempt_wakeup``). Pause-loop
exits call ``yield_to``.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.des import Simulation

RUNNING, RUNNABLE, HALTED, WAKING = 0, 1, 2, 3

#: CFS tunables on a host with >= 8 CPUs (factor 4): latency 24 ms, wakeup granularity 4 ms.
SCHED_LATENCY_NS = 24_000_000
WAKEUP_GRANULARITY_NS = 4_000_000
_IDLE = 1 << 62  # _vbase of a pCPU with nothing on it


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

    def ack(self, now: int, initiator_vcpu: "HostTask", target: "HostTask") -> None:
        """A native shootdown target acknowledged its IPI."""

    def ple_exit(self, now: int, vcpu: "HostTask", window_ns: int) -> None:
        """A spinning vCPU took a pause-loop exit after spinning ``window_ns`` (its PLE window)."""


class HostTask:
    """A host thread: one of our VM's vCPUs, or a co-tenant's always-runnable vCPU."""

    __slots__ = ("state", "pcpu", "last_pcpu", "vruntime", "dispatched_at", "rq_seq", "preempted", "is_vm")

    def __init__(self, is_vm: bool) -> None:
        self.state = HALTED
        self.pcpu = -1
        self.last_pcpu = 0  # select_task_rq(): a woken task goes back to its previous pCPU
        self.vruntime = 0
        self.dispatched_at = 0
        self.rq_seq = -1
        self.preempted = False  # steal-time KVM_VCPU_PREEMPTED: descheduled while runnable
        self.is_vm = is_vm

    def on_dispatch(self, switch_ns: int) -> None:
        """Called when the task gets a pCPU; it starts doing work after ``switch_ns``."""

    def on_deschedule(self) -> None:
        """Called when the task loses its pCPU (preempted, yielded or halted)."""

    def on_enqueue(self) -> None:
        """Called when the task joins the runqueue (woken, preempted or yielded)."""


class Host:
    __slots__ = (
        "sim", "pcpus", "slice_ns", "switch_ns", "running", "slice_end", "idle_pcpus",
        "_rq", "_seq", "rq_len", "_timer_at", "min_vruntime", "busy_ns", "vm_busy_ns",
        "preemptions", "wake_preemptions", "context_switches", "probe", "_waking", "_vbase",
    )

    def __init__(self, sim: "Simulation", pcpus: int, slice_ns: int, switch_ns: int) -> None:
        self.sim = sim
        self.pcpus = pcpus
        self.slice_ns = slice_ns
        self.switch_ns = switch_ns
        self.running: list[HostTask | None] = [None] * pcpus
        self.slice_end = [0] * pcpus
        self.idle_pcpus = list(range(pcpus - 1, -1, -1))
        self._rq: list[tuple[int, int, HostTask]] = []
        self._seq = 0
        self.rq_len = 0
        self._timer_at = -1
        self.min_vruntime = 0
        self.busy_ns = 0
        self.vm_busy_ns = 0
        self.preemptions = 0  # involuntary deschedules of our VM's vCPUs
        self.wake_preemptions = 0
        self.context_switches = 0
        self.probe: Probe | None = None
        self._waking: list[HostTask] = []  # woken with no idle pCPU, awaiting the preemption check
        # per pCPU, vruntime - dispatched_at of its task: its vruntime now is that plus now
        self._vbase = [_IDLE] * pcpus

    # --- runqueue -------------------------------------------------------------
    def _enqueue(self, task: HostTask) -> None:
        task.state = RUNNABLE
        self._seq += 1
        task.rq_seq = self._seq
        heappush(self._rq, (task.vruntime, self._seq, task))
        self.rq_len += 1
        task.on_enqueue()

    def _pop_next(self) -> HostTask | None:
        rq = self._rq
        while rq:
            _, seq, task = heappop(rq)
            if task.state == RUNNABLE and task.rq_seq == seq:
                task.rq_seq = -1
                self.rq_len -= 1
                return task
        return None

    # --- pCPU assignment --------------------------------------------------------
    def _dispatch(self, task: HostTask, cpu: int) -> None:
        now = self.sim.now
        task.state = RUNNING
        task.pcpu = cpu
        task.preempted = False
        task.dispatched_at = now
        self.running[cpu] = task
        self._vbase[cpu] = task.vruntime - now
        self.slice_end[cpu] = now + self.slice_ns
        self.context_switches += 1
        if self.probe is not None:
            self.probe.dispatch(now, cpu, task)
        task.on_dispatch(self.switch_ns)
        if self.rq_len:
            self._arm_timer()

    def _deschedule(self, task: HostTask) -> int:
        ran = self.sim.now - task.dispatched_at
        task.vruntime += ran
        self.busy_ns += ran
        if task.is_vm:
            self.vm_busy_ns += ran
        cpu = task.pcpu
        self.running[cpu] = None
        self._vbase[cpu] = _IDLE
        task.pcpu = -1
        task.last_pcpu = cpu
        if self.probe is not None:
            self.probe.deschedule(self.sim.now, cpu, task)
        task.on_deschedule()
        return cpu

    def _fill(self, cpu: int) -> None:
        nxt = self._pop_next()
        if nxt is None:
            self.idle_pcpus.append(cpu)
        else:
            self._dispatch(nxt, cpu)

    # --- what tasks do ------------------------------------------------------------
    def start(self, task: HostTask) -> None:
        """Make a new task runnable at time 0 (co-tenants, or a vCPU with work)."""
        task.vruntime = self.min_vruntime
        if self.idle_pcpus:
            self._dispatch(task, self.idle_pcpus.pop())
        else:
            self._enqueue(task)
            self._arm_timer()

    def block(self, task: HostTask) -> None:
        """The task halts (HLT exit): it leaves its pCPU until woken."""
        cpu = self._deschedule(task)
        task.state = HALTED
        self._fill(cpu)

    def wake(self, task: HostTask) -> None:
        """Wake a halted task (try_to_wake_up).

        With an idle pCPU it is dispatched at once: that touches no other task.
        Otherwise the wake-up preemption check runs as its own event, so a waker
        is never preempted in the middle of what it is doing.
        """
        if task.state != HALTED:
            return
        self._place_woken(task)
        if self.idle_pcpus:
            self._dispatch(task, self.idle_pcpus.pop())
            return
        task.state = WAKING
        # One event checks every wake-up of this instant, in order (an IPI burst wakes dozens).
        if not self._waking:
            self.sim.after(0, self._do_wakes, None)
        self._waking.append(task)

    def _place_woken(self, task: HostTask) -> None:
        self._update_min_vruntime()
        floor = self.min_vruntime - SCHED_LATENCY_NS // 2  # place_entity(): sleeper credit
        if task.vruntime < floor:
            task.vruntime = floor

    def _do_wakes(self, _: None) -> None:
        waking, self._waking = self._waking, []
        for task in waking:
            if task.state == WAKING:
                self._do_wake(task)

    def _do_wake(self, task: HostTask) -> None:
        if self.idle_pcpus:
            self._dispatch(task, self.idle_pcpus.pop())
            return
        # check_preempt_wakeup() on the previous pCPU: preempt its task if it is far enough ahead
        now = self.sim.now
        victim = self.running[task.last_pcpu % self.pcpus]
        if victim is not None and victim.vruntime + (now - victim.dispatched_at) - task.vruntime > WAKEUP_GRANULARITY_NS:
            self.wake_preemptions += 1
            self._preempt(victim, task)
        else:
            self._enqueue(task)
            self._arm_timer()

    def _preempt(self, victim: HostTask, successor: HostTask | None) -> None:
        victim.preempted = True  # set first: on_deschedule() reads it (steal-time flag)
        cpu = self._deschedule(victim)
        if victim.is_vm:
            self.preemptions += 1
        self._enqueue(victim)
        if successor is None:
            self._fill(cpu)
        else:
            if successor.rq_seq != -1:  # directed yield: take it out of the runqueue
                successor.rq_seq = -1
                self.rq_len -= 1
            self._dispatch(successor, cpu)

    def yield_to(self, spinner: HostTask, target: HostTask | None) -> bool:
        """kvm_vcpu_on_spin(): give the spinner's pCPU to ``target`` (or to the next task).

        Returns False when there is nobody to yield to and the spinner keeps its pCPU.
        """
        if target is None and not self.rq_len:
            return False
        self._preempt(spinner, target)
        return True

    def _update_min_vruntime(self) -> None:
        low = min(self._vbase)
        low = low + self.sim.now if low < _IDLE else _IDLE
        if self._rq and self._rq[0][0] < low:
            low = self._rq[0][0]
        if low > self.min_vruntime and low != _IDLE:
            self.min_vruntime = low

    # --- time slices ----------------------------------------------------------------
    def _arm_timer(self) -> None:
        """One timer for the earliest slice end, armed only while someone waits for a pCPU.

        A pending timer is never later than a slice end that starts after it was
        armed, so it stays valid; when it fires it re-arms for the next one.
        """
        if self._timer_at >= 0:
            return
        at = -1
        for cpu in range(self.pcpus):
            if self.running[cpu] is not None and (at < 0 or self.slice_end[cpu] < at):
                at = self.slice_end[cpu]
        if at < 0:
            return
        self._timer_at = at
        self.sim.at(at, self._slice_tick, at)

    def _slice_tick(self, at: int) -> None:
        if at != self._timer_at:
            return
        self._timer_at = -1
        now = self.sim.now
        for cpu in range(self.pcpus):
            if not self.rq_len:
                return
            cur = self.running[cpu]
            if cur is not None and self.slice_end[cpu] <= now:
                self._preempt(cur, None)
        if self.rq_len:
            self._arm_timer()

    def finish(self) -> None:
        """Account the tasks still on a pCPU at the end of the run."""
        now = self.sim.now
        for cur in self.running:
            if cur is not None:
                ran = now - cur.dispatched_at
                self.busy_ns += ran
                if cur.is_vm:
                    self.vm_busy_ns += ran
                cur.dispatched_at = now
