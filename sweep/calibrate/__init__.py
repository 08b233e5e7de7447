"""Calibration: fit a cost profile's constants to a few points measured on a real host.

Users measure a handful of configurations; ``fit`` searches the named cost
constants (log scale, Optuna) until the engine reproduces those measurements,
simulating each candidate's points through the sweep machinery (Ray by
default), with the study and every run kept in the store so a fit resumes
where it stopped. ``flushsweep calibrate`` is the command-line face.

Example:
    >>> from sweep.calibrate import SearchSpace, parse_measurements
    >>> from workers import load_profile
    >>> ms = parse_measurements("vcpus,pcpus,flush_mode,real_s\\n8,4,native,0.05\\n")
    >>> SearchSpace.build(load_profile("literature"), ["fault_ns"]).bounds[0].high
    4800.0
"""

from sweep.calibrate._fit import SAMPLERS, FitResult, FitSettings, check_enough_points, default_study_name, fit
from sweep.calibrate._measurements import (
    EXTRA_COLUMNS,
    FIGURE_WEIGHTS,
    FIGURES,
    CalibrationError,
    Measurement,
    MeasurementSet,
    format_measurements,
    load_measurements,
    parse_measurements,
)
from sweep.calibrate._objective import Evaluation, Residual, evaluate, rms_relative_error
from sweep.calibrate._output import base_comments, profile_yaml, report_path, write_profile
from sweep.calibrate._report import failure_banner, format_report
from sweep.calibrate._space import DEFAULT_SPREAD, SIGNIFICANT_DIGITS, Bound, SearchSpace, parse_bound, round_significant
from sweep.calibrate._task import CandidateTask, candidate_task, execute_candidate_batch

__all__ = [
    "DEFAULT_SPREAD",
    "EXTRA_COLUMNS",
    "FIGURES",
    "FIGURE_WEIGHTS",
    "SAMPLERS",
    "SIGNIFICANT_DIGITS",
    "Bound",
    "CalibrationError",
    "CandidateTask",
    "Evaluation",
    "FitResult",
    "FitSettings",
    "Measurement",
    "MeasurementSet",
    "Residual",
    "SearchSpace",
    "base_comments",
    "candidate_task",
    "check_enough_points",
    "default_study_name",
    "evaluate",
    "execute_candidate_batch",
    "failure_banner",
    "fit",
    "format_measurements",
    "format_report",
    "load_measurements",
    "parse_bound",
    "parse_measurements",
    "profile_yaml",
    "report_path",
    "rms_relative_error",
    "round_significant",
    "write_profile",
]
