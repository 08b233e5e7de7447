"""Emulated VMs: pure computation, a RunConfig in and a RunResult out.

``workers`` imports neither ``storage`` nor ``sweep``; Ray tasks import only this.

Example:
    >>> from workers import RunConfig, simulate
    >>> r = simulate(RunConfig(workload="cpu-bound", vcpus=4, pcpus=2, threads=2, duration_s=0.01))
    >>> r.outcome
    'ok'
"""

from workers.config import (
    FIELD_CHOICES,
    FLUSH_MODES,
    GUEST_OSES,
    HV_SEMANTICS,
    WORKLOADS,
    ConfigError,
    RunConfig,
    field_default,
    field_doc,
    field_names,
)
from workers.engine import MODEL_VERSION, boot_crash, effective_vcpus, run_key, simulate
from workers.profiles import CostProfile, cost_names, load_profile, profile_from_mapping
from workers.result import NONDETERMINISTIC_FIELDS, RunResult, metric_names

__all__ = [
    "FIELD_CHOICES",
    "FLUSH_MODES",
    "MODEL_VERSION",
    "GUEST_OSES",
    "HV_SEMANTICS",
    "NONDETERMINISTIC_FIELDS",
    "WORKLOADS",
    "ConfigError",
    "CostProfile",
    "RunConfig",
    "RunResult",
    "boot_crash",
    "cost_names",
    "effective_vcpus",
    "field_default",
    "field_doc",
    "field_names",
    "load_profile",
    "metric_names",
    "profile_from_mapping",
    "run_key",
    "simulate",
]
