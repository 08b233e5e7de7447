"""KVM's host side of the Hyper-V TLB-flush hypercalls, for one partition (VM).

``Partition`` follows ``arch/x86/kvm/hyperv.c`` in two versions:

* ``"kvm-2018"``: the original series ("KVM: x86: hyperv: PV TLB flush for Windows
  guests", v4.18).  Fast calls are rejected, reserved bits and the variable-header
  size are not checked, an empty processor_mask flushes nothing, and every flush is
  a full flush (``KVM_REQ_TLB_FLUSH``).
* ``"kvm-current"`` (~v6.6-v6.16): CPUID access checks under enforce_cpuid, the
  reserved-bit and var_cnt checks, XMM fast input, the WS2012 quirk (an empty
  processor_mask means all processors) and the 16-entry per-vCPU flush FIFO that
  falls back to a full flush.

Requests are recorded, not executed: a target's flush happens when the engine calls
``vm_entry`` for it, as KVM services ``KVM_REQ_HV_TLB_FLUSH`` in ``vcpu_enter_guest``.
Guest misuse comes back as the HV_STATUS KVM returns; only a #UD raises
(``InvalidOpcode``).  Misuse of this Python API (an unknown VP index) raises ValueError.
"""

from __future__ import annotations

import operator
from typing import Iterable, Literal, Sequence

from ._kvm_abi import (
    FLUSH_CODES,
    FULL_FLUSH,
    KVM_HV_TLB_FLUSH_FIFO_SIZE,
    KVM_HV_TLB_FLUSHALL_ENTRY,
    KVM_MAX_VCPUS,
    LIST_CODES,
    NO_FLUSH,
    NO_HEADER,
    NON_EX_FLUSH_CODES,
    SPACE_CODES,
    TLB_FLUSH_ENTRIES_MAX,
    XMM_FAST_CODES,
    XMM_HALVES,
    EXT_CODES,
    EntryFlush,
    HypercallResult,
    HypercallTrace,
    InvalidOpcode,
    entry_pages,
    kvm_get_sparse_vp_set,
    xmm_halves,
)
from ._kvm_calls import other_call_2018, other_call_current
from ._tlfs import (
    HV_FLUSH_ALL_PROCESSORS,
    HV_GENERIC_SET_SPARSE_4K,
    HV_HYPERCALL_REP_COMP_OFFSET,
    HV_HYPERCALL_RSVD_MASK,
    HV_STATUS_ACCESS_DENIED,
    HV_STATUS_INVALID_HYPERCALL_INPUT,
    HV_TLB_FLUSH_EX_SIZE,
    HV_TLB_FLUSH_SIZE,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX,
    HVCALL_NOTIFY_LONG_SPIN_WAIT,
    HVCALL_POST_MESSAGE,
    HVCALL_SEND_IPI,
    HVCALL_SEND_IPI_EX,
    HVCALL_SIGNAL_EVENT,
    MASK64,
    HypercallInput,
    decode_control,
    qwords,
    sparse_set_to_vp_mask,
    vp_mask,
    vps_of_mask,
)

Semantics = Literal["kvm-current", "kvm-2018"]
SEMANTICS: tuple[str, ...] = ("kvm-current", "kvm-2018")

#: Feature names a Partition may expose -> the CPUID bit KVM's access check reads.
FEATURES: dict[str, str] = {
    "tlbflush": "0x40000004.EAX[2] HV_X64_REMOTE_TLB_FLUSH_RECOMMENDED",
    "ex_processor_masks": "0x40000004.EAX[11] HV_X64_EX_PROCESSOR_MASKS_RECOMMENDED",
    "xmm_input": "0x40000003.EDX[4] HV_X64_HYPERCALL_XMM_INPUT_AVAILABLE",
    "cluster_ipi": "0x40000004.EAX[10] HV_X64_CLUSTER_IPI_RECOMMENDED",
    "spinlocks": "0x40000004.EBX spin-wait retry count (hv-spinlocks)",
    "post_messages": "0x40000003.EBX[4] HV_POST_MESSAGES",
    "signal_events": "0x40000003.EBX[5] HV_SIGNAL_EVENTS",
    "extended_hypercalls": "0x40000003.EBX[20] HV_ENABLE_EXTENDED_HYPERCALLS",
}
DEFAULT_FEATURES = frozenset({"tlbflush", "ex_processor_masks", "xmm_input"})

_INVALID_INPUT = HV_STATUS_INVALID_HYPERCALL_INPUT

_Q3 = qwords(3)
_Q4 = qwords(4)


class Partition:
    """One VM's Hyper-V TLB-flush state as KVM keeps it.

    Args:
        vp_indexes: ``vp_indexes[i]`` is the VP index of vCPU i (HV_X64_MSR_VP_INDEX; the
            default in KVM is i).  Unique, each in 0..KVM_MAX_VCPUS-1.
        semantics: ``"kvm-current"`` or ``"kvm-2018"`` (see the module docstring).
        enforce_cpuid: KVM_CAP_HYPERV_ENFORCE_CPUID (kvm-current only): calls the
            exposed CPUID does not allow return ACCESS_DENIED, XMM input without
            ``xmm_input`` raises #UD.
        features: exposed enlightenments, names from ``FEATURES``.
        tdp_enabled: EPT/NPT.  Without it KVM cannot flush single GVAs and every
            kvm-current flush is a full flush.

    Not thread-safe; one Partition belongs to one simulation.

    Raises:
        ValueError: a bad argument (the message names it and the fix).
    """

    def __init__(
        self,
        vp_indexes: Iterable[int],
        semantics: Semantics = "kvm-current",
        enforce_cpuid: bool = False,
        features: Iterable[str] = DEFAULT_FEATURES,
        *,
        tdp_enabled: bool = True,
    ) -> None:
        given = tuple(vp_indexes)
        if not given:
            raise ValueError("vp_indexes: a partition needs at least one vCPU")
        seen: set[int] = set()
        for i, vp in enumerate(given):
            if isinstance(vp, bool) or not hasattr(vp, "__index__") or not 0 <= vp < KVM_MAX_VCPUS:
                raise ValueError(f"vp_indexes[{i}]: {vp!r} is not a VP index in 0..{KVM_MAX_VCPUS - 1}")
            if vp in seen:
                raise ValueError(f"vp_indexes[{i}]: VP index {vp} is already another vCPU's; make them unique")
            seen.add(vp)
        vps = tuple(operator.index(vp) for vp in given)
        if semantics not in SEMANTICS:
            raise ValueError(f"semantics: {semantics!r} is not one of {', '.join(SEMANTICS)}")
        feats = frozenset(features)
        unknown = sorted(feats - FEATURES.keys())
        if unknown:
            raise ValueError(f"features: unknown {unknown}; known: {', '.join(sorted(FEATURES))}")
        if enforce_cpuid and semantics != "kvm-current":
            raise ValueError("enforce_cpuid: KVM_CAP_HYPERV_ENFORCE_CPUID does not exist in kvm-2018; use kvm-current")

        self.vp_indexes: tuple[int, ...] = vps
        self.semantics: str = semantics
        self.enforce_cpuid: bool = bool(enforce_cpuid)
        self.features: frozenset[str] = feats
        self.tdp_enabled: bool = bool(tdp_enabled)
        self._current = semantics == "kvm-current"
        self._vcpu_of = {vp: i for i, vp in enumerate(vps)}
        self._all_mask = vp_mask(vps)
        self._all_vps = vps_of_mask(self._all_mask)
        self._denied = self._denied_codes() if self.enforce_cpuid else frozenset()
        self._xmm_ud = self.enforce_cpuid and "xmm_input" not in feats
        self._fifos: list[list[int] | None] = [None] * (max(vps) + 1)
        for vp in vps:
            self._fifos[vp] = []
        self._pending = 0
        self._vps_cache: dict[int, tuple[int, ...]] = {}
        self._memo_2018: dict[tuple, HypercallResult] = {}  # (control, input, rdx, r8) -> its result
        self._entry_cache: dict[tuple[int, ...], EntryFlush] = {}

    # --- public API ------------------------------------------------------------------
    @property
    def all_vps_mask(self) -> int:
        """Every VP index of the partition as a bitmask."""
        return self._all_mask

    def vcpu_of(self, vp_index: int) -> int:
        """The vCPU index that has ``vp_index``."""
        self._check_vp(vp_index)
        return self._vcpu_of[vp_index]

    def hypercall(
        self,
        caller: int,
        control: int,
        input: bytes | None = b"",
        rdx: int = 0,
        r8: int = 0,
        xmm: Sequence[tuple[int, int]] = (),
    ) -> HypercallResult:
        """Handle one hypercall from VP ``caller`` (KVM ``kvm_hv_hypercall``).

        Args:
            caller: the calling VP index (CPL 0, protected mode assumed).
            control: the input value (RCX).
            input: the bytes readable at the input GPA for memory-based calls, None when
                that GPA is not mapped; a read past its end fails like an unmapped GPA.
            rdx, r8: RDX and R8.  Fast calls carry parameters here; memory-based calls
                carry the input/output GPAs (only SIGNAL_EVENT inspects the GPA itself).
            xmm: XMM0..XMM5 as ``(lo, hi)`` u64 pairs; missing registers are zero.

        Returns:
            The result word and the VPs that received a flush request.

        Raises:
            InvalidOpcode: #UD (XMM fast input not exposed under enforce_cpuid).
            ValueError: ``caller`` is not a VP index of this partition.
        """
        if caller not in self._vcpu_of:
            self._check_vp(caller, "caller")
        if not self._current:
            # v4.18 reads nothing but the input and the partition's VP indexes, so the same
            # call always decodes the same: memoised, with its one effect (the requests) applied.
            key = (control, input, rdx, r8)
            result = self._memo_2018.get(key)
            if result is None:
                hc = decode_control(control & MASK64)
                word, targets, header = self._dispatch_2018(hc, input, rdx & MASK64, r8 & MASK64)
                result = self._result(hc, word, targets, header)
                if len(self._memo_2018) >= 4096:
                    self._memo_2018.clear()
                self._memo_2018[key] = result
            self._pending |= result.flushed_mask  # KVM_REQ_TLB_FLUSH | KVM_REQUEST_NO_WAKEUP
            return result
        hc = decode_control(control & MASK64)
        word, targets, header = self._dispatch_current(hc, input, rdx & MASK64, r8 & MASK64, xmm)
        return self._result(hc, word, targets, header)

    @staticmethod
    def _result(hc: HypercallInput, word: int, targets: int, header: tuple) -> HypercallResult:
        status = word & 0xFFFF
        return HypercallResult(
            rax=word,
            status=status,
            reps_completed=(word >> HV_HYPERCALL_REP_COMP_OFFSET) & 0xFFF,
            flushed_mask=targets,
            trace=HypercallTrace(hc.code, hc.fast, hc.rep_cnt, hc.rep_idx, hc.var_cnt, *header, status),
        )

    def pending(self, vp_index: int) -> bool:
        """Does this vCPU have a TLB-flush request pending (to be serviced on VM entry)?"""
        self._check_vp(vp_index)
        return bool((self._pending >> vp_index) & 1)

    @property
    def pending_mask(self) -> int:
        """VP indexes with a pending flush request, as a bitmask."""
        return self._pending

    def fifo(self, vp_index: int) -> tuple[int, ...]:
        """Pending entries of this vCPU's L1 flush FIFO (kvm-2018 has none: always ())."""
        self._check_vp(vp_index)
        return tuple(self._fifos[vp_index] or ()) if self._current else ()

    def vm_entry(self, vp_index: int) -> EntryFlush:
        """Service this vCPU's flush request as ``vcpu_enter_guest`` does, draining it.

        kvm-2018: ``KVM_REQ_TLB_FLUSH`` is a full flush.  kvm-current:
        ``kvm_hv_vcpu_flush_tlb`` pops the whole FIFO; a FLUSHALL entry (or no TDP)
        means a full guest flush, otherwise each canonical entry's pages are flushed.
        """
        if vp_index not in self._vcpu_of:
            self._check_vp(vp_index)
        pending = self._pending
        if not (pending >> vp_index) & 1:
            return NO_FLUSH
        self._pending = pending ^ (1 << vp_index)
        if not self._current:
            return FULL_FLUSH
        entries = self._fifos[vp_index]
        # kfifo_out of all 16 slots; a full flush purges too (kvm_hv_vcpu_purge_flush_tlb).
        self._fifos[vp_index] = []
        if not self.tdp_enabled or KVM_HV_TLB_FLUSHALL_ENTRY in entries:  # type: ignore[operator]
            return FULL_FLUSH
        # A shootdown puts the same entries on every target, so the result is memoised.
        key = tuple(entries)  # type: ignore[arg-type]
        flush = self._entry_cache.get(key)
        if flush is None:
            if len(self._entry_cache) >= 4096:
                self._entry_cache.clear()
            pages: list[int] = []
            for entry in key:
                pages.extend(entry_pages(entry))
            flush = self._entry_cache[key] = EntryFlush(False, tuple(pages))
        return flush

    # --- helpers ---------------------------------------------------------------------
    def _check_vp(self, vp_index: int, name: str = "vp_index") -> None:
        if vp_index not in self._vcpu_of:
            raise ValueError(f"{name}: {vp_index!r} is not a VP index of this partition (see Partition.vp_indexes)")

    def _denied_codes(self) -> frozenset[int]:
        """KVM ``hv_check_hypercall_access`` with enforce_cpuid: codes the CPUID does not allow."""
        f = self.features
        denied: set[int] = set()
        if "tlbflush" not in f:
            denied |= FLUSH_CODES
        if "ex_processor_masks" not in f:
            denied |= {HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX, HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX, HVCALL_SEND_IPI_EX}
        if "cluster_ipi" not in f:
            denied |= {HVCALL_SEND_IPI, HVCALL_SEND_IPI_EX}
        if "spinlocks" not in f:
            denied.add(HVCALL_NOTIFY_LONG_SPIN_WAIT)
        if "post_messages" not in f:
            denied.add(HVCALL_POST_MESSAGE)
        if "signal_events" not in f:
            denied.add(HVCALL_SIGNAL_EVENT)
        if "extended_hypercalls" not in f:
            denied |= EXT_CODES
        # SynDBG is not exposed: KVM allows the debug calls so they end as INVALID_HYPERCALL_CODE.
        return frozenset(denied)

    def vps_of(self, mask: int) -> tuple[int, ...]:
        """The VP indexes in ``mask``, ascending (memoised: shootdowns repeat their target sets)."""
        return self._vps_of(mask)

    def _vps_of(self, mask: int) -> tuple[int, ...]:
        if mask == self._all_mask:
            return self._all_vps
        vps = self._vps_cache.get(mask)
        if vps is None:
            if len(self._vps_cache) >= 4096:
                self._vps_cache.clear()
            vps = self._vps_cache[mask] = vps_of_mask(mask)
        return vps

    def _enqueue(self, targets: int, entries: tuple[int, ...] | None, count: int) -> None:
        """``hv_tlb_flush_enqueue`` on every target, then ``kvm_make_vcpus_request_mask``.

        All ``count`` entries go in only if ``count < kfifo_avail``, which keeps one slot
        free; otherwise one FLUSHALL entry goes in (dropped when the FIFO is full: a full
        FIFO always holds a FLUSHALL already).
        """
        fifos = self._fifos
        size = KVM_HV_TLB_FLUSH_FIFO_SIZE
        if entries is not None and count:
            room = size - count
            for vp in self._vps_of(targets):
                fifo = fifos[vp]
                n = len(fifo)  # type: ignore[arg-type]
                if n < room:
                    fifo.extend(entries)  # type: ignore[union-attr]
                elif n < size:
                    fifo.append(KVM_HV_TLB_FLUSHALL_ENTRY)  # type: ignore[union-attr]
        else:
            for vp in self._vps_of(targets):
                fifo = fifos[vp]
                if len(fifo) < size:  # type: ignore[arg-type]
                    fifo.append(KVM_HV_TLB_FLUSHALL_ENTRY)  # type: ignore[union-attr]
        self._pending |= targets

    # --- kvm-current -----------------------------------------------------------------
    def _dispatch_current(self, hc: HypercallInput, data: bytes | None, rdx: int, r8: int,
                          xmm: Sequence[tuple[int, int]]) -> tuple[int, int, tuple]:
        """``kvm_hv_hypercall`` (current): access, reserved bits, XMM, then per-code shape."""
        code = hc.code
        if code in self._denied:
            return HV_STATUS_ACCESS_DENIED, 0, NO_HEADER
        if hc.param & HV_HYPERCALL_RSVD_MASK:
            return _INVALID_INPUT, 0, NO_HEADER
        halves = None
        if hc.fast and code in XMM_FAST_CODES:
            if self._xmm_ud:
                raise InvalidOpcode(
                    "XMM fast hypercall input without HV_X64_HYPERCALL_XMM_INPUT_AVAILABLE under enforce_cpuid",
                    HypercallTrace(code, hc.fast, hc.rep_cnt, hc.rep_idx, hc.var_cnt, *NO_HEADER, None),
                )
            halves = xmm_halves(xmm)
        if code in FLUSH_CODES:
            # Non-EX calls take no variable header; List needs reps and no start index
            # (KVM never completes part of a rep call); Space is a simple call.
            if hc.var_cnt and code in NON_EX_FLUSH_CODES:
                return _INVALID_INPUT, 0, NO_HEADER
            if code in LIST_CODES:
                if not hc.rep_cnt or hc.rep_idx:
                    return _INVALID_INPUT, 0, NO_HEADER
            elif hc.rep:
                return _INVALID_INPUT, 0, NO_HEADER
            return self._flush_current(hc, data, rdx, r8, halves)
        return other_call_current(hc, data, rdx, r8, halves), 0, NO_HEADER

    def _flush_current(self, hc: HypercallInput, data: bytes | None, rdx: int, r8: int,
                       halves: list[int] | None) -> tuple[int, int, tuple]:
        """``kvm_hv_flush_tlb`` (current), L1 caller."""
        code = hc.code
        fast = hc.fast
        consumed = offset = 0
        if code in NON_EX_FLUSH_CODES:
            if fast:
                address_space, flags, processor_mask = rdx, r8, halves[0]  # type: ignore[index]
                consumed = 1
            else:
                if data is None or len(data) < HV_TLB_FLUSH_SIZE:
                    return _INVALID_INPUT, 0, NO_HEADER
                address_space, flags, processor_mask = _Q3.unpack_from(data, 0)
                offset = HV_TLB_FLUSH_SIZE
            header: tuple = (processor_mask, None, None, address_space, flags)
            # WS2012 quirk: it sends processor_mask 0 without HV_FLUSH_ALL_PROCESSORS and
            # crashes unless something is flushed, so an empty mask means all processors.
            all_cpus = bool(flags & HV_FLUSH_ALL_PROCESSORS) or processor_mask == 0
            vp_bitmap = processor_mask
        else:
            if fast:
                address_space, flags, fmt, valid_bank_mask = rdx, r8, halves[0], halves[1]  # type: ignore[index]
                consumed = 2
            else:
                if data is None or len(data) < HV_TLB_FLUSH_EX_SIZE:
                    return _INVALID_INPUT, 0, NO_HEADER
                address_space, flags, fmt, valid_bank_mask = _Q4.unpack_from(data, 0)
                offset = HV_TLB_FLUSH_EX_SIZE
            header = (None, valid_bank_mask, fmt, address_space, flags)
            # Any format but SPARSE_4K counts as "all" (KVM tests != SPARSE_4K).
            all_cpus = fmt != HV_GENERIC_SET_SPARSE_4K
            var_cnt = hc.var_cnt
            # The variable header is the bank list, so its size must match the mask,
            # even for HV_GENERIC_SET_ALL.
            if var_cnt != valid_bank_mask.bit_count():
                return _INVALID_INPUT, 0, header
            vp_bitmap = 0
            if not all_cpus:
                if not var_cnt:
                    # An empty sparse set: nothing to flush, yet all reps are "completed".
                    return hc.rep_cnt << HV_HYPERCALL_REP_COMP_OFFSET, 0, header
                banks = kvm_get_sparse_vp_set(var_cnt, data, offset, halves, consumed)
                if banks is None:
                    return _INVALID_INPUT, 0, header
                vp_bitmap = sparse_set_to_vp_mask(valid_bank_mask, banks)
            # The TLFS does not forbid banks with HV_GENERIC_SET_ALL, so the cursor always
            # moves past var_cnt banks before the GVA list.
            if fast:
                consumed += var_cnt
            else:
                offset += 8 * var_cnt

        rep_cnt = hc.rep_cnt
        if code in SPACE_CODES or rep_cnt > TLB_FLUSH_ENTRIES_MAX:
            entries = None  # flush everything: Space, or more entries than the FIFO can take
        elif fast:
            if rep_cnt > XMM_HALVES - consumed:
                return _INVALID_INPUT, 0, header
            entries = tuple(halves[consumed:consumed + rep_cnt])  # type: ignore[index]
        else:
            if data is None or len(data) < offset + 8 * rep_cnt:
                return _INVALID_INPUT, 0, header
            entries = qwords(rep_cnt).unpack_from(data, offset)

        # address_space is ignored: a running vCPU's CR3 may be stale here, so KVM flushes
        # regardless of it.  The caller is not excluded from the targets.
        targets = self._all_mask if all_cpus else vp_bitmap & self._all_mask
        if targets:
            self._enqueue(targets, entries, rep_cnt)
        # "We always do full TLB flush, set 'Reps completed' = 'Rep Count'".
        return rep_cnt << HV_HYPERCALL_REP_COMP_OFFSET, targets, header

    # --- kvm-2018 ----------------------------------------------------------------------
    def _dispatch_2018(self, hc: HypercallInput, data: bytes | None, rdx: int, r8: int) -> tuple[int, int, tuple]:
        """``kvm_hv_hypercall`` (v4.18): the "rep bits for all hypercalls" check, no others."""
        code = hc.code
        if code in FLUSH_CODES:
            if hc.fast:
                return _INVALID_INPUT, 0, NO_HEADER  # no fast flush before XMM input support
            if code in LIST_CODES:
                if not hc.rep_cnt or hc.rep_idx:
                    return _INVALID_INPUT, 0, NO_HEADER
            elif hc.rep:
                return _INVALID_INPUT, 0, NO_HEADER
            return self._flush_2018(hc, data)
        return other_call_2018(hc, data, rdx), 0, NO_HEADER

    def _flush_2018(self, hc: HypercallInput, data: bytes | None) -> tuple[int, int, tuple]:
        """v4.18 ``kvm_hv_flush_tlb``: the GVA list is never read; targets get a full flush."""
        rep_word = hc.rep_cnt << HV_HYPERCALL_REP_COMP_OFFSET
        if hc.code in NON_EX_FLUSH_CODES:
            if data is None or len(data) < HV_TLB_FLUSH_SIZE:
                return _INVALID_INPUT, 0, NO_HEADER
            address_space, flags, processor_mask = _Q3.unpack_from(data, 0)
            header: tuple = (processor_mask, None, None, address_space, flags)
            all_cpus = bool(flags & HV_FLUSH_ALL_PROCESSORS)  # mask 0 flushes nothing yet
            vp_bitmap = processor_mask  # "Non-ex hypercalls can only address first 64 vCPUs"
        else:
            if data is None or len(data) < HV_TLB_FLUSH_EX_SIZE:
                return _INVALID_INPUT, 0, NO_HEADER
            address_space, flags, fmt, valid_bank_mask = _Q4.unpack_from(data, 0)
            header = (None, valid_bank_mask, fmt, address_space, flags)
            all_cpus = fmt != HV_GENERIC_SET_SPARSE_4K
            nbanks = valid_bank_mask.bit_count()  # the var_cnt field is ignored
            vp_bitmap = 0
            if not all_cpus:
                if not nbanks:
                    return rep_word, 0, header
                end = HV_TLB_FLUSH_EX_SIZE + 8 * nbanks
                if len(data) < end:
                    return _INVALID_INPUT, 0, header
                banks = qwords(nbanks).unpack_from(data, HV_TLB_FLUSH_EX_SIZE)
                vp_bitmap = sparse_set_to_vp_mask(valid_bank_mask, banks)
        targets = self._all_mask if all_cpus else vp_bitmap & self._all_mask
        # the caller sets the requests (KVM_REQ_TLB_FLUSH | KVM_REQUEST_NO_WAKEUP) on ``targets``
        # "We always do full TLB flush, set rep_done = rep_cnt."
        return rep_word, targets, header


__all__ = [
    "DEFAULT_FEATURES",
    "FEATURES",
    "Partition",
    "SEMANTICS",
    "Semantics",
]
