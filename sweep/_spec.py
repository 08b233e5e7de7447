"""Sweep specs (configs/sweeps/*.yaml): parsing and validation with line numbers.

A spec names a ``base`` RunConfig, ``axes`` to vary, ``replicates`` (seeds), a
``where`` filter and an optional paired ``compare``. Everything a user can get
wrong is reported as ``file:line: field: problem`` before anything is stored::

    name: topo-demo
    base: {workload: cpu-bound, duration_s: 0.01, threads: 4}
    axes:
      vcpus: {log2: [4, 16]}            # 4, 8, 16
      topology: [flat, smt2, {cores-per-socket: 4}]
      overcommit: [1, 2]                # pcpus = host vCPUs (vms x vcpus + background_vcpus) / overcommit
      flush_mode: [native, hyperv-pv]
      vcpus, threads: [[8, 2], [16, 4]]  # zipped: fields that vary together (one axis)
    replicates: 3                       # seeds base.seed .. base.seed+2
    where: "vcpus >= 8 or overcommit == 1"
    compare: {field: flush_mode, baseline: native, baseline_overrides: {enlightenments: false}}

Axis values are a list, ``{from: a, to: b, step: s}`` (inclusive) or
``{log2: [lo, hi]}`` (powers of two in [lo, hi]). A topology is an explicit
``SxCxT``, ``flat``/``smt2``/``auto``, or a rule such as ``{cores-per-socket: N}``
resolved against each combination's vcpus.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Mapping

from pydantic import model_validator

from sweep._model import SpecModel, did_you_mean, spec_field, validate_section
from sweep._where import DERIVED_NAMES, WhereClause, WhereSyntaxError, compile_where
from sweep._yaml import MarkedDocument, Path, SpecError, dotted, load_marked, read_spec_file
from workers.config import (
    FIELD_CHOICES,
    TOPOLOGY_KEYWORDS,
    ConfigError,
    RunConfig,
    coerce,
    field_names,
    host_vcpus_of,
    parse_topology,
)

#: Not a RunConfig field: ``pcpus = host vCPUs / overcommit`` for each combination, where the host's
#: vCPUs are every VM's and the background load (``RunConfig.host_vcpus``).
OVERCOMMIT = "overcommit"
#: Keys of a topology rule, e.g. ``{cores-per-socket: 16}``.
TOPOLOGY_RULE_KEYS = ("sockets", "cores-per-socket", "threads-per-core")
#: Guard against typos such as ``{from: 1, to: 1e9}``: more combinations than this is an error.
MAX_COMBINATIONS = 2_000_000

#: A sweep or search name: what ``flushsweep status`` lists and ``resume`` takes.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_EXPLICIT_TOPOLOGY_RE = re.compile(r"^\d+x\d+x\d+$")


def name_field(what: str, *, hint: str) -> Any:
    """The ``name:`` of a sweep or search: required, and what ``flushsweep status`` can list."""
    return spec_field(hint=hint, pattern=NAME_PATTERN,
                      problem=f"{{input!r}} is not a {what} name; use letters, digits, '_', '.', '-'")


class CompareSection(SpecModel):
    """``compare:`` as written: a field name, or the field, its baseline value and the baseline's other fields."""

    NOT_A_MAPPING = "expected a field name or {field, baseline, baseline_overrides}"
    field: str = spec_field(hint="name the swept field to compare, e.g. flush_mode")
    baseline: Any = None
    baseline_overrides: dict[str, Any] | None = spec_field(
        None, problem="expected a mapping of RunConfig fields, e.g. {enlightenments: false}")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, raw: Any) -> Any:
        """``compare: flush_mode`` is ``{field: flush_mode}`` (its axis's first value is the baseline)."""
        return {"field": raw} if isinstance(raw, str) else raw


class SweepDocument(SpecModel):
    """The keys of a sweep spec, their types and defaults; values are checked against RunConfig by the parser."""

    NOT_A_MAPPING = "a spec is a mapping with at least 'name' (and usually 'base', 'axes')"
    name: str = name_field("sweep", hint="give the sweep a name, e.g. 'name: my-sweep'")
    description: str = ""
    base: dict[str, Any] | None = spec_field(None, problem="expected a mapping of RunConfig fields, e.g. {workload: cpu-bound}")
    axes: dict[str, Any] | None = spec_field(None, problem="expected a mapping of field -> values, e.g. {vcpus: [4, 8]}")
    replicates: int | None = spec_field(None, ge=1, what="seeds per combination")
    where: Any = None
    compare: CompareSection | None = None



class Impossible(ValueError):
    """A combination that cannot be a run (e.g. a topology that does not divide vcpus); names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class TopologyRule:
    """A topology given by some of sockets / cores per socket / threads per core; the rest follows from vcpus.

    Missing parts default to one thread per core (or one core per socket when
    only threads are given), and the remaining part is ``vcpus`` divided by the
    others, so ``{cores-per-socket: 16}`` with 128 vCPUs is ``8x16x1``.
    """

    sockets: int | None = None
    cores_per_socket: int | None = None
    threads_per_core: int | None = None

    def resolve(self, vcpus: int) -> str:
        s, c, t = self.sockets, self.cores_per_socket, self.threads_per_core
        if s is None or c is None:
            if t is None:
                t = 1
            if s is None and c is None:
                c = 1
        known = [v for v in (s, c, t) if v is not None]
        product = math.prod(known)
        if len(known) == 3:
            if product != vcpus:
                raise Impossible("topology", f"{self} gives {product} vCPUs, vcpus is {vcpus}")
        elif vcpus % product:
            raise Impossible("topology", f"{self} does not divide vcpus {vcpus}")
        rest = vcpus // product
        s = rest if s is None else s
        c = rest if c is None else c
        t = rest if t is None else t
        return f"{s}x{c}x{t}"

    def __str__(self) -> str:
        parts = [(k, v) for k, v in zip(TOPOLOGY_RULE_KEYS, (self.sockets, self.cores_per_socket, self.threads_per_core)) if v is not None]
        return "{" + ", ".join(f"{k}: {v}" for k, v in parts) + "}"


@dataclass(frozen=True, slots=True)
class Axis:
    """One swept dimension: a field (or several zipped fields) and its values, with their lines."""

    fields: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    path: Path
    line: int
    value_lines: tuple[int, ...]
    value_paths: tuple[Path, ...]

    @property
    def name(self) -> str:
        return ", ".join(self.fields)


@dataclass(frozen=True, slots=True)
class Compare:
    """Paired comparison: each run is matched to the run with ``field = baseline`` (plus overrides).

    The baseline may differ in more than one field: WS2016 with more than 64
    vCPUs and a non-flat topology crashes at boot with any enlightenment unless
    PV flush is on, so the 2018 "before" runs are ``native`` with
    ``enlightenments: false``.
    """

    field: str
    baseline: Any
    baseline_overrides: Mapping[str, Any]
    line: int

    def baseline_of(self, config: RunConfig) -> RunConfig | None:
        """The baseline config for ``config``, or None when ``config`` is itself a baseline."""
        if getattr(config, self.field) == self.baseline:
            return None
        return config.replace(**{self.field: self.baseline, **self.baseline_overrides})

    def as_baseline(self, config: RunConfig) -> RunConfig:
        """A combination on the baseline side gets the overrides too: it is the baseline run."""
        return config.replace(**self.baseline_overrides) if self.baseline_overrides else config


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """A validated spec. ``text`` is stored with the sweep so ``resume`` needs no file."""

    name: str
    description: str
    base: Mapping[str, Any]
    axes: tuple[Axis, ...]
    replicates: int | None
    where: tuple[WhereClause, ...]
    where_lines: tuple[int, ...]
    compare: Compare | None
    source: str
    text: str
    lines: Mapping[Path, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def swept_fields(self) -> list[str]:
        """Fields the axes vary, in spec order (``seed`` from replicates excluded)."""
        out: list[str] = []
        for axis in self.axes:
            out.extend(f for f in axis.fields if f != "seed" and f not in out)
        return out

    def error(self, path: Path, problem: str) -> SpecError:
        doc = MarkedDocument(None, dict(self.lines), self.source)
        return doc.error(path, problem)


def load_spec(path: str | FsPath) -> SweepSpec:
    """Read and validate a spec file.

    Raises:
        SpecError: ``file:line: field: problem`` for anything invalid, or when the file cannot be read.
    """
    return parse_spec(read_spec_file(path, "spec"), source=str(path))


def parse_spec(text: str, source: str = "<spec>") -> SweepSpec:
    """Validate a spec's YAML text.

    Example:
        >>> spec = parse_spec("name: demo\\naxes:\\n  vcpus: [4, 8]\\nreplicates: 2\\n")
        >>> spec.swept_fields
        ['vcpus']
    """
    return _Parser(load_marked(text, source), text).parse()


# --- the parser ------------------------------------------------------------------


_NUMERIC = {name for name in field_names() if isinstance(getattr(RunConfig(), name), (int, float)) and not isinstance(getattr(RunConfig(), name), bool)}
_FLOATS = {name for name in field_names() if isinstance(getattr(RunConfig(), name), float)}


class _Parser:
    def __init__(self, doc: MarkedDocument, text: str) -> None:
        self.doc = doc
        self.text = text
        self.assignable = [*field_names(), OVERCOMMIT]

    def err(self, path: Path, problem: str) -> SpecError:
        return self.doc.error(path, problem)

    def parse(self) -> SweepSpec:
        model = validate_section(SweepDocument, self.doc.value, self.doc)
        base = self._base(model.base)
        axes = self._axes(model.axes)
        replicates = self._replicates(model.replicates, axes)
        self._check_pcpus_overcommit(base, axes)
        if replicates is not None:
            first = int(base.get("seed", 0))
            line = self.doc.line(("replicates",))
            seeds = tuple((first + i,) for i in range(replicates))
            axes = (*axes, Axis(("seed",), seeds, ("replicates",), line, (line,) * replicates, (("replicates",),) * replicates))
        where, where_lines = self._where(model.where)
        compare = self._compare(model.compare, axes)
        self._check_size(axes)
        return SweepSpec(
            name=model.name, description=model.description, base=base, axes=axes, replicates=replicates, where=where,
            where_lines=where_lines, compare=compare, source=self.doc.source, text=self.text, lines=self.doc.lines,
        )

    # --- sections ---------------------------------------------------------------
    def _base(self, raw: dict[str, Any] | None) -> dict[str, Any]:
        if raw is None:
            return {}
        base: dict[str, Any] = {}
        for key, value in raw.items():
            self._check_field(("base", key), key)
            base[key] = self._value(key, value, ("base", key))
        if "pcpus" in base and OVERCOMMIT in base:
            raise self.err(("base", OVERCOMMIT), "pcpus and overcommit both given; keep one (overcommit = host vCPUs / pcpus)")
        return base

    def _axes(self, raw: dict[str, Any] | None) -> tuple[Axis, ...]:
        if raw is None:
            return ()
        axes: list[Axis] = []
        seen: dict[str, str] = {}
        for key, spec in raw.items():
            path: Path = ("axes", key)
            fields = tuple(part.strip() for part in key.split(","))
            for f in fields:
                self._check_field(path, f, label=f"axes.{f}" if len(fields) > 1 else None)
                if f in seen:
                    raise self.err(path, f"{f} is already swept by axes.{seen[f]}; one axis per field")
                seen[f] = key
            if len(fields) == 1:
                values, paths = self._axis_values(fields[0], spec, path)
                values = [(v,) for v in values]
            else:
                values, paths = self._zipped_values(fields, spec, path)
            if not values:
                raise self.err(path, "empty axis; give at least one value (or move a constant to base)")
            axes.append(Axis(fields, tuple(values), path, self.doc.line(path), tuple(self.doc.line(p) for p in paths), tuple(paths)))
        return tuple(axes)

    def _axis_values(self, name: str, spec: Any, path: Path) -> tuple[list[Any], list[Path]]:
        if isinstance(spec, list):
            return [self._value(name, v, (*path, i)) for i, v in enumerate(spec)], [(*path, i) for i in range(len(spec))]
        if isinstance(spec, dict) and name != "topology":
            generated = self._range(name, spec, path)
            return [self._value(name, v, path) for v in generated], [path] * len(generated)
        raise self.err(path, "expected a list of values, {from: a, to: b, step: s} or {log2: [lo, hi]}; constants go in base")

    def _zipped_values(self, fields: tuple[str, ...], spec: Any, path: Path) -> tuple[list[tuple[Any, ...]], list[Path]]:
        if not isinstance(spec, list):
            raise self.err(path, f"a zipped axis is a list of [{', '.join(fields)}] items")
        out: list[tuple[Any, ...]] = []
        for i, item in enumerate(spec):
            ipath = (*path, i)
            if isinstance(item, dict):
                missing = [f for f in fields if f not in item]
                extra = [k for k in item if k not in fields]
                if missing or extra:
                    raise self.err(ipath, f"each item needs exactly the keys {', '.join(fields)}")
                out.append(tuple(self._value(f, item[f], (*ipath, f)) for f in fields))
            elif isinstance(item, list) and len(item) == len(fields):
                out.append(tuple(self._value(f, v, (*ipath, j)) for j, (f, v) in enumerate(zip(fields, item))))
            else:
                raise self.err(ipath, f"expected a list of {len(fields)} values [{', '.join(fields)}]")
        return out, [(*path, i) for i in range(len(spec))]

    def _range(self, name: str, spec: dict[str, Any], path: Path) -> list[Any]:
        if name not in _NUMERIC and name != OVERCOMMIT:
            raise self.err(path, f"{name} is not numeric; list its values instead of a range")
        if set(spec) == {"log2"}:
            bounds = spec["log2"]
            if not (isinstance(bounds, list) and len(bounds) == 2 and all(is_number(b) for b in bounds)):
                raise self.err((*path, "log2"), "expected [lo, hi], e.g. {log2: [1, 64]}")
            lo, hi = bounds
            if lo <= 0 or hi < lo:
                raise self.err((*path, "log2"), f"need 0 < lo <= hi, got [{lo}, {hi}]")
            first = max(0, math.ceil(math.log2(lo) - 1e-12))
            values: list[Any] = [2**k for k in range(first, math.floor(math.log2(hi) + 1e-12) + 1)]
            if not values:
                raise self.err((*path, "log2"), f"no power of two in [{lo}, {hi}]")
            return [float(v) for v in values] if name in _FLOATS or name == OVERCOMMIT else values
        keys = set(spec)
        if not keys or not keys <= {"from", "to", "step"} or not {"from", "to"} <= keys:
            unknown = sorted(keys - {"from", "to", "step", "log2"})
            hint = f"unknown key {unknown[0]!r}; " if unknown else ""
            raise self.err(path, f"{hint}a range is {{from: a, to: b, step: s}} (inclusive) or {{log2: [lo, hi]}}")
        start, stop, step = spec["from"], spec["to"], spec.get("step", 1)
        for key, v in (("from", start), ("to", stop), ("step", step)):
            if not is_number(v):
                raise self.err((*path, key), f"expected a number, got {v!r}")
        if step <= 0:
            raise self.err((*path, "step"), f"must be > 0, got {step}")
        if stop < start:
            raise self.err((*path, "to"), f"must be >= from ({start}), got {stop}")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > MAX_COMBINATIONS:
            raise self.err(path, f"{count} values; narrow the range or raise the step")
        if all(isinstance(v, int) for v in (start, stop, step)):
            return [start + i * step for i in range(count)]
        return [round(start + i * step, 12) for i in range(count)]

    def _replicates(self, raw: int | None, axes: tuple[Axis, ...]) -> int | None:
        if raw is None:
            return None
        if any("seed" in a.fields for a in axes):
            raise self.err(("replicates",), "seed is already an axis; use replicates or a seed axis, not both")
        return raw

    def _where(self, raw: Any) -> tuple[tuple[WhereClause, ...], tuple[int, ...]]:
        if raw is None:
            return (), ()
        items = [(raw, ("where",))] if isinstance(raw, str) else None
        if items is None:
            if not isinstance(raw, list) or not raw:
                raise self.err(("where",), "expected an expression or a list of them (all must hold), e.g. 'vcpus >= pcpus'")
            items = [(e, ("where", i)) for i, e in enumerate(raw)]
        clauses: list[WhereClause] = []
        for expr, path in items:
            if not isinstance(expr, str):
                raise self.err(path, f"expected an expression string, got {expr!r}")
            try:
                clauses.append(compile_where(expr, [*field_names(), *DERIVED_NAMES]))
            except WhereSyntaxError as exc:
                raise self.err(path, str(exc)) from None
        return tuple(clauses), tuple(self.doc.line(p) for _, p in items)

    def _compare(self, raw: CompareSection | None, axes: tuple[Axis, ...]) -> Compare | None:
        if raw is None:
            return None
        path: Path = ("compare",)
        name = raw.field
        fpath = (*path, "field")
        if name not in field_names():
            raise self.err(fpath, f"{name!r} is not a RunConfig field; {did_you_mean(name, field_names())}")
        axis = next((a for a in axes if name in a.fields), None)
        if axis is None:
            raise self.err(fpath, f"{name} is not swept; add it to axes to compare its values")
        if raw.given("baseline"):
            baseline = self._value(name, raw.baseline, (*path, "baseline"))
        else:  # `compare: flush_mode` -> the axis's first value is the baseline
            baseline = axis.values[0][axis.fields.index(name)]
        overrides: dict[str, Any] = {}
        for key, value in (raw.baseline_overrides or {}).items():
            opath = (*path, "baseline_overrides", key)
            if key not in field_names():
                raise self.err(opath, f"unknown RunConfig field; {did_you_mean(key, field_names())}")
            if key == name:
                raise self.err(opath, f"{name} is the compared field; set it with baseline")
            if key == "topology":
                raise self.err(opath, "a baseline must keep the topology of the run it is paired with")
            overrides[key] = self._value(key, value, opath)
        return Compare(name, baseline, overrides, self.doc.line(path))

    # --- values -----------------------------------------------------------------
    def _check_field(self, path: Path, name: Any, label: str | None = None) -> None:
        if name not in self.assignable:
            raise self.doc.error(path, f"unknown RunConfig field; {did_you_mean(str(name), self.assignable)}", field=label)

    def _value(self, name: str, raw: Any, path: Path) -> Any:
        return parse_field_value(name, raw, path, self.doc)

    # --- cross-field checks ---------------------------------------------------------
    def _check_pcpus_overcommit(self, base: dict[str, Any], axes: tuple[Axis, ...]) -> None:
        swept = {f: a for a in axes for f in a.fields}
        if OVERCOMMIT in swept and "pcpus" in swept:
            raise self.err(swept[OVERCOMMIT].path, "pcpus and overcommit are both swept; sweep one (overcommit = host vCPUs / pcpus)")
        if OVERCOMMIT in swept and "pcpus" in base:
            raise self.err(("base", "pcpus"), "pcpus is derived from the overcommit axis; remove it from base")
        if "pcpus" in swept and OVERCOMMIT in base:
            raise self.err(("base", OVERCOMMIT), "pcpus is swept; remove overcommit from base")

    def _check_size(self, axes: tuple[Axis, ...]) -> None:
        total = math.prod(len(a.values) for a in axes)
        if total > MAX_COMBINATIONS:
            raise self.err(("axes",), f"{total} combinations (more than {MAX_COMBINATIONS}); narrow an axis")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

def parse_field_value(name: str, raw: Any, path: Path, doc: MarkedDocument) -> Any:
    """One spec value for a RunConfig field (or ``overcommit``), coerced; errors point at ``path``.

    Shared by sweep, search and report specs, so a value means the same everywhere.
    """
    if name == OVERCOMMIT:
        if not is_number(raw) or raw <= 0:
            raise doc.error(path, f"overcommit is host vCPUs / pcpus, a number > 0; got {raw!r}")
        return float(raw)
    if name == "topology":
        return parse_topology_value(raw, path, doc)
    try:
        value = coerce(name, raw)
    except ConfigError as exc:
        raise doc.error(path, exc.problem) from None
    choices = FIELD_CHOICES.get(name)
    if choices and value not in choices:
        raise doc.error(path, f"{value!r} is not one of {', '.join(choices)}")
    return value


def parse_topology_value(raw: Any, path: Path, doc: MarkedDocument) -> "str | TopologyRule":
    """A topology as written in a spec: ``SxCxT``, a keyword, or a rule such as ``{cores-per-socket: N}``."""
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in TOPOLOGY_KEYWORDS or _EXPLICIT_TOPOLOGY_RE.match(text):
            if _EXPLICIT_TOPOLOGY_RE.match(text) and 0 in (int(p) for p in text.split("x")):
                raise doc.error(path, f"{raw!r}: sockets, cores and threads must each be >= 1")
            return text
        raise doc.error(path, f"{raw!r} is not SxCxT (e.g. 64x1x2), {', '.join(TOPOLOGY_KEYWORDS)} or {{cores-per-socket: N}}")
    if isinstance(raw, dict) and raw:
        parts: dict[str, int] = {}
        for key, value in raw.items():
            if key not in TOPOLOGY_RULE_KEYS:
                raise doc.error((*path, key), f"unknown topology key; {did_you_mean(key, list(TOPOLOGY_RULE_KEYS))}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise doc.error((*path, key), f"expected a whole number >= 1, got {value!r}")
            parts[key.replace("-", "_")] = value
        return TopologyRule(**parts)
    raise doc.error(path, "a topology is SxCxT, flat, smt2, auto or {cores-per-socket: N}")



def resolve_assignment(values: Mapping[str, Any]) -> RunConfig:
    """Turn base+axis values into a RunConfig: derive pcpus from overcommit, resolve topology rules.

    Raises:
        Impossible: the combination cannot be a run (the message names the field).
    """
    fields = dict(values)
    overcommit = fields.pop(OVERCOMMIT, None)
    vcpus = fields.get("vcpus", RunConfig.__dataclass_fields__["vcpus"].default)
    topology = fields.get("topology")
    if isinstance(topology, TopologyRule):
        fields["topology"] = topology.resolve(vcpus)
    elif isinstance(topology, str):
        try:
            parse_topology(topology, vcpus)
        except ConfigError as exc:
            raise Impossible("topology", exc.problem) from None
    if overcommit is not None:
        host = host_vcpus_of(fields)
        pcpus = host / overcommit
        if abs(pcpus - round(pcpus)) > 1e-9 or round(pcpus) < 1:
            raise Impossible(OVERCOMMIT, f"{overcommit:g} gives {pcpus:.3g} pCPUs for {host} host vCPUs, not a whole number")
        fields["pcpus"] = int(round(pcpus))
    try:
        return RunConfig.from_dict(fields)
    except ConfigError as exc:
        raise Impossible(exc.field, exc.problem) from None


def derived_names(config: RunConfig) -> dict[str, Any]:
    """The names a ``where`` filter sees: every field plus overcommit and the topology parts."""
    s, c, t = config.sockets_cores_threads
    return {**config.to_dict(), "overcommit": config.overcommit, "sockets": s, "cores_per_socket": c, "threads_per_core": t}


__all__ = [
    "Axis",
    "Compare",
    "Impossible",
    "OVERCOMMIT",
    "SpecError",
    "SweepSpec",
    "TopologyRule",
    "derived_names",
    "dotted",
    "load_spec",
    "parse_spec",
    "resolve_assignment",
]
