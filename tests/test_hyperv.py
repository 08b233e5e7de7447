"""Unit tests for workers.hyperv: every rule of docs/hyperv-tlbflush.md, both KVM versions."""

from __future__ import annotations

import doctest
import struct

import pytest

from workers.hyperv import (
    CR3_ADDR_MASK,
    HV_FLUSH_ALL_PROCESSORS,
    HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES,
    HV_FLUSH_NON_GLOBAL_MAPPINGS_ONLY,
    HV_GENERIC_SET_ALL,
    HV_GENERIC_SET_SPARSE_4K,
    HV_HYPERCALL_FAST_BIT,
    HV_HYPERCALL_NESTED,
    HV_HYPERCALL_REP_COMP_1,
    HV_HYPERCALL_REP_COMP_OFFSET,
    HV_HYPERCALL_REP_START_OFFSET,
    HV_HYPERCALL_RSVD0_MASK,
    HV_HYPERCALL_RSVD1_MASK,
    HV_HYPERCALL_RSVD2_MASK,
    HV_HYPERCALL_RSVD_MASK,
    HV_HYPERCALL_VARHEAD_OFFSET,
    HV_MAX_FLUSH_GVAS,
    HV_STATUS_ACCESS_DENIED,
    HV_STATUS_INVALID_ALIGNMENT,
    HV_STATUS_INVALID_HYPERCALL_CODE,
    HV_STATUS_INVALID_HYPERCALL_INPUT,
    HV_STATUS_INVALID_PARAMETER,
    HV_STATUS_SUCCESS,
    HV_TLB_FLUSH_UNIT,
    HVCALL_FLUSH_GUEST_PHYSICAL_ADDRESS_LIST,
    HVCALL_FLUSH_GUEST_PHYSICAL_ADDRESS_SPACE,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX,
    HVCALL_NOTIFY_LONG_SPIN_WAIT,
    HVCALL_POST_DEBUG_DATA,
    HVCALL_POST_MESSAGE,
    HVCALL_SEND_IPI,
    HVCALL_SEND_IPI_EX,
    HVCALL_SIGNAL_EVENT,
    HV_EXT_CALL_QUERY_CAPABILITIES,
    KVM_HV_TLB_FLUSHALL_ENTRY,
    KVM_HV_TLB_FLUSH_FIFO_SIZE,
    PAGE_SIZE,
    EntryFlush,
    HypercallInput,
    InvalidOpcode,
    Partition,
    cpumask_to_vpset,
    encode_flush,
    entry_pages,
    fill_gva_list,
    get_sparse_bank_no,
    hv_is_vp_in_sparse_set,
    hv_repcomp,
    hv_result,
    hypercall_control,
    sparse_set_to_vp_mask,
    vp_mask,
    vps_of_mask,
)

LIST, SPACE = HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST, HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE
LIST_EX, SPACE_EX = HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX, HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE_EX
BOTH = ("kvm-current", "kvm-2018")
GVA = 0x7F12_3456_7000


def flush_input(processor_mask: int, gvas=(), *, flags: int = 0, address_space: int = 0x1000) -> bytes:
    return struct.pack(f"<3Q{len(gvas)}Q", address_space, flags, processor_mask, *gvas)


def flush_ex_input(vbm: int, banks, gvas=(), *, fmt: int = HV_GENERIC_SET_SPARSE_4K, flags: int = 0) -> bytes:
    return struct.pack(f"<4Q{len(banks)}Q{len(gvas)}Q", 0x1000, flags, fmt, vbm, *banks, *gvas)


def ctl(code: int, **kw) -> int:
    return hypercall_control(code, **kw)


# --- control word -----------------------------------------------------------------------
def test_control_word_fields_decode_at_their_tlfs_bit_positions():
    word = 0x0014 | HV_HYPERCALL_FAST_BIT | (3 << 17) | (7 << 32) | (2 << HV_HYPERCALL_REP_START_OFFSET)
    hc = HypercallInput.decode(word)
    assert (hc.code, hc.fast, hc.var_cnt, hc.rep_cnt, hc.rep_idx, hc.rep) == (0x14, True, 3, 7, 2, True)
    assert HypercallInput.decode(0x0002).rep is False


def test_reserved_mask_is_the_three_rsvdz_ranges():
    assert HV_HYPERCALL_RSVD_MASK == 0xF000F000F8000000
    assert HV_HYPERCALL_NESTED & HV_HYPERCALL_RSVD0_MASK
    assert HV_HYPERCALL_REP_COMP_1 == 1 << HV_HYPERCALL_REP_COMP_OFFSET


def test_hypercall_control_matches_linux_hv_do_rep_hypercall_and_rejects_overflow():
    assert ctl(LIST_EX, var_cnt=2, rep_cnt=5) == LIST_EX | 2 << HV_HYPERCALL_VARHEAD_OFFSET | 5 << 32
    assert HypercallInput.decode(ctl(LIST, rep_cnt=9, rep_idx=4, fast=True)).rep_idx == 4
    with pytest.raises(ValueError, match="rep_cnt"):
        ctl(LIST, rep_cnt=4096)
    with pytest.raises(ValueError, match="var_cnt"):
        ctl(LIST_EX, var_cnt=1024)


def test_output_helpers_split_status_and_reps_completed():
    rax = HV_STATUS_INVALID_HYPERCALL_INPUT | (0xABC << 32) | (0x1234 << 16)
    assert hv_result(rax) == HV_STATUS_INVALID_HYPERCALL_INPUT
    assert hv_repcomp(rax) == 0xABC


@pytest.mark.parametrize("semantics", BOTH)
def test_list_success_reports_all_reps_completed(semantics):
    p = Partition(range(4), semantics=semantics)
    r = p.hypercall(0, ctl(LIST, rep_cnt=3), flush_input(0b10, [GVA, GVA + 0x1000, GVA + 0x2000]))
    assert r.status == HV_STATUS_SUCCESS and r.reps_completed == 3
    assert r.rax == 3 << 32
    assert r.flushed == {1}


# --- dispatcher shape checks --------------------------------------------------------------
@pytest.mark.parametrize("semantics", BOTH)
@pytest.mark.parametrize(
    "code, kw",
    [
        (LIST, dict(rep_cnt=0)),
        (LIST, dict(rep_cnt=2, rep_idx=1)),
        (LIST_EX, dict(rep_cnt=0, var_cnt=1)),
        (LIST_EX, dict(rep_cnt=2, rep_idx=1, var_cnt=1)),
        (SPACE, dict(rep_cnt=1)),
        (SPACE, dict(rep_idx=1)),
        (SPACE_EX, dict(rep_cnt=1, var_cnt=1)),
        (SPACE_EX, dict(rep_idx=3, var_cnt=1)),
    ],
)
def test_rep_fields_of_the_wrong_kind_are_invalid_input(semantics, code, kw):
    p = Partition(range(4), semantics=semantics)
    data = flush_ex_input(1, [0b1], [GVA, GVA]) if code in (LIST_EX, SPACE_EX) else flush_input(1, [GVA, GVA])
    r = p.hypercall(0, ctl(code, **kw), data)
    assert r.status == HV_STATUS_INVALID_HYPERCALL_INPUT
    assert r.flushed_mask == 0 and not p.pending(0)
    assert r.trace.processor_mask is None and r.trace.valid_bank_mask is None  # rejected before the read


@pytest.mark.parametrize("code", [LIST, SPACE])
def test_variable_header_on_a_non_ex_call_is_rejected_only_by_current_kvm(code):
    rep = 1 if code == LIST else 0
    data = flush_input(0b1, [GVA])
    assert Partition(range(2)).hypercall(0, ctl(code, var_cnt=1, rep_cnt=rep), data).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    r = Partition(range(2), semantics="kvm-2018").hypercall(0, ctl(code, var_cnt=1, rep_cnt=rep), data)
    assert r.status == HV_STATUS_SUCCESS and r.flushed == {0}


@pytest.mark.parametrize("bit", [27, 31, 44, 47, 60, 63])
def test_reserved_bits_are_rejected_by_current_kvm_and_ignored_by_2018(bit):
    control = ctl(LIST, rep_cnt=1) | (1 << bit)
    data = flush_input(0b1, [GVA])
    assert Partition(range(2)).hypercall(0, control, data).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    r = Partition(range(2), semantics="kvm-2018").hypercall(0, control, data)
    assert r.status == HV_STATUS_SUCCESS and r.flushed == {0}


def test_reserved_check_comes_before_the_unknown_code_check_in_current_kvm():
    control = 0x0999 | HV_HYPERCALL_RSVD2_MASK
    assert Partition(range(1)).hypercall(0, control).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    assert Partition(range(1), semantics="kvm-2018").hypercall(0, control).status == HV_STATUS_INVALID_HYPERCALL_CODE


@pytest.mark.parametrize("semantics", BOTH)
@pytest.mark.parametrize("code", [0x0000, 0x0001, 0x0004, 0x0012, 0x0016, 0x1234, 0xFFFF,
                                  HVCALL_FLUSH_GUEST_PHYSICAL_ADDRESS_SPACE, HVCALL_FLUSH_GUEST_PHYSICAL_ADDRESS_LIST])
def test_unknown_codes_return_invalid_hypercall_code_and_flush_nothing(semantics, code):
    p = Partition(range(4), semantics=semantics)
    r = p.hypercall(0, ctl(code, rep_cnt=1), flush_input(0b1111, [GVA], flags=HV_FLUSH_ALL_PROCESSORS))
    assert r.status == HV_STATUS_INVALID_HYPERCALL_CODE and r.rax == HV_STATUS_INVALID_HYPERCALL_CODE
    assert r.flushed_mask == 0 and p.pending_mask == 0


def test_send_ipi_ex_is_not_a_flush():
    # Same shape as a SPACE_EX "all" call: KVM (current) sends an IPI, flushes nothing.
    ipi = struct.pack("<IIQQ", 0x40, 0, HV_GENERIC_SET_ALL, 0)
    p = Partition(range(4))
    r = p.hypercall(0, ctl(HVCALL_SEND_IPI_EX), ipi)
    assert r.status == HV_STATUS_SUCCESS and r.flushed_mask == 0 and p.pending_mask == 0
    # A vector below 16 is invalid input; the 2018 series had no PV IPI at all.
    bad = struct.pack("<IIQQ", 0x0F, 0, HV_GENERIC_SET_ALL, 0)
    assert p.hypercall(0, ctl(HVCALL_SEND_IPI_EX), bad).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    p18 = Partition(range(4), semantics="kvm-2018")
    assert p18.hypercall(0, ctl(HVCALL_SEND_IPI_EX), ipi).status == HV_STATUS_INVALID_HYPERCALL_CODE


def test_send_ipi_checks_the_reserved_half_of_a_fast_call_and_its_var_cnt():
    p = Partition(range(4))
    assert p.hypercall(0, ctl(HVCALL_SEND_IPI, fast=True), rdx=0x40, r8=0b11).status == HV_STATUS_SUCCESS
    assert p.hypercall(0, ctl(HVCALL_SEND_IPI, fast=True), rdx=(1 << 32) | 0x40, r8=1).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    assert p.hypercall(0, ctl(HVCALL_SEND_IPI, var_cnt=1), struct.pack("<IIQ", 0x40, 0, 1)).status == HV_STATUS_INVALID_HYPERCALL_INPUT


@pytest.mark.parametrize("semantics", BOTH)
def test_spin_wait_signal_event_and_post_message_statuses(semantics):
    p = Partition(range(2), semantics=semantics)
    assert p.hypercall(0, ctl(HVCALL_NOTIFY_LONG_SPIN_WAIT)).status == HV_STATUS_SUCCESS
    assert p.hypercall(0, ctl(HVCALL_NOTIFY_LONG_SPIN_WAIT, rep_cnt=1)).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    # SIGNAL_EVENT reads a u64 at the GPA in RDX, which must be 8-byte aligned.
    assert p.hypercall(0, ctl(HVCALL_SIGNAL_EVENT), struct.pack("<Q", 1), rdx=0x1004).status == HV_STATUS_INVALID_ALIGNMENT
    assert p.hypercall(0, ctl(HVCALL_SIGNAL_EVENT), None, rdx=0x1000).status == HV_STATUS_INVALID_ALIGNMENT
    # No SynIC is active, so an unknown connection falls through to POST_MESSAGE's refusal.
    assert p.hypercall(0, ctl(HVCALL_SIGNAL_EVENT), struct.pack("<Q", 1), rdx=0x1000).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    assert p.hypercall(0, ctl(HVCALL_POST_MESSAGE), b"\0" * 256).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    assert p.pending_mask == 0


def test_fast_debug_and_extended_calls_are_invalid_parameter_in_current_kvm():
    p = Partition(range(2))
    assert p.hypercall(0, ctl(HVCALL_POST_DEBUG_DATA, fast=True)).status == HV_STATUS_INVALID_PARAMETER
    assert p.hypercall(0, ctl(HVCALL_POST_DEBUG_DATA)).status == HV_STATUS_INVALID_HYPERCALL_CODE
    assert p.hypercall(0, ctl(HV_EXT_CALL_QUERY_CAPABILITIES, fast=True)).status == HV_STATUS_INVALID_PARAMETER
    p18 = Partition(range(2), semantics="kvm-2018")
    assert p18.hypercall(0, ctl(HVCALL_POST_DEBUG_DATA, fast=True)).status == HV_STATUS_INVALID_HYPERCALL_CODE


# --- input reads -------------------------------------------------------------------------
@pytest.mark.parametrize("semantics", BOTH)
@pytest.mark.parametrize("code, kw", [(LIST, dict(rep_cnt=1)), (SPACE, {}), (LIST_EX, dict(rep_cnt=1, var_cnt=1)),
                                      (SPACE_EX, dict(var_cnt=1))])
def test_unmapped_or_short_input_gpa_is_invalid_input(semantics, code, kw):
    p = Partition(range(2), semantics=semantics)
    for data in (None, b"", b"\0" * 23):
        r = p.hypercall(0, ctl(code, **kw), data)
        assert r.status == HV_STATUS_INVALID_HYPERCALL_INPUT
    assert p.pending_mask == 0


def test_ex_banks_past_the_mapped_input_are_invalid_input():
    data = flush_ex_input(0b11, [1, 1])[:-8]
    for semantics in BOTH:
        assert Partition(range(2), semantics=semantics).hypercall(0, ctl(SPACE_EX, var_cnt=2), data).status == HV_STATUS_INVALID_HYPERCALL_INPUT


def test_only_current_kvm_reads_the_gva_list():
    header_only = flush_input(0b1)
    assert Partition(range(2)).hypercall(0, ctl(LIST, rep_cnt=2), header_only).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    r = Partition(range(2), semantics="kvm-2018").hypercall(0, ctl(LIST, rep_cnt=2), header_only)
    assert r.status == HV_STATUS_SUCCESS and r.reps_completed == 2 and r.flushed == {0}


# --- sparse VP sets ----------------------------------------------------------------------
def test_tlfs_sparse_set_example_0_5_130():
    vbm, banks = 0x05, (0x21, 0x04)
    assert sparse_set_to_vp_mask(vbm, banks) == vp_mask({0, 5, 130})
    assert [vp for vp in range(200) if hv_is_vp_in_sparse_set(vp, vbm, banks)] == [0, 5, 130]
    assert (get_sparse_bank_no(vbm, 0), get_sparse_bank_no(vbm, 1), get_sparse_bank_no(vbm, 2)) == (0, -1, 1)
    for semantics in BOTH:
        p = Partition(range(200), semantics=semantics)
        r = p.hypercall(0, ctl(LIST_EX, var_cnt=2, rep_cnt=1), flush_ex_input(vbm, banks, [GVA]))
        assert r.status == HV_STATUS_SUCCESS and r.flushed == {0, 5, 130}
        assert (r.trace.format, r.trace.valid_bank_mask, r.trace.processor_mask) == (0, 0x05, None)


def test_linux_vpset_marks_every_bank_up_to_the_highest_valid():
    assert cpumask_to_vpset(vp_mask({0, 5, 130})) == (3, 0b111, (0x21, 0, 0x04))
    assert cpumask_to_vpset(0) == (1, 1, (0,))


@pytest.mark.parametrize("semantics", BOTH)
def test_set_all_format_flushes_everyone_and_still_skips_its_banks(semantics):
    p = Partition(range(130), semantics=semantics)
    # HV_GENERIC_SET_ALL with one (garbage) bank: the GVA list starts after that bank.
    r = p.hypercall(0, ctl(LIST_EX, var_cnt=1, rep_cnt=1), flush_ex_input(0b1, [0xDEAD000], [GVA], fmt=HV_GENERIC_SET_ALL))
    assert r.status == HV_STATUS_SUCCESS and r.flushed_mask == p.all_vps_mask
    if semantics == "kvm-current":
        assert p.fifo(129) == (GVA,)


@pytest.mark.parametrize("semantics", BOTH)
def test_any_non_sparse_format_counts_as_all(semantics):
    p = Partition(range(70), semantics=semantics)
    r = p.hypercall(0, ctl(SPACE_EX), flush_ex_input(0, [], fmt=2))
    assert r.flushed_mask == p.all_vps_mask


def test_ex_var_cnt_must_equal_popcount_in_current_kvm_only():
    data = flush_ex_input(0b101, [0b1, 0b1])  # two valid banks, var_cnt says one
    assert Partition(range(200)).hypercall(0, ctl(SPACE_EX, var_cnt=1), data).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    # Also for HV_GENERIC_SET_ALL.
    all_data = flush_ex_input(0b1, [0], fmt=HV_GENERIC_SET_ALL)
    assert Partition(range(4)).hypercall(0, ctl(SPACE_EX), all_data).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    r = Partition(range(200), semantics="kvm-2018").hypercall(0, ctl(SPACE_EX, var_cnt=1), data)
    assert r.status == HV_STATUS_SUCCESS and r.flushed == {0, 128}


@pytest.mark.parametrize("semantics", BOTH)
def test_empty_sparse_set_succeeds_without_flushing(semantics):
    p = Partition(range(4), semantics=semantics)
    r = p.hypercall(0, ctl(LIST_EX, rep_cnt=2), flush_ex_input(0, [], [GVA, GVA]))
    assert (r.status, r.reps_completed, r.flushed_mask) == (HV_STATUS_SUCCESS, 2, 0)


# --- processor_mask and VP indexes ---------------------------------------------------------
def test_processor_mask_zero_means_all_in_current_kvm_and_nothing_in_2018():
    data = flush_input(0, flags=HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES)  # the WS2012 trace
    r = Partition(range(16)).hypercall(3, ctl(SPACE), data)
    assert r.status == HV_STATUS_SUCCESS and r.flushed == set(range(16))
    r = Partition(range(16), semantics="kvm-2018").hypercall(3, ctl(SPACE), data)
    assert r.status == HV_STATUS_SUCCESS and r.flushed_mask == 0


@pytest.mark.parametrize("semantics", BOTH)
def test_all_processors_flag_reaches_vps_above_63_on_the_non_ex_call(semantics):
    p = Partition(range(128), semantics=semantics)
    r = p.hypercall(0, ctl(SPACE), flush_input(0b1, flags=HV_FLUSH_ALL_PROCESSORS))
    assert r.flushed == set(range(128)) and p.pending(0)  # the caller is not excluded


@pytest.mark.parametrize("semantics", BOTH)
def test_vp_indexes_that_differ_from_vcpu_indexes(semantics):
    p = Partition([10, 3, 64, 0], semantics=semantics)
    assert p.vcpu_of(3) == 1 and p.vcpu_of(64) == 2
    # Bit 1 names VP 1, which does not exist although vCPU 1 does.
    r = p.hypercall(10, ctl(SPACE), flush_input(0b1010))
    assert r.flushed == {3}
    assert p.pending(3) and not p.pending(10)
    r = p.hypercall(10, ctl(SPACE_EX, var_cnt=2), flush_ex_input(0b11, [1 << 10, 1 << 0]))
    assert r.flushed == {10, 64}
    with pytest.raises(ValueError, match="vp_index"):
        p.pending(1)
    with pytest.raises(ValueError, match="caller"):
        p.hypercall(1, ctl(SPACE), flush_input(1))


def test_partition_rejects_bad_configuration_with_the_field_name():
    with pytest.raises(ValueError, match=r"vp_indexes\[2\]"):
        Partition([0, 1, 1])
    with pytest.raises(ValueError, match="vp_indexes"):
        Partition([])
    with pytest.raises(ValueError, match=r"vp_indexes\[1\]"):
        Partition([0, 4096])
    with pytest.raises(ValueError, match="semantics"):
        Partition(range(2), semantics="kvm-2019")
    with pytest.raises(ValueError, match="features"):
        Partition(range(2), features={"tlbflush", "tlb-flush"})
    with pytest.raises(ValueError, match="enforce_cpuid"):
        Partition(range(2), semantics="kvm-2018", enforce_cpuid=True)


# --- the FIFO and VM entry ---------------------------------------------------------------
def test_list_entries_land_in_the_fifo_and_vm_entry_flushes_their_pages():
    p = Partition(range(4))
    gvas = [GVA | 2, 0x5000]  # 3 pages from GVA, 1 page at 0x5000
    p.hypercall(0, ctl(LIST, rep_cnt=2), flush_input(0b100, gvas))
    assert p.fifo(2) == tuple(gvas) and p.pending(2)
    assert p.vm_entry(2) == EntryFlush(full=False, pages=(GVA, GVA + 0x1000, GVA + 0x2000, 0x5000))
    assert p.fifo(2) == () and not p.pending(2)
    assert p.vm_entry(2) == EntryFlush(full=False, pages=())


def test_fifo_overflow_falls_back_to_flush_all():
    p = Partition(range(2))
    chunk = [GVA + i * PAGE_SIZE for i in range(4)]
    for _ in range(5):
        p.hypercall(0, ctl(LIST, rep_cnt=4), flush_input(0b1, chunk))
    # 3 chunks fit (12 < 16 - 4 fails at the 4th: 4 < avail 4 is false), then FLUSHALL twice.
    assert p.fifo(0) == tuple(chunk * 3) + (KVM_HV_TLB_FLUSHALL_ENTRY,) * 2
    assert p.vm_entry(0) == EntryFlush(full=True, pages=())
    assert p.fifo(0) == () and not p.pending(0)


def test_one_fifo_slot_stays_free_and_a_full_fifo_drops_the_extra_flush_all():
    p = Partition(range(1))
    fifteen = [GVA + i * PAGE_SIZE for i in range(15)]
    p.hypercall(0, ctl(LIST, rep_cnt=15), flush_input(1, fifteen))
    assert p.fifo(0) == tuple(fifteen)
    p.hypercall(0, ctl(LIST, rep_cnt=1), flush_input(1, [0x1000]))
    assert p.fifo(0) == tuple(fifteen) + (KVM_HV_TLB_FLUSHALL_ENTRY,)
    assert len(p.fifo(0)) == KVM_HV_TLB_FLUSH_FIFO_SIZE
    p.hypercall(0, ctl(SPACE), flush_input(1))
    assert len(p.fifo(0)) == KVM_HV_TLB_FLUSH_FIFO_SIZE


def test_more_than_15_reps_flush_everything_without_reading_the_list():
    p = Partition(range(2))
    r = p.hypercall(0, ctl(LIST, rep_cnt=16), flush_input(0b11))  # no GVA list mapped at all
    assert r.status == HV_STATUS_SUCCESS and r.reps_completed == 16
    assert p.fifo(1) == (KVM_HV_TLB_FLUSHALL_ENTRY,)
    assert p.vm_entry(1).full


def test_space_is_a_flush_all_entry():
    p = Partition(range(2))
    p.hypercall(1, ctl(SPACE), flush_input(0b10, flags=HV_FLUSH_NON_GLOBAL_MAPPINGS_ONLY))
    assert p.fifo(1) == (KVM_HV_TLB_FLUSHALL_ENTRY,) and p.vm_entry(1).full


def test_gva_entry_encodes_up_to_4096_pages_and_non_canonical_entries_are_skipped():
    assert len(entry_pages(GVA | 0xFFF)) == 4096
    assert entry_pages(0x0000_8000_0000_0000) == ()
    p = Partition(range(1))
    p.hypercall(0, ctl(LIST, rep_cnt=2), flush_input(1, [0x0000_8000_0000_0000, 0x3000]))
    assert p.vm_entry(0) == EntryFlush(full=False, pages=(0x3000,))


def test_kvm_2018_has_no_fifo_and_every_flush_is_full():
    p = Partition(range(2), semantics="kvm-2018")
    p.hypercall(0, ctl(LIST, rep_cnt=1), flush_input(0b10, [GVA]))
    assert p.fifo(1) == () and p.pending(1)
    assert p.vm_entry(1) == EntryFlush(full=True, pages=())
    assert not p.pending(1)


def test_without_tdp_every_current_flush_is_full():
    p = Partition(range(1), tdp_enabled=False)
    p.hypercall(0, ctl(LIST, rep_cnt=1), flush_input(1, [GVA]))
    assert p.vm_entry(0) == EntryFlush(full=True, pages=())
    assert p.fifo(0) == ()


# --- fast (XMM) calls ------------------------------------------------------------------
def test_fast_list_reads_header_from_registers_and_entries_from_xmm_halves():
    p = Partition(range(4))
    xmm = [(0b1000, GVA), (0x2000, 0x3000)]  # XMM0.lo = mask, then GVA entries
    r = p.hypercall(0, ctl(LIST, fast=True, rep_cnt=3), None, rdx=0xABC000, r8=0, xmm=xmm)
    assert r.status == HV_STATUS_SUCCESS and r.flushed == {3}
    assert p.fifo(3) == (GVA, 0x2000, 0x3000)
    assert (r.trace.fast, r.trace.processor_mask, r.trace.address_space) == (True, 0b1000, 0xABC000)


def test_fast_list_ex_reads_vpset_then_banks_then_entries():
    p = Partition(range(131))
    xmm = [(HV_GENERIC_SET_SPARSE_4K, 0b101), (0b1, 0b100), (GVA, 0)]
    r = p.hypercall(0, ctl(LIST_EX, fast=True, var_cnt=2, rep_cnt=1), None, r8=HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES, xmm=xmm)
    assert r.status == HV_STATUS_SUCCESS and r.flushed == {0, 130}
    assert p.fifo(130) == (GVA,)


def test_fast_input_capacity_is_twelve_xmm_halves():
    p = Partition(range(2))
    ok = p.hypercall(0, ctl(LIST, fast=True, rep_cnt=11), None, xmm=[(1, 0)])
    assert ok.status == HV_STATUS_SUCCESS
    assert p.hypercall(0, ctl(LIST, fast=True, rep_cnt=12), None, xmm=[(1, 0)]).status == HV_STATUS_INVALID_HYPERCALL_INPUT
    # Beyond 15 reps nothing is read, so the size limit no longer applies.
    assert p.hypercall(0, ctl(LIST, fast=True, rep_cnt=16), None, xmm=[(1, 0)]).status == HV_STATUS_SUCCESS
    r = p.hypercall(0, ctl(SPACE_EX, fast=True, var_cnt=11), None, xmm=[(0, (1 << 11) - 1)])
    assert r.status == HV_STATUS_INVALID_HYPERCALL_INPUT


def test_fast_flush_is_rejected_by_kvm_2018():
    p = Partition(range(2), semantics="kvm-2018")
    r = p.hypercall(0, ctl(SPACE, fast=True), None, xmm=[(1, 0)])
    assert r.status == HV_STATUS_INVALID_HYPERCALL_INPUT and p.pending_mask == 0


def test_xmm_input_without_the_cpuid_bit_under_enforce_cpuid_raises_ud():
    p = Partition(range(2), enforce_cpuid=True, features={"tlbflush", "ex_processor_masks", "cluster_ipi"})
    for code, kw in ((SPACE, {}), (LIST, dict(rep_cnt=1)), (SPACE_EX, {}), (HVCALL_SEND_IPI_EX, {})):
        with pytest.raises(InvalidOpcode) as exc:
            p.hypercall(0, ctl(code, fast=True, **kw), None, xmm=[(1, 0)])
        assert exc.value.trace.status is None and exc.value.trace.code == code
    # SEND_IPI's fast form uses RDX/R8 only, and memory-based calls never touch XMM.
    assert p.hypercall(0, ctl(HVCALL_SEND_IPI, fast=True), rdx=0x40, r8=1).status == HV_STATUS_SUCCESS
    assert p.hypercall(0, ctl(SPACE), flush_input(1)).status == HV_STATUS_SUCCESS
    # Without enforce_cpuid KVM reads XMM regardless of the exposed features.
    q = Partition(range(2), features=set())
    assert q.hypercall(0, ctl(SPACE, fast=True), None, xmm=[(1, 0)]).status == HV_STATUS_SUCCESS


def test_enforce_cpuid_denies_calls_the_cpuid_does_not_expose():
    p = Partition(range(2), enforce_cpuid=True, features=set())
    r = p.hypercall(0, ctl(SPACE, fast=True), None)  # ACCESS_DENIED comes before #UD
    assert r.status == HV_STATUS_ACCESS_DENIED and r.flushed_mask == 0
    assert p.hypercall(0, ctl(SPACE) | HV_HYPERCALL_RSVD1_MASK, flush_input(1)).status == HV_STATUS_ACCESS_DENIED
    non_ex_only = Partition(range(2), enforce_cpuid=True, features={"tlbflush"})
    assert non_ex_only.hypercall(0, ctl(SPACE), flush_input(1)).status == HV_STATUS_SUCCESS
    assert non_ex_only.hypercall(0, ctl(SPACE_EX, var_cnt=1), flush_ex_input(1, [1])).status == HV_STATUS_ACCESS_DENIED
    assert non_ex_only.hypercall(0, ctl(HVCALL_SEND_IPI), struct.pack("<IIQ", 0x40, 0, 1)).status == HV_STATUS_ACCESS_DENIED
    # Without enforce_cpuid nothing is denied.
    assert Partition(range(2), features=set()).hypercall(0, ctl(SPACE_EX, var_cnt=1), flush_ex_input(1, [1])).status == HV_STATUS_SUCCESS


# --- trace ---------------------------------------------------------------------------------
def test_trace_records_kvm_tracepoint_fields():
    p = Partition(range(4))
    r = p.hypercall(0, ctl(LIST, rep_cnt=1), flush_input(0b110, [GVA], flags=HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES, address_space=0x5000))
    assert r.trace.to_dict() == {
        "code": LIST, "fast": False, "rep_cnt": 1, "rep_idx": 0, "var_cnt": 0,
        "processor_mask": 0b110, "valid_bank_mask": None, "format": None,
        "address_space": 0x5000, "flags": HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES, "status": HV_STATUS_SUCCESS,
    }
    r = p.hypercall(0, ctl(SPACE_EX, var_cnt=3), flush_ex_input(0b111, [1]))  # banks not mapped
    assert (r.trace.valid_bank_mask, r.trace.format, r.trace.status) == (0b111, 0, HV_STATUS_INVALID_HYPERCALL_INPUT)


# --- guest encoder -------------------------------------------------------------------------
def test_encode_empty_target_set_makes_no_call():
    assert encode_flush(set(), present=range(8), start=0, end=PAGE_SIZE) == []


def test_encode_targets_equal_to_present_use_all_processors_even_above_64():
    [call] = encode_flush(range(100), present=range(100), address_space=0x1234_5000 | 0x7, start=GVA, end=GVA + PAGE_SIZE)
    assert call.control == LIST | 1 << 32
    address_space, flags, mask, gva = struct.unpack("<4Q", call.input)
    assert (address_space, flags, mask, gva) == (0x1234_5000 & CR3_ADDR_MASK, HV_FLUSH_ALL_PROCESSORS, 0, GVA)


def test_encode_non_ex_mask_for_vps_below_64():
    [call] = encode_flush({1, 63}, present=range(128), start=GVA, end=GVA + 3 * PAGE_SIZE)
    assert struct.unpack("<4Q", call.input) == (0, HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES, (1 << 1) | (1 << 63), GVA | 2)


def test_encode_ex_with_sparse_banks_for_a_vp_at_or_above_64():
    [call] = encode_flush({0, 5, 130}, present=range(200), address_space=0x9000, start=GVA, end=GVA + PAGE_SIZE)
    hc = call.hc
    assert (hc.code, hc.var_cnt, hc.rep_cnt) == (LIST_EX, 3, 1)
    assert struct.unpack("<8Q", call.input) == (0x9000, 0, HV_GENERIC_SET_SPARSE_4K, 0b111, 0x21, 0, 0x04, GVA)


def test_encode_without_ex_support_falls_back_to_native_for_vps_above_63():
    assert encode_flush({70}, present=range(128), start=0, end=PAGE_SIZE, ex_supported=False) == []
    assert len(encode_flush(range(128), present=range(128), start=0, end=PAGE_SIZE, ex_supported=False)) == 1


def test_encode_full_address_space_flush_is_space_with_non_global_only():
    [call] = encode_flush({1}, present=range(4), address_space=0x2000)
    assert call.control == SPACE
    assert struct.unpack("<3Q", call.input) == (0x2000, HV_FLUSH_NON_GLOBAL_MAPPINGS_ONLY, 0b10)
    [call] = encode_flush({70}, present=range(128), address_space=0x2000)
    assert call.control == SPACE_EX | 2 << HV_HYPERCALL_VARHEAD_OFFSET
    assert struct.unpack("<6Q", call.input) == (0x2000, HV_FLUSH_NON_GLOBAL_MAPPINGS_ONLY, 0, 0b11, 0, 1 << 6)


def test_encode_range_too_large_for_one_page_is_space_without_non_global():
    [call] = encode_flush({1}, present=range(4), start=0, end=(HV_MAX_FLUSH_GVAS + 1) * HV_TLB_FLUSH_UNIT)
    assert call.control == SPACE
    assert struct.unpack("<3Q", call.input)[1] == HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES
    [call] = encode_flush({1}, present=range(4), start=0, end=HV_MAX_FLUSH_GVAS * HV_TLB_FLUSH_UNIT)
    assert call.hc.code == LIST and call.hc.rep_cnt == HV_MAX_FLUSH_GVAS == 509


def test_fill_gva_list_uses_16_mib_per_entry():
    assert fill_gva_list(0x1000, 0x3000) == [0x1001]
    two_units = 2 * HV_TLB_FLUSH_UNIT
    assert fill_gva_list(0x4000_0000, 0x4000_0000 + two_units + PAGE_SIZE) == [
        0x4000_0FFF, 0x4000_0000 + HV_TLB_FLUSH_UNIT + 0xFFF, 0x4000_0000 + two_units]
    assert fill_gva_list(0x5000, 0x5000) == [0x5000]  # never empty


def test_vp_mask_helpers_round_trip():
    assert vps_of_mask(vp_mask([4095, 0, 64, 63])) == (0, 63, 64, 4095)
    assert vp_mask(frozenset({3})) == 8 and vp_mask(8) == 8
    with pytest.raises(ValueError):
        vp_mask([-1])


def test_package_docstring_example_holds():
    import workers.hyperv

    result = doctest.testmod(workers.hyperv)
    assert result.attempted > 0 and result.failed == 0  # deleting the example fails this test too
