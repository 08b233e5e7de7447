"""Sweep specs: what a spec author relies on (errors with lines, axes forms, pairing, drops)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep import SpecError, expand, load_spec, parse_spec
from workers import RunConfig, run_key

REPO = Path(__file__).resolve().parent.parent
CHEAP = "{workload: cpu-bound, duration_s: 0.01, threads: 2}"


def error_of(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        expand(parse_spec(text, source="s.yaml"))
    return info.value


# --- validation: file:line: field: problem ------------------------------------------


@pytest.mark.parametrize(
    "text, line, field, words",
    [
        ("name: x\naxes:\n  vcpus: [4]\n  vcpuz: [8]\n", 4, "axes.vcpuz", "did you mean 'vcpus'"),
        ("name: x\nbase:\n  threads: 2\n  flush_mod: native\n", 4, "base.flush_mod", "did you mean 'flush_mode'"),
        ("name: x\nreplicate: 3\n", 2, "replicate", "did you mean 'replicates'"),
        ("name: x\naxes:\n  vcpus: []\n", 3, "axes.vcpus", "empty axis"),
        ("name: x\naxes:\n  vcpus: 8\n", 3, "axes.vcpus", "constants go in base"),
        ("name: x\naxes:\n  vcpus:\n    - 4\n    - eight\n", 5, "axes.vcpus[1]", "expected an integer"),
        ("name: x\naxes:\n  flush_mode: [native, hyperv]\n", 3, "axes.flush_mode[1]", "not one of native, hyperv-pv"),
        ("name: x\nbase: {ple: maybe}\n", 2, "base.ple", "expected true or false"),
        ("name: x\nreplicates: 0\n", 2, "replicates", ">= 1"),
        ("name: x\nwhere: 'vcpu >= 4'\n", 2, "where", "did you mean 'vcpus'"),
        ("name: x\nwhere: ['vcpus > 1', '__import__(\"os\")']\n", 2, "where[1]", "not allowed"),
        ("name: x\naxes: {vcpus: [4, 8]}\ncompare: flush_mode\n", 3, "compare.field", "not swept"),
        ("name: x\naxes:\n  threads: {from: 4, to: 1}\n", 3, "axes.threads.to", "must be >= from"),
        ("name: x\naxes:\n  workload: {from: 1, to: 3}\n", 3, "axes.workload", "not numeric"),
        ("name: x\naxes:\n  topology: [9x9]\n", 3, "axes.topology[0]", "not SxCxT"),
        ("name: x\naxes:\n  topology: [{cores_per_socket: 4}]\n", 3, "axes.topology[0].cores_per_socket", "did you mean 'cores-per-socket'"),
        ("name: x\nbase: {pcpus: 4}\naxes:\n  overcommit: [1, 2]\n", 2, "base.pcpus", "derived from the overcommit axis"),
        ("name: x\naxes:\n  seed: [1, 2]\nreplicates: 2\n", 4, "replicates", "not both"),
        ("name: x\naxes:\n  vcpus: [4]\n  vcpus: [8]\n", 4, "axes.vcpus", "duplicate key"),
        ("name: bad name\n", 1, "name", "not a sweep name"),
        ("description: no name\n", 1, "name", "missing"),
        ("name: x\naxes: [\n", 3, "", "not valid YAML"),
        ("name: x\nreplicates: 1.5\n", 2, "replicates", "expected a whole number >= 1 (seeds per combination), got 1.5"),
        ("name: x\nbase: [threads]\n", 2, "base", "expected a mapping of RunConfig fields"),
        ("name: x\ncompare: 5\n", 2, "compare", "expected a field name or {field, baseline, baseline_overrides}"),
        ("name: x\ncompare: {baseline: native}\n", 2, "compare.field", "missing; name the swept field to compare"),
        ("nam: x\n", 1, "nam", "unknown key; did you mean 'name'?"),
        ("- name: x\n", 1, "", "a spec is a mapping with at least 'name'"),
    ],
)
def test_invalid_spec_names_file_line_and_field(text: str, line: int, field: str, words: str) -> None:
    err = error_of(text)
    assert (err.line, err.field) == (line, field), str(err)
    assert words in err.problem
    assert str(err).startswith(f"s.yaml:{line}: ")


def test_value_that_never_fits_is_an_error_at_its_line() -> None:
    err = error_of("name: x\naxes:\n  vcpus: [8, 16]\n  topology:\n    - smt2\n    - 3x3x3\n")
    assert (err.line, err.field) == (6, "axes.topology[1]")
    assert "never makes a valid run" in err.problem and "27 vCPUs" in err.problem


def test_impossible_base_value_blames_the_base_field() -> None:
    err = error_of("name: x\nbase:\n  threads: -1\naxes:\n  vcpus: [4, 8]\n")
    assert (err.line, err.field) == (3, "base.threads")


def test_unknown_profile_is_a_spec_error() -> None:
    err = error_of("name: x\nbase:\n  profile: no-such-profile\n")
    assert (err.line, err.field) == (3, "base.profile")
    assert "literature" in err.problem  # lists what is available


def test_where_that_drops_everything_is_an_error() -> None:
    err = error_of("name: x\naxes: {vcpus: [4, 8]}\nwhere: vcpus > 100\n")
    assert err.field == "where" and "filtered out" in err.problem


def test_load_spec_reports_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_spec(tmp_path / "nope.yaml")


# --- axes forms ---------------------------------------------------------------------


def test_ranges_are_inclusive_and_log2_gives_powers_of_two() -> None:
    spec = parse_spec("name: x\naxes:\n  threads: {from: 2, to: 8, step: 3}\n  vcpus: {log2: [3, 40]}\n  duration_s: {from: 0.1, to: 0.3, step: 0.1}\n")
    values = {a.name: [v[0] for v in a.values] for a in spec.axes}
    assert values == {"threads": [2, 5, 8], "vcpus": [4, 8, 16, 32], "duration_s": [0.1, 0.2, 0.3]}


def test_topology_forms_resolve_against_vcpus_and_misfits_are_dropped_with_a_count() -> None:
    spec = parse_spec(
        f"name: x\nbase: {CHEAP}\naxes:\n  vcpus: [8, 12]\n  topology: [flat, smt2, {{cores-per-socket: 4}}, 2x2x2]\n"
    )
    exp = expand(spec)
    got = sorted((r.config.vcpus, r.config.topology) for r in exp.runs)
    assert got == sorted([(8, "8x1x1"), (8, "4x1x2"), (8, "2x4x1"), (8, "2x2x2"), (12, "12x1x1"), (12, "6x1x2"), (12, "3x4x1")])
    assert exp.impossible == 1 and exp.impossible_reasons["topology"] == 1  # 2x2x2 with 12 vCPUs
    assert "1 impossible dropped" in exp.describe()


def test_overcommit_sets_pcpus_from_vcpus() -> None:
    spec = parse_spec(f"name: x\nbase: {CHEAP}\naxes:\n  vcpus: [8, 12]\n  overcommit: [1, 4, 1.5]\n")
    exp = expand(spec)
    got = sorted((r.config.vcpus, r.config.pcpus) for r in exp.runs)
    assert got == [(8, 2), (8, 8), (12, 3), (12, 8), (12, 12)]  # 8 / 1.5 is not whole: dropped
    assert exp.impossible == 1


def test_zipped_axis_varies_fields_together() -> None:
    spec = parse_spec(f"name: x\nbase: {CHEAP}\naxes:\n  vcpus, pcpus:\n    - [8, 4]\n    - {{vcpus: 16, pcpus: 2}}\n  ple: [true, false]\n")
    got = sorted((r.config.vcpus, r.config.pcpus, r.config.ple) for r in expand(spec).runs)
    assert got == [(8, 4, False), (8, 4, True), (16, 2, False), (16, 2, True)]


def test_replicates_are_consecutive_seeds_from_the_base_seed() -> None:
    spec = parse_spec("name: x\nbase: {workload: cpu-bound, duration_s: 0.01, seed: 10}\nreplicates: 3\n")
    assert [r.config.seed for r in expand(spec).runs] == [10, 11, 12]


def test_where_filters_combinations_and_counts_them() -> None:
    spec = parse_spec(f"name: x\nbase: {CHEAP}\naxes:\n  vcpus: [4, 8, 16]\n  overcommit: [1, 2]\nwhere: overcommit == 1 or vcpus >= 8\n")
    exp = expand(spec)
    assert sorted((r.config.vcpus, r.config.pcpus) for r in exp.runs) == [(4, 4), (8, 4), (8, 8), (16, 8), (16, 16)]
    assert exp.filtered == 1


def test_equivalent_combinations_are_one_run() -> None:
    spec = parse_spec("name: x\nbase: {workload: cpu-bound, vcpus: 8}\naxes:\n  topology: [flat, 8x1x1, auto, smt2]\n")
    exp = expand(spec)
    assert [r.config.topology for r in exp.runs] == ["8x1x1", "4x1x2"]
    assert exp.duplicates == 2


# --- paired comparison ----------------------------------------------------------------


def test_compare_links_each_run_to_its_baseline_with_overrides() -> None:
    spec = parse_spec(
        f"name: x\nbase: {CHEAP}\naxes:\n  vcpus: [4, 8]\n  flush_mode: [native, hyperv-pv]\nreplicates: 2\n"
        "compare: {field: flush_mode, baseline: native, baseline_overrides: {enlightenments: false}}\n"
    )
    runs = {r.run_id: r for r in expand(spec).runs}
    assert len(runs) == 8
    for r in runs.values():
        if r.config.flush_mode == "native":
            assert r.baseline_run_id is None and r.config.enlightenments is False
        else:
            base = runs[r.baseline_run_id]
            assert base.config == r.config.replace(flush_mode="native", enlightenments=False)
            assert r.baseline_run_id == run_key(base.config)


def test_compare_adds_baselines_the_axes_do_not_list() -> None:
    spec = parse_spec(f"name: x\nbase: {CHEAP}\naxes:\n  flush_mode: [hyperv-pv]\ncompare: {{field: flush_mode, baseline: native}}\n")
    exp = expand(spec)
    assert [r.config.flush_mode for r in exp.runs] == ["native", "hyperv-pv"]
    assert exp.baselines_added == 1 and exp.runs[1].baseline_run_id == exp.runs[0].run_id


def test_compare_shorthand_uses_the_first_axis_value_as_baseline() -> None:
    spec = parse_spec(f"name: x\nbase: {CHEAP}\naxes:\n  flush_mode: [native, hyperv-pv]\ncompare: flush_mode\n")
    assert spec.compare is not None and spec.compare.baseline == "native"


def test_run_ids_are_the_engine_run_key() -> None:
    spec = parse_spec(f"name: x\nbase: {CHEAP}\naxes:\n  vcpus: [4, 8]\n")
    for r in expand(spec).runs:
        assert r.run_id == run_key(r.config) and isinstance(r.config, RunConfig)


# --- shipped specs --------------------------------------------------------------------


def test_quickstart_spec_is_valid_and_paired() -> None:
    spec = load_spec(REPO / "configs/sweeps/quickstart.yaml")
    exp = expand(spec)
    assert spec.compare is not None and spec.compare.field == "flush_mode"
    paired = [r for r in exp.runs if r.baseline_run_id]
    assert paired and all(r.baseline_run_id in {x.run_id for x in exp.runs} for r in paired)


def test_seed_2018_spec_is_the_2018_matrix() -> None:
    spec = load_spec(REPO / "configs/sweeps/seed-2018.yaml")
    assert spec.replicates == 5 and spec.compare is not None
    assert spec.compare.baseline == "native" and spec.compare.baseline_overrides == {"enlightenments": False}
    shapes = {(v[0], v[1]) for a in spec.axes if "topology" in a.fields for v in a.values}
    assert {(128, "64x1x2"), (128, "8x16x1")} <= shapes
    assert any(vcpus <= spec.base["pcpus"] for vcpus, _ in shapes)  # a point without overcommit


def test_the_spec_format_example_in_the_readme_is_valid() -> None:
    text = (REPO / "configs/sweeps/README.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    exp = expand(parse_spec(example, "README.md"))
    assert exp.runs and exp.impossible > 0  # 4x4x2 fits only 32 vCPUs
    assert all(r.config.vcpus >= 16 or r.config.pcpus == r.config.vcpus for r in exp.runs if r.baseline_run_id)



def test_overcommit_counts_every_vm_and_the_background_load() -> None:
    """overcommit is all vCPUs on the host per pCPU: vms x vcpus + background_vcpus."""
    text = ("name: vms\n"
            "base: {vcpus: 8, topology: 4x1x2, background_vcpus: 4, workload: cpu-bound, duration_s: 0.01}\n"
            "axes:\n"
            "  vms: [1, 3]\n"
            "  overcommit: [2]\n")
    runs = expand(parse_spec(text, source="s.yaml")).runs
    by_vms = {run.config.vms: run.config for run in runs}
    assert by_vms[1].pcpus == (8 + 4) // 2 and by_vms[3].pcpus == (3 * 8 + 4) // 2
    assert all(c.overcommit == 2 for c in by_vms.values())
