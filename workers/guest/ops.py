"""The guest's vocabulary: what thread programs ask for, and what a vCPU or thread is doing.

IntEnums so traces and debug output show names (``Op(op[0]).name``); the hot
path compares the plain ints bound below, which costs nothing.
"""

from __future__ import annotations

from enum import IntEnum


class Op(IntEnum):
    """The first element of each tuple a thread program yields."""

    COMPUTE = 0  # (COMPUTE, ns, mode): run for ns of the thread's own time in USER or SYS
    LOCK = 1  # (LOCK, lock, shared): acquire; spin and/or sleep as the lock's waiters do
    UNLOCK = 2  # (UNLOCK, lock)
    WAIT_ACKS = 3  # (WAIT_ACKS, wait): spin in kernel until every shootdown target acknowledged
    SLEEP = 4  # (SLEEP, ns): block for ns as the guest's timer rounds it; the vCPU may halt
    TOUCH = 5  # (TOUCH, lock, pages, shared[, user_ns]): demand-zero faults on fresh pages, ``lock`` held per fault


class Mode(IntEnum):
    USER = 0
    SYS = 1


class Activity(IntEnum):
    """What a thread is doing."""

    NEXT = 0  # between ops: the interpreter runs its program
    COMPUTE = 1
    SPIN_LOCK = 2  # spinning for a lock (kernel), until granted or its spin budget is used
    SPIN_ACK = 3  # spinning for shootdown acknowledgements (kernel, interrupts enabled)
    OFF = 4  # blocked, asleep, ready-queued or finished: not on a vCPU
    TOUCH = 5  # faulting in pages (kernel, with a user store per page)


class Piece(IntEnum):
    """What a vCPU's pCPU time is going to right now."""

    NONE = 0
    THREAD = 1  # its thread's activity (compute, touch or spin)
    HALT = 2  # HLT exit on its way off the pCPU


COMPUTE, LOCK, UNLOCK, WAIT_ACKS, SLEEP, TOUCH = (int(o) for o in Op)
USER, SYS = int(Mode.USER), int(Mode.SYS)
A_NEXT, A_COMPUTE, A_SPIN_LOCK, A_SPIN_ACK, A_OFF, A_TOUCH = (int(a) for a in Activity)
P_NONE, P_THREAD, P_HALT = (int(p) for p in Piece)
SHARED, EXCLUSIVE = True, False


def describe(op: tuple) -> str:
    """``(COMPUTE, 1200, SYS)`` -> ``'COMPUTE 1200 SYS'``, for traces and errors."""
    parts = [Op(op[0]).name]
    for i, x in enumerate(op[1:]):
        if Op(op[0]) == Op.COMPUTE and i == 1:
            parts.append(Mode(x).name)
        else:
            parts.append(getattr(x, "name", None) or str(x))
    return " ".join(parts)


__all__ = [
    "A_COMPUTE", "A_NEXT", "A_OFF", "A_SPIN_ACK", "A_SPIN_LOCK", "A_TOUCH", "Activity", "COMPUTE", "EXCLUSIVE",
    "LOCK", "Mode", "Op", "P_HALT", "P_NONE", "P_THREAD", "Piece", "SHARED", "SLEEP", "SYS", "TOUCH", "UNLOCK",
    "USER", "WAIT_ACKS", "describe",
]
