"""Guest workloads as thread programs: generators of ops the guest kernel interprets.

Code between two ``yield``s runs at one simulated instant; each op takes time
(COMPUTE, TOUCH), may wait (LOCK, WAIT_ACKS) or gives the vCPU away (SLEEP).
The same workload takes each guest's own path through its kernel:

* **mmap-munmap** (the 2018 test). On Windows it ran under Cygwin (``mmap.cc``):
  ``mmap64`` and ``munmap`` both hold the process-wide ``mmap_guard`` muto, the
  latter across ``VirtualFree(MEM_RELEASE)``; NT deletes the range under the
  working-set lock (``NtFreeVirtualMemory`` -> ``MiDeleteVirtualAddresses``),
  clearing PTEs and freeing pages and flushing once per page directory
  (``MiFlushPteList`` at each 512-PTE boundary, NT 5.2 deleteva.c). On Linux
  (4.19) ``mmap``/``munmap`` hold ``mmap_sem`` for write, across the zap and the
  flushes, which ``tlb_finish_mmu`` issues every ``mmu_gather_pages`` pages;
  faults hold it for read.
* **ebizzy** (LTP ``utils/benchmark/ebizzy-0.3/ebizzy.c``): a record is
  ``alloc_mem`` + ``memcpy`` of a chunk + ``bsearch`` + ``free_mem``. Its
  ``rand_num`` multiplies a zero state, so every thread always copies chunk 0
  and looks for key 0: the pick costs nothing, and the number of chunks (``-n``)
  changes nothing measured (``allocate`` and ``write_pattern`` fill them before
  ``start_threads`` starts the clock), so no field sets it. With ``-M`` glibc never
  mmaps: the chunk comes from the thread's arena and ``free`` trims the heap top beyond
  ``M_TOP_PAD`` with ``madvise(MADV_DONTNEED)`` (``heap_trim`` -> ``shrink_heap``),
  under mmap_sem *read*, and the next memcpy faults those pages back. With
  ``-m`` each record is an ``mmap`` + ``munmap`` (the munmap under mmap_sem write).
* **cpu-bound**: a control with no shootdowns.
"""

from __future__ import annotations

from random import Random
from typing import TYPE_CHECKING, Callable

from workers.guest.ops import COMPUTE, EXCLUSIVE, LOCK, SHARED, SLEEP, SYS, TOUCH, UNLOCK, USER

if TYPE_CHECKING:
    from workers.config import RunConfig
    from workers.guest.kernel import Kernel
    from workers.guest.thread import GuestThread, ThreadProgram

PAGE_SIZE = 4096
#: glibc ``M_TOP_PAD`` default (128 KiB): what ``heap_trim`` keeps at the top of an arena's heap.
GLIBC_TOP_PAD = 128 * 1024


class ProcessLocks:
    """The locks the workload's process shares, by guest."""

    def __init__(self, k: "Kernel") -> None:
        if k.os_name == "windows":
            self.mmap_guard = k.lock("mmap_guard")
            self.mmap_guard.spin_ns = 0  # a muto waiter sleeps at once (WaitForSingleObject)
            self.ws = k.lock("working-set")
        else:
            self.mmap_sem = k.lock("mmap_sem")


def _nt_mmap_munmap(k: "Kernel", t: "GuestThread", cfg: "RunConfig", shootdown, rng: Random,
                    locks: ProcessLocks) -> "ThreadProgram":
    p = k.p
    pages = cfg.pages
    batch = int(p.nt_flush_batch_pages)
    fault_lock = p.choice("nt_fault_ws_lock")
    per_pte = int(p.unmap_page_ns + p.free_page_ns)
    muto, ws = locks.mmap_guard, locks.ws
    for _ in range(cfg.iterations):
        yield (LOCK, muto, EXCLUSIVE)  # mmap64: LIST_LOCK() across VirtualAlloc
        yield (COMPUTE, int(p.syscall_ns + p.mmap_ns), SYS)
        yield (UNLOCK, muto)
        if fault_lock == "shared":
            yield (TOUCH, ws, pages, SHARED)
        elif fault_lock == "none":
            yield (TOUCH, None, pages, SHARED)
        else:  # NT 5.2 MmAccessFault: LOCK_WS, exclusive (faults convoy a page table at a time)
            for done in range(0, pages, batch):
                yield (TOUCH, ws, min(batch, pages - done), EXCLUSIVE)
        yield (LOCK, muto, EXCLUSIVE)  # munmap: LIST_LOCK() across VirtualFree(MEM_RELEASE)
        yield (COMPUTE, int(p.syscall_ns), SYS)
        yield (LOCK, ws, EXCLUSIVE)  # NtFreeVirtualMemory: LOCK_WS_UNSAFE across MiDeleteVirtualAddresses
        owed = 0
        for done in range(0, pages, batch):
            n = min(batch, pages - done)
            # MI_WRITE_INVALID_PTE and MiDecrementShareCount per PTE, then MiFlushPteList
            # at the page-directory boundary
            owed = yield from shootdown(t, n, per_pte * n + owed)
        if owed:
            yield (COMPUTE, owed, SYS)
        yield (UNLOCK, ws)
        yield (UNLOCK, muto)
        t.ops += 1
        yield (SLEEP, int(p.syscall_ns) + rng.randint(0, cfg.sleep_max_us) * 1000)


def _linux_munmap(k: "Kernel", t: "GuestThread", shootdown, pages: int, mmap_sem):
    """``vm_munmap``: mmap_sem write across the zap, each mmu_gather flush and the frees (4.19)."""
    p = k.p
    gather = int(p.mmu_gather_pages)
    yield (LOCK, mmap_sem, EXCLUSIVE)
    owed = int(p.syscall_ns)
    for done in range(0, pages, gather):
        n = min(gather, pages - done)
        owed = yield from shootdown(t, n, owed + int(p.unmap_page_ns * n))  # zap, then tlb_flush_mmu
        yield (COMPUTE, int(p.free_page_ns * n) + owed, SYS)  # tlb_flush_mmu_free: pages go back after the flush
        owed = 0
    yield (UNLOCK, mmap_sem)


def _linux_mmap(k: "Kernel", mmap_sem):
    yield (LOCK, mmap_sem, EXCLUSIVE)
    yield (COMPUTE, int(k.p.syscall_ns + k.p.mmap_ns), SYS)
    yield (UNLOCK, mmap_sem)


def _linux_mmap_munmap(k: "Kernel", t: "GuestThread", cfg: "RunConfig", shootdown, rng: Random,
                       locks: ProcessLocks) -> "ThreadProgram":
    p = k.p
    sem = locks.mmap_sem
    for _ in range(cfg.iterations):
        yield from _linux_mmap(k, sem)
        yield (TOUCH, sem, cfg.pages, SHARED)
        yield from _linux_munmap(k, t, shootdown, cfg.pages, sem)
        t.ops += 1
        yield (SLEEP, int(p.syscall_ns) + rng.randint(0, cfg.sleep_max_us) * 1000)


def mmap_munmap(k: "Kernel", t: "GuestThread", cfg: "RunConfig", shootdown, rng: Random,
                locks: ProcessLocks) -> "ThreadProgram":
    """The 2018 test: map ``pages``, touch each, unmap, sleep a random 0..sleep_max_us."""
    if k.os_name == "windows":
        return _nt_mmap_munmap(k, t, cfg, shootdown, rng, locks)
    return _linux_mmap_munmap(k, t, cfg, shootdown, rng, locks)


def ebizzy(k: "Kernel", t: "GuestThread", cfg: "RunConfig", shootdown, rng: Random,
           locks: ProcessLocks) -> "ThreadProgram":
    """``search_mem`` until the run ends: one record per alloc/copy/search/free."""
    p = k.p
    sem = locks.mmap_sem
    chunk_pages = cfg.ebizzy_chunk_kib * 1024 // PAGE_SIZE
    copy_ns = int(p.copy_page_ns * chunk_pages)
    search_ns = int(p.search_ns)
    end = int(cfg.duration_s * 1e9)
    if cfg.ebizzy_alloc == "mmap":  # -m
        while k.sim.now < end:
            yield from _linux_mmap(k, sem)
            yield (TOUCH, sem, chunk_pages, SHARED, copy_ns + search_ns)  # the memcpy faults the chunk in
            yield from _linux_munmap(k, t, shootdown, chunk_pages, sem)
            t.ops += 1
        return
    # -M: the arena keeps M_TOP_PAD at its top; free() trims the rest with MADV_DONTNEED
    trim = max(0, cfg.ebizzy_chunk_kib * 1024 - GLIBC_TOP_PAD) // PAGE_SIZE
    per_page_zap = int(p.unmap_page_ns)
    per_page_free = int(p.free_page_ns)
    faults = chunk_pages  # the first record faults the whole chunk in
    while k.sim.now < end:
        # the memcpy faults the trimmed pages back as it goes: one piece of faults and copying
        yield (TOUCH, sem, faults, SHARED, copy_ns + search_ns)
        faults = trim
        if trim:
            yield (LOCK, sem, SHARED)  # free -> heap_trim -> shrink_heap -> madvise(MADV_DONTNEED): read
            owed = yield from shootdown(t, trim, int(p.syscall_ns) + per_page_zap * trim)
            yield (COMPUTE, per_page_free * trim + owed, SYS)
            yield (UNLOCK, sem)
        t.ops += 1


def cpu_bound(k: "Kernel", t: "GuestThread", cfg: "RunConfig", shootdown, rng: Random,
              locks: ProcessLocks) -> "ThreadProgram":
    """A control with no shootdowns: user-mode work units for ``duration_s``."""
    end = int(cfg.duration_s * 1e9)
    chunk = int(k.p.cpu_chunk_ns)
    while k.sim.now < end:
        yield (COMPUTE, chunk, USER)
        t.ops += 1


WORKLOADS: dict[str, Callable[..., "ThreadProgram"]] = {
    "mmap-munmap": mmap_munmap,
    "ebizzy": ebizzy,
    "cpu-bound": cpu_bound,
}
DURATION_WORKLOADS = frozenset({"ebizzy", "cpu-bound"})

__all__ = ["DURATION_WORKLOADS", "GLIBC_TOP_PAD", "ProcessLocks", "WORKLOADS"]
