"""Measurement CSVs: one measured configuration per row, RunConfig fields plus measured figures.

A column is one of:

- a RunConfig field (an empty cell takes the field's default);
- a measured figure: ``real_s``, ``user_s``, ``sys_s``, ``ops_per_s`` (an empty
  cell means "not measured");
- ``weight``: how much the row's figures count (default 1; 0 keeps a figure for
  the record and the report without fitting it), and ``<figure>_weight`` (e.g.
  ``sys_s_weight``) for one figure of the row;
- ``label``: a name for the report, and what ``relative_to`` refers to;
- ``relative_to``: the label of another row; this row's figures are then fitted
  as ratios to that row's (a relative criterion, e.g. "native and PV within
  5% of each other", when the absolute figures come from another setup).

Lines starting with ``#`` are comments, so a CSV can cite where its numbers
come from. Anything else is refused with one line naming the row or column and
the fix: a fit on a misread CSV is worse than no fit.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from workers import ConfigError, RunConfig, boot_crash, field_names

#: Measured figures a row may carry, as RunResult names them (seconds as `time` prints them; ops/s).
FIGURES: tuple[str, ...] = ("real_s", "user_s", "sys_s", "ops_per_s")
#: Per-figure weight columns, e.g. ``sys_s_weight``.
FIGURE_WEIGHTS: tuple[str, ...] = tuple(f"{f}_weight" for f in FIGURES)
#: Columns that are neither RunConfig fields nor figures.
EXTRA_COLUMNS: tuple[str, ...] = ("weight", *FIGURE_WEIGHTS, "label", "relative_to")


class CalibrationError(ValueError):
    """A calibration input or fit the user must fix; the message is one line that says how."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured point: the configuration that was measured and what was measured.

    Attributes:
        row: 1-based data row (comments and the header do not count).
        line: line of the file the row is on, for messages.
        config: the measured configuration (its ``profile`` is irrelevant: calibration supplies it).
        figures: measured figure name -> value (> 0), only the figures that were measured.
        weight: weight of this row's figures in the fit error (0: reported, not fitted).
        label: a name for the report (default: derived from the config).
        figure_weights: figure -> weight, overriding ``weight`` for that figure.
        relative_to: label of the row this row's figures are fitted as ratios to ("": absolute).
    """

    row: int
    line: int
    config: RunConfig
    figures: Mapping[str, float]
    weight: float = 1.0
    label: str = ""
    figure_weights: Mapping[str, float] = field(default_factory=dict)
    relative_to: str = ""

    def weight_of(self, figure: str) -> float:
        return float(self.figure_weights.get(figure, self.weight))

    @property
    def fitted(self) -> bool:
        """Whether any of the row's figures counts in the fit error."""
        return any(self.weight_of(f) > 0 for f in self.figures)

    @property
    def name(self) -> str:
        """The label, or a short description of the configuration."""
        if self.label:
            return self.label
        c = self.config
        mode = c.flush_mode if c.enlightenments or c.flush_mode != "native" else "native (no enl.)"
        return f"{mode} {c.vcpus}v/{c.pcpus}p {c.topology}"


@dataclass(frozen=True, slots=True)
class MeasurementSet:
    """A parsed measurement CSV and the identity of its bytes (recorded in every fitted profile)."""

    source: str
    sha256: str
    points: tuple[Measurement, ...]
    columns: tuple[str, ...] = field(default_factory=tuple)

    @property
    def figure_count(self) -> int:
        """Figures that count in the fit error (weight > 0)."""
        return sum(1 for p in self.points for f in p.figures if p.weight_of(f) > 0)

    @property
    def fitted_points(self) -> int:
        """Rows with at least one figure that counts: what a fit's constants must not outnumber."""
        return sum(1 for p in self.points if p.fitted)

    def reference(self, point: Measurement) -> Measurement | None:
        """The row ``point`` is relative to (None for an absolute row)."""
        if not point.relative_to:
            return None
        return next(p for p in self.points if p.label == point.relative_to)

    def __len__(self) -> int:
        return len(self.points)


def load_measurements(path: str | Path) -> MeasurementSet:
    """Read and validate a measurement CSV.

    Raises:
        CalibrationError: unreadable file, unknown column, bad cell, row without a figure, ...
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read the measurements: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CalibrationError(f"{path}: not UTF-8 text; save the measurements as a UTF-8 CSV") from None
    return parse_measurements(text, source=str(path), sha256=hashlib.sha256(data).hexdigest())


def parse_measurements(text: str, *, source: str = "<measurements>", sha256: str | None = None) -> MeasurementSet:
    """Parse CSV text (see the module docstring for the columns).

    Args:
        text: the CSV, comments allowed.
        source: how messages name the input.
        sha256: the hash of the file's bytes (default: of ``text`` as UTF-8).

    Raises:
        CalibrationError: one line naming the row/column and the fix.

    Example:
        >>> ms = parse_measurements("# 2018\\nvcpus,flush_mode,real_s\\n12,native,21.24\\n")
        >>> ms.points[0].config.vcpus, dict(ms.points[0].figures)
        (12, {'real_s': 21.24})
    """
    digest = sha256 or hashlib.sha256(text.encode()).hexdigest()
    lines = re.split(r"\r\n|\r|\n", text)  # not str.splitlines: a CSV line may hold \x1e, \x85, \u2028 ...
    numbered = [(i, ln) for i, ln in enumerate(lines, start=1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not numbered:
        raise CalibrationError(f"{source}: no header and no measured points; the first non-comment line names the columns")
    try:
        records = list(csv.reader(io.StringIO("\n".join(ln for _, ln in numbered))))
    except csv.Error as exc:
        raise CalibrationError(f"{source}: not a valid CSV: {exc}") from None
    if len(records) != len(numbered):  # a quoted cell spanning lines would shift every line number
        raise CalibrationError(f"{source}: a quoted cell spans several lines; keep each measured point on one line")
    header = [h.strip() for h in records[0]]
    _check_header(header, source, numbered[0][0])
    points = tuple(
        _parse_row(header, cells, row=n, line=line, source=source)
        for n, ((line, _), cells) in enumerate(zip(numbered[1:], records[1:]), start=1)
    )
    if not points:
        raise CalibrationError(f"{source}: a header but no measured points; add one row per measured configuration")
    _check_references(points, source)
    if not any(p.fitted for p in points):
        raise CalibrationError(f"{source}: every figure has weight 0, so there is nothing to fit; give some a weight > 0")
    return MeasurementSet(source=source, sha256=digest, points=points, columns=tuple(header))


def format_measurements(points: Sequence[Measurement], *, comments: Sequence[str] = ()) -> str:
    """The CSV ``parse_measurements`` reads back as the same points (row/line numbers aside).

    Columns: the RunConfig fields that differ from their defaults in some point,
    the figures any point carries, ``weight`` if any point's is not 1, ``label``
    if any point has one. Useful for writing measurements taken by a script, or
    synthetic ones from the engine itself.
    """
    default = RunConfig().to_dict()
    fields = [n for n in field_names() if n != "profile" and any(p.config.to_dict()[n] != default[n] for p in points)]
    figures = [f for f in FIGURES if any(f in p.figures for p in points)]
    header = fields + figures + (["weight"] if any(p.weight != 1.0 for p in points) else [])
    header += [f"{f}_weight" for f in FIGURES if any(f in p.figure_weights for p in points)]
    header += ["relative_to"] if any(p.relative_to for p in points) else []
    header += ["label"] if any(p.label for p in points) else []  # last: a label starting with '#' is no comment
    buf = io.StringIO()
    for line in comments:
        buf.write(f"# {line}\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for p in points:
        cells = {**p.config.to_dict(), **p.figures, "label": p.label, "weight": p.weight, "relative_to": p.relative_to,
                 **{f"{f}_weight": w for f, w in p.figure_weights.items()}}
        writer.writerow([_cell(cells.get(c)) for c in header])
    return buf.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _check_header(header: list[str], source: str, line: int) -> None:
    known = [*field_names(), *FIGURES, *EXTRA_COLUMNS]
    seen: set[str] = set()
    for name in header:
        where = f"{source}:{line}: column {name!r}"
        if not name:
            raise CalibrationError(f"{source}:{line}: an empty column name; name every column (RunConfig fields, {', '.join(FIGURES)})")
        if name in seen:
            raise CalibrationError(f"{where} appears twice; keep one")
        seen.add(name)
        if name == "profile":
            raise CalibrationError(f"{where}: the cost profile is what calibrate fits; remove the column and pass --base PROFILE")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"use RunConfig fields, the figures {', '.join(FIGURES)}, {', '.join(EXTRA_COLUMNS[:1] + EXTRA_COLUMNS[-2:])} or <figure>_weight"
            raise CalibrationError(f"{where} is neither a RunConfig field nor a measured figure; {hint}")
    if not any(f in seen for f in FIGURES):
        raise CalibrationError(f"{source}:{line}: no measured figure column; add at least one of {', '.join(FIGURES)}")


def _parse_row(header: list[str], cells: list[str], *, row: int, line: int, source: str) -> Measurement:
    where = f"{source}:{line} (row {row})"
    if len(cells) > len(header):
        raise CalibrationError(f"{where}: {len(cells)} cells but {len(header)} columns; remove the extra cells or name their columns")
    values = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header)}
    figures: dict[str, float] = {}
    for name in FIGURES:
        if values.get(name, ""):
            figures[name] = _positive(values[name], f"{where}: {name}", "a measured figure")
    if not figures:
        raise CalibrationError(f"{where}: no measured figure; fill at least one of {', '.join(f for f in FIGURES if f in values)}")
    weight = _weight(values.get("weight", ""), f"{where}: weight")
    figure_weights: dict[str, float] = {}
    for name in FIGURES:
        text = values.get(f"{name}_weight", "")
        if text:
            if name not in figures:
                raise CalibrationError(f"{where}: {name}_weight is set but {name} was not measured; clear one of them")
            figure_weights[name] = _weight(text, f"{where}: {name}_weight")
    config_cells = {k: v for k, v in values.items() if k in set(field_names()) and v != ""}
    try:
        config = RunConfig.from_dict(config_cells)
    except ConfigError as exc:
        raise CalibrationError(f"{where}: {exc}") from None
    crash = boot_crash(config)
    if crash:
        raise CalibrationError(
            f"{where}: this configuration crashes at boot ({crash}: WS2016, >64 vCPUs, non-flat topology, enlightenments "
            "without PV flush), so it has no figures to fit; a native run of such a VM was measured with enlightenments=false"
        )
    return Measurement(row=row, line=line, config=config, figures=figures, weight=weight, label=values.get("label", ""),
                       figure_weights=figure_weights, relative_to=values.get("relative_to", ""))


def _check_references(points: Sequence[Measurement], source: str) -> None:
    """Every ``relative_to`` names exactly one other row, which measured the same figures."""
    for p in points:
        if not p.relative_to:
            continue
        where = f"{source}:{p.line} (row {p.row}): relative_to {p.relative_to!r}"
        refs = [q for q in points if q.label == p.relative_to]
        if not refs:
            raise CalibrationError(f"{where} is no row's label; give the reference row that label")
        if len(refs) > 1:
            raise CalibrationError(f"{where} labels {len(refs)} rows; make the reference row's label unique")
        if refs[0] is p:
            raise CalibrationError(f"{where} is this row itself; name another row")
        missing = [f for f in p.figures if f not in refs[0].figures]
        if missing:
            raise CalibrationError(f"{where} did not measure {missing[0]}, so there is no ratio to fit; measure it there or clear it here")


def _weight(text: str, where: str) -> float:
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise CalibrationError(f"{where}: {text!r} is not a number; write a weight like 1 or 0.5") from None
    if not math.isfinite(value) or value < 0:
        raise CalibrationError(f"{where}: a weight must be a finite number >= 0 (0: report, do not fit), got {text!r}")
    return value


def _positive(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CalibrationError(f"{where}: {text!r} is not a number; write {what} as a plain decimal like 21.24") from None
    if not math.isfinite(value) or value <= 0:
        raise CalibrationError(f"{where}: {what} must be a finite number > 0, got {text!r}")
    return value


__all__ = [
    "EXTRA_COLUMNS",
    "FIGURES",
    "FIGURE_WEIGHTS",
    "CalibrationError",
    "Measurement",
    "MeasurementSet",
    "format_measurements",
    "load_measurements",
    "parse_measurements",
]
