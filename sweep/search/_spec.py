"""Search specs (configs/search/*.yaml): parsing and validation with line numbers.

A search spec names a ``base`` RunConfig, a ``space`` of fields to search, how
each trial pairs the PV run with its baseline, the objectives and constraints,
and how to search. Everything a user can get wrong is reported as
``file:line: field: problem`` before anything is stored::

    name: pv-sweet-spot
    base: {guest_os: windows-2016, workload: mmap-munmap, iterations: 10, pages: 1024}
    space:
      vcpus: {low: 4, high: 32, step: 4}      # int range (inclusive), by step
      pages: {low: 16, high: 4096, log: true} # log-uniform
      topology: [flat, smt2, {cores-per-socket: 4}]
      overcommit: [1, 2, 4]                   # pcpus = round(host vCPUs / overcommit)
    compare: {baseline: native, pv: hyperv-pv, baseline_overrides: {enlightenments: false}}
    replicates: 2                             # seeds base.seed, base.seed+1: metrics averaged
    objectives:
      - benefit_sys                           # = native.sys_s / pv.sys_s
      - {name: consolidation, expr: vcpus / pcpus}
    direction: maximize                       # default for objectives that give none
    constraints: [outcome == ok, pv.lat_p99_us <= 500]
    trials: 40                                # evaluated trials (seeded ones not counted)
    parallel: 2                               # trials in flight
    sampler: tpe                              # random, gp, cmaes, nsga2, grid; or {name: tpe, n_startup_trials: 5}
    seed: 0                                   # the sampler's seed
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Literal, Mapping

from sweep._model import SpecModel, spec_field, validate_section
from sweep._model import did_you_mean as _did_you_mean
from sweep._spec import OVERCOMMIT, Compare, Impossible, name_field
from sweep._spec import _Parser as _SweepParser
from sweep._spec import is_number as _is_number
from sweep._yaml import MarkedDocument, Path, SpecError, load_marked, read_spec_file
from sweep.search._expr import Expr, ExprError, compile_expr
from sweep.search._space import MAX_GRID, Choice, FloatRange, IntRange, Param, Space, build_config, topology_label
from workers.config import FIELD_CHOICES as _CHOICES
from workers.config import FLUSH_MODES, ConfigError, RunConfig, field_names

#: Samplers by spec name, and the Optuna class each one is.
SAMPLERS = {
    "tpe": "TPESampler", "random": "RandomSampler", "gp": "GPSampler", "cmaes": "CmaEsSampler",
    "nsga2": "NSGAIISampler", "grid": "GridSampler",
}
#: Extra packages a sampler needs, and how to get them.
SAMPLER_NEEDS = {"gp": ("torch", "scipy"), "cmaes": ("cmaes",)}
#: Sampler arguments the search sets itself.
SAMPLER_RESERVED = ("seed", "search_space", "constraints_func")
PV_MODES = tuple(m for m in FLUSH_MODES if m != "native")
DIRECTIONS = ("maximize", "minimize")

Direction = Literal["maximize", "minimize"]
FlushMode = Literal[FLUSH_MODES]  # type: ignore[valid-type]
PvMode = Literal[PV_MODES]  # type: ignore[valid-type]


class SearchCompare(SpecModel):
    """``compare:``: the flush mode of each trial's baseline and of its PV run, and the baseline's other fields."""

    NOT_A_MAPPING = "expected {baseline: native, pv: hyperv-pv, baseline_overrides: {...}}"
    baseline: FlushMode = "native"
    pv: PvMode = spec_field("hyperv-pv", problem=f"{{input!r}} is not a PV flush mode; use one of {', '.join(PV_MODES)}")
    baseline_overrides: dict[str, Any] | None = spec_field(
        None, problem="expected a mapping of RunConfig fields, e.g. {enlightenments: false}")


class SearchDocument(SpecModel):
    """The keys of a search spec, their types and defaults; fields, ranges and expressions are checked by the parser."""

    NOT_A_MAPPING = "a search spec is a mapping with at least 'name', 'space' and 'objectives'"
    name: str = name_field("search", hint="name the search (it is also the Optuna study's name)")
    description: str = ""
    base: dict[str, Any] | None = spec_field(None, problem="expected a mapping of RunConfig fields, e.g. {workload: mmap-munmap}")
    space: dict[str, Any] = spec_field(
        hint="give the fields to search, e.g. space: {vcpus: {low: 4, high: 32, step: 4}}", min_length=1,
        problem="expected a mapping of field -> range or list, e.g. {vcpus: {low: 4, high: 32, step: 4}}")
    compare: SearchCompare | None = None
    replicates: int = spec_field(1, ge=1, what="seeds per trial, averaged")
    objectives: Any = spec_field(hint="e.g. objectives: [benefit_sys] (native.sys_s / pv.sys_s, maximized)")
    direction: Direction = "maximize"
    constraints: Any = None
    trials: int = spec_field(50, ge=1, what="trials to evaluate")
    parallel: int = spec_field(1, ge=1, what="trials in flight")
    sampler: Any = "tpe"
    seed: int = spec_field(0, ge=0, what="the sampler's seed")



@dataclass(frozen=True, slots=True)
class Objective:
    """One objective: its name (shown in the dashboard), expression and direction."""

    name: str
    expr: Expr
    direction: Direction


@dataclass(frozen=True, slots=True)
class Constraint:
    """A condition a good configuration must meet; Optuna sees its violation (0 when met)."""

    name: str
    expr: Expr


@dataclass(frozen=True, slots=True)
class SamplerChoice:
    name: str
    options: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SearchSpec:
    """A validated search spec. ``text`` is stored with the search, so it resumes without the file."""

    name: str
    description: str
    base: Mapping[str, Any]
    space: Space
    compare: Compare
    pv_mode: str
    replicates: int
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]
    trials: int
    parallel: int
    sampler: SamplerChoice
    seed: int
    source: str
    text: str
    lines: Mapping[Path, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def first_seed(self) -> int:
        return int(self.base.get("seed", 0))

    def error(self, path: Path, problem: str) -> SpecError:
        return MarkedDocument(None, dict(self.lines), self.source).error(path, problem)


def load_search_spec(path: str | FsPath) -> SearchSpec:
    """Read and validate a search spec file.

    Raises:
        SpecError: ``file:line: field: problem`` for anything invalid, or when the file cannot be read.
    """
    return parse_search_spec(read_spec_file(path, "search spec"), source=str(path))


def parse_search_spec(text: str, source: str = "<search>") -> SearchSpec:
    """Validate a search spec's YAML text.

    Example:
        >>> spec = parse_search_spec("name: s\\nspace: {vcpus: {low: 4, high: 16, step: 4}}\\nobjectives: [benefit_sys]\\n")
        >>> spec.space.names, spec.directions, spec.sampler.name
        (['vcpus'], ['maximize'], 'tpe')
    """
    return _Parser(load_marked(text, source), text).parse()


# --- the parser ------------------------------------------------------------------


_DEFAULTS = {name: f.default for name, f in RunConfig.__dataclass_fields__.items()}
_INTS = {n for n, v in _DEFAULTS.items() if isinstance(v, int) and not isinstance(v, bool)}
_FLOATS = {n for n, v in _DEFAULTS.items() if isinstance(v, float)}



_COMPATIBLE = {"a whole number": ("a whole number",), "a number": ("a number", "a whole number"), "true or false": ("true or false",), "a word": ("a word",)}


def _kind(value: Any) -> str | None:
    """How a sampler option's default reads, so a value of another kind is refused before Optuna fails mid-search."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a word"
    return None



class _Parser(_SweepParser):
    """A search spec shares base fields, values and errors with sweep specs (the sweep parser)."""

    def parse(self) -> SearchSpec:
        model = validate_section(SearchDocument, self.doc.value, self.doc)
        base = self._base(model.base)
        space = self._space(model.space, base)
        compare, pv_mode = self._compare(model.compare or SearchCompare())
        objectives = self._objectives(model.objectives, model.direction)
        constraints = self._constraints(model.constraints)
        sampler = self._sampler(model.sampler, space, len(objectives))
        self._check_pairing(base, space, compare, pv_mode)
        return SearchSpec(
            name=model.name, description=model.description, base=base, space=space, compare=compare, pv_mode=pv_mode,
            replicates=model.replicates, objectives=objectives, constraints=constraints, trials=model.trials,
            parallel=model.parallel, sampler=sampler, seed=model.seed, source=self.doc.source, text=self.text,
            lines=self.doc.lines,
        )

    # --- sections ---------------------------------------------------------------
    def _base(self, raw: dict[str, Any] | None) -> dict[str, Any]:
        if raw is None:
            return {}
        base: dict[str, Any] = {}
        for key, value in raw.items():
            path: Path = ("base", key)
            self._check_field(path, key)
            if key == "flush_mode":
                raise self.err(path, "each trial runs both flush modes; set them with compare: {baseline: ..., pv: ...}")
            base[key] = self._value(key, value, path)
        if "pcpus" in base and OVERCOMMIT in base:
            raise self.err(("base", OVERCOMMIT), "pcpus and overcommit both given; keep one (overcommit = host vCPUs / pcpus)")
        return base

    def _space(self, raw: dict[str, Any], base: dict[str, Any]) -> Space:
        params: list[Param] = []
        for key, spec in raw.items():
            path: Path = ("space", key)
            self._check_field(path, key)
            if key == "flush_mode":
                raise self.err(path, "flush mode is what each trial compares; set compare.baseline and compare.pv")
            if key == "seed":
                raise self.err(path, "seeds come from replicates (base.seed, base.seed+1, ...); a search does not tune them")
            if key in base:
                raise self.err(path, f"{key} is also in base; keep it in one place")
            if key in ("pcpus", OVERCOMMIT) and ({"pcpus", OVERCOMMIT} - {key}) & (set(raw) | set(base)):
                raise self.err(path, "pcpus and overcommit are both set; search one (overcommit = host vCPUs / pcpus)")
            params.append(self._param(key, spec, path))
        space = Space(tuple(params))
        for p in params:
            self._probe(p, base, space)
        return space

    def _param(self, name: str, spec: Any, path: Path) -> Param:
        if isinstance(spec, list):
            if not spec:
                raise self.err(path, "empty list; give at least two values to choose from")
            values = [self._value(name, v, (*path, i)) for i, v in enumerate(spec)]
            labels = [topology_label(v) if name == "topology" else self._label(name, v, spec[i]) for i, v in enumerate(values)]
            for i, label in enumerate(labels):
                if label in labels[:i]:
                    raise self.err((*path, i), f"{spec[i]!r} is listed twice")
            return Choice(name, tuple(values), tuple(labels))
        if not isinstance(spec, dict):
            raise self.err(path, "expected {low: a, high: b} (with step or log: true) or a list of choices")
        if name == "topology" or (name not in _INTS and name not in _FLOATS and name != OVERCOMMIT):
            raise self.err(path, f"{name} is not numeric; list its choices, e.g. [{self._example(name)}]")
        for key in spec:
            if key not in ("low", "high", "step", "log"):
                raise self.err((*path, key), f"unknown key; {_did_you_mean(key, ['low', 'high', 'step', 'log'])}")
        for key in ("low", "high"):
            if key not in spec:
                raise self.err(path, f"{key}: missing; a range is {{low: a, high: b}} (inclusive)")
            if not _is_number(spec[key]):
                raise self.err((*path, key), f"expected a number, got {spec[key]!r}")
        low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
        if not isinstance(log, bool):
            raise self.err((*path, "log"), f"expected true or false, got {log!r}")
        if high < low:
            raise self.err((*path, "high"), f"must be >= low ({low}), got {high}")
        if log and low <= 0:
            raise self.err((*path, "low"), f"a log range needs low > 0, got {low}")
        if step is not None:
            if not _is_number(step) or step <= 0:
                raise self.err((*path, "step"), f"expected a number > 0, got {step!r}")
            if log:
                raise self.err((*path, "step"), "step and log: true exclude each other; drop one")
        if name in _INTS:
            for key, v in (("low", low), ("high", high), ("step", step)):
                if v is not None and not (isinstance(v, int) or float(v).is_integer()):
                    raise self.err((*path, key), f"{name} is a whole number; got {v}")
            ilow, ihigh, istep = int(low), int(high), int(step or 1)
            if (ihigh - ilow) % istep:
                raise self.err((*path, "high"), f"{ihigh} is not low + a multiple of step {istep}; use {ilow + (ihigh - ilow) // istep * istep}")
            return IntRange(name, ilow, ihigh, istep, log)
        if name == OVERCOMMIT and low <= 0:
            raise self.err((*path, "low"), f"overcommit is host vCPUs / pcpus, > 0; got {low}")
        fstep = float(step) if step is not None else None
        if fstep is not None and abs(round((high - low) / fstep) * fstep - (high - low)) > 1e-9:
            raise self.err((*path, "high"), f"{high} is not low + a multiple of step {fstep:g}")
        return FloatRange(name, float(low), float(high), fstep, log)

    def _label(self, name: str, value: Any, raw: Any) -> Any:
        if name == OVERCOMMIT:
            return raw  # as written: 4 reads better than 4.0 in the dashboard
        return value

    def _example(self, name: str) -> str:
        if name == "topology":
            return "flat, smt2, {cores-per-socket: 4}"
        if name in _CHOICES:
            return ", ".join(_CHOICES[name][:2])
        return "true, false" if isinstance(_DEFAULTS.get(name), bool) else "a, b"

    def _probe(self, p: Param, base: dict[str, Any], space: Space) -> None:
        """A value no configuration can use (e.g. ``vcpus: {low: 0, ...}``) is an error at that value.

        A topology is tried with every searched vcpus value (``{cores-per-socket: 3}``
        only needs one vcpus it divides); other values are tried with the base alone.
        """
        contexts: list[dict[str, Any]] = [{}]
        if p.name == "topology" and "vcpus" in space.names:
            vcpus = space.by_name("vcpus")
            if vcpus.grid_size() > 4096:
                return
            contexts = [{"vcpus": vcpus.field_value(v)} for v in vcpus.grid()]
        for key, value in p.probe_values():
            problems: list[str] = []
            for context in contexts:
                try:
                    build_config(base, {**context, p.name: value})
                except Impossible as exc:
                    if exc.field == p.name or (p.name == OVERCOMMIT and exc.field == "pcpus"):
                        problems.append(exc.problem)
                        continue
                break  # this context can use the value (or fails for another field's sake)
            if len(problems) == len(contexts):
                raise self.err(("space", p.name, key), problems[0])

    def _compare(self, raw: SearchCompare) -> tuple[Compare, str]:
        path: Path = ("compare",)
        baseline, pv = raw.baseline, raw.pv
        if pv == baseline:
            raise self.err((*path, "pv"), f"the PV run and its baseline are both {pv}; compare two flush modes")
        overrides: dict[str, Any] = {}
        for key, value in (raw.baseline_overrides or {}).items():
            opath = (*path, "baseline_overrides", key)
            if key not in field_names():
                raise self.err(opath, f"unknown RunConfig field; {_did_you_mean(key, field_names())}")
            if key == "flush_mode":
                raise self.err(opath, "set the baseline's flush mode with compare.baseline")
            if key in ("topology", "vcpus", "seed"):
                raise self.err(opath, f"a baseline must keep the {key} of the run it is paired with")
            overrides[key] = self._value(key, value, opath)
        return Compare("flush_mode", baseline, overrides, self.doc.line(path)), pv

    def _check_pairing(self, base: dict[str, Any], space: Space, compare: Compare, pv: str) -> None:
        """The base config must make a valid PV run and baseline when the space is at its first values."""
        first = {p.name: p.probe_values()[0][1] for p in space.params}
        try:
            config = build_config(base, first, {"flush_mode": pv})
        except Impossible as exc:
            if exc.field == "flush_mode" or exc.field in base:
                where: Path = ("compare", "pv") if exc.field == "flush_mode" else ("base", exc.field)
                raise self.err(where, f"no PV run is possible: {exc.problem}") from None
            return
        try:
            compare.baseline_of(config)
        except ConfigError as exc:
            raise self.err(("compare", "baseline_overrides"), f"the baseline is not a valid run: {exc}") from None

    def _objectives(self, raw: Any, default: Direction) -> tuple[Objective, ...]:
        items = [raw] if isinstance(raw, (str, dict)) else raw
        if not isinstance(items, list) or not items:
            raise self.err(("objectives",), "expected a list of expressions or {name, expr, direction} items")
        out: list[Objective] = []
        for i, item in enumerate(items):
            path: Path = ("objectives", i) if isinstance(raw, list) else ("objectives",)
            if isinstance(item, str):
                item = {"expr": item}
            if not isinstance(item, dict):
                raise self.err(path, f"expected an expression or {{name, expr, direction}}, got {item!r}")
            for key in item:
                if key not in ("name", "expr", "direction"):
                    raise self.err((*path, key), f"unknown key; {_did_you_mean(key, ['name', 'expr', 'direction'])}")
            if "expr" not in item:
                raise self.err(path, "expr: missing; e.g. {name: benefit, expr: native.sys_s / pv.sys_s}")
            try:
                expr = compile_expr(item["expr"], want="number")
            except ExprError as exc:
                raise self.err((*path, "expr") if (*path, "expr") in self.doc.lines else path, str(exc)) from None
            direction = item.get("direction", default)
            if direction not in DIRECTIONS:
                raise self.err((*path, "direction"), f"{direction!r} is not one of maximize, minimize")
            name = item.get("name", expr.text if re.fullmatch(r"[A-Za-z_][\w.]*", expr.text) else f"objective{i}")
            if not isinstance(name, str) or not name:
                raise self.err((*path, "name"), f"expected a non-empty string, got {name!r}")
            if name in [o.name for o in out]:
                raise self.err(path, f"objective name {name!r} is used twice; give each a distinct name")
            out.append(Objective(name, expr, direction))
        return tuple(out)

    def _constraints(self, raw: Any) -> tuple[Constraint, ...]:
        if raw is None:
            return ()
        items = [(raw, ("constraints",))] if isinstance(raw, str) else None
        if items is None:
            if not isinstance(raw, list):
                raise self.err(("constraints",), "expected a condition or a list of them, e.g. [outcome == ok]")
            items = [(c, ("constraints", i)) for i, c in enumerate(raw)]
        out: list[Constraint] = []
        for text, path in items:
            try:
                expr = compile_expr(text, want="condition")
            except ExprError as exc:
                raise self.err(path, str(exc)) from None
            if expr.text in [c.name for c in out]:
                raise self.err(path, f"{expr.text!r} is listed twice")
            out.append(Constraint(expr.text, expr))
        return tuple(out)

    def _sampler(self, raw: Any, space: Space, n_objectives: int) -> SamplerChoice:
        path: Path = ("sampler",)
        options: dict[str, Any] = {}
        if isinstance(raw, dict):
            if "name" not in raw:
                raise self.err(path, f"name: missing; one of {', '.join(SAMPLERS)}")
            options = {k: v for k, v in raw.items() if k != "name"}
            name, npath = raw["name"], (*path, "name")
        else:
            name, npath = raw, path
        if name not in SAMPLERS:
            raise self.err(npath, f"{name!r} is not a sampler; {_did_you_mean(str(name), list(SAMPLERS))}")
        for module in SAMPLER_NEEDS.get(name, ()):
            if importlib.util.find_spec(module) is None:
                raise self.err(npath, f"{name} needs the {module} package (pip install {module}); or use tpe")
        if name == "cmaes" and n_objectives > 1:
            raise self.err(npath, "cmaes optimises one objective; use nsga2 or tpe for several")
        if name == "grid":
            coarse = [p.name for p in space.params if isinstance(p, FloatRange) and p.step is None]
            if coarse:
                raise self.err(("space", coarse[0]), "grid needs discrete values; give this range a step or list its values")
            if space.grid_size() > MAX_GRID:
                raise self.err(path, f"the grid has {space.grid_size()} points (more than {MAX_GRID}); add steps or fewer values")
        self._check_sampler_options(name, options)
        return SamplerChoice(name, options)

    def _check_sampler_options(self, name: str, options: dict[str, Any]) -> None:
        import optuna

        cls = getattr(optuna.samplers, SAMPLERS[name])
        params = inspect.signature(cls.__init__).parameters
        allowed = [p for p in params if p not in ("self", *SAMPLER_RESERVED) and params[p].kind is not inspect.Parameter.VAR_KEYWORD]
        for key, value in options.items():
            if key in SAMPLER_RESERVED:
                raise self.err(("sampler", key), f"set by the search ({'the top-level seed' if key == 'seed' else 'from the space and constraints'})")
            if key not in allowed:
                raise self.err(("sampler", key), f"not an option of {SAMPLERS[name]}; {_did_you_mean(key, allowed)}")
            if not isinstance(value, (int, float, bool, str)) or value is None:
                raise self.err(("sampler", key), f"expected a number, true/false or a word, got {value!r}")
            default = params[key].default
            kind = _kind(default)
            if kind is not None and _kind(value) not in _COMPATIBLE[kind]:
                raise self.err(("sampler", key), f"expected {kind} (like the default {default!r}), got {value!r}")

    # --- values -----------------------------------------------------------------


__all__ = [
    "Constraint",
    "DIRECTIONS",
    "Objective",
    "SAMPLERS",
    "SamplerChoice",
    "SearchSpec",
    "load_search_spec",
    "parse_search_spec",
]
