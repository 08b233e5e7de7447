"""Where PV flush fits fewer VMs than native, and why, in one sentence per case from the model's counters.

A case is a shape (host, VM, workload, Hyper-V handler) where a PV mode's
VMs-per-host limit is below native's. Its sentence compares the two at the
first rung PV missed (native met it, since its limit is higher): the SLO terms
PV failed there, and the counter PV exceeds native by most, per VM (the engine
reports per-VM means), as the mechanism: page-by-page flushes from KVM's flush
FIFO, flushes deferred to VM entry, VM exits, full flushes, pause-loop exits,
host preemptions or guest system time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from sweep.report._ladder import LadderState
from sweep.report._plan import Ladder
from sweep.report._spec import BASELINE_MODE

if TYPE_CHECKING:
    import pandas

#: A counter PV must exceed native by to count as the cause, relatively and absolutely (per VM).
MIN_RATIO = 1.2
MIN_EXCESS = 5.0
#: PV's guest system time above native's by this factor is named beside the cause: what the mechanism cost.
SYS_MARGIN = 1.05

Counters = Mapping[str, float]
#: (counter, phrase from PV's and native's per-VM means), in the order ties are broken.
MECHANISMS: tuple[tuple[str, Callable[[Counters, Counters, str], str]], ...] = (
    ("fine_flushes", lambda pv, nat, hv: (
        f"{pv['fine_flushes']:.0f} page-by-page flushes per VM from the {hv} per-vCPU flush FIFO, one per queued GVA "
        f"at VM entry ({pv.get('hc_flush_list', 0) + pv.get('hc_flush_list_ex', 0):.0f} list hypercalls), against "
        f"native's {nat['fine_flushes']:.0f}")),
    ("deferred_flushes", lambda pv, nat, hv: (
        f"{pv['deferred_flushes']:.0f} flushes per VM left to preempted or halted vCPUs' next VM entry, "
        + (f"which {hv} replays from its per-vCPU FIFO page by page ({pv.get('fine_flushes', 0):.0f} page-by-page "
           "flushes) before the vCPU runs" if pv.get("fine_flushes", 0) > 0 else
           "each a full TLB flush before the vCPU runs"))),
    ("vm_exits", lambda pv, nat, hv: (
        f"{pv['vm_exits']:.0f} VM exits per VM ({pv.get('hypercalls', 0):.0f} of them flush hypercalls) against "
        f"native's {nat['vm_exits']:.0f}")),
    ("full_flushes", lambda pv, nat, hv: (
        f"{pv['full_flushes']:.0f} full TLB flushes per VM against native's {nat['full_flushes']:.0f}")),
    ("ple_exits", lambda pv, nat, hv: (
        f"{pv['ple_exits']:.0f} pause-loop exits per VM against native's {nat['ple_exits']:.0f}, vCPUs spinning on "
        "preempted lock holders")),
    ("preemptions", lambda pv, nat, hv: (
        f"{pv['preemptions']:.0f} host preemptions of its vCPUs per VM against native's {nat['preemptions']:.0f}")),
    ("sys_s", lambda pv, nat, hv: (
        f"{pv['sys_s']:.3g} s guest system time per VM against native's {nat['sys_s']:.3g} s")),
)


@dataclass(frozen=True, slots=True)
class PvLoss:
    """One shape where the PV ``ladder`` fits fewer VMs per host than native, and the sentence saying why."""

    ladder: Ladder
    pv_vms: int
    native_vms: int
    at_vms: int
    mechanism: str  # the counter named as the cause ("" when none stands out)
    sentence: str


def pv_losses(states: Sequence[LadderState], rows: "pandas.DataFrame", run_ids: Callable[[LadderState, int], Sequence[str]]) -> tuple[PvLoss, ...]:
    """Every shape and PV mode whose limit is below native's, with its sentence.

    ``rows`` are result rows by run_id; ``run_ids(state, vms)`` names a rung's runs.
    """
    by_shape: dict[tuple, dict[str, LadderState]] = {}
    for s in states:
        by_shape.setdefault(s.ladder.shape, {})[s.ladder.flush_mode] = s
    indexed = rows.drop_duplicates("run_id").set_index("run_id") if len(rows) else rows
    out: list[PvLoss] = []
    for modes in by_shape.values():
        native = modes.get(BASELINE_MODE)
        if native is None:
            continue
        for mode, pv in sorted(modes.items()):
            if mode == BASELINE_MODE or pv.limit >= native.limit:
                continue
            at = pv.limit + 1
            pv_c, nat_c = _means(indexed, run_ids(pv, at)), _means(indexed, run_ids(native, at))
            mechanism, cause = _cause(pv_c, nat_c, pv.ladder.hv_semantics)
            out.append(PvLoss(pv.ladder, pv.limit, native.limit, at, mechanism, _sentence(pv, native, at, cause)))
    return tuple(out)


def _means(indexed: "pandas.DataFrame", ids: Sequence[str]) -> dict[str, float]:
    present = [i for i in ids if i in indexed.index]
    if not present:
        return {}
    at = indexed.loc[present]
    return {c: float(at[c].astype(float).mean()) for c in at.columns if c in _COUNTER_COLUMNS}


_COUNTER_COLUMNS = frozenset({m for m, _ in MECHANISMS} | {"hypercalls", "hc_flush_list", "hc_flush_list_ex"})


def _cause(pv: Counters, native: Counters, hv: str) -> tuple[str, str]:
    """The counter PV exceeds native by most (ratio), if any does by ``MIN_RATIO`` and ``MIN_EXCESS``."""
    best: tuple[float, int, str] | None = None
    for order, (name, _) in enumerate(MECHANISMS):
        if name not in pv or name not in native:
            continue
        p, n = pv[name], native[name]
        floor = 0.01 if name == "sys_s" else MIN_EXCESS  # seconds, not events
        if p - n < floor or p < MIN_RATIO * n:
            continue
        ratio = p / n if n > 0 else float("inf")
        if best is None or (ratio, -order) > (best[0], -best[1]):
            best = (ratio, order, name)
    if best is None:
        return "", "no counter of the model stands out against native"
    name = best[2]
    phrase = dict(MECHANISMS)[name](pv, native, hv)
    if name != "sys_s" and pv.get("sys_s", 0) > SYS_MARGIN * native.get("sys_s", 0) > 0:
        phrase += f" (guest system time {pv['sys_s']:.3g} s per VM against native's {native['sys_s']:.3g} s)"
    return name, phrase


def _sentence(pv: LadderState, native: LadderState, at: int, cause: str) -> str:
    lad = pv.ladder
    missed = next((v for v in pv.verdicts if v.vms == at), None)
    native_at = next((v for v in native.verdicts if v.vms == at), None)
    what = "; ".join(missed.failures) if missed is not None else "missed the SLO"
    versus = f" (native: slowest VM at {native_at.throughput:.0%})" if native_at is not None and native_at.throughput is not None else ""
    return (f"{lad.host} / {lad.vm} {lad.vcpus} vCPU {lad.topology_label}, {lad.workload}, {lad.hv_semantics} handler on "
            f"KVM {lad.host_kvm}: {lad.flush_mode} fits {pv.limit} VM{'s' if pv.limit != 1 else ''} per host against "
            f"native's {native.limit}; at {at} VM{'s' if at != 1 else ''} {what}{versus}, from {cause}.")


__all__ = ["MECHANISMS", "PvLoss", "pv_losses"]
