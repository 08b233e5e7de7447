"""Guest workloads as thread programs: generators of ops the guest interprets.

Code between two ``yield``s runs at one simulated instant; each op takes time
(COMPUTE), may wait (LOCK, WAIT_ACKS) or gives the vCPU away (SLEEP).
"""

from __future__ import annotations

from random import Random
from typing import TYPE_CHECKING, Callable

from workers.guest import COMPUTE, EXCLUSIVE, LOCK, SHARED, SLEEP, SYS, UNLOCK, USER, GuestThread

if TYPE_CHECKING:
    from workers.config import RunConfig
    from workers.guest import Guest, ThreadProgram
    from workers.profiles import CostProfile


def _map(p: "CostProfile", npages: int):
    """mmap(): insert the mapping under the exclusive lock."""
    yield (LOCK, EXCLUSIVE)
    yield (COMPUTE, int(p.syscall_ns + p.mmap_ns), SYS)
    yield (UNLOCK,)


def _touch(p: "CostProfile", npages: int):
    """First touch of every page: demand-zero faults under the shared lock, then the user stores."""
    yield (LOCK, SHARED)
    yield (COMPUTE, int(p.fault_ns * npages), SYS)
    yield (UNLOCK,)
    yield (COMPUTE, max(1, int(p.touch_user_ns * npages)), USER)


def _unmap(p: "CostProfile", shootdown, t: GuestThread, npages: int):
    """munmap(): clear PTEs, shoot down remote TLBs, free the pages; all under the exclusive lock."""
    yield (LOCK, EXCLUSIVE)
    yield (COMPUTE, int(p.syscall_ns + p.unmap_page_ns * npages), SYS)
    yield from shootdown(t, npages)
    yield (COMPUTE, int(p.free_page_ns * npages), SYS)
    yield (UNLOCK,)


def mmap_munmap(g: "Guest", t: GuestThread, cfg: "RunConfig", shootdown, rng: Random) -> "ThreadProgram":
    """The 2018 test: map `pages` pages, touch each, unmap, sleep a random 0..sleep_max_us."""
    p = g.p
    for _ in range(cfg.iterations):
        yield from _map(p, cfg.pages)
        yield from _touch(p, cfg.pages)
        yield from _unmap(p, shootdown, t, cfg.pages)
        t.ops += 1
        yield (SLEEP, int(p.syscall_ns) + rng.randint(0, cfg.sleep_max_us) * 1000)


def ebizzy(g: "Guest", t: GuestThread, cfg: "RunConfig", shootdown, rng: Random) -> "ThreadProgram":
    """ebizzy: allocate a chunk of `pages` pages, copy a record chunk into it, search it, free it."""
    p = g.p
    end = int(cfg.duration_s * 1e9)
    while g.sim.now < end:
        yield from _map(p, cfg.pages)
        yield from _touch(p, cfg.pages)
        yield (COMPUTE, int((p.copy_page_ns + p.search_page_ns) * cfg.pages), USER)
        yield from _unmap(p, shootdown, t, cfg.pages)
        t.ops += 1


def cpu_bound(g: "Guest", t: GuestThread, cfg: "RunConfig", shootdown, rng: Random) -> "ThreadProgram":
    """A control with no shootdowns: user-mode work units for `duration_s`."""
    end = int(cfg.duration_s * 1e9)
    chunk = int(g.p.cpu_chunk_ns)
    while g.sim.now < end:
        yield (COMPUTE, chunk, USER)
        t.ops += 1


WORKLOADS: dict[str, Callable[..., "ThreadProgram"]] = {
    "mmap-munmap": mmap_munmap,
    "ebizzy": ebizzy,
    "cpu-bound": cpu_bound,
}
