"""The guest kernel common to Windows and Linux: threads on vCPUs, locks, spinning, time.

A vCPU with a pCPU runs its booked interrupt work, then its thread's activity
(compute, page faults, or a spin); the host can take the pCPU at any moment and
the activity resumes where it stopped. Threads are generators of ops (see
``ops``); code between two yields runs at the current simulated instant.

What differs by guest lives in the subclasses (``windows.NtKernel``,
``linux.LinuxKernel``): which vCPUs a shootdown targets, how a thread's
user/sys time is clocked (NT charges host-preempted time to the thread, Linux
reports it as steal), how a readied thread picks a vCPU, quanta and sleeps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from random import Random
from typing import TYPE_CHECKING, Callable

from workers.guest.locks import Lock
from workers.guest.ops import (
    A_COMPUTE, A_NEXT, A_OFF, A_SPIN_ACK, A_SPIN_LOCK, A_TOUCH, COMPUTE, LOCK, P_HALT, P_NONE, P_THREAD, SLEEP,
    SYS, TOUCH, UNLOCK, USER, WAIT_ACKS, describe,
)
from workers.guest.thread import GuestThread, ThreadProgram
from workers.guest.vcpu import VCpu, Wait
from workers.host import HALTED, RUNNING

if TYPE_CHECKING:
    from workers.des import Simulation
    from workers.host import Host, Probe
    from workers.kvm import KvmVm
    from workers.profiles import CostProfile
    from workers.stats import Counters

#: KVM_VMX_DEFAULT_PLE_WINDOW_MAX is INT_MAX / 2 cycles: 2**18 times the 4096-cycle base window.
PLE_WINDOW_MAX_FACTOR = 1 << 18
#: A piece that interrupt work stretched by at most this much more ends now, and the thread
#: owes the rest (``GuestThread.owed``) to its next piece: its time is conserved, interrupts are not
#: delayed, only the order of the thread's last few microseconds and its next op changes.
#: Without it a busy IPI target re-posts a piece about log(1/stretch) times (each re-post
#: lets more interrupts in).
STRETCH_SLACK_NS = 2000


class Kernel(ABC):
    """One VM's guest kernel running one multi-threaded process."""

    #: The guest's name ("windows", "linux"): workloads and flush strategies take its paths by it.
    os_name = "guest"

    def __init__(
        self,
        sim: "Simulation",
        host: "Host",
        profile: "CostProfile",
        counters: "Counters",
        rng: Random,
        kvm: "KvmVm",
        *,
        vm_index: int,
        vcpus: int,
        effective_vcpus: int,
        ple: bool,
        ple_window_ns: int,
        probe: "Probe | None",
        on_done: Callable[["Kernel"], None],
    ) -> None:
        self.sim = sim
        self.host = host
        self.p = profile
        self.c = counters
        self.rng = rng
        self.kvm = kvm
        self.vm_index = vm_index
        self.ple = ple
        self.ple_window_ns = ple_window_ns
        self.probe = probe
        self.on_done = on_done
        self.vcpus = [VCpu(self, i) for i in range(vcpus)]
        self.online = self.vcpus[:effective_vcpus]
        self.ready: deque[GuestThread] = deque()
        self.idle: list[VCpu] = []
        self.threads: list[GuestThread] = []
        self.live_threads = 0
        self.done_at = -1
        self.on_vm_entry: Callable[[VCpu], int] | None = None  # the flush strategy's entry work (host ns)
        self.strategy = None  # the flush strategy (workers.flush), set by the engine
        self.switch_ns = int(profile.guest_switch_ns)
        self.lock_spin_ns = int(profile.lock_spin_ns)
        self.handler_ns = int(profile.ipi_handler_ns)
        self.deliver_ns = int(profile.ipi_deliver_ns)
        self.halt_ns = int(profile.halt_ns)
        self.exit_ns = int(profile.vm_exit_ns)
        self.quantum_ns = self.thread_quantum_ns(1)
        for v in self.online:
            self._idle_add(v)

    # --- OS policy (subclasses) -------------------------------------------------------------
    @abstractmethod
    def clock(self, v: VCpu) -> int:
        """The time a thread current on ``v`` accrues (user or sys) at this instant."""

    @abstractmethod
    def thread_quantum_ns(self, threads_per_vcpu: int) -> int:
        """How long a thread runs before a ready one of equal priority takes its vCPU."""

    @abstractmethod
    def shootdown_targets(self, v: VCpu) -> list[VCpu]:
        """The vCPUs other than ``v`` whose TLBs may hold the process's translations."""

    @abstractmethod
    def target_mask(self, v: VCpu) -> int:
        """``shootdown_targets(v)`` as a bitmask of vCPU indexes."""

    @abstractmethod
    def sleep_end(self, ns: int) -> int:
        """When a sleep of ``ns`` requested now ends (the guest timer's rounding)."""

    @abstractmethod
    def pick_vcpu(self, t: GuestThread) -> VCpu | None:
        """An idle vCPU for a readied thread, or None to queue it."""

    def switched_in(self, v: VCpu, t: GuestThread) -> int:
        """TLB bookkeeping when ``t`` starts on ``v``; returns extra switch work (ns)."""
        return 0

    def went_idle(self, v: VCpu) -> None:
        """TLB bookkeeping when ``v`` has no thread left to run."""

    def home_vcpu(self, t: GuestThread) -> VCpu:
        """Where a new thread last ran, as far as placement is concerned: its ideal processor."""
        return self.online[t.ideal_vcpu % len(self.online)]

    def lock(self, name: str) -> Lock:
        return Lock(name, spin_ns=self.lock_spin_ns)

    # --- idle pool (O(1) random pick and removal) -----------------------------------------------
    def _idle_add(self, v: VCpu) -> None:
        if v.idle_pos < 0:
            v.idle_pos = len(self.idle)
            self.idle.append(v)

    def _idle_remove(self, v: VCpu) -> None:
        pos = v.idle_pos
        if pos >= 0:
            last = self.idle.pop()
            if last is not v:
                self.idle[pos] = last
                last.idle_pos = pos
            v.idle_pos = -1

    # --- threads ---------------------------------------------------------------------------------
    def spawn(self, t: GuestThread, program: ThreadProgram) -> None:
        t.gen = program
        t.last_vcpu = self.home_vcpu(t).index
        self.threads.append(t)
        self.live_threads += 1
        self.quantum_ns = self.thread_quantum_ns(-(-len(self.threads) // len(self.online)))
        self.make_ready(t)

    def make_ready(self, t: GuestThread) -> None:
        """A thread can run (its ``act`` says what it resumes): on an idle vCPU the OS picks, else queued."""
        v = self.pick_vcpu(t)
        if v is None:
            self.ready.append(t)
            return
        self._idle_remove(v)
        self._assign(t, v)
        if v.state == HALTED:
            # a reschedule IPI wakes it: the host must run the vCPU thread again
            self.c.ipis += 1
            self.c.vm_exits += 1
            self.post_irq(v, self.handler_ns)
            self.host.wake(v)
        elif v.state == RUNNING and v.piece == P_HALT:
            v.tok += 1  # it was on its way to HLT: it stays and runs the thread
            v.piece = P_NONE
            self._advance(v)

    def _assign(self, t: GuestThread, v: VCpu) -> None:
        now = self.sim.now
        v.thread = t
        t.vcpu = v
        t.last_vcpu = v.index
        t.quantum_end = now + self.quantum_ns
        t.clock0 = self.clock(v)
        extra = self.switched_in(v, t)
        if self.switch_ns or extra:
            self.post_irq(v, self.switch_ns + extra)

    def _account(self, t: GuestThread) -> None:
        c = self.clock(t.vcpu)
        elapsed = c - t.clock0
        t.clock0 = c
        if elapsed <= 0:
            return
        if t.mode == USER:
            t.user_ns += elapsed
        elif t.user_share:
            u = int(elapsed * t.user_share)
            t.user_ns += u
            t.sys_ns += elapsed - u
        else:
            t.sys_ns += elapsed

    def _set_mode(self, t: GuestThread, mode: int) -> None:
        if t.mode != mode or t.user_share:
            self._account(t)
            t.mode = mode
            t.user_share = 0.0

    def _leave(self, v: VCpu, t: GuestThread) -> None:
        """``t`` stops running on ``v`` (blocks, sleeps, yields its quantum or exits)."""
        self._account(t)
        if v.piece != P_NONE:
            self._pause_piece(v)
        t.vcpu = None
        v.thread = None
        if self.ready:
            self._assign(self.ready.popleft(), v)
        else:
            self._idle_add(v)
            self.went_idle(v)
        if v.state == RUNNING:
            self._advance(v)

    # --- interrupt work ------------------------------------------------------------------------
    def post_irq(self, v: VCpu, cost: int, wait: Wait | None = None, ack_part: int = -1, deliver: int = 0) -> bool:
        """Book interrupt work on ``v``; ``wait`` is acknowledged ``ack_part`` ns into it (default: at its end).

        Returns whether ``v`` was running (the work is then timed now).
        """
        if ack_part < 0:
            ack_part = cost
        if v.state == RUNNING:
            now = self.sim.now
            start = now + deliver
            if v.irq_until > start:
                start = v.irq_until
            if v.run_since > start:
                start = v.run_since
            end = start + cost
            v.irq_until = end
            v.irq_booked += cost
            if v.piece == P_THREAD:
                v.piece_end += cost
                v.piece_irq += cost
            if wait is not None:
                ack = start + ack_part
                v.acks.append((ack, end, wait))
                if ack > wait.deadline:
                    wait.deadline = ack
            return True
        v.pending.append([cost, ack_part, wait])
        if wait is not None:
            wait.offcpu += 1
        return False

    def _outstanding(self, v: VCpu) -> int:
        return v.irq_until - self.sim.now if v.irq_until > self.sim.now else 0

    # --- the host gives and takes pCPUs -------------------------------------------------------------
    def vcpu_entered(self, v: VCpu, switch_ns: int) -> None:
        now = self.sim.now
        self.kvm.sched_in(v)
        v.ple_window = self.ple_window_ns  # vmx_sched_in() -> shrink_ple_window(): back to the base window
        entry = self.on_vm_entry(v) if self.on_vm_entry is not None else 0
        t = now + switch_ns + entry
        v.run_since = t
        v.irq_until = t
        if v.flush_start == -2:
            v.flush_start = t  # the queued csd batch runs first
        if v.pending:
            pending, v.pending = v.pending, []
            for cost, ack_part, wait in pending:
                start = t
                t += cost
                v.irq_booked += cost
                if wait is not None:
                    ack = start + ack_part
                    v.acks.append((ack, t, wait))
                    wait.offcpu -= 1
                    if ack > wait.deadline:
                        wait.deadline = ack
                    if wait.offcpu == 0 and wait.armed:
                        self._arm_event(wait)
            v.irq_until = t
        self._advance(v)

    def vcpu_left(self, v: VCpu) -> None:
        now = self.sim.now
        v.oncpu_base += now - v.dispatched_at
        t = v.thread
        # CPL at the preemption (preempted_in_kernel): a TOUCH alternates faults (kernel) and the
        # user stores or copy between them, so it is in kernel with the probability of its sys share
        in_kernel = t is not None and (
            v.irq_until > now or (t.mode == SYS and (not t.user_share or self.rng.random() >= t.user_share)))
        if v.piece != P_NONE:
            self._pause_piece(v)
        # booked work not done by now goes back to pending, and its waits lose their known deadline
        acks = v.acks
        while acks and acks[0][1] <= now:
            acks.popleft()
        prev = now
        if acks:
            redo = []
            for ack, end, wait in acks:
                seg_start = prev if prev > now else now
                cost = end - seg_start
                ack_part = ack - seg_start if ack > seg_start else -1  # -1: acknowledged already
                prev = end
                if ack_part < 0:
                    redo.append([cost, 0, None])
                    continue
                redo.append([cost, ack_part, wait])
                wait.offcpu += 1
                wait.tok += 1
            acks.clear()
            tail = v.irq_until - prev
            if tail > 0:
                redo.append([tail, 0, None])
            v.irq_booked -= self._outstanding(v)
            v.pending[:0] = redo
        elif v.irq_until > now:
            v.irq_booked -= v.irq_until - now
            v.pending.insert(0, [v.irq_until - now, 0, None])
        v.irq_until = now
        if v.flush_start > now:
            v.flush_start = -2  # the booked csd batch has not started: it is pending again
        elif v.flush_start >= 0:
            v.flush_start = -1
        self.kvm.sched_out(v, in_kernel)

    def _pause_piece(self, v: VCpu) -> None:
        now = self.sim.now
        t = v.thread
        if v.piece == P_THREAD and t is not None:
            elapsed = now - v.piece_start
            if elapsed > 0:
                busy = v.piece_irq - self._outstanding(v)
                work = elapsed - (busy if busy > 0 else 0)
                if work > 0:
                    act = t.act
                    if act == A_COMPUTE or act == A_TOUCH:
                        t.remaining -= work
                        if t.remaining < 0:
                            t.remaining = 0
                    elif act == A_SPIN_LOCK:
                        t.spin_budget -= work
        v.piece = P_NONE
        v.tok += 1

    def _advance(self, v: VCpu) -> None:
        """Start ``v``'s next piece; ``v`` has a pCPU and nothing in progress."""
        now = self.sim.now
        start = v.irq_until if v.irq_until > now else now
        v.tok += 1
        tok = v.tok
        t = v.thread
        if t is None:
            v.piece = P_HALT
            v.piece_start = start
            self.sim.at(start + self.halt_ns, self._halt, (v, tok))
            return
        act = t.act
        if act == A_COMPUTE or act == A_TOUCH:
            if act == A_TOUCH and t.revoked:
                self._revoke_now(v, t)
                return
            if t.owed:
                t.remaining += t.owed
                t.owed = 0
            v.piece = P_THREAD
            v.piece_start = start
            v.piece_irq = 0
            v.piece_end = start + t.remaining
            if self.probe is not None:
                self.probe.guest_code(start, v)
            self.sim.at(v.piece_end, self._piece_done, (v, tok))
        elif act == A_SPIN_LOCK or act == A_SPIN_ACK:
            v.piece = P_THREAD
            v.piece_start = start
            v.piece_irq = 0
            # one timer per spin piece: whichever of the spin budget and the PLE window ends first
            end = start + (t.spin_budget if t.spin_budget > 0 else 0) if act == A_SPIN_LOCK else -1
            if self.ple:
                ple_at = start + v.ple_window
                if end < 0 or ple_at < end:
                    v.piece_end = ple_at
                    self.sim.at(ple_at, self._ple_exit, (v, tok))
                    return
            v.piece_end = end
            if end >= 0:
                self.sim.at(end, self._spin_timeout, (v, tok))
        else:
            v.piece = P_NONE
            self._step(v, t)

    def _halt(self, arg: tuple[VCpu, int]) -> None:
        v, tok = arg
        if tok != v.tok or v.thread is not None:
            return
        if self.sim.now < v.irq_until:  # interrupt work came in meanwhile: finish it first
            self.sim.at(v.irq_until + self.halt_ns, self._halt, (v, tok))
            return
        v.piece = P_NONE
        self.host.block(v)

    def _piece_done(self, arg: tuple[VCpu, int]) -> None:
        v, tok = arg
        if tok != v.tok:
            return
        now = self.sim.now
        if now < v.piece_end:  # stretched by interrupt work booked meanwhile
            owed = v.piece_end - now
            if owed > STRETCH_SLACK_NS:
                self.sim.at(v.piece_end, self._piece_done, arg)
                return
            v.thread.owed += owed
        v.piece = P_NONE
        t = v.thread
        t.remaining = 0
        if t.act == A_TOUCH:
            self._touch_done(t)
        t.act = A_NEXT
        self._step(v, t)

    # --- the thread interpreter ----------------------------------------------------------------
    def _step(self, v: VCpu, t: GuestThread) -> None:
        """Run ``t``'s program on ``v`` until it needs time (compute, spin) or leaves the vCPU."""
        gen = t.gen
        sim = self.sim
        while True:
            if self.ready and t.locks_held == 0 and sim.now >= t.quantum_end:
                t.act = A_NEXT  # quantum expired at a safe point: round robin
                self.ready.append(t)
                self._leave(v, t)
                return
            try:
                op = next(gen)
            except StopIteration:
                self._exit(v, t)
                return
            code = op[0]
            if code == COMPUTE:
                rem = op[1] + t.owed
                if rem <= 0:
                    continue
                t.owed = 0
                t.act = A_COMPUTE
                t.remaining = rem
                if t.mode != op[2] or t.user_share:
                    self._set_mode(t, op[2])
                # the COMPUTE branch of _advance, inlined: this is the engine's most frequent piece
                now = sim.now
                start = v.irq_until if v.irq_until > now else now
                v.tok += 1
                v.piece = P_THREAD
                v.piece_start = start
                v.piece_irq = 0
                end = start + rem
                v.piece_end = end
                if self.probe is not None:
                    self.probe.guest_code(start, v)
                sim.at(end, self._piece_done, (v, v.tok))
                return
            if code == LOCK:
                if self._acquire(v, t, op[1], op[2]):
                    continue
                return
            if code == UNLOCK:
                self._release(t, op[1])
                continue
            if code == WAIT_ACKS:
                wait = op[1]
                if wait.done:
                    continue
                self._set_mode(t, SYS)
                t.act = A_SPIN_ACK
                t.wait = wait
                t.spin_since = sim.now
                self._advance(v)
                return
            if code == TOUCH:
                if self._touch(v, t, op[1], op[2], op[3], op[4] if len(op) > 4 else None):
                    self._advance(v)
                return
            if code == SLEEP:
                t.act = A_OFF
                self._leave(v, t)
                sim.at(self.sleep_end(op[1]), self._wake_sleeper, t)
                return
            raise ValueError(f"unknown thread op {describe(op)!r}")

    def _exit(self, v: VCpu, t: GuestThread) -> None:
        t.done_at = self.sim.now
        t.act = A_OFF
        self.live_threads -= 1
        self._leave(v, t)
        if self.live_threads == 0:
            self.done_at = self.sim.now
            self.on_done(self)

    def _wake_sleeper(self, t: GuestThread) -> None:
        t.act = A_NEXT
        self.make_ready(t)

    # --- locks ------------------------------------------------------------------------------------
    def _acquire(self, v: VCpu, t: GuestThread, lock: Lock, shared: bool) -> bool:
        """Take ``lock`` or start waiting for it (spin, then sleep); True if taken now."""
        if lock.try_acquire(t, shared):
            t.locks_held += 1
            return True
        t.waiting_for = lock
        t.lock_wait_since = self.sim.now
        if not shared and lock.revocable:
            self._revoke(lock)
        if lock.spin_ns > 0:
            self._set_mode(t, SYS)
            t.act = A_SPIN_LOCK
            t.spin_budget = lock.spin_ns
            self._advance(v)
        else:
            t.act = A_OFF
            self._leave(v, t)
        return False

    def _release(self, t: GuestThread, lock: Lock) -> None:
        t.locks_held -= 1
        for g in lock.release(t):
            self.sim.after(0, self._granted, g)

    def _granted(self, t: GuestThread) -> None:
        t.locks_held += 1
        t.lock_wait_ns += self.sim.now - t.lock_wait_since
        lock = t.waiting_for
        t.waiting_for = None
        if t.touch_left and lock is t.touch_lock:  # a revoked or queued TOUCH takes up its faults
            t.locks_held -= 1
            self._begin_touch(t, lock)
            v = t.vcpu
            if v is None:
                self.make_ready(t)
            elif v.state == RUNNING and v.piece == P_THREAD:
                self._pause_piece(v)
                self._advance(v)
            return
        if t.act == A_SPIN_LOCK:
            t.act = A_NEXT
            v = t.vcpu
            if v is not None and v.state == RUNNING and v.piece == P_THREAD:
                self._pause_piece(v)
                self._advance(v)
        elif t.act == A_OFF:
            t.act = A_NEXT
            self.make_ready(t)

    def _spin_timeout(self, arg: tuple[VCpu, int]) -> None:
        """The lock waiter spun its budget: it sleeps until the lock is handed over."""
        v, tok = arg
        t = v.thread
        if tok != v.tok or t is None or t.act != A_SPIN_LOCK:
            return
        if self.sim.now < v.piece_end:
            self.sim.at(v.piece_end, self._spin_timeout, arg)
            return
        t.act = A_OFF
        self._leave(v, t)

    # --- page faults (TOUCH): the lock is taken per page, so writers revoke it ------------------------
    def _touch(self, v: VCpu, t: GuestThread, lock: Lock | None, pages: int, shared: bool,
               user_ns: int | None) -> bool:
        """Fault in ``pages`` fresh pages (with ``user_ns`` of user work between the faults, by
        default a store per page); True if faulting started now (else ``t`` waits for ``lock``)."""
        if user_ns is None:
            user_ns = int(self.p.touch_user_ns * pages)
        total = int(self.p.fault_ns * pages) + user_ns
        t.remaining = total
        t.touch_share = user_ns / total if total else 0.0
        t.touch_lock = lock
        t.touch_left = pages
        t.touch_shared = shared and lock is not None
        if lock is None:  # faults that take no lock the unmapper holds
            self._begin_touch(t, None)
            return True
        if not self._acquire(v, t, lock, shared):
            return False
        t.locks_held -= 1  # a fault holds the lock for its own page: not across ops
        self._begin_touch(t, lock)
        return True

    def _begin_touch(self, t: GuestThread, lock: Lock | None) -> None:
        if t.touch_shared:
            lock.revocable.append(t)
        if t.vcpu is not None:
            self._account(t)
        t.mode = SYS
        t.user_share = t.touch_share
        t.act = A_TOUCH

    def _touch_done(self, t: GuestThread) -> None:
        lock = t.touch_lock
        t.touch_left = 0
        t.touch_lock = None
        self._account(t)
        t.user_share = 0.0
        if lock is None:
            return
        if t.touch_shared:
            lock.revocable.remove(t)
        for g in lock.release(t):
            self.sim.after(0, self._granted, g)

    def _revoke(self, lock: Lock) -> None:
        """A writer queued: every faulting holder lets go at its next page boundary."""
        for h in list(lock.revocable):
            h.revoked = True
            v = h.vcpu
            if v is not None and v.state == RUNNING and v.piece == P_THREAD:
                self._revoke_now(v, h)
            # a holder whose vCPU has no pCPU keeps the lock until it runs again (see _advance)

    def _revoke_now(self, v: VCpu, t: GuestThread) -> None:
        """``t`` finishes its page, releases the lock and queues for it again behind the writer."""
        if v.piece != P_NONE:
            self._pause_piece(v)
        lock = t.touch_lock
        t.revoked = False
        lock.revocable.remove(t)
        self._account(t)
        t.user_share = 0.0
        for g in lock.release(t):
            self.sim.after(0, self._granted, g)
        if lock.try_acquire(t, True):  # nobody queued after all
            self._begin_touch(t, lock)
            self._advance(v)
            return
        t.waiting_for = lock
        t.lock_wait_since = self.sim.now
        t.act = A_SPIN_LOCK
        t.spin_budget = lock.spin_ns
        self._advance(v)

    # --- spinning and pause-loop exits ----------------------------------------------------------------
    def _ple_exit(self, arg: tuple[VCpu, int]) -> None:
        """Pause-loop exit: KVM grows the window and tries a directed yield (handle_pause)."""
        v, tok = arg
        if tok != v.tok or v.piece != P_THREAD:
            return
        if self.sim.now < v.piece_end:  # interrupt work broke the PAUSE loop: the window starts over
            self.sim.at(v.piece_end, self._ple_exit, arg)
            return
        self.c.ple_exits += 1
        self.c.vm_exits += 1
        if self.probe is not None:
            self.probe.ple_exit(self.sim.now, v, v.ple_window)
        t = v.thread
        if t.act == A_SPIN_LOCK:  # the budget keeps running across the exit
            t.spin_budget -= self.sim.now - v.piece_start
        v.piece = P_NONE
        v.tok += 1
        v.ple_window = min(v.ple_window * 2, self.ple_window_ns * PLE_WINDOW_MAX_FACTOR)  # grow_ple_window()
        self.kvm.on_spin(v)
        if v.state == RUNNING and v.piece == P_NONE:  # still ours: re-enter and spin on
            v.irq_until = max(v.irq_until, self.sim.now) + self.exit_ns
            self._advance(v)

    # --- shootdown waits ----------------------------------------------------------------------------
    def arm(self, wait: Wait) -> None:
        """Every IPI of the shootdown is out: release the initiator when the last one is acknowledged."""
        wait.armed = True
        if wait.offcpu == 0:
            self._arm_event(wait)

    def _arm_event(self, wait: Wait) -> None:
        wait.tok += 1
        self.sim.at(wait.deadline, self._wait_event, (wait, wait.tok))

    def _wait_event(self, arg: tuple[Wait, int]) -> None:
        wait, tok = arg
        if tok != wait.tok or wait.offcpu or wait.done:
            return
        wait.done = True
        t = wait.thread
        self.c.shootdown_latency_ns.append(self.sim.now - wait.started)
        if t.act == A_SPIN_ACK and t.wait is wait:
            t.spin_ns += self.sim.now - t.spin_since
            t.act = A_NEXT
            t.wait = None
            v = t.vcpu
            if v is not None and v.state == RUNNING and v.piece == P_THREAD:
                self._pause_piece(v)
                self._advance(v)


__all__ = ["Kernel", "PLE_WINDOW_MAX_FACTOR"]
