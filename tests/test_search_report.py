"""What `flushsweep search` prints about a study: importances that agree with the objective, each configuration once.

The studies here are synthetic (an objective known in closed form, sampled by the search's own TPE
set-up), so what the report should say is known without running the engine.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from sweep.search import best_trials, importances, make_sampler, parse_search_spec, summary_text, write_plots

SPEC = parse_search_spec(
    "name: synth\nbase: {guest_os: windows-2016, workload: mmap-munmap, vcpus: 8}\n"
    "space:\n  overcommit: [1, 2, 4]\n  pages: [16, 64, 256, 1024]\n  sleep_max_us: {low: 0, high: 200, step: 50}\n"
    "  threads: {low: 4, high: 16, step: 4}\nobjectives: [benefit_real]\nconstraints: [outcome == ok]\nsampler: tpe\nseed: 0\n"
)


def pages_decide(params: dict) -> float:
    """Like the quickstart's landscape: small mappings pay off; the other parameters barely matter."""
    return (1.6 - 0.35 * math.log(params["pages"] / 16, 4) + 0.02 * math.log2(params["overcommit"])
            + 0.0005 * params["sleep_max_us"] - 0.002 * params["threads"])


def tpe_study(trials: int, seed: int) -> "object":
    """A study as `flushsweep search` samples it (TPE, constant liar, the spec's space), told ``pages_decide``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(dataclasses.replace(SPEC, seed=seed)))
    for _ in range(trials):
        trial = study.ask(SPEC.space.distributions())
        trial.set_constraint("outcome == ok", 0.0)
        study.tell(trial, pages_decide(trial.params))
    return study


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_importances_of_a_small_tpe_study_name_the_parameter_that_decides_the_objective(seed: int) -> None:
    """24 TPE trials concentrate on small mappings; the importance must still credit ``pages`` (PED-ANOVA gave it 0.01)."""
    study = tpe_study(24, seed)
    scores = importances(study, SPEC)["benefit_real"]
    assert isinstance(scores, dict) and next(iter(scores)) == "pages" and scores["pages"] > 0.8
    assert math.isclose(sum(scores.values()), 1.0)
    line = summary_text(study, SPEC).splitlines()[-1]
    assert line.startswith("parameter importances (benefit_real, fANOVA): pages ")


def test_too_few_trials_show_no_importance_and_no_importance_figure(tmp_path: Path) -> None:
    study = tpe_study(6, 0)
    assert importances(study, SPEC)["benefit_real"] == "not shown: 6 complete trials, importances need at least 10"
    assert "parameter importances (benefit_real): not shown: 6 complete trials" in summary_text(study, SPEC)
    written = {p.name for p in write_plots(study, SPEC, tmp_path)}
    assert "importances.png" not in written and "history.png" in written


def test_the_best_configurations_show_each_configuration_once() -> None:
    import optuna

    study = optuna.create_study(direction="maximize")
    dists = SPEC.space.distributions()
    best = {"overcommit": 4, "pages": 16, "sleep_max_us": 100, "threads": 12}
    others = [{**best, "threads": t} for t in (4, 8, 16)] + [{**best, "pages": 64}, {**best, "pages": 256}]
    value = {tuple(sorted(p.items())): 1.65 - 0.01 * i for i, p in enumerate([best, *others])}
    # the sampler proposed the best configuration three times (its trials reuse the same runs: the same value)
    for params in [best, others[0], best, best, *others[1:]]:
        trial = optuna.trial.create_trial(params=params, distributions=dists, value=value[tuple(sorted(params.items()))],
                                          user_attrs={"outcome": "ok"})
        study.add_trial(trial)
    top = best_trials(study, SPEC, top=5)
    assert len(top) == 5 and len({tuple(sorted(t.params.items())) for t in top}) == 5
    assert top[0].params == best and top[0].number == 0  # the configuration's first trial stands for it
    table = summary_text(study, SPEC, top=5).splitlines()[3:8]
    assert sum(1 for line in table if line.split()[2:6] == ["4", "16", "100", "12"]) == 1
