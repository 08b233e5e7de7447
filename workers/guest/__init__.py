"""The guest kernels: threads on vCPUs, their locks and time, and what Windows and Linux do differently.

* ``ops``: the op, mode, activity and piece vocabulary (IntEnums; plain ints on the hot path).
* ``vcpu``: ``VCpu`` (a host task that runs booked interrupt work, then its thread) and ``Wait``.
* ``kernel``: ``Kernel``, what both guests share: the thread interpreter, locks, spins, PLE exits.
* ``windows``/``linux``: ``NtKernel`` and ``LinuxKernel``: targets, clocks, placement, quanta, sleep.
* ``locks``, ``thread``: ``Lock`` (FIFO reader-writer, with each real lock's waiting policy), ``GuestThread``.
"""

from workers.guest.kernel import Kernel
from workers.guest.linux import LinuxKernel
from workers.guest.locks import Lock
from workers.guest.ops import Activity, Mode, Op, Piece
from workers.guest.thread import GuestThread
from workers.guest.vcpu import VCpu, Wait
from workers.guest.windows import NtKernel

__all__ = ["Activity", "GuestThread", "Kernel", "LinuxKernel", "Lock", "Mode", "NtKernel", "Op", "Piece", "VCpu", "Wait"]
