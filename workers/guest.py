"""The guest kernel: threads on vCPUs, the address-space lock, interrupts, spinning.

Guest-visible time is the point: a thread's clock runs while the guest has it on
a vCPU, whether or not the host gives that vCPU a pCPU. So a shootdown initiator
spinning for an acknowledgement from a preempted vCPU burns *guest* sys time for
whole host slices, which is exactly what the 2018 measurement shows.

A vCPU executes *pieces* while it has a pCPU: interrupt work first (IPI
handlers, deferred flushes at VM entry), then its thread's current activity
(compute, or spin). Pieces pause when the host takes the pCPU and resume when
it gives it back. Threads are generators that yield ops (see ``workloads``);
code between yields runs at the current simulated instant.
"""

from __future__ import annotations

from collections import deque
from random import Random
from typing import TYPE_CHECKING, Callable, Generator

from workers.host import HALTED, RUNNING, HostTask

if TYPE_CHECKING:
    from workers.des import Simulation
    from workers.host import Host
    from workers.profiles import CostProfile
    from workers.stats import Counters

# thread ops (first element of the tuples workloads yield)
COMPUTE, LOCK, UNLOCK, WAIT_ACKS, SLEEP = 0, 1, 2, 3, 4
USER, SYS = 0, 1
SHARED, EXCLUSIVE = True, False

# vCPU pieces
P_NONE, P_IRQ, P_COMPUTE, P_SPIN = 0, 1, 2, 3
#: KVM_VMX_DEFAULT_PLE_WINDOW_MAX is INT_MAX / 2 cycles: 2**18 times the 4096-cycle base window.
PLE_WINDOW_MAX_FACTOR = 1 << 18
# thread activities
A_NEXT, A_COMPUTE, A_SPIN_LOCK, A_SPIN_ACK, A_OFF = 0, 1, 2, 3, 4

Op = tuple
ThreadProgram = Generator[Op, None, None]


class GuestThread:
    __slots__ = (
        "tid", "gen", "vcpu", "last_vcpu", "act", "remaining", "mode", "mode_since",
        "user_ns", "sys_ns", "spin_ns", "spin_since", "spin_budget", "acks", "lock_held",
        "lock_wait_since", "lock_wait_ns", "quantum_end", "ops", "done_at",
    )

    def __init__(self, tid: int, ideal_vcpu: int) -> None:
        self.tid = tid
        self.gen: ThreadProgram | None = None
        self.vcpu: VCpu | None = None
        self.last_vcpu = ideal_vcpu
        self.act = A_NEXT
        self.remaining = 0
        self.mode = USER
        self.mode_since = 0
        self.user_ns = 0
        self.sys_ns = 0
        self.spin_ns = 0
        self.spin_since = 0
        self.spin_budget = 0
        self.acks = 0
        self.lock_held = 0
        self.lock_wait_since = -1
        self.lock_wait_ns = 0
        self.quantum_end = 0
        self.ops = 0
        self.done_at = -1


class VCpu(HostTask):
    """One vCPU: a host task whose pCPU time runs guest pieces."""

    __slots__ = (
        "guest", "index", "vp_index", "thread", "irq", "piece", "piece_start", "start_at",
        "token", "ple_window", "stale", "st_flush", "idle_pos",
    )

    def __init__(self, guest: "Guest", index: int) -> None:
        super().__init__(is_vm=True)
        self.guest = guest
        self.index = index
        self.vp_index = index
        self.thread: GuestThread | None = None
        self.irq: deque[list] = deque()  # [remaining_ns, callback or None]
        self.piece = P_NONE
        self.piece_start = 0
        self.start_at = 0
        self.token = 0
        self.ple_window = 0
        self.stale = False  # Linux lazy TLB: skipped by a shootdown, flush before running a thread
        self.st_flush = False  # kvm-pv: KVM_VCPU_FLUSH_TLB set in steal time
        self.idle_pos = -1

    def on_dispatch(self, switch_ns: int) -> None:
        self.guest.vcpu_entered(self, switch_ns)

    def on_deschedule(self) -> None:
        self.guest.pause(self)

    def on_enqueue(self) -> None:
        self.guest.waiting |= 1 << self.index


class AddressSpaceLock:
    """The address-space reader-writer lock; unmapping holds it exclusively, faults shared.

    Unmapping holds it exclusively for its whole duration, shootdown wait
    included; page faults hold it shared. So a preempted holder (or a holder
    waiting on a preempted shootdown target) stalls every other thread.

    Two policies, by guest:
    - ``readers_first=False`` (Linux ``mmap_lock``, an rwsem): FIFO; readers
      queue behind a waiting writer and consecutive readers at the head go together.
    - ``readers_first=True`` (Windows): a fault waits only while an unmapper
      *holds* the lock, never behind queued ones, because mmap/munmap serialise
      on the process's VAD lock while faults only briefly take the working-set
      lock. Writers take turns FIFO once no fault holds it.
    """

    __slots__ = ("readers", "writer", "waiters", "readers_first", "shared_waiters")

    def __init__(self, *, readers_first: bool = False) -> None:
        self.readers = 0
        self.writer: GuestThread | None = None
        self.waiters: deque[tuple[GuestThread, bool]] = deque()
        self.readers_first = readers_first
        self.shared_waiters: list[GuestThread] = []  # readers_first only

    def try_acquire(self, t: GuestThread, shared: bool) -> bool:
        if self.readers_first:
            if shared:
                if self.writer is None:
                    self.readers += 1
                    return True
                self.shared_waiters.append(t)
                return False
            if self.writer is None and self.readers == 0 and not self.waiters:
                self.writer = t
                return True
            self.waiters.append((t, False))
            return False
        if self.writer is None and not self.waiters and (shared or self.readers == 0):
            if shared:
                self.readers += 1
            else:
                self.writer = t
            return True
        self.waiters.append((t, shared))
        return False

    def release(self, t: GuestThread) -> list[GuestThread]:
        """Release and return the threads that now hold it."""
        if self.writer is t:
            self.writer = None
        else:
            self.readers -= 1
        if self.readers_first:
            return self._grant_readers_first()
        return self._grant_fifo()

    def _grant_readers_first(self) -> list[GuestThread]:
        granted: list[GuestThread] = []
        if self.writer is not None:
            return granted
        if self.shared_waiters:
            granted, self.shared_waiters = self.shared_waiters, []
            self.readers += len(granted)
        if self.readers == 0 and self.waiters:
            nxt, _ = self.waiters.popleft()
            self.writer = nxt
            granted.append(nxt)
        return granted

    def _grant_fifo(self) -> list[GuestThread]:
        granted: list[GuestThread] = []
        w = self.waiters
        while w and self.writer is None:
            nxt, shared = w[0]
            if shared:
                w.popleft()
                self.readers += 1
                granted.append(nxt)
            elif self.readers == 0:
                w.popleft()
                self.writer = nxt
                granted.append(nxt)
                break
            else:
                break
        return granted


class Guest:
    """The guest kernel of one VM running one multi-threaded process."""

    def __init__(
        self,
        sim: "Simulation",
        host: "Host",
        profile: "CostProfile",
        counters: "Counters",
        rng: Random,
        *,
        vcpus: int,
        effective_vcpus: int,
        windows: bool,
        ple: bool,
        ple_window_ns: int,
    ) -> None:
        self.sim = sim
        self.host = host
        self.p = profile
        self.c = counters
        self.rng = rng
        # Linux: lazy-TLB vCPUs are skipped by shootdowns (and flush when they next run a thread).
        # Windows: an idle processor keeps the process's address space loaded, so it stays a target.
        self.lazy_tlb = not windows
        self.keep_loaded = windows
        self.ple = ple
        self.ple_window_ns = ple_window_ns
        self.vcpus = [VCpu(self, i) for i in range(vcpus)]
        self.online = self.vcpus[:effective_vcpus]
        self.lock = AddressSpaceLock(readers_first=windows)
        self.active = 0  # bitmask of vCPUs that may cache the process's translations
        self.ready: deque[GuestThread] = deque()
        self.idle: list[VCpu] = []
        for v in self.online:
            self._idle_add(v)
        self.waiting = 0  # bitmask of runnable vCPUs without a pCPU (directed-yield candidates)
        self.last_boosted = -1
        self.threads: list[GuestThread] = []
        self.live_threads = 0
        self.on_vm_entry: Callable[[VCpu], None] | None = None  # the flush strategy's VM-entry work
        self.switch_ns = int(profile.guest_switch_ns)
        self.quantum_ns = int(profile.guest_quantum_ns)
        self.lock_spin_ns = int(profile.lock_spin_ns)
        self.handler_ns = int(profile.ipi_handler_ns)
        self.probe = host.probe

    # --- idle pool (O(1) random pick and removal) ---------------------------------
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

    # --- threads ------------------------------------------------------------------------
    def spawn(self, t: GuestThread, program: ThreadProgram) -> None:
        t.gen = program
        self.threads.append(t)
        self.live_threads += 1
        self.make_ready(t)

    def make_ready(self, t: GuestThread) -> None:
        """A thread can run: put it on an idle vCPU (its last one if idle) or queue it."""
        if self.idle:
            last = self.online[t.last_vcpu]
            v = last if last.idle_pos >= 0 else self.idle[self.rng.randrange(len(self.idle))]
            self._idle_remove(v)
            self._assign(t, v)
            if v.state == HALTED:
                # reschedule IPI to a halted vCPU: the host must wake it
                self.c.ipis += 1
                self.c.vm_exits += 1
                v.irq.append([self.handler_ns, None])
                self.host.wake(v)
        else:
            self.ready.append(t)

    def _assign(self, t: GuestThread, v: VCpu) -> None:
        now = self.sim.now
        v.thread = t
        t.vcpu = v
        t.last_vcpu = v.index
        t.mode_since = now
        t.quantum_end = now + self.quantum_ns
        bit = 1 << v.index
        if v.stale:  # lazy-TLB vCPU that missed shootdowns: flush before user code runs
            v.stale = False
            v.irq.append([int(self.p.flush_full_ns), None])
            self.c.full_flushes += 1
        self.active |= bit
        if self.switch_ns:
            v.irq.append([self.switch_ns, None])

    def _account(self, t: GuestThread) -> None:
        now = self.sim.now
        if t.mode == USER:
            t.user_ns += now - t.mode_since
        else:
            t.sys_ns += now - t.mode_since
        t.mode_since = now

    def _set_mode(self, t: GuestThread, mode: int) -> None:
        if t.mode != mode:
            self._account(t)
            t.mode = mode

    def _leave(self, v: VCpu, t: GuestThread) -> None:
        """The thread stops running on v (blocks, sleeps, yields or exits)."""
        self._account(t)
        if v.piece != P_NONE:
            self._pause_piece(v)
        t.vcpu = None
        v.thread = None
        if self.ready:
            self._assign(self.ready.popleft(), v)
        else:
            self._idle_add(v)
        if v.state == RUNNING:
            self._advance(v)

    # --- vCPU execution ---------------------------------------------------------------
    def vcpu_entered(self, v: VCpu, switch_ns: int) -> None:
        self.waiting &= ~(1 << v.index)
        v.start_at = self.sim.now + switch_ns
        v.ple_window = self.ple_window_ns  # vmx_sched_in() -> shrink_ple_window(): back to the base window
        if self.on_vm_entry is not None:
            self.on_vm_entry(v)
        self._advance(v)

    def pause(self, v: VCpu) -> None:
        """The host took v's pCPU."""
        if v.piece != P_NONE:
            self._pause_piece(v)

    def _pause_piece(self, v: VCpu) -> None:
        now = self.sim.now
        elapsed = now - v.piece_start
        if elapsed > 0:
            if v.piece == P_IRQ:
                v.irq[0][0] -= elapsed
            elif v.piece == P_COMPUTE:
                v.thread.remaining -= elapsed
            elif v.piece == P_SPIN and v.thread is not None and v.thread.act == A_SPIN_LOCK:
                v.thread.spin_budget -= elapsed
        v.piece = P_NONE
        v.token += 1

    def _advance(self, v: VCpu) -> None:
        """Start v's next piece; v has a pCPU and nothing in progress."""
        now = self.sim.now
        start = v.start_at if v.start_at > now else now
        v.token += 1
        tok = v.token
        if v.irq:
            head = v.irq[0]
            v.piece_start = start
            v.piece = P_IRQ
            self.sim.at(start + head[0], self._irq_done, (v, tok))
            return
        t = v.thread
        if t is None:
            self.host.block(v)  # idle: HLT
            return
        act = t.act
        if act == A_COMPUTE:
            v.piece = P_COMPUTE
            v.piece_start = start
            if self.probe is not None:
                self.probe.guest_code(start, v)
            self.sim.at(start + t.remaining, self._compute_done, (v, tok))
        elif act == A_SPIN_LOCK or act == A_SPIN_ACK:
            v.piece = P_SPIN
            v.piece_start = start
            # One timer per spin piece: whichever of the spin budget and the PLE window
            # ends first (the later one would find the piece already gone).
            budget_end = start + max(t.spin_budget, 0) if act == A_SPIN_LOCK else -1
            if self.ple:
                ple_at = start + v.ple_window
                if budget_end < 0 or ple_at < budget_end:
                    self.sim.at(ple_at, self._ple_exit, (v, tok))
                    return
            if budget_end >= 0:
                self.sim.at(budget_end, self._spin_timeout, (v, tok))
        else:
            v.piece = P_NONE
            self._step(v, t)

    def interrupt(self, v: VCpu, duration: int, callback: Callable[[VCpu], None] | None) -> None:
        """Queue interrupt work on v; it runs before v's thread does."""
        if v.state == RUNNING:
            if v.piece == P_IRQ:
                v.irq.append([duration, callback])
            else:
                if v.piece != P_NONE:
                    self._pause_piece(v)
                v.irq.appendleft([duration, callback])
                self._advance(v)
        else:
            v.irq.append([duration, callback])
            if v.state == HALTED:
                self.host.wake(v)

    def _irq_done(self, arg: tuple[VCpu, int]) -> None:
        v, tok = arg
        if tok != v.token:
            return
        v.piece = P_NONE
        _, callback = v.irq.popleft()
        if callback is not None:
            callback(v)
        self._advance(v)

    def _compute_done(self, arg: tuple[VCpu, int]) -> None:
        v, tok = arg
        if tok != v.token:
            return
        v.piece = P_NONE
        t = v.thread
        t.remaining = 0
        t.act = A_NEXT
        self._step(v, t)

    # --- spinning -------------------------------------------------------------------------
    def _end_spin(self, t: GuestThread) -> None:
        """A spin's condition came true (lock granted, last ack in)."""
        if t.act == A_SPIN_ACK:
            t.spin_ns += self.sim.now - t.spin_since
        t.act = A_NEXT
        v = t.vcpu
        if v is not None and v.state == RUNNING and v.piece == P_SPIN:
            self._pause_piece(v)
            self._advance(v)

    def _spin_timeout(self, arg: tuple[VCpu, int]) -> None:
        """The lock waiter spun its budget: block until the lock is handed over."""
        v, tok = arg
        if tok != v.token or v.thread is None or v.thread.act != A_SPIN_LOCK:
            return
        t = v.thread
        t.act = A_OFF
        self._leave(v, t)

    def _ple_exit(self, arg: tuple[VCpu, int]) -> None:
        """Pause-loop exit: the spinning vCPU exits and yields to a preempted sibling."""
        v, tok = arg
        if tok != v.token or v.piece != P_SPIN:
            return
        self.c.ple_exits += 1
        self.c.vm_exits += 1
        if self.probe is not None:
            self.probe.ple_exit(self.sim.now, v, v.ple_window)
        target = self._yield_candidate()
        v.ple_window = min(v.ple_window * 2, self.ple_window_ns * PLE_WINDOW_MAX_FACTOR)  # grow_ple_window()
        if not self.host.yield_to(v, target):
            v.start_at = self.sim.now + int(self.p.vm_exit_ns)
            self._pause_piece(v)
            self._advance(v)

    def _yield_candidate(self) -> VCpu | None:
        """kvm_vcpu_on_spin(): the next runnable ("ready") vCPU after the last one boosted, round robin.

        Round robin matters: always boosting the same candidate lets two
        spinners yield to each other forever while the vCPU they wait for starves.
        """
        w = self.waiting
        if not w:
            return None
        after = self.last_boosted + 1
        later = w >> after
        i = after + (later & -later).bit_length() - 1 if later else (w & -w).bit_length() - 1
        self.last_boosted = i
        return self.vcpus[i]

    # --- the thread interpreter -----------------------------------------------------------
    def _step(self, v: VCpu, t: GuestThread) -> None:
        """Run t's program on v until it needs time (compute, spin) or leaves the vCPU."""
        gen = t.gen
        while True:
            if self.ready and t.lock_held == 0 and self.sim.now >= t.quantum_end:
                t.act = A_NEXT  # quantum expired at a safe point: round-robin
                self.ready.append(t)
                self._leave(v, t)
                return
            try:
                op = next(gen)
            except StopIteration:
                t.done_at = self.sim.now
                t.act = A_OFF
                self.live_threads -= 1
                if self.live_threads == 0:
                    self._account(t)
                    self.sim.stop()
                    return
                self._leave(v, t)
                return
            code = op[0]
            if code == COMPUTE:
                t.act = A_COMPUTE
                t.remaining = op[1]
                if t.mode != op[2]:
                    self._set_mode(t, op[2])
                self._advance(v)
                return
            if code == LOCK:
                if self.lock.try_acquire(t, op[1]):
                    t.lock_held += 1
                    continue
                self._set_mode(t, SYS)
                t.act = A_SPIN_LOCK
                t.spin_budget = self.lock_spin_ns
                t.lock_wait_since = self.sim.now
                self._advance(v)
                return
            if code == UNLOCK:
                t.lock_held -= 1
                for g in self.lock.release(t):
                    self.sim.after(0, self._granted, g)
                continue
            if code == WAIT_ACKS:
                if t.acks <= 0:
                    continue
                self._set_mode(t, SYS)
                t.act = A_SPIN_ACK
                t.spin_since = self.sim.now
                self._advance(v)
                return
            if code == SLEEP:
                t.act = A_NEXT
                self._leave(v, t)
                self.sim.after(op[1], self._wake_sleeper, t)
                return
            raise ValueError(f"unknown thread op {op!r}")

    def _granted(self, t: GuestThread) -> None:
        t.lock_held += 1
        t.lock_wait_ns += self.sim.now - t.lock_wait_since
        if t.act == A_SPIN_LOCK:
            self._end_spin(t)
        else:  # blocked: wake it up
            t.act = A_NEXT
            self.make_ready(t)

    def _wake_sleeper(self, t: GuestThread) -> None:
        self.make_ready(t)

    def acks_complete(self, t: GuestThread) -> None:
        """The last shootdown target acknowledged (runs as its own event, so the
        initiator never resumes inside a target's interrupt handler)."""
        if t.acks == 0 and t.act == A_SPIN_ACK:
            self._end_spin(t)

    # --- TLB bookkeeping --------------------------------------------------------------------
    def shootdown_targets(self, v: VCpu) -> list[VCpu]:
        """vCPUs other than v that may cache the process's translations.

        Linux guests skip lazy-TLB vCPUs (idle ones) and mark them stale instead
        (they flush when they next run a thread); Windows IPIs every vCPU in the
        process's active processor set, idle or not.
        """
        mask = self.active & ~(1 << v.index)
        out = []
        vcpus = self.vcpus
        while mask:
            low = mask & -mask
            i = low.bit_length() - 1
            mask ^= low
            tv = vcpus[i]
            if self.lazy_tlb and tv.thread is None:
                tv.stale = True
                self.active &= ~low
                continue
            out.append(tv)
        return out

    def flushed(self, v: VCpu) -> None:
        """v's TLB no longer holds the process's stale translations.

        Linux clears an idle CPU's mm_cpumask bit lazily, so a flushed idle vCPU
        leaves the set; on Windows the idle vCPU still has the address space
        loaded (the process's active processors), so it stays a target.
        """
        if v.thread is None and not self.keep_loaded:
            self.active &= ~(1 << v.index)
