"""Optuna search: find where PV TLB flush pays off most, every evaluated run stored like a sweep run.

A search spec (configs/search/*.yaml) names a base RunConfig, a space of fields
to search, objectives over each trial's paired runs (PV vs baseline, same seeds)
and constraints. The study lives in the store's SQL database, its runs in the
store's Parquet results, shared by run_id with every sweep.

Example:
    >>> from sweep.search import parse_search_spec
    >>> spec = parse_search_spec(
    ...     "name: demo\\nbase: {workload: mmap-munmap, iterations: 4, pages: 64, threads: 9}\\n"
    ...     "space: {vcpus: [8], overcommit: [1, 2, 4]}\\nobjectives: [benefit_real]\\nconstraints: [outcome == ok]\\n")
    >>> spec.space.names, spec.objective_names, [c.name for c in spec.constraints]
    (['vcpus', 'overcommit'], ['benefit_real'], ['outcome == ok'])

Optuna, pandas and matplotlib load only when a search runs or reports.
"""

from sweep.search._cache import RunCache
from sweep.search._driver import SearchController, SearchOptions, SearchReport
from sweep.search._expr import Expr, ExprError, Scope, compile_expr
from sweep.search._optuna import BaseSearch, OptunaSearch, Proposal, make_sampler
from sweep.search._report import (
    best_trials,
    feasible_trials,
    importance_evaluator,
    importances,
    pareto_front,
    summary_text,
    write_plots,
)
from sweep.search._seed import SeedError, SeedReport, check_seed_source, seed_from_sweep
from sweep.search._service import NameTaken, SearchSession, begin_search, check_name, run_search
from sweep.search._space import Choice, FloatRange, IntRange, Space
from sweep.search._spec import Constraint, Objective, SamplerChoice, SearchSpec, load_search_spec, parse_search_spec
from sweep.search._trial import Evaluation, TrialPlan, evaluate, plan_trial

__all__ = [
    "BaseSearch",
    "Choice",
    "Constraint",
    "Evaluation",
    "Expr",
    "ExprError",
    "FloatRange",
    "IntRange",
    "NameTaken",
    "Objective",
    "OptunaSearch",
    "Proposal",
    "RunCache",
    "SamplerChoice",
    "Scope",
    "SearchController",
    "SearchOptions",
    "SearchReport",
    "SearchSession",
    "SearchSpec",
    "SeedError",
    "SeedReport",
    "Space",
    "TrialPlan",
    "begin_search",
    "best_trials",
    "check_name",
    "check_seed_source",
    "compile_expr",
    "evaluate",
    "feasible_trials",
    "importance_evaluator",
    "importances",
    "load_search_spec",
    "make_sampler",
    "pareto_front",
    "parse_search_spec",
    "plan_trial",
    "run_search",
    "seed_from_sweep",
    "summary_text",
    "write_plots",
]
