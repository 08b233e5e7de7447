"""Objective and constraint expressions over a trial's paired runs, checked and evaluated safely.

An expression is Python syntax restricted to arithmetic, comparisons,
``and``/``or``/``not``, literals, a few math functions and names; no
attribute access except ``pv.<name>`` / ``native.<name>``, no subscripts, no
lambdas, so a spec cannot run code (the text is never given to ``eval``)::

    native.sys_s / pv.sys_s          # what benefit_sys means
    benefit_ops                      # PV ops/s over native ops/s
    vcpus / pcpus                    # consolidation
    outcome == ok                    # a constraint: every run of the trial booted
    pv.lat_p99_us <= 500             # a constraint with a graded violation

Names:
- ``pv.<m>`` and ``native.<m>`` (alias ``baseline.<m>``): a metric or RunConfig
  field of the PV run or of its baseline, averaged over the replicates.
- bare: the PV run's RunConfig fields, ``overcommit``/``consolidation``
  (host vCPUs / pcpus), ``sockets``, ``cores_per_socket``, ``threads_per_core``,
  ``outcome`` (``ok`` when every run of the trial is), and the benefits
  ``benefit_real``, ``benefit_sys``, ``benefit_p99``, ``benefit_ops``.

Evaluation is ``sweep._safe_expr``'s, shared with sweep ``where`` filters: bounded
in size and time, with IEEE 754 division (``x / 0`` is ``inf``, ``0 / 0`` is ``nan``),
so a crashed run (its times are zero) gives a non-finite objective, which the
search records as a failed trial instead of a made-up number.
"""

from __future__ import annotations

import ast
import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from storage.benefits import BENEFITS as PAIRED_BENEFITS
from sweep._safe_expr import ARITHMETIC, COMPARISONS, ORDERING, ExprError, arithmetic, evaluate, parse_bounded
from workers.config import RunConfig, field_names
from workers.result import NONDETERMINISTIC_FIELDS, RunResult, metric_names

#: Role prefixes: ``pv.sys_s`` is the PV run's, ``native.sys_s`` (or ``baseline.sys_s``) its baseline's.
ROLES = {"pv": "pv", "native": "native", "baseline": "native"}
#: Benefit ratios by name: ((role, metric) over (role, metric)), from the one definition the store's ``paired`` view uses.
BENEFITS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    b.name: tuple((role, b.metric) for role in b.sides(pv="pv", baseline="native")) for b in PAIRED_BENEFITS  # type: ignore[misc]
}
#: Names derived from the PV run's config.
DERIVED = ("overcommit", "consolidation", "sockets", "cores_per_socket", "threads_per_core")
#: Bare words that are values: outcomes and booleans.
CONSTANTS: dict[str, Any] = {"ok": "ok", "crash": "crash", "true": True, "false": False, "True": True, "False": False}
#: Functions an expression may call.
FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min, "max": max, "abs": abs, "log": math.log, "log2": math.log2, "log10": math.log10, "sqrt": math.sqrt,
}

Kind = Literal["num", "str", "any"]


def _kinds() -> tuple[dict[str, Kind], dict[str, Kind]]:
    """Static kinds of the names: per-run names (after ``pv.``) and bare names."""
    example = RunConfig(workload="cpu-bound", vcpus=2, pcpus=1, threads=1, duration_s=0.001)
    config = {n: ("str" if isinstance(getattr(example, n), str) else "num") for n in field_names()}
    metrics = {n: ("str" if n in ("outcome", "crash_reason") else "num") for n in metric_names() if n not in NONDETERMINISTIC_FIELDS}
    per_run: dict[str, Kind] = {**config, **metrics}
    bare: dict[str, Kind] = {**config, **dict.fromkeys(DERIVED, "num"), **dict.fromkeys(BENEFITS, "num"), "outcome": "str"}
    return per_run, bare


PER_RUN_NAMES, BARE_NAMES = _kinds()
assert set(RunResult.__dataclass_fields__) >= {"real_s", "sys_s", "lat_p99_us", "ops_per_s", "outcome"}


@dataclass(frozen=True, slots=True)
class Expr:
    """A checked expression; ``kind`` is what it gives (``num``, ``str`` or ``any``)."""

    text: str
    tree: ast.Expression
    kind: Kind

    def evaluate(self, scope: "Scope") -> Any:
        """The value for one trial.

        Raises:
            ExprError: a function got a bad argument (e.g. ``log`` of a negative number).
        """
        return _eval(self.tree, scope)

    def violation(self, scope: "Scope") -> float:
        """As an Optuna constraint: 0 when the condition holds, else how far it misses (> 0).

        A top-level numeric comparison (``pv.lat_p99_us <= 500``) misses by the
        distance between its sides, so a sampler can tell a near miss from a far
        one; any other condition misses by 1.
        """
        body = self.tree.body
        if _eval(self.tree, scope):
            return 0.0
        if isinstance(body, ast.Compare) and len(body.ops) == 1 and isinstance(body.ops[0], ORDERING):
            left, right = _eval(body.left, scope), _eval(body.comparators[0], scope)
            if _is_number(left) and _is_number(right):
                gap = abs(float(left) - float(right))
                if math.isnan(gap):
                    return 1.0
                return max(gap, 1e-12)
        return 1.0


@dataclass(frozen=True, slots=True)
class Scope:
    """What names mean for one trial: bare names and each role's averaged run."""

    bare: Mapping[str, Any]
    roles: Mapping[str, Mapping[str, Any]]


def compile_expr(text: Any, *, want: Literal["number", "condition"]) -> Expr:
    """Parse and check an objective (``want="number"``) or a constraint (``"condition"``).

    Raises:
        ExprError: syntax, an unknown or misused name, a forbidden construct, or a
            text-valued objective; the message names the culprit and a fix.
    """
    tree = parse_bounded(text)
    source = text.strip()
    kind = _check(tree.body, source)
    if want == "number" and kind == "str":
        raise ExprError(f"{source!r} gives text, not a number; an objective must be numeric (e.g. benefit_sys)")
    return Expr(source, tree, kind)


# --- checking --------------------------------------------------------------------


def _check(node: ast.AST, text: str) -> Kind:
    """Refuse anything outside the whitelist; returns the node's static kind."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return "str"
        if isinstance(node.value, (int, float, bool)) and node.value is not None:
            return "num"
        raise ExprError(f"{node.value!r} is not allowed in {text!r}; use numbers, 'text' or true/false")
    if isinstance(node, ast.Name):
        return _check_name(node.id, text)
    if isinstance(node, ast.Attribute):
        return _check_attribute(node, text)
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, text)
        return "any"
    if isinstance(node, ast.UnaryOp):
        kind = _check(node.operand, text)
        if isinstance(node.op, ast.Not):
            return "num"
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            _need_number(kind, node.operand, text)
            return "num"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ARITHMETIC):
        _need_number(_check(node.left, text), node.left, text)
        _need_number(_check(node.right, text), node.right, text)
        return "num"
    if isinstance(node, ast.Compare) and all(type(op) in COMPARISONS for op in node.ops):
        kinds = [_check(node.left, text), *(_check(c, text) for c in node.comparators)]
        for i, op in enumerate(node.ops):
            a, b = kinds[i], kinds[i + 1]
            if isinstance(op, ORDERING) and "any" not in (a, b) and a != b:
                raise ExprError(f"{text!r} compares text with a number; compare outcome with == ok, numbers with <, <=, ...")
        return "num"
    if isinstance(node, (ast.List, ast.Tuple)):
        for element in node.elts:
            _check(element, text)
        return "any"
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            shown = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ExprError(f"{shown}() is not allowed in {text!r}; functions: {', '.join(FUNCTIONS)}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args) or not node.args:
            raise ExprError(f"{node.func.id}() in {text!r} takes plain arguments, e.g. {node.func.id}(pv.sys_s, 1)")
        for arg in node.args:
            _need_number(_check(arg, text), arg, text)
        return "num"
    what = type(node).__name__.lower()
    raise ExprError(f"{what} is not allowed in {text!r}; use arithmetic, comparisons, and/or/not and {', '.join(FUNCTIONS)}()")


def _check_name(name: str, text: str) -> Kind:
    if name in CONSTANTS:
        return "str" if isinstance(CONSTANTS[name], str) else "num"
    if name in BARE_NAMES:
        return BARE_NAMES[name]
    if name in ROLES:
        raise ExprError(f"{name!r} alone is not a value in {text!r}; write {name}.<metric>, e.g. {name}.sys_s")
    if name in PER_RUN_NAMES:
        raise ExprError(f"{name!r} is measured per run in {text!r}; write pv.{name} or native.{name}")
    known = [*BARE_NAMES, *ROLES, *CONSTANTS]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "use pv.<metric>, native.<metric>, a RunConfig field or a benefit_*"
    raise ExprError(f"unknown name {name!r} in {text!r}; {hint}")


def _check_attribute(node: ast.Attribute, text: str) -> Kind:
    if not isinstance(node.value, ast.Name) or node.value.id not in ROLES:
        raise ExprError(f"{ast.unparse(node)!r} in {text!r}: only pv.<name> and native.<name> may use a dot")
    if node.attr not in PER_RUN_NAMES:
        close = difflib.get_close_matches(node.attr, list(PER_RUN_NAMES), n=1)
        hint = f"did you mean {node.value.id}.{close[0]}?" if close else "use a RunResult metric or RunConfig field"
        if node.attr in NONDETERMINISTIC_FIELDS:
            hint = "it depends on the machine, not the config, so a search must not optimise it"
        raise ExprError(f"{node.value.id}.{node.attr} in {text!r} is not known; {hint}")
    return PER_RUN_NAMES[node.attr]


def _need_number(kind: Kind, node: ast.AST, text: str) -> None:
    if kind == "str":
        raise ExprError(f"{ast.unparse(node)!r} is text; arithmetic in {text!r} needs numbers")


# --- evaluation ------------------------------------------------------------------


def _eval(tree: ast.AST, scope: Scope) -> Any:
    def resolve(node: ast.expr) -> Any:
        if isinstance(node, ast.Attribute):
            return scope.roles[ROLES[node.value.id]][node.attr]  # type: ignore[attr-defined]
        name = node.id  # type: ignore[attr-defined]
        return CONSTANTS[name] if name in CONSTANTS else scope.bare[name]

    return evaluate(tree, resolve, FUNCTIONS)


def ratio(num: float, den: float) -> float:
    """``num / den`` with IEEE 754 semantics (a benefit when a run crashed is inf or nan)."""
    return arithmetic(ast.Div(), num, den)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, str)


__all__ = ["BENEFITS", "CONSTANTS", "DERIVED", "Expr", "ExprError", "FUNCTIONS", "ROLES", "Scope", "compile_expr", "ratio"]
