"""Writing a fitted profile: the YAML the engine loads, recording what it was fitted to.

The file is the best candidate exactly (its content digest is checked after
writing), so runs computed during the fit are the same runs a sweep under the
new profile would store, up to the profile's name. Unfitted constants keep their
base value and the base file's comment; each fitted one gets a comment with its
base value, ratio and bounds. Written atomically: a crash leaves the old file.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import yaml

from sweep.calibrate._fit import FitResult
from workers import cost_names, profile_from_mapping
from workers.profiles import choice_names

_COST_LINE = re.compile(r"^\s+(?P<name>[a-z_]+):\s*[^#\s]+\s*(?:#\s?(?P<comment>.*))?$")


def base_comments(path: str | Path | None) -> dict[str, str]:
    """Cost name -> the comment on its line in a profile YAML (empty when there is none or no file)."""
    if path is None:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _COST_LINE.match(line)
        if m and m.group("comment"):
            out[m.group("name")] = m.group("comment").strip()
    return out


def profile_yaml(result: FitResult, *, name: str, max_error: float, comments: Mapping[str, str] | None = None) -> str:
    """The fitted profile as YAML text.

    Raises:
        ValueError: the result has no best trial.
    """
    if result.best is None:
        raise ValueError("no complete trial: nothing to write")
    comments = comments or {}
    space, ms, fitted = result.space, result.measurements, result.best.profile
    passed = result.error <= max_error
    description = (
        f"Fitted by flushsweep calibrate to {Path(ms.source).name} ({ms.fitted_points} points) from base {space.base.name}; "
        f"RMS relative error {result.error:.1%}."
    )
    if not passed:
        description = f"FIT FAILED (error {result.error:.1%} > {max_error:.1%}), written with --force. " + description
    fitted_to: dict[str, Any] = {
        "measurements": ms.source,
        "sha256": ms.sha256,
        "rows": len(ms),
        "figures": ms.figure_count,
        "constants": list(space.names),
        "base": space.base.name,
        "base_digest": space.base.digest(),
        "error": round(result.error, 6),
        "max_error": max_error,
        "passed": passed,
        "study": result.study,
        "trials": result.trials,
        "best_trial": result.best_trial,
        "sampler": result.sampler,
        "seed": result.seed,
        "replicates": result.replicates,
    }
    head = yaml.safe_dump({"name": name, "description": description, "fitted_to": fitted_to},
                          sort_keys=False, default_flow_style=None, width=1000)
    bounds = {b.name: b for b in space.bounds}
    width = max(len(n) for n in cost_names()) + 2 + 12
    lines = [
        f"# Written by `flushsweep calibrate` (study {result.study}); refit with the same command to reproduce.",
        head.rstrip("\n"),
        "costs:",
    ]
    for n in cost_names():
        value = fitted.cost(n)
        entry = f"  {n}: {_yaml_number(value)}"
        if n in bounds:
            b = bounds[n]
            note = f"fitted: base {_yaml_number(b.base)} x{value / b.base:.3f}, bounds {_yaml_number(b.low)}..{_yaml_number(b.high)}"
        else:
            note = comments.get(n, "")
        lines.append(f"{entry.ljust(width)}  # {note}" if note else entry)
    lines.append("choices:  # unconfirmed mechanisms ([U]), kept from the base profile")
    for n in choice_names():
        entry = f"  {n}: {yaml.safe_dump(fitted.choice(n)).splitlines()[0]}"
        note = comments.get(n, "")
        lines.append(f"{entry.ljust(width)}  # {note}" if note else entry)
    return "\n".join(lines) + "\n"


def write_profile(result: FitResult, path: str | Path, *, name: str, max_error: float,
                  comments: Mapping[str, str] | None = None) -> Path:
    """Write the fitted profile YAML atomically and check it loads back as exactly the best candidate."""
    text = profile_yaml(result, name=name, max_error=max_error, comments=comments)
    loaded = profile_from_mapping(yaml.safe_load(text), source=str(path))
    assert result.best is not None
    if loaded.digest() != result.best.profile.digest():  # a number that did not survive formatting
        raise RuntimeError(f"{path}: the written constants differ from the fitted ones; not written")
    return write_text_atomically(Path(path), text)


def write_text_atomically(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def report_path(profile_path: str | Path) -> Path:
    """``NEW.yaml`` -> ``NEW.fit.txt``."""
    p = Path(profile_path)
    return p.with_name(f"{p.stem}.fit.txt")


def _yaml_number(value: float) -> str:
    """A number YAML reads back as the same float (integers without '.0'; never an 'e' YAML would read as text)."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    import numpy as np

    return np.format_float_positional(float(value), trim="-")


__all__ = ["base_comments", "profile_yaml", "report_path", "write_profile", "write_text_atomically"]
