"""The compiled, immutable set of installed definitions that one request works against."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

from ..errors import RecordNotFound
from ..i18n_text import text
from ..fields import FieldType, FieldTypeRegistry
from .workflows import WorkflowDef
from .automations import AutomationDef
from .model import DashboardDef, ReportDef
from .model import AppDef, EntityDef, FieldDef, FormDef, FormSection, FormField, Label, ViewDef


@dataclass(frozen=True)
class Catalog:
    apps: Mapping[str, AppDef]
    entities: Mapping[str, EntityDef]
    forms: Mapping[tuple[str, str], FormDef]
    views: Mapping[tuple[str, str], ViewDef]
    field_types: FieldTypeRegistry
    version: int = 0
    workflows: Mapping[str, "WorkflowDef"] = field(default_factory=lambda: MappingProxyType({}))  # by entity key
    reports: Mapping[str, ReportDef] = field(default_factory=lambda: MappingProxyType({}))
    dashboards: Mapping[str, DashboardDef] = field(default_factory=lambda: MappingProxyType({}))
    automations: Mapping[str, "AutomationDef"] = field(default_factory=lambda: MappingProxyType({}))  # by "<entity>:<name>"

    def report(self, key: str) -> ReportDef:
        try:
            return self.reports[key]
        except KeyError:
            raise RecordNotFound(text("There is no report '{key}'.", "没有名为“{key}”的报表。", key=key)) from None

    def dashboard(self, key: str) -> DashboardDef:
        try:
            return self.dashboards[key]
        except KeyError:
            raise RecordNotFound(text("There is no dashboard '{key}'.", "没有名为“{key}”的仪表板。", key=key)) from None

    def entity(self, key: str) -> EntityDef:
        try:
            return self.entities[key]
        except KeyError:
            raise RecordNotFound(f"There is no entity '{key}'. Check the address, or install the app that defines it.") from None

    def type_of(self, f: FieldDef) -> FieldType:
        return self.field_types.get(f.type)

    def form(self, entity: EntityDef, name: str = "default") -> FormDef:
        fm = self.forms.get((entity.key, name))
        if fm is not None:
            return fm
        # Without a form definition every field goes into one two-column section.
        return FormDef(entity=entity.key, name=name, sections=(
            FormSection(id="main", label=entity.label, columns=2, fields=tuple(FormField(f.name) for f in entity.fields)),
        ))

    def view(self, entity: EntityDef, name: str = "default") -> ViewDef:
        v = self.views.get((entity.key, name))
        if v is not None:
            return v
        cols = tuple(f.name for f in entity.fields if self.type_of(f).stored)[:6]
        return ViewDef(entity=entity.key, name=name, label=entity.plural_label, columns=cols)

    def views_for(self, entity: EntityDef) -> list[ViewDef]:
        return [v for (k, _), v in self.views.items() if k == entity.key] or [self.view(entity)]

    def children_of(self, entity: EntityDef) -> list[tuple[FieldDef, EntityDef]]:
        return [(f, self.entities[f.opt("entity")]) for f in entity.fields if f.type == "child_table"]

    def menu(self) -> list[tuple[AppDef, list[tuple[EntityDef, Label]]]]:
        out = []
        for app in self.apps.values():
            items = [(self.entities[m.entity], m.label or self.entities[m.entity].plural_label) for m in app.menu if m.entity in self.entities]
            if not app.menu:
                items = [(e, e.plural_label) for e in self.entities.values() if e.app == app.id and not e.is_child]
            out.append((app, items))
        return out

    def with_version(self, version: int) -> "Catalog":
        return replace(self, version=version)

    def workflow_of(self, entity: EntityDef | str) -> "WorkflowDef | None":
        return self.workflows.get(entity if isinstance(entity, str) else entity.key)

    def automations_of(self, entity: EntityDef | str) -> list["AutomationDef"]:
        key = entity if isinstance(entity, str) else entity.key
        return [a for a in self.automations.values() if a.entity == key]
