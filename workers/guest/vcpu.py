"""A vCPU: a host task whose pCPU time runs interrupt work first, then its guest thread.

Interrupt work (IPI handlers, the csd queue, flushes at VM entry) is *booked*
against the vCPU's own execution rather than simulated as events: a running
vCPU's queued work ends at ``irq_until`` and the piece its thread is running is
stretched by it. Work booked on a vCPU that has no pCPU waits in ``pending``
and runs first when the host dispatches it; work booked while it runs but not
done when the host takes the pCPU away goes back to ``pending``. So an IPI to a
running target costs arithmetic, not events, and the acknowledgement a
shootdown initiator waits for is known to the nanosecond unless the target
loses its pCPU first (then it is known at the target's next dispatch).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from workers.guest.ops import P_NONE, Piece
from workers.host import STATE_NAMES, HostTask

if TYPE_CHECKING:
    from workers.guest.kernel import Kernel
    from workers.guest.thread import GuestThread


class Wait:
    """One shootdown's outstanding acknowledgements (the NT packet barrier, Linux's csd locks).

    ``offcpu`` counts targets whose acknowledgement time is not yet known (their
    work is pending on a vCPU without a pCPU); ``deadline`` is the latest known
    acknowledgement. When ``offcpu`` is 0 the wait ends at ``deadline``.
    """

    __slots__ = ("thread", "offcpu", "deadline", "tok", "done", "armed", "started")

    def __init__(self, thread: "GuestThread", now: int) -> None:
        self.thread = thread
        self.offcpu = 0
        self.deadline = now
        self.tok = 0
        self.done = False
        self.armed = False  # the initiator has sent every IPI and may be released
        self.started = now


class VCpu(HostTask):
    __slots__ = (
        "kernel", "index", "vp_index", "bit", "thread", "run_since", "irq_until", "irq_booked",
        "acks", "pending", "flush_start", "piece", "piece_start", "piece_end", "piece_irq", "tok",
        "oncpu_base", "ple_window", "kvm_preempted", "in_kernel", "spin_loop", "dy_eligible",
        "st_preempted", "st_flush", "in_mm", "lazy", "missed_flush", "idle_pos",
    )

    def __init__(self, kernel: "Kernel", index: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.index = index
        self.vp_index = index
        self.bit = 1 << index
        self.thread: GuestThread | None = None
        self.run_since = 0  # when guest execution of this dispatch begins (after the switch and entry work)
        self.irq_until = 0  # booked interrupt work runs until then (while RUNNING)
        self.irq_booked = 0  # interrupt work booked on-CPU so far (ns), for the NT thread clock
        self.acks: deque[list] = deque()  # [ack_ns, end_ns, wait] booked while running, in order
        self.pending: list[list] = []  # [cost_ns, ack_part_ns, wait] booked while off-CPU
        self.flush_start = -1  # start of the booked csd batch that will catch up the TLB (coalescing)
        self.piece = P_NONE
        self.piece_start = 0
        self.piece_end = 0
        self.piece_irq = 0  # interrupt work booked since the piece began
        self.tok = 0
        self.oncpu_base = 0  # pCPU time of earlier dispatches (the Linux thread clock)
        self.ple_window = 0
        # KVM host state
        self.kvm_preempted = False  # vcpu->preempted: descheduled while runnable (kvm_sched_out)
        self.in_kernel = False  # vcpu->arch.preempted_in_kernel: CPL 0 when it was preempted
        self.spin_loop = False  # vcpu->spin_loop.in_spin_loop: inside kvm_vcpu_on_spin (or yielded from it)
        self.dy_eligible = False
        self.st_preempted = False  # steal-time KVM_VCPU_PREEMPTED as the guest reads it
        self.st_flush = False  # steal-time KVM_VCPU_FLUSH_TLB: flush at the next entry
        # guest TLB bookkeeping (Linux mm_cpumask / lazy TLB; NT uses ActiveProcessors in the kernel)
        self.in_mm = False
        self.lazy = False
        self.missed_flush = False
        self.idle_pos = -1

    def on_dispatch(self, switch_ns: int) -> None:
        self.kernel.vcpu_entered(self, switch_ns)

    def on_deschedule(self) -> None:
        self.kernel.vcpu_left(self)

    def __repr__(self) -> str:
        return (f"<vCPU {self.kernel.vm_index}.{self.index} {STATE_NAMES[self.state]} {Piece(self.piece).name}"
                f" thread={self.thread.tid if self.thread is not None else None}>")


__all__ = ["VCpu", "Wait"]
