"""KVM's handling of the hypercalls that are *not* TLB flushes.

They share codes, shapes and the sparse VP-set format with the flush calls
(SEND_IPI_EX sits next to LIST_EX), so they are validated as KVM does and
answered with KVM's status, but never produce a flush.  This partition has no
active SynIC, no eventfds, no SynDBG and no VMM userspace behind it.
"""

from __future__ import annotations

from ._kvm_abi import EXT_CODES, kvm_get_sparse_vp_set
from ._tlfs import (
    HV_GENERIC_SET_ALL,
    HV_IPI_HIGH_VECTOR,
    HV_IPI_LOW_VECTOR,
    HV_STATUS_INVALID_ALIGNMENT,
    HV_STATUS_INVALID_HYPERCALL_CODE,
    HV_STATUS_INVALID_HYPERCALL_INPUT,
    HV_STATUS_INVALID_PARAMETER,
    HV_STATUS_INVALID_PORT_ID,
    HV_STATUS_SUCCESS,
    HVCALL_NOTIFY_LONG_SPIN_WAIT,
    HVCALL_POST_DEBUG_DATA,
    HVCALL_POST_MESSAGE,
    HVCALL_RESET_DEBUG_SESSION,
    HVCALL_RETRIEVE_DEBUG_DATA,
    HVCALL_SEND_IPI,
    HVCALL_SEND_IPI_EX,
    HVCALL_SIGNAL_EVENT,
    KVM_HYPERV_CONN_ID_MASK,
    PAGE_SIZE,
    HypercallInput,
    qwords,
)

_INVALID_INPUT = HV_STATUS_INVALID_HYPERCALL_INPUT
_Q1 = qwords(1)
_Q2 = qwords(2)
_Q3 = qwords(3)


def signal_event(fast: bool, rdx: int, data: bytes | None) -> int:
    """KVM ``kvm_hvcall_signal_event``; no eventfd is assigned in this partition."""
    if not fast:
        # The GPA in RDX must hold an aligned u64 that does not cross a page.
        if rdx & 7 or (rdx & (PAGE_SIZE - 1)) + 8 > PAGE_SIZE:
            return HV_STATUS_INVALID_ALIGNMENT
        if data is None or len(data) < 8:
            return HV_STATUS_INVALID_ALIGNMENT  # sic: a failed read is reported this way
        (param,) = _Q1.unpack_from(data, 0)
    else:
        param = rdx
    if param & 0xFFFF00000000:  # "flag number": unused, reported as a lookup failure
        return HV_STATUS_INVALID_PORT_ID
    if param & ~KVM_HYPERV_CONN_ID_MASK:
        return _INVALID_INPUT
    return HV_STATUS_INVALID_PORT_ID


def other_call_current(hc: HypercallInput, data: bytes | None, rdx: int, r8: int, halves: list[int] | None) -> int:
    """The non-flush codes KVM knows, so that none of them is mistaken for a flush."""
    code = hc.code
    if code == HVCALL_NOTIFY_LONG_SPIN_WAIT:
        return _INVALID_INPUT if hc.rep or hc.var_cnt else HV_STATUS_SUCCESS
    if code == HVCALL_SIGNAL_EVENT:
        if hc.rep or hc.var_cnt:
            return _INVALID_INPUT
        status = signal_event(hc.fast, rdx, data)
        if status != HV_STATUS_INVALID_PORT_ID:
            return status
        code = HVCALL_POST_MESSAGE  # "maybe userspace knows this conn_id"
    if code == HVCALL_POST_MESSAGE:
        return _INVALID_INPUT  # no SynIC is active: "don't bother userspace"
    if code == HVCALL_SEND_IPI or code == HVCALL_SEND_IPI_EX:
        if code == HVCALL_SEND_IPI and hc.var_cnt:
            return _INVALID_INPUT
        if hc.rep:
            return _INVALID_INPUT
        return send_ipi(hc, data, rdx, r8, halves)
    if code == HVCALL_POST_DEBUG_DATA or code == HVCALL_RETRIEVE_DEBUG_DATA:
        return HV_STATUS_INVALID_PARAMETER if hc.fast else HV_STATUS_INVALID_HYPERCALL_CODE
    if code == HVCALL_RESET_DEBUG_SESSION:
        return HV_STATUS_INVALID_HYPERCALL_CODE  # SynDBG not exposed
    if code in EXT_CODES:
        # Memory-based extended calls exit to the VMM; none is modelled, so the VMM
        # answers like QEMU for a call it does not implement.
        return HV_STATUS_INVALID_PARAMETER if hc.fast else HV_STATUS_INVALID_HYPERCALL_CODE
    return HV_STATUS_INVALID_HYPERCALL_CODE


def send_ipi(hc: HypercallInput, data: bytes | None, rdx: int, r8: int, halves: list[int] | None) -> int:
    """``kvm_hv_send_ipi``: validated like KVM; the IPIs themselves are not modelled."""
    if hc.code == HVCALL_SEND_IPI:
        if hc.fast:
            if rdx >> 32:  # the 'reserved' half of struct hv_send_ipi
                return _INVALID_INPUT
            vector = rdx
        else:
            if data is None or len(data) < 16:
                return _INVALID_INPUT
            vector = _Q2.unpack_from(data, 0)[0] & 0xFFFFFFFF
    else:
        if hc.fast:
            vector, fmt, valid_bank_mask = rdx & 0xFFFFFFFF, r8, halves[0]  # type: ignore[index]
        else:
            if data is None or len(data) < 24:
                return _INVALID_INPUT
            word0, fmt, valid_bank_mask = _Q3.unpack_from(data, 0)
            vector = word0 & 0xFFFFFFFF
        if hc.var_cnt != valid_bank_mask.bit_count():
            return _INVALID_INPUT
        # Unlike the flush path, only HV_GENERIC_SET_ALL itself means "all" here.
        if fmt != HV_GENERIC_SET_ALL:
            if not hc.var_cnt:
                return HV_STATUS_SUCCESS
            if kvm_get_sparse_vp_set(hc.var_cnt, data, 24, halves, 1) is None:
                return _INVALID_INPUT
    if not HV_IPI_LOW_VECTOR <= vector <= HV_IPI_HIGH_VECTOR:
        return _INVALID_INPUT
    return HV_STATUS_SUCCESS


def other_call_2018(hc: HypercallInput, data: bytes | None, rdx: int) -> int:
    """v4.18 ``kvm_hv_hypercall`` for non-flush codes: only the rep check, no PV IPI yet."""
    code = hc.code
    if code == HVCALL_NOTIFY_LONG_SPIN_WAIT:
        return _INVALID_INPUT if hc.rep else HV_STATUS_SUCCESS
    if code == HVCALL_SIGNAL_EVENT:
        if hc.rep:
            return _INVALID_INPUT
        status = signal_event(hc.fast, rdx, data)
        if status != HV_STATUS_INVALID_PORT_ID:
            return status
        code = HVCALL_POST_MESSAGE
    if code == HVCALL_POST_MESSAGE:
        return _INVALID_INPUT
    return HV_STATUS_INVALID_HYPERCALL_CODE


__all__ = ["other_call_2018", "other_call_current", "send_ipi", "signal_event"]
