"""`flushsweep query --examples` and the README's query: no aggregate mixes configurations that differ in an axis."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from storage import EXAMPLES, NewRun
from storage.examples import CONFIG_AXES

REPO = Path(__file__).resolve().parent.parent
AGGREGATES = re.compile(r"\b(median|avg|sum|min|max|quantile\w*)\s*\(", re.IGNORECASE)


@pytest.fixture
def varied_store(tmp_store, result_rows):
    """Baseline/PV pairs that differ in every axis of CONFIG_AXES (and in seeds), in sweep 'my-sweep'."""
    runs = []
    for i, (hv, topology, pcpus) in enumerate([(hv, t, p) for hv in ("kvm-2018", "kvm-current")
                                               for t in ("auto", "flat") for p in (12, 24)]):
        for seed in range(2):
            extra = {"hv_semantics": hv, "topology": topology, "pcpus": pcpus, "seed": 100 * i + seed}
            base_cfg = {**result_rows.config(i), **extra}
            pv_cfg = {**base_cfg, "flush_mode": "hyperv-pv"}
            base = NewRun(result_rows.run_id(base_cfg), base_cfg)
            runs += [base, NewRun(result_rows.run_id(pv_cfg), pv_cfg, baseline_run_id=base.run_id)]
    tmp_store.begin_sweep("my-sweep", "name: my-sweep\n")
    tmp_store.add_runs("my-sweep", runs)
    tmp_store.mark_running([r.run_id for r in runs])
    tmp_store.commit_results("my-sweep", [result_rows.row(r, outcome="ok", crash_reason="") for r in runs])
    return tmp_store


def _grouping_is_complete(store, sql: str) -> None:
    """Each output row of an aggregate stands for one configuration: as many rows as distinct configurations."""
    out = store.sql(sql)
    keys = [c for c in CONFIG_AXES if c in out.column_names]
    assert keys == list(CONFIG_AXES), f"groups by {keys}, not every axis of {CONFIG_AXES}"
    configs = store.sql(f"SELECT DISTINCT {', '.join(CONFIG_AXES)} FROM paired WHERE outcome = 'ok' AND base_outcome = 'ok'")
    assert out.num_rows == configs.num_rows > 1
    rows = out.select(keys).to_pylist()
    assert rows == sorted(rows, key=lambda r: tuple(r[k] for k in keys))  # ordered by the axes


def test_every_example_runs_and_every_aggregate_over_paired_groups_by_every_axis(varied_store) -> None:
    aggregating = [e for e in EXAMPLES if "FROM paired" in e.sql and AGGREGATES.search(e.sql)]
    assert len(aggregating) >= 2
    for example in EXAMPLES:
        assert varied_store.sql(example.sql).num_columns >= 2, example.title
    for example in aggregating:
        _grouping_is_complete(varied_store, example.sql)
        assert re.search(r"round\((median|avg)\(", example.sql), f"{example.title}: round what is computed"


def test_the_readme_query_groups_by_every_axis_it_averages_over(varied_store) -> None:
    readme = (REPO / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("flushsweep query \""))
    sql = shlex.split(line.split("#")[0])[2]
    _grouping_is_complete(varied_store, sql)
