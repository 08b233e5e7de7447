"""`flushsweep simulate`, and the hyperv-pv mode going through the hypercall ABI."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from sweep.cli import main
from workers import RunConfig, simulate
from workers.hyperv import HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST, HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX

SMALL = ["--vcpus", "96", "--topology", "48x1x2", "--pcpus", "8", "--threads", "20", "--iterations", "3", "--pages", "64"]
#: A Hyper-V-enlightened Linux guest: its threads run on all 96 vCPUs, and 16-page unmaps go as GVA lists.
LINUX = ["--guest-os", "linux", *SMALL[:-2], "--pages", "16"]


def test_hyperv_pv_uses_ex_hypercalls_past_64_vps_and_counts_them():
    r = simulate(RunConfig(vcpus=96, topology="48x1x2", pcpus=8, threads=90, iterations=3, pages=16, guest_os="linux",
                           flush_mode="hyperv-pv"))
    assert r.hypercalls == r.hc_flush_list + r.hc_flush_list_ex + r.hc_flush_space + r.hc_flush_space_ex
    assert r.hc_flush_list_ex > 0  # a target set with a VP index >= 64 needs the sparse VP set
    assert r.hc_errors == 0


def test_windows_process_runs_in_one_processor_group():
    """WS2016 keeps a process's threads in one group of 64: its flush targets are all in it."""
    for seed in range(4):
        r = simulate(RunConfig(vcpus=96, topology="48x1x2", pcpus=8, threads=90, iterations=2, pages=16,
                               flush_mode="hyperv-pv", seed=seed))
        assert r.hypercalls > 0
        # group 0 (VPs 0-63) fits the non-EX processor mask; group 1 (VPs 64-95) needs a sparse VP set
        assert (r.hc_flush_list_ex + r.hc_flush_space_ex == 0) or (r.hc_flush_list + r.hc_flush_space == 0)


def test_hv_semantics_decide_between_fine_grained_and_full_flushes():
    base = dict(vcpus=16, topology="8x1x2", pcpus=4, threads=12, iterations=4, pages=16, flush_mode="hyperv-pv")
    current = simulate(RunConfig(**base, hv_semantics="kvm-current"))
    original = simulate(RunConfig(**base, hv_semantics="kvm-2018"))
    assert current.fine_flushes > 0  # the FIFO keeps the GVA ranges: per-page flushes
    assert original.fine_flushes == 0 and original.full_flushes > 0  # 2018: every PV flush is a full flush


def test_trace_records_each_hypercall_like_kvm_trace_points(tmp_path, capsys):
    out = tmp_path / "trace.parquet"
    assert main(["simulate", *LINUX, "--flush-mode", "hyperv-pv", "--trace", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"]["hyperv-pv"]
    table = pq.read_table(out)
    assert table.num_rows == result["hypercalls"] > 0
    assert str(table.schema.field("processor_mask").type) == "uint64"
    assert str(table.schema.field("valid_bank_mask").type) == "uint64"
    rows = table.to_pylist()
    assert {r["code"] for r in rows} <= {HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST, HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX}
    assert all(r["status"] == 0 and r["rep_cnt"] >= 1 for r in rows)
    assert [r["time_ns"] for r in rows] == sorted(r["time_ns"] for r in rows)
    ex = [r for r in rows if r["code"] == HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST_EX]
    assert all(r["processor_mask"] is None and r["valid_bank_mask"] for r in ex)


def test_compare_prints_both_modes_and_the_ratios(capsys):
    assert main(["simulate", *SMALL, "--enlightenments", "false", "--compare", "native,hyperv-pv"]) == 0
    text = capsys.readouterr().out
    assert "native" in text and "hyperv-pv" in text
    assert "real native/mode" in text and "ops/s mode/native" in text


def test_config_file_and_flags_combine(tmp_path, capsys):
    cfg = tmp_path / "vm.yaml"
    cfg.write_text("vcpus: 8\ntopology: 4x1x2\npcpus: 2\nthreads: 4\niterations: 2\npages: 32\n")
    assert main(["simulate", "--config", str(cfg), "--pcpus", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["pcpus"] == 4 and out["config"]["vcpus"] == 8


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vcpus", "128", "--topology", "8x8x1"], "topology: topology 8x8x1 has 64 vCPUs, vcpus is 128"),
        (["--compare", "native,hyperv"], "--compare: 'hyperv' is not a flush mode"),
        (["--threads", "lots"], "threads: expected an integer, got 'lots'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = subprocess.run([sys.executable, "-m", "sweep", "simulate", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_crashing_baseline_is_reported_with_the_fix(capsys):
    assert main(["simulate", "--vcpus", "128", "--topology", "64x1x2", "--iterations", "1", "--pages", "16",
                 "--threads", "4", "--compare", "native,hyperv-pv"]) == 0
    text = capsys.readouterr().out
    assert "PAGE_FAULT_IN_NONPAGED_AREA" in text and "--enlightenments false" in text


def test_help_gives_every_run_config_field_its_doc_default_and_choices():
    import os
    from dataclasses import fields

    from workers.config import FIELD_CHOICES, field_default, field_doc

    proc = subprocess.run([sys.executable, "-m", "sweep", "simulate", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "1000"})
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for f in fields(RunConfig):  # every field, as RunConfig has them now: no hand-kept list
        default = field_default(f.name)
        choices = FIELD_CHOICES.get(f.name) or (("true", "false") if isinstance(default, bool) else None)
        metavar = "{" + ",".join(choices) + "}" if choices else ""
        assert f"--{f.name.replace('_', '-')} {metavar}" in text
        shown = str(default).lower() if isinstance(default, bool) else default
        assert f"{field_doc(f.name)} (default: {shown})" in text
