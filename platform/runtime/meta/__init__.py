"""Metadata: meta-schemas, loading, compiling into typed objects, and the versioned store.

Only the model is re-exported here; ``catalog``, ``compile`` and ``store`` depend on the
field types, which themselves depend on the model.
"""
from .model import AppDef, EntityDef, FieldDef, FormDef, FormField, FormSection, IndexDef, Label, SavedFilter, SortSpec, ViewDef

__all__ = [
    "AppDef", "EntityDef", "FieldDef", "FormDef", "FormField", "FormSection",
    "IndexDef", "Label", "SavedFilter", "SortSpec", "ViewDef",
]
