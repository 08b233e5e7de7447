"""What a search found: the best configurations (or the Pareto front), parameter importances, figures.

Only feasible complete trials can be best: an infeasible trial (a constraint
not met) is kept in the study and counted, never recommended. A configuration
the sampler proposed more than once is shown once (its trials share their runs,
so they score the same).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from sweep.search._spec import SearchSpec

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def feasible_trials(study: "optuna.Study") -> list["FrozenTrial"]:
    """Complete trials whose constraints all hold."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if all(v <= 0 for v in t.constraints.values())]


def best_trials(study: "optuna.Study", spec: SearchSpec, top: int = 5) -> list["FrozenTrial"]:
    """The ``top`` best feasible configurations (one objective), or the whole Pareto front (several), best first.

    Each configuration appears once, as its first trial.
    """
    trials = distinct_configurations(feasible_trials(study))
    if len(spec.objectives) == 1:
        sign = -1.0 if spec.objectives[0].direction == "maximize" else 1.0
        return sorted(trials, key=lambda t: (sign * t.values[0], t.number))[:top]
    front = pareto_front(trials, spec.directions)
    sign = -1.0 if spec.directions[0] == "maximize" else 1.0
    return sorted(front, key=lambda t: (sign * t.values[0], t.number))


def distinct_configurations(trials: Sequence["FrozenTrial"]) -> list["FrozenTrial"]:
    """The first trial of each configuration (parameter values), in trial order."""
    first: dict[tuple[tuple[str, Any], ...], "FrozenTrial"] = {}
    for t in sorted(trials, key=lambda t: t.number):
        first.setdefault(tuple(sorted(t.params.items())), t)
    return list(first.values())


def pareto_front(trials: Sequence["FrozenTrial"], directions: Sequence[str]) -> list["FrozenTrial"]:
    """Trials no other trial dominates (at least as good in every objective, better in one)."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    scored = [(t, [s * v for s, v in zip(signs, t.values)]) for t in trials]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [t for t, v in scored if not any(dominates(w, v) for _, w in scored)]


#: Complete trials below which no importance is shown: a model of fewer trials describes the
#: sampler's path more than the objective.
MIN_IMPORTANCE_TRIALS = 10


def importance_evaluator(seed: int) -> Any:
    """fANOVA: a random forest fitted to every complete trial, its variance split by parameter.

    It models all parameters at once, so it reads a study whose sampler concentrated its trials
    where they pay off. PED-ANOVA (Optuna's default) compares the best 10% of trials with the
    trials sampled: on the 24 TPE trials of configs/search/quickstart.yaml it gave ``pages``
    0.00 and ``sleep_max_us`` 0.70, where the full grid gives ``pages`` 0.91 and ``sleep_max_us`` 0.00;
    fANOVA gave ``pages`` 0.99.
    """
    import optuna

    return optuna.importance.FanovaImportanceEvaluator(seed=seed)


def param_importances(study: "optuna.Study", *, seed: int, target: Any = None) -> dict[str, float] | str:
    """fANOVA importance of each parameter for ``target`` (default: the study's one objective).

    A one-line message replaces the scores when the study cannot tell: too few complete
    trials, or nothing varied.
    """
    import optuna
    from optuna.trial import TrialState

    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if complete < MIN_IMPORTANCE_TRIALS:
        return f"not shown: {complete} complete trials, importances need at least {MIN_IMPORTANCE_TRIALS}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = optuna.importance.get_param_importances(
                study, evaluator=importance_evaluator(seed), target=target)
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        return f"not available: {str(exc).splitlines()[0]}"
    return {name: float(v) for name, v in scores.items()}


def importances(study: "optuna.Study", spec: SearchSpec) -> dict[str, dict[str, float] | str]:
    """``param_importances`` per objective of the search (``importance_evaluator``)."""
    return {objective.name: param_importances(study, seed=spec.seed, target=importance_target(spec, i))
            for i, objective in enumerate(spec.objectives)}


def importance_target(spec: SearchSpec, i: int) -> Any:
    """None (the study's own objective) for one objective; else objective ``i``."""
    if len(spec.objectives) == 1:
        return None
    return lambda t: t.values[i]


def best_table(trials: Sequence["FrozenTrial"], spec: SearchSpec) -> str:
    """The trials as an aligned table: number, objective values, parameters, outcome."""
    import pandas as pd

    from sweep._summary import format_table

    rows = []
    for t in trials:
        row: dict[str, Any] = {"trial": t.number}
        row.update({o.name: v for o, v in zip(spec.objectives, t.values)})
        row.update({name: t.params.get(name) for name in spec.space.names})
        row["outcome"] = t.user_attrs.get("outcome", "")
        if t.user_attrs.get("seeded_from"):
            row["seeded_from"] = t.user_attrs["seeded_from"]
        rows.append(row)
    return format_table(pd.DataFrame(rows))


def summary_text(study: "optuna.Study", spec: SearchSpec, *, top: int = 5) -> str:
    """Best configurations (or Pareto front) and importances, as printed by ``flushsweep search``."""
    best = best_trials(study, spec, top)
    single = len(spec.objectives) == 1
    goal = ", ".join(f"{o.direction} {o.name}" for o in spec.objectives)
    head = f"best configurations ({goal}; feasible trials only):" if single else f"Pareto front ({goal}; feasible trials only):"
    lines = [head, best_table(best, spec) if best else "(no feasible complete trial yet)"]
    for name, scores in importances(study, spec).items():
        if isinstance(scores, str):
            lines.append(f"parameter importances ({name}): {scores}")
        else:
            shown = ", ".join(f"{p} {v:.2f}" for p, v in scores.items())
            lines.append(f"parameter importances ({name}, fANOVA): {shown}")
    return "\n".join(lines)


def write_plots(study: "optuna.Study", spec: SearchSpec, directory: str | Path) -> list[Path]:
    """Write PNG figures: optimisation history, importances, slice and contour per objective (plus the Pareto front).

    With one objective the files are ``history.png``, ``importances.png``,
    ``slice.png`` and ``contour.png``; with several, each gets ``-<objective>``
    and ``pareto.png`` is added. A figure that needs more trials is skipped.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    single = len(spec.objectives) == 1
    scores = importances(study, spec)

    def save(figure_or_axes: Any, name: str) -> None:
        axes = figure_or_axes
        if hasattr(axes, "flat"):
            axes = axes.flat[0]
        figure = axes.figure if hasattr(axes, "figure") else axes
        path = out_dir / name
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, objective in enumerate(spec.objectives):
            suffix = "" if single else f"-{_slug(objective.name)}"
            kw = {"target": lambda t, i=i: t.values[i], "target_name": objective.name}
            plots = {
                "history": lambda: ovm.plot_optimization_history(study, **kw),
                "importances": lambda: ovm.plot_param_importances(
                    study, evaluator=importance_evaluator(spec.seed), target=importance_target(spec, i), target_name=objective.name),
                "slice": lambda: ovm.plot_slice(study, **kw),
            }
            ranked = list(scores[objective.name]) if isinstance(scores[objective.name], dict) else spec.space.names
            if len(ranked) >= 2:
                plots["contour"] = lambda: ovm.plot_contour(study, params=ranked[:2], **kw)
            if not isinstance(scores[objective.name], dict):  # too few trials: no importance figure either
                del plots["importances"]
            for name, draw in plots.items():
                try:
                    save(draw(), f"{name}{suffix}.png")
                except (ValueError, RuntimeError, IndexError):  # too few trials for this figure
                    plt.close("all")
        if not single and len(spec.objectives) <= 3:
            try:
                save(ovm.plot_pareto_front(study, target_names=spec.objective_names), "pareto.png")
            except (ValueError, RuntimeError):
                plt.close("all")
    return written


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "objective"


__all__ = [
    "MIN_IMPORTANCE_TRIALS", "best_table", "best_trials", "distinct_configurations", "feasible_trials", "importance_evaluator",
    "importances", "pareto_front", "summary_text", "write_plots",
]
