"""The seed profile is reproducible: `flushsweep calibrate` on the 2018 measurement lands where the profile says.

configs/profiles/seed-ws2016.yaml records (``fitted_to.constants``) which
constants were fitted and the fit's RMS relative error (``fitted_to.error``);
refitting those, starting from the profile's own values, must give a profile
that is no worse than that, and whose no-overcommit PV/native ratio (the CSV's
relative row) is within +-5% of the measured one. The refit profile is
simulated again here, independently of the fit. (Which figures model 3 cannot
reach, and why: tests/test_calibration_seed.py and the README.)
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import yaml

from sweep.calibrate import evaluate, load_measurements
from sweep_fixtures import REPO, flushsweep
from workers import RunConfig, load_profile, simulate

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SEED_CSV = REPO / "configs" / "measurements" / "seed-2018.csv"
SEED_PROFILE = REPO / "configs" / "profiles" / "seed-ws2016.yaml"
#: The engine issue's acceptance for the relative criterion: native vs PV without overcommit within 5%.
RELATIVE_BAND = 0.05


def _figures(args: tuple[RunConfig, str]) -> dict[str, float] | None:
    config, profile_path = args
    result = simulate(config, load_profile(profile_path))
    return None if result.outcome != "ok" else {"real_s": result.real_s, "user_s": result.user_s, "sys_s": result.sys_s,
                                                "ops_per_s": result.ops_per_s}


def test_refitting_the_seed_profile_reproduces_the_2018_measurement(tmp_path: Path) -> None:
    if not SEED_PROFILE.exists():
        pytest.fail(f"{SEED_PROFILE.relative_to(REPO)} is missing: fit it with `flushsweep calibrate {SEED_CSV.relative_to(REPO)} ...`")
    constants = (yaml.safe_load(SEED_PROFILE.read_text()).get("fitted_to") or {}).get("constants")
    assert constants, f"{SEED_PROFILE.name} must say which constants were fitted (fitted_to: constants: [...])"
    out = tmp_path / "refit.yaml"
    recorded = float(yaml.safe_load(SEED_PROFILE.read_text())["fitted_to"]["error"])
    proc = flushsweep("calibrate", str(SEED_CSV), "--base", "seed-ws2016", "--fit", ",".join(constants), "--out", str(out),
                      "--store", str(tmp_path / "store"), "--trials", "3", "--workers", "2",
                      "--max-error", f"{recorded + 0.01:.4f}", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    refit = load_profile(str(out))
    assert yaml.safe_load(out.read_text())["fitted_to"]["constants"] == constants

    ms = load_measurements(SEED_CSV)
    with ProcessPoolExecutor(2) as pool:
        simulated = list(pool.map(_figures, [(p.config, str(out)) for p in ms.points]))
    ev = evaluate(refit, ms.points, simulated)
    assert not ev.crashed
    assert ev.error <= recorded + 0.01  # the refit starts at the profile: it cannot be worse
    fitted = [r for r in ev.residuals if r.weight > 0]
    assert {r.reference is not None for r in fitted} == {True, False}  # both kinds of criterion are checked
    for r in fitted:
        if r.reference is not None:
            assert abs(r.relative) <= RELATIVE_BAND, f"{r.point.name} {r.label}: {r.simulated:.4g} vs {r.measured:.4g}"
