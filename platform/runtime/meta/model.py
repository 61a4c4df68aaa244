"""Compiled definitions: small immutable objects. Nothing outside ``meta`` reads raw dicts."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Mapping


@dataclass(frozen=True)
class Label:
    zh: str
    en: str

    def get(self, locale: str | None) -> str:
        return self.zh if (locale or "").startswith("zh") else self.en

    @classmethod
    def of(cls, raw: Any, fallback: str = "") -> "Label":
        if raw is None:
            return cls(fallback, fallback)
        if isinstance(raw, str):
            return cls(raw, raw)
        return cls(raw.get("zh") or raw.get("en") or fallback, raw.get("en") or raw.get("zh") or fallback)

    def to_json(self) -> dict:
        return {"zh": self.zh, "en": self.en}


EMPTY_LABEL = Label("", "")


def frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class FieldDef:
    id: str
    name: str
    type: str
    label: Label
    required: bool = False
    unique: bool = False
    read_only: bool = False
    default: Any = None
    help: Label = EMPTY_LABEL
    placeholder: Label = EMPTY_LABEL
    # Type-specific settings (max_length, options, target, ...), validated by the type's config schema.
    config: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Expressions (crmkit.runtime.expr): required when true; shown (and so checked) only when true.
    required_if: str = ""
    visible_if: str = ""

    def opt(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)


@dataclass(frozen=True)
class ValidationRule:
    """An entity-level rule: ``rule`` must not be false, or ``message`` is shown on ``fields``."""

    id: str
    rule: str
    message: Label
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class IndexDef:
    name: str
    fields: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True)
class EntityDef:
    id: str
    app: str
    name: str
    label: Label
    plural_label: Label
    fields: tuple[FieldDef, ...]
    title_field: str
    search_fields: tuple[str, ...] = ()
    indexes: tuple[IndexDef, ...] = ()
    icon: str = "table"
    is_child: bool = False
    parent: str | None = None  # entity key of the parent, for child tables
    source: str = ""
    validations: tuple[ValidationRule, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.app}.{self.name}"

    @property
    def table_name(self) -> str:
        return f"{self.app}_{self.name}"

    def field(self, name: str) -> FieldDef:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def has_field(self, name: str) -> bool:
        return any(f.name == name for f in self.fields)

    @cached_property
    def field_map(self) -> Mapping[str, FieldDef]:
        """Built once per (immutable) definition: the write and read paths ask for it per record."""
        return {f.name: f for f in self.fields}


@dataclass(frozen=True)
class FormField:
    field: str
    span: int = 1
    help: Label | None = None
    placeholder: Label | None = None


@dataclass(frozen=True)
class FormSection:
    id: str
    label: Label
    columns: int
    fields: tuple[FormField, ...]
    tab: str | None = None


@dataclass(frozen=True)
class FormDef:
    entity: str
    name: str
    sections: tuple[FormSection, ...]
    tabs: tuple[tuple[str, Label], ...] = ()
    source: str = ""


@dataclass(frozen=True)
class SortSpec:
    field: str
    descending: bool = False


@dataclass(frozen=True)
class SavedFilter:
    name: str
    label: Label
    filter: Mapping[str, Any]


@dataclass(frozen=True)
class ViewDef:
    entity: str
    name: str
    label: Label
    columns: tuple[str, ...]
    default_sort: tuple[SortSpec, ...] = ()
    filters: tuple[SavedFilter, ...] = ()
    page_size: int = 25
    source: str = ""


@dataclass(frozen=True)
class MenuItem:
    entity: str
    label: Label | None = None


@dataclass(frozen=True)
class AppDef:
    id: str
    version: str
    title: Label
    description: Label = EMPTY_LABEL
    depends: tuple[str, ...] = ()
    icon: str = "app"
    menu: tuple[MenuItem, ...] = ()
    source: str = ""


# --- reports and dashboards ------------------------------------------------------------------

@dataclass(frozen=True)
class ReportGroup:
    """A group-by level: a field path on the source (``level`` or ``store.region.name``), optionally bucketed."""
    field: str
    bucket: str | None = None
    label: Label | None = None


@dataclass(frozen=True)
class ReportMeasure:
    name: str
    agg: str  # count, count_distinct, sum, avg, min, max, ratio, percent_of_total
    field: str | None = None
    of: str | None = None
    numerator: str | None = None
    denominator: str | None = None
    label: Label | None = None
    format: str = "number"


@dataclass(frozen=True)
class ReportPrompt:
    """A value the user supplies when running the report: a date range or one value of a field."""
    name: str
    type: str  # date_range | value
    field: str
    label: Label | None = None
    default: str | None = None


@dataclass(frozen=True)
class ReportDef:
    app: str
    name: str
    label: Label
    source: str
    measures: tuple[ReportMeasure, ...]
    groups: tuple[ReportGroup, ...] = ()
    columns: ReportGroup | None = None  # the pivot's column dimension
    filter: Mapping[str, Any] | None = None
    prompts: tuple[ReportPrompt, ...] = ()
    sort: tuple[SortSpec, ...] = ()
    limit: int | None = None
    output: str = "table"  # table | pivot | chart
    chart: str | None = None
    compare: str | None = None
    description: Label = EMPTY_LABEL
    roles: tuple[str, ...] = ()
    owner: int | None = None  # set on personal reports
    shared_roles: tuple[str, ...] = ()
    source_file: str = ""

    @property
    def key(self) -> str:
        return f"{self.app}.{self.name}"

    def measure(self, name: str) -> ReportMeasure:
        for m in self.measures:
            if m.name == name:
                return m
        raise KeyError(name)


@dataclass(frozen=True)
class DashboardWidget:
    report: str
    title: Label | None = None
    width: int = 6
    height: str = "medium"


@dataclass(frozen=True)
class DashboardDef:
    app: str
    name: str
    label: Label
    widgets: tuple[DashboardWidget, ...]
    description: Label = EMPTY_LABEL
    roles: tuple[str, ...] = ()
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.app}.{self.name}"
