"""Hyper-V TLFS ABI: constants, the hypercall input value, sparse VP sets.

Names and values follow Linux ``include/asm-generic/hyperv-tlfs.h`` and the
Hyper-V TLFS ("Hypercall Interface", ``HV_VP_SET``).  Everything here is pure
and stateless; the partition (host side) and the encoder (guest side) build on it.
VP sets are Python ``int`` bitmasks: bit *n* set means VP index *n* is a member.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

MASK64 = (1 << 64) - 1
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = MASK64 & ~(PAGE_SIZE - 1)


def _genmask(high: int, low: int) -> int:
    """GENMASK_ULL(high, low)."""
    return ((1 << (high - low + 1)) - 1) << low


# --- hypercall input value (TLFS "Hypercall Inputs"; hyperv-tlfs.h) -------------------
HV_HYPERCALL_RESULT_MASK = _genmask(15, 0)
HV_HYPERCALL_FAST_BIT = 1 << 16
HV_HYPERCALL_VARHEAD_OFFSET = 17
HV_HYPERCALL_VARHEAD_MASK = _genmask(26, 17)
HV_HYPERCALL_RSVD0_MASK = _genmask(31, 27)
#: Linux define, not in the TLFS table; KVM treats it as reserved (RSVD0 covers bit 31).
HV_HYPERCALL_NESTED = 1 << 31
HV_HYPERCALL_REP_COMP_OFFSET = 32
HV_HYPERCALL_REP_COMP_1 = 1 << 32
HV_HYPERCALL_REP_COMP_MASK = _genmask(43, 32)
HV_HYPERCALL_RSVD1_MASK = _genmask(47, 44)
HV_HYPERCALL_REP_START_OFFSET = 48
HV_HYPERCALL_REP_START_MASK = _genmask(59, 48)
HV_HYPERCALL_RSVD2_MASK = _genmask(63, 60)
HV_HYPERCALL_RSVD_MASK = HV_HYPERCALL_RSVD0_MASK | HV_HYPERCALL_RSVD1_MASK | HV_HYPERCALL_RSVD2_MASK
#: XMM0..XMM5 carry fast input (TLFS: "six XMM registers ... up to 112 bytes" with RDX and R8).
HV_HYPERCALL_MAX_XMM_REGISTERS = 6

# --- status codes (TLFS "Hypercall Status Codes") ------------------------------------
HV_STATUS_SUCCESS = 0
HV_STATUS_INVALID_HYPERCALL_CODE = 2
HV_STATUS_INVALID_HYPERCALL_INPUT = 3
HV_STATUS_INVALID_ALIGNMENT = 4
HV_STATUS_INVALID_PARAMETER = 5
HV_STATUS_ACCESS_DENIED = 6
HV_STATUS_OPERATION_DENIED = 8
HV_STATUS_INSUFFICIENT_MEMORY = 11
HV_STATUS_INVALID_PORT_ID = 17
HV_STATUS_INVALID_CONNECTION_ID = 18
HV_STATUS_INSUFFICIENT_BUFFERS = 19
HV_STATUS_TIME_OUT = 120
HV_STATUS_VTL_ALREADY_ENABLED = 134

# --- call codes ----------------------------------------------------------------------
HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE = 0x0002
HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST = 0x0003
HVCALL_NOTIFY_LONG_SPIN_WAIT = 0x0008
HVCALL_SEND_IPI = 0x000B
HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX = 0x0013
HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX = 0x0014
HVCALL_SEND_IPI_EX = 0x0015
HVCALL_POST_MESSAGE = 0x005C
HVCALL_SIGNAL_EVENT = 0x005D
HVCALL_POST_DEBUG_DATA = 0x0069
HVCALL_RETRIEVE_DEBUG_DATA = 0x006A
HVCALL_RESET_DEBUG_SESSION = 0x006B
HVCALL_FLUSH_GUEST_PHYSICAL_ADDRESS_SPACE = 0x00AF
HVCALL_FLUSH_GUEST_PHYSICAL_ADDRESS_LIST = 0x00B0
HV_EXT_CALL_QUERY_CAPABILITIES = 0x8001
#: KVM: "HV_EXT_CALL_MAX = 0x8001 + 64" (one capability bit per extended call).
HV_EXT_CALL_MAX = HV_EXT_CALL_QUERY_CAPABILITIES + 64

#: The four TLB-flush hypercalls (KVM ``kvm_hv_is_tlb_flush_hcall``).
HV_TLB_FLUSH_CODES = frozenset(
    {
        HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE,
        HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST,
        HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX,
        HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX,
    }
)

# --- HvFlushVirtualAddress* flags ------------------------------------------------------
HV_FLUSH_ALL_PROCESSORS = 1 << 0
HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES = 1 << 1
HV_FLUSH_NON_GLOBAL_MAPPINGS_ONLY = 1 << 2
HV_FLUSH_USE_EXTENDED_RANGE_FORMAT = 1 << 3

# --- HV_VP_SET (TLFS datatypes/hv_vp_set) ----------------------------------------------
HV_GENERIC_SET_SPARSE_4K = 0
HV_GENERIC_SET_ALL = 1
HV_MAX_SPARSE_VCPU_BANKS = 64
HV_VCPUS_PER_SPARSE_BANK = 64

# --- CPUID bits KVM's access check reads (hyperv-tlfs.h) -------------------------------
#: HYPERV_CPUID_FEATURES (0x40000003).EBX
HV_POST_MESSAGES = 1 << 4
HV_SIGNAL_EVENTS = 1 << 5
HV_ENABLE_EXTENDED_HYPERCALLS = 1 << 20
#: HYPERV_CPUID_FEATURES (0x40000003).EDX
HV_X64_HYPERCALL_XMM_INPUT_AVAILABLE = 1 << 4
HV_FEATURE_EXT_GVA_RANGES_FLUSH = 1 << 14
#: HYPERV_CPUID_ENLIGHTMENT_INFO (0x40000004).EAX
HV_X64_REMOTE_TLB_FLUSH_RECOMMENDED = 1 << 2
HV_X64_CLUSTER_IPI_RECOMMENDED = 1 << 10
HV_X64_EX_PROCESSOR_MASKS_RECOMMENDED = 1 << 11

# --- SEND_IPI vector range, SIGNAL_EVENT connection id (hyperv-tlfs.h, uapi kvm.h) ----
HV_IPI_LOW_VECTOR = 0x10
HV_IPI_HIGH_VECTOR = 0xFF
KVM_HYPERV_CONN_ID_MASK = 0x00FFFFFF

# --- struct sizes (all little-endian, __packed) ----------------------------------------
#: struct hv_tlb_flush {address_space, flags, processor_mask, gva_list[]}
HV_TLB_FLUSH_SIZE = 24
#: struct hv_tlb_flush_ex {address_space, flags, hv_vp_set{format, valid_bank_mask, bank_contents[]}}
HV_TLB_FLUSH_EX_SIZE = 32

#: ``_QWORDS[n]`` unpacks/packs n little-endian u64s (n <= 4096/8 covers one input page).
_QWORDS = tuple(struct.Struct(f"<{n}Q") for n in range(PAGE_SIZE // 8 + 2))


def qwords(n: int) -> struct.Struct:
    """A cached ``struct.Struct`` for n little-endian u64s."""
    return _QWORDS[n] if n < len(_QWORDS) else struct.Struct(f"<{n}Q")


@dataclass(frozen=True, slots=True)
class HypercallInput:
    """The decoded hypercall input value (KVM ``struct kvm_hv_hcall``, TLFS names).

    Decoded once per call and handed to every handler, as KVM does with ``hc``.
    ``rep`` is KVM's ``rep_cnt || rep_idx``: a simple call must have neither.
    """

    param: int
    code: int
    fast: bool
    var_cnt: int
    rep_cnt: int
    rep_idx: int
    rep: bool

    @classmethod
    def decode(cls, control: int) -> "HypercallInput":
        """Decode a 64-bit input value (wider ints are cut to the register width)."""
        return decode_control(control & MASK64)


@lru_cache(maxsize=4096)
def decode_control(param: int) -> HypercallInput:
    """Field extraction exactly as ``kvm_hv_hypercall``; memoised (guests reuse few words)."""
    rep_cnt = (param >> HV_HYPERCALL_REP_COMP_OFFSET) & 0xFFF
    rep_idx = (param >> HV_HYPERCALL_REP_START_OFFSET) & 0xFFF
    return HypercallInput(
        param=param,
        code=param & 0xFFFF,
        fast=bool(param & HV_HYPERCALL_FAST_BIT),
        var_cnt=(param & HV_HYPERCALL_VARHEAD_MASK) >> HV_HYPERCALL_VARHEAD_OFFSET,
        rep_cnt=rep_cnt,
        rep_idx=rep_idx,
        rep=bool(rep_cnt or rep_idx),
    )


def hypercall_control(code: int, *, fast: bool = False, var_cnt: int = 0, rep_cnt: int = 0, rep_idx: int = 0) -> int:
    """Build an input value, as Linux ``hv_do_rep_hypercall`` does (``code | varhead<<17 | reps<<32``).

    Raises:
        ValueError: a field does not fit its TLFS bit range.
    """
    for name, value, limit in (("code", code, 0xFFFF), ("var_cnt", var_cnt, 0x3FF),
                               ("rep_cnt", rep_cnt, 0xFFF), ("rep_idx", rep_idx, 0xFFF)):
        if not 0 <= value <= limit:
            raise ValueError(f"{name}: {value} does not fit the TLFS field (0..{limit})")
    return (
        code
        | (HV_HYPERCALL_FAST_BIT if fast else 0)
        | (var_cnt << HV_HYPERCALL_VARHEAD_OFFSET)
        | (rep_cnt << HV_HYPERCALL_REP_COMP_OFFSET)
        | (rep_idx << HV_HYPERCALL_REP_START_OFFSET)
    )


def hv_result(rax: int) -> int:
    """Status part of the output value (Linux ``hv_result``)."""
    return rax & HV_HYPERCALL_RESULT_MASK


def hv_repcomp(rax: int) -> int:
    """Reps completed (Linux ``hv_repcomp``): absolute, not relative to the rep start index."""
    return (rax & HV_HYPERCALL_REP_COMP_MASK) >> HV_HYPERCALL_REP_COMP_OFFSET


# --- sparse VP sets ----------------------------------------------------------------------
def get_sparse_bank_no(valid_bank_mask: int, bank_no: int) -> int:
    """Index of bank ``bank_no`` in ``bank_contents``, or -1 when its valid bit is clear.

    v4.18 ``get_sparse_bank_no``: banks are stored in ascending order, so the index is
    the number of valid banks below ``bank_no``.
    """
    if not (valid_bank_mask >> bank_no) & 1:
        return -1
    return (valid_bank_mask & ((1 << bank_no) - 1)).bit_count()


def hv_is_vp_in_sparse_set(vp_id: int, valid_bank_mask: int, sparse_banks: Sequence[int]) -> bool:
    """KVM ``hv_is_vp_in_sparse_set``: is VP ``vp_id`` a member of the sparse set?"""
    sbank = get_sparse_bank_no(valid_bank_mask, vp_id // HV_VCPUS_PER_SPARSE_BANK)
    if sbank < 0:
        return False
    return bool((sparse_banks[sbank] >> (vp_id % HV_VCPUS_PER_SPARSE_BANK)) & 1)


def sparse_set_to_vp_mask(valid_bank_mask: int, sparse_banks: Sequence[int]) -> int:
    """KVM ``sparse_set_to_vcpu_mask`` (VP-bitmap half): place bank k of the list at its bank.

    Only banks below ``HV_MAX_SPARSE_VCPU_BANKS`` exist (``valid_bank_mask`` is a u64).
    A contiguous ``GENMASK(n-1, 0)`` mask, the shape Linux always sends, is a plain
    little-endian concatenation, so it skips the per-bank loop.
    """
    valid_bank_mask &= MASK64
    n = valid_bank_mask.bit_count()
    if valid_bank_mask == (1 << n) - 1:
        mask = 0
        for k in range(n - 1, -1, -1):
            mask = (mask << 64) | (sparse_banks[k] & MASK64)
        return mask
    mask = 0
    sbank = 0
    while valid_bank_mask:
        low = valid_bank_mask & -valid_bank_mask
        mask |= (sparse_banks[sbank] & MASK64) << ((low.bit_length() - 1) * 64)
        sbank += 1
        valid_bank_mask ^= low
    return mask


def cpumask_to_vpset(vp_mask: int) -> tuple[int, int, tuple[int, ...]]:
    """Linux ``cpumask_to_vpset``: ``(nr_bank, valid_bank_mask, bank_contents)``.

    Every bank up to the highest one is marked valid, empty ones included
    (``valid_bank_mask = GENMASK_ULL(nr_bank - 1, 0)``, at least one bank), so the
    variable header size equals popcount(valid_bank_mask), which KVM checks.
    """
    if vp_mask < 0 or vp_mask >> (HV_MAX_SPARSE_VCPU_BANKS * HV_VCPUS_PER_SPARSE_BANK):
        raise ValueError(f"vp_mask: VP indexes must be in 0..{HV_MAX_SPARSE_VCPU_BANKS * 64 - 1}")
    nr_bank = max(1, (vp_mask.bit_length() + 63) // 64)
    banks = qwords(nr_bank).unpack(vp_mask.to_bytes(8 * nr_bank, "little"))
    return nr_bank, (1 << nr_bank) - 1, banks


def vp_mask(vps: Iterable[int] | int) -> int:
    """A VP set as an int bitmask; an int is taken as a bitmask already."""
    if isinstance(vps, int):
        if vps < 0:
            raise ValueError("a VP bitmask cannot be negative")
        return vps
    if isinstance(vps, frozenset):
        return _frozenset_mask(vps)
    return _mask_of(vps)


def _mask_of(vps: Iterable[int]) -> int:
    if isinstance(vps, range) and vps.step == 1:
        if vps.start < 0:
            raise ValueError(f"VP index {vps.start} is negative")
        return ((1 << len(vps)) - 1) << vps.start if len(vps) else 0
    members = list(vps)
    if not members:
        return 0
    if min(members) < 0:
        raise ValueError(f"VP index {min(members)} is negative")
    if len(members) < 32:
        mask = 0
        for vp in members:
            mask |= 1 << vp
        return mask
    # Many members: set bits in a byte buffer instead of growing a big int each time.
    buf = bytearray((max(members) >> 3) + 1)
    for vp in members:
        buf[vp >> 3] |= 1 << (vp & 7)
    return int.from_bytes(buf, "little")


@lru_cache(maxsize=1024)
def _frozenset_mask(vps: frozenset[int]) -> int:
    # frozensets cache their hash, so a repeated present/target set costs one lookup.
    return _mask_of(vps)


def vps_of_mask(mask: int) -> tuple[int, ...]:
    """Members of a VP bitmask, ascending (word by word, so 4096-bit masks stay cheap)."""
    if mask <= 0:
        return ()
    nwords = (mask.bit_length() + 63) // 64
    out: list[int] = []
    base = 0
    for word in qwords(nwords).unpack(mask.to_bytes(8 * nwords, "little")):
        while word:
            low = word & -word
            out.append(base + low.bit_length() - 1)
            word ^= low
        base += 64
    return tuple(out)


__all__ = [
    "HVCALL_FLUSH_GUEST_PHYSICAL_ADDRESS_LIST",
    "HVCALL_FLUSH_GUEST_PHYSICAL_ADDRESS_SPACE",
    "HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST",
    "HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX",
    "HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE",
    "HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX",
    "HVCALL_NOTIFY_LONG_SPIN_WAIT",
    "HVCALL_POST_DEBUG_DATA",
    "HVCALL_POST_MESSAGE",
    "HVCALL_RESET_DEBUG_SESSION",
    "HVCALL_RETRIEVE_DEBUG_DATA",
    "HVCALL_SEND_IPI",
    "HVCALL_SEND_IPI_EX",
    "HVCALL_SIGNAL_EVENT",
    "HV_ENABLE_EXTENDED_HYPERCALLS",
    "HV_EXT_CALL_MAX",
    "HV_EXT_CALL_QUERY_CAPABILITIES",
    "HV_FEATURE_EXT_GVA_RANGES_FLUSH",
    "HV_FLUSH_ALL_PROCESSORS",
    "HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES",
    "HV_FLUSH_NON_GLOBAL_MAPPINGS_ONLY",
    "HV_FLUSH_USE_EXTENDED_RANGE_FORMAT",
    "HV_GENERIC_SET_ALL",
    "HV_GENERIC_SET_SPARSE_4K",
    "HV_HYPERCALL_FAST_BIT",
    "HV_HYPERCALL_MAX_XMM_REGISTERS",
    "HV_HYPERCALL_NESTED",
    "HV_HYPERCALL_REP_COMP_1",
    "HV_HYPERCALL_REP_COMP_MASK",
    "HV_HYPERCALL_REP_COMP_OFFSET",
    "HV_HYPERCALL_REP_START_MASK",
    "HV_HYPERCALL_REP_START_OFFSET",
    "HV_HYPERCALL_RESULT_MASK",
    "HV_HYPERCALL_RSVD0_MASK",
    "HV_HYPERCALL_RSVD1_MASK",
    "HV_HYPERCALL_RSVD2_MASK",
    "HV_HYPERCALL_RSVD_MASK",
    "HV_HYPERCALL_VARHEAD_MASK",
    "HV_HYPERCALL_VARHEAD_OFFSET",
    "HV_IPI_HIGH_VECTOR",
    "HV_IPI_LOW_VECTOR",
    "HV_MAX_SPARSE_VCPU_BANKS",
    "HV_POST_MESSAGES",
    "HV_SIGNAL_EVENTS",
    "HV_STATUS_ACCESS_DENIED",
    "HV_STATUS_INSUFFICIENT_BUFFERS",
    "HV_STATUS_INSUFFICIENT_MEMORY",
    "HV_STATUS_INVALID_ALIGNMENT",
    "HV_STATUS_INVALID_CONNECTION_ID",
    "HV_STATUS_INVALID_HYPERCALL_CODE",
    "HV_STATUS_INVALID_HYPERCALL_INPUT",
    "HV_STATUS_INVALID_PARAMETER",
    "HV_STATUS_INVALID_PORT_ID",
    "HV_STATUS_OPERATION_DENIED",
    "HV_STATUS_SUCCESS",
    "HV_STATUS_TIME_OUT",
    "HV_STATUS_VTL_ALREADY_ENABLED",
    "HV_TLB_FLUSH_CODES",
    "HV_TLB_FLUSH_EX_SIZE",
    "HV_TLB_FLUSH_SIZE",
    "HV_VCPUS_PER_SPARSE_BANK",
    "HV_X64_CLUSTER_IPI_RECOMMENDED",
    "HV_X64_EX_PROCESSOR_MASKS_RECOMMENDED",
    "HV_X64_HYPERCALL_XMM_INPUT_AVAILABLE",
    "HV_X64_REMOTE_TLB_FLUSH_RECOMMENDED",
    "HypercallInput",
    "KVM_HYPERV_CONN_ID_MASK",
    "MASK64",
    "PAGE_MASK",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "cpumask_to_vpset",
    "decode_control",
    "get_sparse_bank_no",
    "hv_is_vp_in_sparse_set",
    "hv_repcomp",
    "hv_result",
    "hypercall_control",
    "qwords",
    "sparse_set_to_vp_mask",
    "vp_mask",
    "vps_of_mask",
]
