"""One bounded evaluator for the expressions specs contain: sweep ``where`` filters, search objectives and constraints.

Spec authors write Python expression syntax, but the text is never given to
``eval``: it is parsed with ``ast`` and walked here. Two guarantees hold for any
text, whoever wrote it:

- it finishes quickly: the text, its node count and its nesting are capped when it
  is parsed, and arithmetic is IEEE 754 floating point, whose every operation takes
  constant time (``vcpus ** 10 ** 9`` is ``inf``, not a billion-digit integer;
  ``'x' * 10 ** 9`` is an error, not a gigabyte string);
- it fails in one line: anything the evaluator cannot do is an ``ExprError`` whose
  message says what to write instead.

Division follows IEEE 754 as well (``x / 0`` is ``inf``, ``0 / 0`` is ``nan``), so a
crashed run (its times are zero) gives a non-finite ratio instead of an exception.
Callers decide which names and functions exist; this module decides how they combine.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Any, Callable, Mapping

#: Longest expression text accepted (a filter or objective is one line, not a program).
MAX_LENGTH = 500
#: Most AST nodes in one expression: bounds the work of one evaluation.
MAX_NODES = 200
#: Deepest nesting accepted (parentheses, unary minus, ``not``): bounds the evaluator's recursion.
MAX_DEPTH = 40

ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
COMPARISONS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
#: Nodes every expression may contain; callers add names, attributes or calls as they allow them.
BASE_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp,
    ast.Compare, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple, ast.Set, *ARITHMETIC, *COMPARISONS,
)

#: Resolves a name (or ``role.name``) node to its value for one evaluation.
Resolver = Callable[[ast.expr], Any]


class ExprError(ValueError):
    """The expression is not valid, or cannot be evaluated; the one-line message says why and what to write instead."""


def parse_bounded(text: Any) -> ast.Expression:
    """Parse ``text`` as one expression within the size limits.

    Raises:
        ExprError: not a string, empty, too long, too big, too deep, not valid syntax,
            or a number too large to compute with.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExprError(f"expected an expression string, got {text!r}")
    source = text.strip()
    if len(source) > MAX_LENGTH:
        raise ExprError(f"the expression is {len(source)} characters long (at most {MAX_LENGTH}); split it into several conditions")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        problem = (exc.msg or "invalid syntax").split(";")[0].splitlines()[0]
        raise ExprError(f"{source!r} is not an expression: {problem}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # e.g. a NUL byte, absurd nesting
        raise ExprError(f"{source!r} is not an expression: {type(exc).__name__}") from None
    nodes = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ExprError(f"{source!r} has more than {MAX_NODES} parts; split it into several conditions")
        if depth > MAX_DEPTH:
            raise ExprError(f"{source!r} nests deeper than {MAX_DEPTH} levels; write it flatter")
        if isinstance(node, ast.Constant) and _is_number(node.value) and not math.isfinite(_as_float(node.value)):
            raise ExprError(f"{ast.unparse(node)[:20]}... in {source!r} is too large a number; use at most 1e308")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree


def check_nodes(tree: ast.AST, text: str, allowed: tuple[type, ...] = BASE_NODES, *, hint: str, recurse: bool = True) -> None:
    """Refuse any node outside ``allowed`` (only ``tree`` itself unless ``recurse``); ``hint`` says what to use instead."""
    for node in ast.walk(tree) if recurse else (tree,):
        if not isinstance(node, allowed):
            raise ExprError(f"{type(node).__name__.lower()} is not allowed in {text!r}; {hint}")


def evaluate(node: ast.AST, resolve: Resolver, functions: Mapping[str, Callable[..., Any]] | None = None) -> Any:
    """The value of a checked expression; names and ``role.name`` attributes come from ``resolve``.

    Raises:
        ExprError: an operation on the wrong kind of value (arithmetic on text, ordering
            text against a number) or a function's bad argument (``log(-1)``).
    """
    if isinstance(node, ast.Expression):
        return evaluate(node.body, resolve, functions)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Name, ast.Attribute)):
        return resolve(node)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(evaluate(v, resolve, functions) for v in node.values)
        return any(evaluate(v, resolve, functions) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = evaluate(node.operand, resolve, functions)
        if isinstance(node.op, ast.Not):
            return not value
        number = _number(value, node.operand)
        return -number if isinstance(node.op, ast.USub) else number
    if isinstance(node, ast.BinOp):
        left = _number(evaluate(node.left, resolve, functions), node.left)
        right = _number(evaluate(node.right, resolve, functions), node.right)
        return arithmetic(node.op, left, right)
    if isinstance(node, ast.Compare):
        left = evaluate(node.left, resolve, functions)
        for op, comparator in zip(node.ops, node.comparators):
            right = evaluate(comparator, resolve, functions)
            try:
                holds = COMPARISONS[type(op)](left, right)
            except TypeError:
                raise ExprError(f"cannot compare {_show(left)} with {_show(right)} ({ast.unparse(node)}); "
                                "compare numbers with numbers and text with text") from None
            if not holds:
                return False
            left = right
        return True
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [evaluate(e, resolve, functions) for e in node.elts]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and functions and node.func.id in functions:
        name = node.func.id
        args = [evaluate(a, resolve, functions) for a in node.args]
        try:
            return functions[name](*args)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ExprError(f"{name}({', '.join(map(_show, args))}): {exc}") from None
    raise ExprError(f"{type(node).__name__.lower()} is not allowed")  # the caller's check refused it already


def arithmetic(op: ast.operator, a: Any, b: Any) -> float:
    """IEEE 754 arithmetic in constant time: overflow gives ``inf``, division by zero ``inf`` or ``nan``."""
    a, b = float(a), float(b)
    if isinstance(op, ast.Add):
        return a + b
    if isinstance(op, ast.Sub):
        return a - b
    if isinstance(op, ast.Mult):
        return a * b
    if isinstance(op, ast.Pow):
        if a < 0 and not b.is_integer():
            return math.nan
        try:
            return a**b
        except OverflowError:  # |a| ** b beyond 1e308: the sign of an odd power of a negative base survives
            return -math.inf if a < 0 and b % 2 == 1 else math.inf
        except ZeroDivisionError:  # 0 ** -1
            return math.inf
    if b == 0:
        if isinstance(op, ast.Div) and a != 0 and not math.isnan(a):
            return math.copysign(math.inf, a) * math.copysign(1.0, b)
        return math.nan
    if isinstance(op, ast.Div):
        return a / b
    if isinstance(op, ast.FloorDiv):
        return a // b
    return a % b


def _number(value: Any, node: ast.AST) -> float:
    if _is_number(value):
        return _as_float(value)
    what = f"{_show(value)} is" if isinstance(node, ast.Constant) else f"{ast.unparse(node)} is {_show(value)},"
    raise ExprError(f"{what} not a number; arithmetic needs numbers")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, str)


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = ["ExprError", "MAX_DEPTH", "MAX_LENGTH", "MAX_NODES", "arithmetic", "check_nodes", "evaluate", "parse_bounded"]
