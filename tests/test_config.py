"""RunConfig: canonical identity and loosely typed input (YAML, CSV, CLI strings)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from workers import ConfigError, RunConfig, field_names, run_key
from workers.config import parse_topology

values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(allow_nan=True), st.text(max_size=12))
keys = st.one_of(st.sampled_from(field_names()), st.text(max_size=10))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_any_input_gives_a_config_or_a_config_error_naming_a_field(data):
    try:
        cfg = RunConfig.from_dict(data)
    except ConfigError as err:
        assert err.field and "\n" not in str(err)
        assert str(err).startswith(f"{err.field}: ")
    else:
        assert RunConfig.from_dict(json.loads(cfg.canonical_json())) == cfg


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4096), st.text(alphabet="0123456789xflatsmuo2", max_size=10))
def test_topology_parses_to_a_shape_of_exactly_vcpus_or_is_refused(vcpus, text):
    try:
        s, c, t = parse_topology(text, vcpus)
    except ConfigError as err:
        assert err.field == "topology"
    else:
        assert s * c * t == vcpus


def test_equal_configs_spelled_differently_have_one_identity():
    a = RunConfig.from_dict({"vcpus": "128", "topology": "smt2", "ple": "true", "duration_s": 1})
    b = RunConfig(vcpus=128, topology="64x1x2", ple=True, duration_s=1.0)
    assert a == b and a.canonical_json() == b.canonical_json() and a.content_hash() == b.content_hash()
    assert run_key(a) == run_key(b)
    assert run_key(a) != run_key(b.replace(seed=1))
    assert run_key(a) != run_key(b.replace(profile="seed-ws2016"))
