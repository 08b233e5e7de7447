"""The guest side: Linux ``hyperv_flush_tlb_multi`` (arch/x86/hyperv/mmu.c).

``encode_flush`` builds the hypercalls a Linux guest makes for one remote TLB
shootdown, byte for byte as the per-CPU input page holds them, so the host model
can be fed exactly what it would read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ._tlfs import (
    HV_FLUSH_ALL_PROCESSORS,
    HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES,
    HV_FLUSH_NON_GLOBAL_MAPPINGS_ONLY,
    HV_GENERIC_SET_SPARSE_4K,
    HV_TLB_FLUSH_EX_SIZE,
    HV_TLB_FLUSH_SIZE,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX,
    HV_HYPERCALL_REP_COMP_OFFSET,
    HV_HYPERCALL_VARHEAD_OFFSET,
    MASK64,
    PAGE_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    HypercallInput,
    decode_control,
    qwords,
    vp_mask,
)

#: "Each gva in gva_list encodes up to 4096 pages to flush" (16 MiB).
HV_TLB_FLUSH_UNIT = 4096 * PAGE_SIZE
#: Linux ``TLB_FLUSH_ALL`` ((unsigned long)-1): ``end`` meaning "the whole address space".
TLB_FLUSH_ALL = MASK64
#: x86-64 ``CR3_ADDR_MASK`` = ``__sme_clr(PHYSICAL_PAGE_MASK)``: PCID/flag bits stripped.
CR3_ADDR_MASK = 0x000FFFFFFFFFF000
#: ``(PAGE_SIZE - sizeof(struct hv_tlb_flush)) / 8``: GVA entries that fit the input page.
HV_MAX_FLUSH_GVAS = (PAGE_SIZE - HV_TLB_FLUSH_SIZE) // 8

_Q3 = qwords(3)
_Q4 = qwords(4)


@dataclass(frozen=True, slots=True)
class FlushCall:
    """One memory-based hypercall: the input value (RCX) and the input page's bytes."""

    control: int
    input: bytes

    @property
    def hc(self) -> HypercallInput:
        return decode_control(self.control)


def fill_gva_list(start: int, end: int) -> list[int]:
    """Linux ``fill_gva_list``: GVA entries covering [start, end), 16 MiB per entry.

    The low 12 bits hold the number of additional pages; at least one entry is
    emitted even for an empty range, and ``(diff - 1) >> PAGE_SHIFT`` is kept as is.
    """
    entries = []
    cur = start
    while True:
        diff = end - cur if end > cur else 0
        entry = cur & PAGE_MASK
        if diff >= HV_TLB_FLUSH_UNIT:
            entry |= ~PAGE_MASK & MASK64
            cur += HV_TLB_FLUSH_UNIT
        elif diff:
            entry |= (diff - 1) >> PAGE_SHIFT
            cur = end
        entries.append(entry)
        if not cur < end:
            return entries


def encode_flush(
    targets: Iterable[int] | int,
    *,
    present: Iterable[int] | int,
    address_space: int | None = None,
    start: int | None = None,
    end: int | None = None,
    ex_supported: bool = True,
) -> list[FlushCall]:
    """The hypercalls ``hyperv_flush_tlb_multi`` makes for one shootdown.

    Args:
        targets: VP indexes to flush (an iterable, or an int bitmask).
        present: VP indexes of all present CPUs (iterable or bitmask); targets equal to
            it use HV_FLUSH_ALL_PROCESSORS on the non-EX call even above 64 VPs.
        address_space: the mm's CR3 (PCID bits are stripped); None for a flush of all
            address spaces (``info->mm == NULL``).
        start, end: the byte range [start, end); ``end`` None (or TLB_FLUSH_ALL) asks
            for the whole address space.  ``start`` None means 0.
        ex_supported: HV_X64_EX_PROCESSOR_MASKS_RECOMMENDED.  Without it a VP index >= 64
            makes Linux fall back to native IPIs.

    Returns:
        The calls, in order: ``[]`` when no hypercall is made (an empty target set,
        or a target VP >= 64 without ``ex_supported``: native IPIs instead), otherwise
        one call (KVM completes every rep, so ``hv_do_rep_hypercall`` never repeats).
    """
    target_mask = vp_mask(targets)
    if not target_mask:
        return []  # "nothing to flush if 'processor_mask' ends up being empty"
    if address_space is not None:
        address_space = address_space & CR3_ADDR_MASK
        flags = 0
    else:
        address_space = 0
        flags = HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES
    start = 0 if start is None else start & MASK64
    end = TLB_FLUSH_ALL if end is None else end & MASK64

    if target_mask == vp_mask(present):
        return [_flush_non_ex(address_space, flags | HV_FLUSH_ALL_PROCESSORS, 0, start, end)]
    if not target_mask >> 64:
        return [_flush_non_ex(address_space, flags, target_mask, start, end)]
    if not ex_supported:
        return []  # hyperv_flush_tlb_others_ex: HV_STATUS_INVALID_PARAMETER -> native
    return [_flush_ex(address_space, flags, target_mask, start, end)]


def _use_space(start: int, end: int, max_gvas: int) -> bool:
    """Space instead of List: a full flush was asked for, or the list would not fit."""
    return end == TLB_FLUSH_ALL or bool(end and ((end - start) & MASK64) // HV_TLB_FLUSH_UNIT > max_gvas)


def _flush_non_ex(address_space: int, flags: int, processor_mask: int, start: int, end: int) -> FlushCall:
    if end == TLB_FLUSH_ALL:
        flags |= HV_FLUSH_NON_GLOBAL_MAPPINGS_ONLY
    header = _Q3.pack(address_space, flags, processor_mask)
    if _use_space(start, end, HV_MAX_FLUSH_GVAS):
        return FlushCall(HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE, header)
    gvas = fill_gva_list(start, end)
    return FlushCall(
        HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST | (len(gvas) << HV_HYPERCALL_REP_COMP_OFFSET),
        header + qwords(len(gvas)).pack(*gvas),
    )


def _flush_ex(address_space: int, flags: int, target_mask: int, start: int, end: int) -> FlushCall:
    """``hyperv_flush_tlb_others_ex`` with ``cpumask_to_vpset``: banks 0..highest, all valid."""
    nr_bank = (target_mask.bit_length() + 63) // 64
    if nr_bank > 64:
        raise ValueError("targets: VP indexes must be below 4096 (64 sparse banks)")
    if end == TLB_FLUSH_ALL:
        flags |= HV_FLUSH_NON_GLOBAL_MAPPINGS_ONLY
    # bank_contents[k] is bits 64k..64k+63 of the VP bitmap, so the banks are the
    # bitmap's little-endian bytes.
    header = _Q4.pack(address_space, flags, HV_GENERIC_SET_SPARSE_4K, (1 << nr_bank) - 1) + target_mask.to_bytes(
        8 * nr_bank, "little"
    )
    varhead = nr_bank << HV_HYPERCALL_VARHEAD_OFFSET
    max_gvas = (PAGE_SIZE - HV_TLB_FLUSH_EX_SIZE - 8 * nr_bank) // 8
    if _use_space(start, end, max_gvas):
        return FlushCall(HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX | varhead, header)
    gvas = fill_gva_list(start, end)
    return FlushCall(
        HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX | varhead | (len(gvas) << HV_HYPERCALL_REP_COMP_OFFSET),
        header + qwords(len(gvas)).pack(*gvas),
    )


__all__ = [
    "CR3_ADDR_MASK",
    "FlushCall",
    "HV_MAX_FLUSH_GVAS",
    "HV_TLB_FLUSH_UNIT",
    "TLB_FLUSH_ALL",
    "encode_flush",
    "fill_gva_list",
]
