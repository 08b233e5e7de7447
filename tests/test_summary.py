"""The end-of-sweep summary: topology says what SxCxT means, and rows where topology changed nothing are merged once."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from sweep import InProcessExecutor, execute_sweep, expand, parse_spec, start_sweep
from sweep._summary import ANY_TOPOLOGY, TOPOLOGY_HEADER, benefit_table, collapse_topology, summarize
from sweep_fixtures import sweep_store  # noqa: F401 - fixture


def _pair_rows(vcpus: int, topology: str, seed: int, native: dict[str, Any], pv: dict[str, Any]) -> list[dict[str, Any]]:
    key = f"{vcpus}-{topology}-{seed}"
    config = {"vcpus": vcpus, "topology": topology, "seed": seed}
    return [
        {"run_id": f"b{key}", "baseline_run_id": None, "flush_mode": "native", **config, **native},
        {"run_id": f"p{key}", "baseline_run_id": f"b{key}", "flush_mode": "hyperv-pv", **config, **pv},
    ]


def _metrics(real: float, sys: float, outcome: str = "ok") -> dict[str, Any]:
    return {"outcome": outcome, "real_s": real, "sys_s": sys, "lat_p99_us": 10 * real, "ops_per_s": 100 / max(real, 1e-9)}


def _results() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        for topology in ("4x1x2", "2x4x1"):  # 8 vCPUs: topology changes nothing
            rows += _pair_rows(8, topology, seed, _metrics(2.0 + seed, 4.0), _metrics(1.0 + seed, 2.0))
        rows += _pair_rows(72, "36x1x2", seed, _metrics(0, 0, "crash"), _metrics(3.0, 5.0))  # SMT: the native guest crashes
        rows += _pair_rows(72, "72x1x1", seed, _metrics(6.0, 9.0), _metrics(3.0, 5.0))
    return pd.DataFrame(rows)


def test_rows_that_differ_only_by_topology_and_agree_are_merged_and_the_others_kept() -> None:
    table = benefit_table(_results(), ["vcpus", "topology"])
    collapsed, merged = collapse_topology(table, ["vcpus", "topology"])
    assert merged == [{"vcpus": 8}]
    assert collapsed[["vcpus", "topology"]].values.tolist() == [[8, ANY_TOPOLOGY], [72, "36x1x2"], [72, "72x1x1"]]
    eight = collapsed.iloc[0]
    assert eight["pairs"] == 4 and math.isclose(eight["real x"], math.sqrt(2.0 * 1.5))
    assert collapsed.iloc[1]["crash base"] == 2 and collapsed.iloc[2]["crash base"] == 0


def test_a_crash_count_that_differs_keeps_the_topologies_apart() -> None:
    rows = _pair_rows(8, "4x1x2", 0, _metrics(0, 0, "crash"), _metrics(1, 1)) + _pair_rows(8, "8x1x1", 0, _metrics(0, 0, "ok"), _metrics(1, 1))
    collapsed, merged = collapse_topology(benefit_table(pd.DataFrame(rows), ["vcpus", "topology"]), ["vcpus", "topology"])
    assert merged == [] and len(collapsed) == 2


def test_summary_names_sockets_cores_threads_and_says_once_where_topology_changed_nothing(sweep_store: Any) -> None:
    spec = parse_spec(
        "name: topo\nbase: {workload: cpu-bound, duration_s: 0.002, guest_os: windows-2016, threads: 4}\n"
        "axes:\n  vcpus: [4, 72]\n  topology: [smt2, flat]\n  flush_mode: [native, hyperv-pv]\ncompare: flush_mode\n"
    )
    start_sweep(sweep_store, spec, expand(spec))
    report = execute_sweep(sweep_store, "topo", InProcessExecutor())
    assert report.status == "done", report.failures
    text = summarize(sweep_store, report, by=spec.swept_fields, compare_field="flush_mode")
    header = next(ln for ln in text.splitlines() if ln.startswith("vcpus"))
    assert TOPOLOGY_HEADER in header and "sockets x cores per socket x threads per core" in text
    rows = [ln.split() for ln in text.splitlines() if ln[:5].strip().isdigit()]
    at_72 = [r for r in rows if r[0] == "72"]
    assert sorted(r[1] for r in at_72) == ["36x1x2", "72x1x1"]  # WS2016 > 64 vCPUs: SMT crashes without PV flush, flat boots
    at_4 = [r for r in rows if r[0] == "4"]
    merged = [r for r in at_4 if r[1] == ANY_TOPOLOGY]
    assert len(at_4) == (1 if merged else 2)
    assert text.count("topology changed nothing") == (1 if merged else 0)
