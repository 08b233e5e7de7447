"""YAML with line numbers: plain Python values plus a path -> line table.

Spec errors must point at a line (``x.yaml:7: axes.vcpuz: ...``), so specs are
composed with PyYAML's node API, whose marks carry positions, and converted to
plain dicts/lists/scalars alongside a table from each value's path to its line.
"""

from __future__ import annotations

import os

from dataclasses import dataclass
from typing import Any

import yaml

#: A value's position in the document: mapping keys and list indices from the root.
Path = tuple[str | int, ...]


class SpecError(ValueError):
    """An invalid sweep spec: ``file:line: field: problem``, one line."""

    def __init__(self, source: str, line: int, field: str, problem: str) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")
        self.source = source
        self.line = line
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class MarkedDocument:
    """A parsed YAML document and the 1-based line of every value in it."""

    value: Any
    lines: dict[Path, int]
    source: str

    def line(self, path: Path) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def error(self, path: Path, problem: str, field: str | None = None) -> SpecError:
        return SpecError(self.source, self.line(path), field if field is not None else dotted(path), problem)


def dotted(path: Path) -> str:
    """``("axes", "vcpus", 2)`` -> ``axes.vcpus[2]``; a key that is not plain text is quoted, so the message stays one line."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if part and part.isprintable() and part.strip() == part else repr(part)
            out += f".{shown}" if out else shown
    return out


def read_spec_file(path: "str | os.PathLike[str]", what: str = "spec") -> str:
    """A spec file's text; an unreadable file is a SpecError like any other spec problem."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise SpecError(str(path), 0, "", f"cannot read the {what}: {exc.strerror or exc}") from None


def load_marked(text: str, source: str = "<spec>") -> MarkedDocument:
    """Parse one YAML document; raises SpecError (with the line) for bad YAML or duplicate keys."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise SpecError(source, line, "", f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors for text input
        raise SpecError(source, 0, "", f"not valid YAML: {exc}") from None
    lines: dict[Path, int] = {}
    if node is None:
        return MarkedDocument(None, {(): 1}, source)
    constructor = yaml.SafeLoader("")
    value = _convert(node, (), lines, constructor, source)
    return MarkedDocument(value, lines, source)


def _convert(node: yaml.Node, path: Path, lines: dict[Path, int], constructor: yaml.SafeLoader, source: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise SpecError(source, key_node.start_mark.line + 1, dotted(path), f"mapping key {key!r} must be a scalar")
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                raise SpecError(source, key_node.start_mark.line + 1, dotted((*path, key)), "duplicate key")
            out[key] = _convert(value_node, (*path, key), lines, constructor, source)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines, constructor, source) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)
