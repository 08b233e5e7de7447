"""Property tests for workers.hyperv: the handler never fails on guest input, and the
Linux encoder and the KVM handler agree on who gets flushed."""

from __future__ import annotations

import random
import struct

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from workers.hyperv import (
    HV_HYPERCALL_FAST_BIT,
    HV_HYPERCALL_REP_COMP_OFFSET,
    HV_HYPERCALL_RSVD_MASK,
    HV_HYPERCALL_VARHEAD_OFFSET,
    HV_STATUS_ACCESS_DENIED,
    HV_STATUS_INVALID_ALIGNMENT,
    HV_STATUS_INVALID_HYPERCALL_CODE,
    HV_STATUS_INVALID_HYPERCALL_INPUT,
    HV_STATUS_INVALID_PARAMETER,
    HV_STATUS_SUCCESS,
    HV_TLB_FLUSH_CODES,
    HV_TLB_FLUSH_UNIT,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX,
    HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE,
    HVCALL_NOTIFY_LONG_SPIN_WAIT,
    HVCALL_POST_DEBUG_DATA,
    HVCALL_POST_MESSAGE,
    HVCALL_SEND_IPI,
    HVCALL_SEND_IPI_EX,
    HVCALL_SIGNAL_EVENT,
    HV_EXT_CALL_QUERY_CAPABILITIES,
    FEATURES,
    KVM_HV_TLB_FLUSHALL_ENTRY,
    KVM_HV_TLB_FLUSH_FIFO_SIZE,
    MASK64,
    PAGE_SIZE,
    EntryFlush,
    InvalidOpcode,
    Partition,
    cpumask_to_vpset,
    encode_flush,
    entry_pages,
    fill_gva_list,
    hv_is_vp_in_sparse_set,
    sparse_set_to_vp_mask,
    vp_mask,
    vps_of_mask,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KNOWN_STATUSES = {
    HV_STATUS_SUCCESS,
    HV_STATUS_INVALID_HYPERCALL_CODE,
    HV_STATUS_INVALID_HYPERCALL_INPUT,
    HV_STATUS_INVALID_ALIGNMENT,
    HV_STATUS_INVALID_PARAMETER,
    HV_STATUS_ACCESS_DENIED,
}
XMM_FAST_CODES = HV_TLB_FLUSH_CODES | {HVCALL_SEND_IPI_EX}
u64 = st.integers(0, MASK64)
interesting_codes = st.sampled_from(
    sorted(HV_TLB_FLUSH_CODES)
    + [HVCALL_SEND_IPI, HVCALL_SEND_IPI_EX, HVCALL_NOTIFY_LONG_SPIN_WAIT, HVCALL_SIGNAL_EVENT,
       HVCALL_POST_MESSAGE, HVCALL_POST_DEBUG_DATA, HV_EXT_CALL_QUERY_CAPABILITIES, 0x0001, 0x0016]
)


@st.composite
def control_words(draw):
    """Anything 64-bit, or a well-formed-looking word for a known code with random fields."""
    if draw(st.booleans()):
        return draw(u64)
    word = draw(interesting_codes)
    word |= draw(st.sampled_from([0, HV_HYPERCALL_FAST_BIT]))
    word |= draw(st.integers(0, 70)) << HV_HYPERCALL_VARHEAD_OFFSET
    word |= draw(st.sampled_from([0, 1, 2, 3, 15, 16, 17, 509, 4095])) << HV_HYPERCALL_REP_COMP_OFFSET
    word |= draw(st.sampled_from([0, 0, 0, 1, 4095])) << 48
    if draw(st.integers(0, 9)) == 0:
        word |= 1 << draw(st.sampled_from([27, 31, 44, 63]))
    return word


@st.composite
def input_buffers(draw):
    """None (unmapped GPA), random bytes, or a flush header with random u64 fields."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return None
    if kind == 1:
        return draw(st.binary(max_size=600))
    words = draw(st.lists(st.one_of(u64, st.integers(0, 3), st.just((1 << 64) - 1)), max_size=80))
    return struct.pack(f"<{len(words)}Q", *words)


partitions = st.builds(
    lambda n, sem, enforce, feats: Partition(range(n), semantics=sem, enforce_cpuid=enforce and sem == "kvm-current",
                                             features=feats),
    st.integers(1, 200),
    st.sampled_from(["kvm-current", "kvm-2018"]),
    st.booleans(),
    st.frozensets(st.sampled_from(sorted(FEATURES))),
)


@SETTINGS
@given(partitions, st.lists(st.tuples(control_words(), input_buffers(), u64, u64,
                                      st.lists(st.tuples(u64, u64), max_size=7)), min_size=1, max_size=8))
def test_any_guest_input_yields_a_defined_status_or_ud(p, calls):
    for control, data, rdx, r8, xmm in calls:
        code = control & 0xFFFF
        try:
            r = p.hypercall(0, control, data, rdx=rdx, r8=r8, xmm=xmm)
        except InvalidOpcode as ud:
            # Only XMM input that enforce_cpuid does not expose raises #UD.
            assert p.enforce_cpuid and "xmm_input" not in p.features
            assert control & HV_HYPERCALL_FAST_BIT and code in XMM_FAST_CODES
            assert not control & HV_HYPERCALL_RSVD_MASK and ud.trace.status is None
            continue
        assert r.status in KNOWN_STATUSES
        assert r.rax == r.status | (r.reps_completed << 32)
        assert r.trace.status == r.status and r.trace.code == code
        assert r.flushed_mask & ~p.all_vps_mask == 0
        if r.status != HV_STATUS_SUCCESS or code not in HV_TLB_FLUSH_CODES:
            assert r.flushed_mask == 0 and r.reps_completed == 0
        else:
            assert r.reps_completed == (control >> 32) & 0xFFF  # "Reps completed" = "Rep Count"
        if p.semantics == "kvm-2018":
            assert r.status != HV_STATUS_ACCESS_DENIED
            assert not (r.status == HV_STATUS_SUCCESS and code in HV_TLB_FLUSH_CODES and control & HV_HYPERCALL_FAST_BIT)
        elif control & HV_HYPERCALL_RSVD_MASK:
            assert r.status in (HV_STATUS_INVALID_HYPERCALL_INPUT, HV_STATUS_ACCESS_DENIED)
    for vp in range(len(p.vp_indexes)):
        assert len(p.fifo(vp)) <= KVM_HV_TLB_FLUSH_FIFO_SIZE
        flush = p.vm_entry(vp)
        assert not p.pending(vp) and p.fifo(vp) == ()
        assert not (flush.full and flush.pages)


vp_counts = st.integers(1, 4096)


@st.composite
def flush_scenarios(draw):
    n = draw(vp_counts)
    # A seeded Random keeps hypothesis' own data small for 4096-VP sets.
    rng = random.Random(draw(st.integers(0, 2**32)))
    # VP indexes need not equal vCPU indexes: sometimes a random injection into 0..4095.
    vps = list(range(n)) if draw(st.booleans()) else rng.sample(range(4096), n)
    present = vp_mask(vps)
    how = draw(st.integers(0, 3))
    if how == 0:
        targets = present
    elif how == 1:
        targets = vp_mask(rng.sample(vps, min(n, draw(st.integers(0, 64)))))
    elif how == 2:
        targets = vp_mask(v for v in vps if v < 64)
    else:
        targets = rng.getrandbits(4096) & present
    if draw(st.booleans()):
        start, end = draw(st.integers(0, 1 << 46)) & ~(PAGE_SIZE - 1), None
    else:
        start = draw(st.integers(0, 1 << 46))
        end = start + draw(st.one_of(st.integers(1, 64 * PAGE_SIZE), st.integers(1, 600 * HV_TLB_FLUSH_UNIT)))
    asp = draw(st.one_of(st.none(), u64))
    return vps, present, targets, asp, start, end


@SETTINGS
@given(flush_scenarios(), st.sampled_from(["kvm-current", "kvm-2018"]), st.integers(0, 2**32))
def test_encoded_flush_reaches_exactly_the_targets(scenario, semantics, seed):
    vps, present, targets, asp, start, end = scenario
    rng = random.Random(seed)
    p = Partition(vps, semantics=semantics)
    calls = encode_flush(targets, present=present, address_space=asp, start=start, end=end)
    assert (calls == []) == (targets == 0)
    flushed = 0
    caller = rng.choice(vps)
    for call in calls:
        event(f"code {call.hc.code:#06x}" + (" all processors" if targets == present else ""))
        r = p.hypercall(caller, call.control, call.input)
        assert r.status == HV_STATUS_SUCCESS
        assert r.reps_completed == call.hc.rep_cnt
        flushed |= r.flushed_mask
    assert flushed == targets and p.pending_mask == targets
    # What each target flushes on entry covers the requested range.
    gvas = fill_gva_list(start, end) if end is not None else None
    wants_pages = semantics == "kvm-current" and calls and calls[0].hc.code in (
        HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST, HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX) and len(gvas) < KVM_HV_TLB_FLUSH_FIFO_SIZE
    for vp in rng.sample(vps, min(len(vps), 20)):
        flush = p.vm_entry(vp)
        if not (targets >> vp) & 1:
            assert flush == EntryFlush(full=False, pages=())
        elif wants_pages:
            expected = tuple(page for gva in gvas for page in entry_pages(gva))
            assert flush == EntryFlush(full=False, pages=expected)
            first, last = start & ~(PAGE_SIZE - 1), (end - 1) & ~(PAGE_SIZE - 1)
            if start % PAGE_SIZE == 0:
                assert expected[0] == first and expected[-1] == last
        else:
            assert flush.full


@SETTINGS
@given(st.integers(0, (1 << 64) - 1), st.lists(u64, min_size=64, max_size=64), st.integers(0, 4095))
def test_sparse_set_membership_matches_the_vp_bitmap(vbm, banks, vp):
    mask = sparse_set_to_vp_mask(vbm, banks)
    assert hv_is_vp_in_sparse_set(vp, vbm, banks) == bool((mask >> vp) & 1)
    assert mask.bit_count() == sum(banks[k].bit_count() for k in range(vbm.bit_count()))


@SETTINGS
@given(st.frozensets(st.integers(0, 4095), max_size=200))
def test_linux_vpset_round_trips(vps):
    nr_bank, vbm, banks = cpumask_to_vpset(vp_mask(vps))
    assert vbm.bit_count() == nr_bank == len(banks)
    assert sparse_set_to_vp_mask(vbm, banks) == vp_mask(vps)
    assert set(vps_of_mask(vp_mask(vps))) == vps


@SETTINGS
@given(st.integers(0, (1 << 47) - 41 * HV_TLB_FLUSH_UNIT), st.integers(0, 40 * HV_TLB_FLUSH_UNIT))
def test_fill_gva_list_covers_the_range_with_16_mib_entries(start, length):
    start &= ~(PAGE_SIZE - 1)
    end = start + length
    gvas = fill_gva_list(start, end)
    assert len(gvas) == max(1, -(-length // HV_TLB_FLUSH_UNIT))
    covered = sum(len(entry_pages(g)) for g in gvas)
    assert covered == max(1, -(-length // PAGE_SIZE))


@SETTINGS
@given(st.lists(st.tuples(st.integers(1, 20), st.booleans()), min_size=1, max_size=12))
def test_fifo_is_bounded_and_keeps_flush_all_once_it_overflows(requests):
    """Each request is accepted whole only if it fits with a slot to spare; afterwards
    the FIFO holds a FLUSHALL and the next entry is a full flush."""
    p = Partition(range(1))
    expected: list[int] = []
    for n, space in requests:
        gvas = [0x1000 * (i + 1) for i in range(n)]
        if space:
            p.hypercall(0, HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE, struct.pack("<3Q", 0, 0, 1))
        else:
            p.hypercall(0, HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST | n << 32, struct.pack(f"<3Q{n}Q", 0, 0, 1, *gvas))
        if not space and n <= 15 and n < KVM_HV_TLB_FLUSH_FIFO_SIZE - len(expected):
            expected += gvas
        elif len(expected) < KVM_HV_TLB_FLUSH_FIFO_SIZE:
            expected.append(KVM_HV_TLB_FLUSHALL_ENTRY)
        assert p.fifo(0) == tuple(expected)
    flush = p.vm_entry(0)
    assert flush.full == (KVM_HV_TLB_FLUSHALL_ENTRY in expected)
