"""Queries worth starting from (`flushsweep query --examples`); each runs as shown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExampleQuery:
    title: str
    sql: str


#: The configuration axes a sweep usually varies: an aggregate that averages over one of them mixes
#: runs that mean different things (a 2018 handler with today's, SMT with multi-core sockets), so
#: every aggregating example groups by all of them (and orders by them, and rounds what it computes).
CONFIG_AXES = ("guest_os", "workload", "vcpus", "topology", "overcommit", "flush_mode", "hv_semantics")

EXAMPLES: tuple[ExampleQuery, ...] = (
    ExampleQuery(
        "PV benefit per configuration, over seeds (>1 means PV flush is faster than its baseline)",
        """SELECT guest_os, workload, vcpus, topology, round(overcommit, 2) AS overcommit, flush_mode, hv_semantics,
       count(*) AS pairs,
       round(median(benefit_real), 3) AS benefit_real,
       round(median(benefit_sys), 3) AS benefit_sys,
       round(median(benefit_p99), 3) AS benefit_p99
FROM paired
WHERE outcome = 'ok' AND base_outcome = 'ok'
GROUP BY guest_os, workload, vcpus, topology, overcommit, flush_mode, hv_semantics
ORDER BY guest_os, workload, vcpus, topology, overcommit, flush_mode, hv_semantics""",
    ),
    ExampleQuery(
        "Worst p99 shootdown latency: the ten slowest runs",
        """SELECT run_id, sweep, guest_os, workload, vcpus, pcpus, topology, flush_mode, hv_semantics,
       round(lat_p99_us, 1) AS lat_p99_us, round(real_s, 3) AS real_s
FROM results
WHERE outcome = 'ok'
ORDER BY lat_p99_us DESC, run_id
LIMIT 10""",
    ),
    ExampleQuery(
        "Crashed configurations: which guests bugchecked, where, and why",
        """SELECT guest_os, workload, vcpus, topology, flush_mode, hv_semantics, enlightenments, crash_reason,
       count(*) AS crashes
FROM results
WHERE outcome = 'crash'
GROUP BY guest_os, workload, vcpus, topology, flush_mode, hv_semantics, enlightenments, crash_reason
ORDER BY crashes DESC, guest_os, workload, vcpus, topology, flush_mode, hv_semantics, enlightenments""",
    ),
    ExampleQuery(
        "Progress of every sweep (a run shared by two sweeps counts in both)",
        """SELECT l.sweep, r.status, count(*) AS runs
FROM sweep_runs l JOIN runs r USING (run_id)
GROUP BY l.sweep, r.status
ORDER BY l.sweep, r.status""",
    ),
    ExampleQuery(
        "Runs that failed for good, with their last error",
        """SELECT run_id, attempts, node, error
FROM runs
WHERE status = 'failed'
ORDER BY finished DESC, run_id""",
    ),
    ExampleQuery(
        "One sweep's paired results (including runs another sweep computed), mean over seeds",
        """SELECT guest_os, workload, vcpus, topology, round(overcommit, 2) AS overcommit, flush_mode, hv_semantics,
       count(*) AS pairs, round(avg(benefit_real), 3) AS benefit_real
FROM paired
WHERE run_id IN (SELECT run_id FROM sweep_runs WHERE sweep = 'my-sweep')
  AND outcome = 'ok' AND base_outcome = 'ok'
GROUP BY guest_os, workload, vcpus, topology, overcommit, flush_mode, hv_semantics
ORDER BY guest_os, workload, vcpus, topology, overcommit, flush_mode, hv_semantics""",
    ),
    ExampleQuery(
        "Capacity plan: VMs per host shape and VM shape meeting the SLO, native vs PV (the largest vms such that it and "
        "every smaller count ran crash-free with the slowest VM at >= 80 % of one VM alone, the best flush mode's vms = 1; "
        "worst seed; flushsweep report measures these ladders)",
        """WITH rung AS (
  SELECT pcpus, guest_os, vcpus, topology, enlightenments, threads, workload, iterations, pages, profile,
         hv_semantics, host_kvm, flush_mode, vms,
         bool_and(outcome = 'ok') AS crash_free, min(ops_per_s_min) AS slowest_ops
  FROM results
  WHERE background_vcpus = 0
  GROUP BY ALL
), shape AS (
  SELECT pcpus, guest_os, vcpus, topology, enlightenments, threads, workload, iterations, pages, profile,
         hv_semantics, host_kvm, max(slowest_ops) AS alone_ops
  FROM rung
  WHERE vms = 1 AND crash_free
  GROUP BY ALL
), judged AS (
  SELECT r.*, coalesce(r.crash_free AND r.slowest_ops >= 0.8 * s.alone_ops, false) AS meets
  FROM rung r LEFT JOIN shape s USING (pcpus, guest_os, vcpus, topology, enlightenments, threads, workload, iterations,
                                       pages, profile, hv_semantics, host_kvm)
), ladder AS (
  SELECT pcpus, guest_os, vcpus, topology, workload, hv_semantics, host_kvm, flush_mode,
         coalesce(min(vms) FILTER (WHERE NOT meets), max(vms) + 1) - 1 AS vms_per_host, max(vms) AS tried
  FROM judged
  GROUP BY pcpus, guest_os, vcpus, topology, enlightenments, threads, workload, iterations, pages, profile,
           hv_semantics, host_kvm, flush_mode
)
SELECT pcpus, guest_os, vcpus, topology, workload, hv_semantics, host_kvm,
       max(vms_per_host) FILTER (WHERE flush_mode = 'native') AS native,
       max(vms_per_host) FILTER (WHERE flush_mode = 'hyperv-pv') AS hyperv_pv,
       max(vms_per_host) FILTER (WHERE flush_mode = 'kvm-pv') AS kvm_pv
FROM ladder
GROUP BY pcpus, guest_os, vcpus, topology, workload, hv_semantics, host_kvm
ORDER BY pcpus, guest_os, vcpus, topology, workload, hv_semantics, host_kvm""",
    ),
)


def format_examples() -> str:
    blocks = [f"-- {e.title}\n{e.sql};" for e in EXAMPLES]
    return "\n\n".join(blocks) + "\n"


__all__ = ["CONFIG_AXES", "EXAMPLES", "ExampleQuery", "format_examples"]
