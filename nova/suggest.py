""""Did you mean" for a field the spec does not know: `walkFoward` -> `walkForward`.

The candidates are the fields (by their YAML names) of the model at the error's location, found by
walking the pydantic models along the error's path, so a hint never names a field that would be
refused in that place."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel


def did_you_mean(word: str, candidates: list[str]) -> str | None:
    """The closest candidate, if one is close enough to be a typo (case ignored)."""
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.7)
    return lowered[match[0]] if match else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, Annotated, list, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _container(annotation: Any) -> Any:
    """For dict[K, V] or list[V] (possibly Optional), the value annotation V; else None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _container(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if (inner := _container(arg)) is not None:
                return inner
        return None
    if origin is dict:
        return typing.get_args(annotation)[1]
    if origin is list:
        return typing.get_args(annotation)[0]
    return None


def _field(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The YAML names of the fields allowed at `loc` (the path of the unknown field's parent)."""
    current: Any = model
    for key in loc:
        models = _models_in(current)
        if models:
            current = _field(models[0], str(key))
        else:
            current = _container(current)
        if current is None:
            return []
    models = _models_in(current)
    if not models:
        return []
    return [info.alias or name for name, info in models[0].model_fields.items()]


def hint(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> str:
    """' (did you mean walkForward?)' for an unknown field at `loc`, or ''."""
    if model is None or not loc:
        return ""
    match = did_you_mean(str(loc[-1]), fields_at(model, loc[:-1]))
    return f" (did you mean {match}?)" if match else ""
