"""Which fields hold personal data: field definitions marked ``"personal": true``."""
from __future__ import annotations

from ..meta.model import EntityDef, FieldDef


def personal_fields(entity: EntityDef) -> list[FieldDef]:
    return [f for f in entity.fields if f.opt("personal") is True]


def has_personal_data(entity: EntityDef) -> bool:
    return any(f.opt("personal") is True for f in entity.fields)
