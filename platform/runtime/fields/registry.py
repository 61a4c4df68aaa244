"""The field type registry: name → type instance. One registration per type class."""
from __future__ import annotations

from typing import Iterable

from .base import FieldType


class FieldTypeRegistry:
    def __init__(self, types: Iterable[FieldType] = ()):
        self._types: dict[str, FieldType] = {}
        for t in types:
            self.register(t)

    def register(self, field_type: FieldType) -> None:
        if field_type.name in self._types:
            raise ValueError(f"field type '{field_type.name}' is already registered")
        self._types[field_type.name] = field_type

    def get(self, name: str) -> FieldType:
        try:
            return self._types[name]
        except KeyError:
            raise KeyError(f"unknown field type '{name}'") from None

    def __contains__(self, name: str) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def all(self) -> list[FieldType]:
        return [self._types[n] for n in self.names()]
