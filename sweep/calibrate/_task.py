"""Runs under candidate profiles: the constants travel with the task.

A candidate profile exists only inside a fit (no YAML file on any worker), so a
CandidateTask carries its cost constants and ``execute_candidate_batch`` hands
them to ``sweep._task.execute_run`` through its per-batch profile cache: the run
is checked against its run_id and turned into a result row exactly like a sweep
run. Any Executor runs these batches: ``InProcessExecutor(batch=execute_candidate_batch)``
or ``CandidateRayExecutor``.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from sweep._task import RunOutcome, RunTask, execute_run
from workers import CostProfile, RunConfig, profile_from_mapping, run_key


@dataclass(frozen=True, slots=True)
class CandidateTask(RunTask):
    """A RunTask whose config names a candidate profile, with that profile's constants (ns) and choices."""

    costs: Mapping[str, float | str] = field(default_factory=dict)


def candidate_task(config: RunConfig, profile: CostProfile) -> CandidateTask:
    """The task that simulates ``config`` under ``profile`` (the config's ``profile`` becomes the candidate's name)."""
    cfg = config.replace(profile=profile.name)
    costs = {k: v for k, v in profile.to_dict().items() if k != "name"}
    return CandidateTask(run_key(cfg, profile), cfg.to_dict(), None, costs=costs)


def execute_candidate_batch(tasks: Sequence[RunTask], node: str) -> list[RunOutcome]:
    """The batch function for candidate runs: like ``execute_batch``, profiles from the tasks instead of YAML."""
    out: list[RunOutcome] = []
    for task in tasks:
        costs = getattr(task, "costs", None)
        profiles: dict[str, Any] = {}
        if costs:  # a plain RunTask falls through to loading its profile by name
            name = str(task.config.get("profile", "candidate"))
            try:
                profiles[name] = profile_from_mapping({"name": name, "costs": dict(costs)}, source=f"candidate profile {name}")
            except Exception:
                out.append(RunOutcome(task.run_id, None, traceback.format_exc(), node, 0.0))
                continue
        out.append(execute_run(task, node, profiles))
    return out


__all__ = ["CandidateTask", "candidate_task", "execute_candidate_batch"]
