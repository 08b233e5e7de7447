"""``where:`` filters: small boolean expressions over a run's fields, evaluated safely.

A filter is Python expression syntax restricted to comparisons, ``and``/``or``/
``not``, arithmetic, literals and names (RunConfig fields plus the derived
``overcommit``, ``sockets``, ``cores_per_socket``, ``threads_per_core``), e.g.
``vcpus >= pcpus`` or ``flush_mode != 'native' or overcommit <= 4``. No calls,
attributes or subscripts, so a spec cannot run code; the bounded evaluator
(``sweep._safe_expr``, shared with search objectives) keeps any filter from
hanging the planner.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from sweep._safe_expr import ExprError, check_nodes, evaluate, parse_bounded

#: Names a filter may use besides the RunConfig fields.
DERIVED_NAMES = ("overcommit", "sockets", "cores_per_socket", "threads_per_core")
_CONSTANT_NAMES = {"true": True, "false": False, "True": True, "False": False}
_HINT = "use comparisons, and/or/not, arithmetic"

#: A filter that is not valid (or fails on a run); the message says why and what to write.
WhereSyntaxError = ExprError


@dataclass(frozen=True, slots=True)
class WhereClause:
    """One compiled filter; ``evaluate`` returns whether a run is kept."""

    text: str
    tree: ast.Expression

    def evaluate(self, names: Mapping[str, Any]) -> bool:
        """Raises ExprError (one line) when the filter cannot be computed for these values."""

        def resolve(node: ast.expr) -> Any:
            name = node.id  # type: ignore[attr-defined]  # compile_where admits names only
            return names[name] if name in names else _CONSTANT_NAMES[name]

        return bool(evaluate(self.tree, resolve))


def compile_where(text: str, known_names: list[str]) -> WhereClause:
    """Parse and check a filter; raises WhereSyntaxError naming the problem."""
    tree = parse_bounded(text)
    source = text.strip()
    for node in ast.walk(tree):  # one pass, outermost first: `__import__('os')` is a call before it is a name
        if isinstance(node, ast.Name):
            if node.id in _CONSTANT_NAMES or node.id in known_names:
                continue
            close = difflib.get_close_matches(node.id, known_names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "use a RunConfig field or " + ", ".join(DERIVED_NAMES)
            raise WhereSyntaxError(f"unknown name {node.id!r} in {source!r}; {hint}")
        check_nodes(node, source, hint=_HINT, recurse=False)
    return WhereClause(source, tree)
