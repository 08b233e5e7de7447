"""``where:`` filters: small boolean expressions over a run's fields, evaluated safely.

A filter is Python expression syntax restricted to comparisons, ``and``/``or``/
``not``, arithmetic, literals and names (RunConfig fields plus the derived
``overcommit``, ``sockets``, ``cores_per_socket``, ``threads_per_core``), e.g.
``vcpus >= pcpus`` or ``flush_mode != 'native' or overcommit <= 4``. No calls,
attributes or subscripts, so a spec cannot run code.
"""

from __future__ import annotations

import ast
import difflib
import operator
from dataclasses import dataclass
from typing import Any, Callable, Mapping

#: Names a filter may use besides the RunConfig fields.
DERIVED_NAMES = ("overcommit", "sockets", "cores_per_socket", "threads_per_core")

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_CONSTANT_NAMES = {"true": True, "false": False, "True": True, "False": False}


class WhereSyntaxError(ValueError):
    """The expression is not a valid filter; the message says why."""


@dataclass(frozen=True, slots=True)
class WhereClause:
    """One compiled filter; ``evaluate`` returns whether a run is kept."""

    text: str
    tree: ast.Expression

    def evaluate(self, names: Mapping[str, Any]) -> bool:
        return bool(_eval(self.tree.body, names))


def compile_where(text: str, known_names: list[str]) -> WhereClause:
    """Parse and check a filter; raises WhereSyntaxError naming the problem."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise WhereSyntaxError(f"{text!r} is not an expression: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id in _CONSTANT_NAMES or node.id in known_names:
                continue
            close = difflib.get_close_matches(node.id, known_names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "use a RunConfig field or " + ", ".join(DERIVED_NAMES)
            raise WhereSyntaxError(f"unknown name {node.id!r} in {text!r}; {hint}")
        if not isinstance(node, _ALLOWED):
            raise WhereSyntaxError(f"{type(node).__name__.lower()} is not allowed in a filter ({text!r}); use comparisons, and/or/not, arithmetic")
    return WhereClause(text, tree)


_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Compare, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple, ast.Set,
    *_BINOPS, *_CMPOPS,
)


def _eval(node: ast.AST, names: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        return _CONSTANT_NAMES[node.id]
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, names) for v in node.values)
        return any(_eval(v, names) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, names)
        if isinstance(node.op, ast.Not):
            return not value
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, names), _eval(node.right, names))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, names)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, names)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_eval(e, names) for e in node.elts]
    raise WhereSyntaxError(f"{type(node).__name__} is not allowed")  # compile_where already refused it
