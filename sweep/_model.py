"""Spec schemas as pydantic models, and their errors as ``file:line: field: problem``.

Each spec (sweep, search, report) declares its keys, their types, defaults and
bounds once, as a ``SpecModel``; pydantic checks them. What pydantic reports
(``ValidationError.loc`` plus an error type) is turned into the one line a spec
author reads: the location becomes a dotted field and the line it is on in the
YAML file, and the error type becomes a sentence built from the field's own
declaration (``expected a whole number >= 1 (trials to evaluate), got 0``).
Rules no schema can say (a topology that must divide vcpus, an expression that
must compile) stay in each spec's parser, which reads the validated model.

Field metadata (``spec_field``):
- ``what``: what the value means, shown in type and bound errors;
- ``hint``: how to fix a missing required key;
- ``problem``: the whole message for any error at the field itself, with ``{input!r}``.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, ClassVar, Literal, TypeVar, Union

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sweep._yaml import MarkedDocument, Path, SpecError, dotted

M = TypeVar("M", bound="SpecModel")


class SpecModel(BaseModel):
    """A mapping in a spec: unknown keys refused, no coercion (``"4"`` is not 4, ``true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)
    #: The problem when the value is not a mapping at all (default: the keys it takes).
    NOT_A_MAPPING: ClassVar[str | None] = None

    def given(self, name: str) -> bool:
        """Whether the spec wrote ``name`` (rather than leaving the default)."""
        return name in self.model_fields_set


def spec_field(default: Any = ..., *, what: str = "", hint: str = "", problem: str = "", **constraints: Any) -> Any:
    """A model field with the words its errors use (see the module docstring)."""
    extra = {k: v for k, v in (("what", what), ("hint", hint), ("problem", problem)) if v}
    return Field(default, json_schema_extra=extra or None, **constraints)


def validate_section(model: type[M], value: Any, doc: MarkedDocument, path: Path = ()) -> M:
    """``value`` (found at ``path`` of ``doc``) as a ``model``.

    Raises:
        SpecError: the first problem (an unknown key before anything else, since a
            typo there usually explains the rest), at its line.
    """
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise _spec_error(model, first, doc, path) from None


# --- ValidationError -> SpecError --------------------------------------------------------


def _spec_error(model: type[SpecModel], error: Any, doc: MarkedDocument, path: Path) -> SpecError:
    ctx = error.get("ctx") or {}
    if isinstance(ctx.get("error"), SpecError):  # a validator that already knows the line
        return ctx["error"]
    loc: Path = tuple(part for part in error["loc"] if isinstance(part, (int, str)))
    where = (*path, *loc)
    kind = error["type"]
    owner, info, annotation = _field_at(model, loc[:-1] if kind in ("missing", "extra_forbidden") else loc)
    if kind == "extra_forbidden":
        known = list(owner.model_fields) if owner is not None else []
        return doc.error(where, f"unknown key; {did_you_mean(str(loc[-1]), known)}")
    if kind == "missing":
        hint = _extra(_owned(owner, loc[-1]), "hint") if owner is not None else ""
        if not hint and owner is not None:
            hint = f"this mapping takes {', '.join(owner.model_fields)}"
        return doc.error(where[:-1], f"missing; {hint}", field=dotted(where))
    problem = _extra(info, "problem")
    if problem:
        return doc.error(where, problem.replace("{input!r}", repr(error.get("input"))))
    return doc.error(where, _sentence(kind, error, info, annotation))


def _sentence(kind: str, error: Any, info: Any, annotation: Any) -> str:
    value = error.get("input")
    base = _unwrap(annotation)
    if typing.get_origin(base) is Literal:
        return f"{value!r} is not one of {', '.join(str(c) for c in typing.get_args(base))}"
    if isinstance(base, type) and issubclass(base, SpecModel) and kind in ("model_type", "model_attributes_type", "dict_type"):
        return base.NOT_A_MAPPING or f"expected a mapping with {', '.join(base.model_fields)}"
    noun = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}.get(base)
    if typing.get_origin(base) is dict:
        noun = "a mapping"
    elif typing.get_origin(base) in (list, tuple):
        noun = "a non-empty list" if kind == "too_short" or _bound(info, annotated_types.MinLen) else "a list"
    if noun is None:
        return str(error.get("msg", "invalid value")).splitlines()[0]
    bounds = "".join(f" {op} {v}" for op, v in ((">=", _bound(info, annotated_types.Ge)), (">", _bound(info, annotated_types.Gt)),
                                               ("<=", _bound(info, annotated_types.Le))) if v is not None)
    what = _extra(info, "what")
    return f"expected {noun}{bounds}{f' ({what})' if what else ''}, got {value!r}"


def _field_at(model: type[SpecModel], loc: Path) -> tuple[type[SpecModel] | None, Any, Any]:
    """Walk ``loc`` through the model's annotations: (the model owning the last field, its FieldInfo, the annotation there)."""
    current: Any = model
    owner: type[SpecModel] | None = model
    info: Any = None
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            if part not in current.model_fields:
                return None, None, None
            owner, info = current, current.model_fields[part]
            current = info.annotation
        elif typing.get_origin(current) in (list, tuple) and isinstance(part, int):
            owner, info, current = None, None, typing.get_args(current)[0]
        elif typing.get_origin(current) is dict:
            owner, info, current = None, None, typing.get_args(current)[1]
        else:
            return None, None, None
    if isinstance(_unwrap(current), type) and issubclass(_unwrap(current), BaseModel):
        owner = _unwrap(current)
    return owner, info, current


def _owned(owner: type[SpecModel], name: Any) -> Any:
    return owner.model_fields.get(name) if isinstance(name, str) else None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` -> ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _extra(info: Any, key: str) -> str:
    extra = getattr(info, "json_schema_extra", None)
    return str(extra.get(key, "")) if isinstance(extra, dict) else ""


def _bound(info: Any, kind: type) -> Any:
    for item in getattr(info, "metadata", ()):
        if isinstance(item, kind):
            return getattr(item, {"Ge": "ge", "Gt": "gt", "Le": "le", "MinLen": "min_length"}[kind.__name__])
    return None


def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"


__all__ = ["SpecModel", "did_you_mean", "spec_field", "validate_section"]
