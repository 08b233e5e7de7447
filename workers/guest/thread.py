"""A guest thread: a program (a generator of ops) and its guest-visible times."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generator

from workers.guest.ops import A_NEXT, USER, Activity, Mode

if TYPE_CHECKING:
    from workers.guest.locks import Lock
    from workers.guest.vcpu import VCpu

ThreadProgram = Generator[tuple, None, None]


class GuestThread:
    __slots__ = (
        "tid", "gen", "vcpu", "last_vcpu", "ideal_vcpu", "act", "remaining", "mode", "clock0",
        "user_ns", "sys_ns", "spin_ns", "spin_since", "spin_budget", "wait", "locks_held",
        "lock_wait_since", "lock_wait_ns", "waiting_for", "quantum_end", "ops", "done_at",
        "owed", "touch_lock", "touch_left", "touch_shared", "touch_share", "revoked", "user_share",
    )

    def __init__(self, tid: int, ideal_vcpu: int) -> None:
        self.tid = tid
        self.gen: ThreadProgram | None = None
        self.vcpu: VCpu | None = None
        self.last_vcpu = ideal_vcpu
        self.ideal_vcpu = ideal_vcpu
        self.act = A_NEXT
        self.remaining = 0  # ns of work left in the current COMPUTE/TOUCH
        self.mode = USER
        self.user_share = 0.0  # TOUCH: the share of its time spent in user mode (the stores)
        self.clock0 = 0  # the guest clock when the current mode began (see Kernel.clock)
        self.user_ns = 0
        self.sys_ns = 0
        self.spin_ns = 0  # time spent spinning for shootdown acknowledgements
        self.spin_since = 0
        self.spin_budget = 0
        self.wait = None  # the Wait a WAIT_ACKS spins on
        self.locks_held = 0
        self.lock_wait_since = -1
        self.lock_wait_ns = 0
        self.waiting_for: Lock | None = None
        self.quantum_end = 0
        self.owed = 0  # work a stretched piece left to the next one (kernel.STRETCH_SLACK_NS)
        self.ops = 0  # completed workload operations
        self.done_at = -1
        self.touch_lock: Lock | None = None
        self.touch_left = 0  # pages still to fault in the current TOUCH
        self.touch_shared = True
        self.touch_share = 0.0  # the TOUCH's user share, kept across a revocation
        self.revoked = False  # a writer took the TOUCH lock away at the next page boundary

    def __repr__(self) -> str:
        where = f"vCPU {self.vcpu.index}" if self.vcpu is not None else "off-vCPU"
        return f"<thread {self.tid} {Activity(self.act).name} {Mode(self.mode).name} {where}>"
