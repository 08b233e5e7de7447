"""KVM-side records and input readers shared by the hypercall handlers.

Constants are named as in ``arch/x86/kvm/hyperv.{c,h}``; the result records are what
``Partition`` hands back to the simulation engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

from ._tlfs import (
    HV_EXT_CALL_MAX,
    HV_EXT_CALL_QUERY_CAPABILITIES,
    HV_HYPERCALL_MAX_XMM_REGISTERS,
    HV_MAX_SPARSE_VCPU_BANKS,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX,
    HVCALL_SEND_IPI_EX,
    MASK64,
    PAGE_MASK,
    PAGE_SIZE,
    qwords,
    vps_of_mask,
)

#: KVM refuses HV_X64_MSR_VP_INDEX values >= KVM_MAX_VCPUS (x86, since v5.16).
KVM_MAX_VCPUS = 4096
#: arch/x86/kvm/hyperv.h (current).
KVM_HV_TLB_FLUSH_FIFO_SIZE = 16
#: "flush all" FIFO marker, (u64)-1; a real 4095-page request at 0xfffffffffffff000 looks
#: the same, which is fine because "flushing more than requested is always OK".
KVM_HV_TLB_FLUSHALL_ENTRY = MASK64
#: ARRAY_SIZE(__tlb_flush_entries): one FIFO slot always stays free for the FLUSHALL entry.
TLB_FLUSH_ENTRIES_MAX = KVM_HV_TLB_FLUSH_FIFO_SIZE - 1
#: XMM0..XMM5 hold twelve u64 "halves" of fast input.
XMM_HALVES = 2 * HV_HYPERCALL_MAX_XMM_REGISTERS
#: Guest virtual-address width for ``is_noncanonical_invlpg_address`` (4-level paging).
VIRTUAL_ADDRESS_BITS = 48

LIST_CODES = frozenset({HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST, HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX})
NON_EX_FLUSH_CODES = frozenset({HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST, HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE})
SPACE_CODES = frozenset({HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE, HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX})
FLUSH_CODES = LIST_CODES | SPACE_CODES
#: KVM ``is_xmm_fast_hypercall``.
XMM_FAST_CODES = FLUSH_CODES | {HVCALL_SEND_IPI_EX}
EXT_CODES = frozenset(range(HV_EXT_CALL_QUERY_CAPABILITIES, HV_EXT_CALL_MAX + 1))


class InvalidOpcode(Exception):
    """The hypercall raised #UD (no status is written to RAX).

    Attributes:
        trace: the ``kvm_hv_hypercall`` trace record, ``status`` None.
    """

    def __init__(self, reason: str, trace: "HypercallTrace") -> None:
        super().__init__(reason)
        self.trace = trace


class HypercallTrace(NamedTuple):
    """One call as KVM's trace points see it (an immutable record; ``to_dict`` for rows).

    ``kvm_hv_hypercall`` (code, fast, rep_cnt, rep_idx, var_cnt), then
    ``kvm_hv_flush_tlb`` (processor_mask) or ``kvm_hv_flush_tlb_ex`` (valid_bank_mask,
    format) with address_space and flags, then ``kvm_hv_hypercall_done`` (status).
    Flush fields are None when KVM never read the flush header.  Values are u64:
    store them as unsigned 64-bit columns.  A NamedTuple because one is built per
    hypercall and a frozen dataclass costs four times as much to construct.
    """

    code: int
    fast: bool
    rep_cnt: int
    rep_idx: int
    var_cnt: int
    processor_mask: int | None
    valid_bank_mask: int | None
    format: int | None
    address_space: int | None
    flags: int | None
    status: int | None

    def to_dict(self) -> dict[str, int | bool | None]:
        return self._asdict()


@dataclass(frozen=True, slots=True)
class HypercallResult:
    """What the guest sees in RAX, plus which VPs got a flush request.

    ``flushed_mask`` is the target set as a VP-index bitmask (cheap); ``flushed`` is the
    same as a frozenset.
    """

    rax: int
    status: int
    reps_completed: int
    flushed_mask: int
    trace: HypercallTrace

    @property
    def flushed(self) -> frozenset[int]:
        return frozenset(vps_of_mask(self.flushed_mask))


@dataclass(frozen=True, slots=True)
class EntryFlush:
    """What one vCPU flushes on its next VM entry: a full flush, or these 4 KiB pages.

    ``pages`` are the GVAs KVM passes to ``flush_tlb_gva``, in FIFO order; they are
    empty for a full flush (which supersedes them) and when nothing was pending.
    """

    full: bool
    pages: tuple[int, ...] = ()


NO_FLUSH = EntryFlush(full=False, pages=())
FULL_FLUSH = EntryFlush(full=True, pages=())
NO_HEADER: tuple[None, None, None, None, None] = (None, None, None, None, None)


def xmm_halves(xmm: Sequence[tuple[int, int]]) -> list[int]:
    """``kvm_hv_hypercall_read_xmm``: XMM0..5 as 12 u64 halves (lo, hi); missing ones are 0."""
    halves = [0] * XMM_HALVES
    for reg, (lo, hi) in enumerate(xmm[:HV_HYPERCALL_MAX_XMM_REGISTERS]):
        halves[2 * reg] = lo & MASK64
        halves[2 * reg + 1] = hi & MASK64
    return halves


_CANONICAL_SHIFT = VIRTUAL_ADDRESS_BITS - 1
_CANONICAL_HIGH = (1 << (65 - VIRTUAL_ADDRESS_BITS)) - 1


def entry_pages(entry: int) -> tuple[int, ...]:
    """GVAs flushed for one GVA-list entry (TLFS HvCallFlushVirtualAddressList).

    "The bottom 12 bits of the GVA ... encode the number of additional pages": 1 to 4096
    pages from ``entry & PAGE_MASK``.  KVM skips entries that are not canonical
    (``is_noncanonical_invlpg_address``); a range past 2**64 wraps like ``gva_t``.
    """
    top = entry >> _CANONICAL_SHIFT
    if top and top != _CANONICAL_HIGH:
        return ()
    base = entry & PAGE_MASK
    end = base + ((entry & 0xFFF) + 1) * PAGE_SIZE
    if end <= MASK64 + 1:
        return tuple(range(base, end, PAGE_SIZE))
    return tuple(gva & MASK64 for gva in range(base, end, PAGE_SIZE))


def kvm_get_sparse_vp_set(var_cnt: int, data: bytes | None, offset: int, halves: list[int] | None,
                          consumed: int) -> Sequence[int] | None:
    """KVM ``kvm_get_sparse_vp_set``: ``var_cnt`` banks, or None when KVM fails the read.

    Memory-based calls read at ``offset`` into ``data``; fast calls take the XMM halves
    after the ``consumed`` ones, and at most the twelve there are.
    """
    if var_cnt > HV_MAX_SPARSE_VCPU_BANKS:
        return None
    if halves is not None:
        if var_cnt > XMM_HALVES - consumed:
            return None
        return halves[consumed:consumed + var_cnt]
    if data is None or len(data) < offset + 8 * var_cnt:
        return None
    return qwords(var_cnt).unpack_from(data, offset)


__all__ = [
    "EntryFlush",
    "HypercallResult",
    "HypercallTrace",
    "InvalidOpcode",
    "KVM_HV_TLB_FLUSHALL_ENTRY",
    "KVM_HV_TLB_FLUSH_FIFO_SIZE",
    "KVM_MAX_VCPUS",
    "VIRTUAL_ADDRESS_BITS",
    "entry_pages",
]
