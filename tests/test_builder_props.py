"""The property editor is generated from schemas: a new type's properties get inputs without builder changes."""
from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from crmkit.builder.props import PropertyError, entity_extra_specs, field_prop_specs, parse_props
from crmkit.runtime.fields import default_registry
from crmkit.runtime.fields.text import TextType


class ConditionalText(TextType):
    """Stands in for field kinds that arrive later (formula, lookup …) and their expression properties."""

    name = "conditional_text"
    config_properties = {**TextType.config_properties,
                         "visible_if": {"type": "string", "maxLength": 500},
                         "rules": {"type": "array", "items": {"type": "object", "properties": {"when": {"type": "string"}}}}}


def test_declared_properties_become_inputs_of_the_right_kind():
    registry = default_registry("Asia/Shanghai")
    specs = {s.name: s.kind for s in field_prop_specs(registry, ConditionalText())}
    assert specs["label"] == "label" and specs["required"] == "boolean" and specs["mask"] == "enum"
    assert specs["max_length"] == "integer" and specs["visible_if"] == "string" and specs["rules"] == "json"
    link = {s.name: s for s in field_prop_specs(registry, registry.get("link"), [("membership.level", "Level")])}
    assert link["target"].kind == "entity" and link["target"].choices == [("membership.level", "Level")] and link["target"].required


def test_parsing_sets_clears_and_reports_by_property():
    registry = default_registry("Asia/Shanghai")
    specs = field_prop_specs(registry, ConditionalText())
    form = MultiDict({"p.label.zh": "微信号", "p.label.en": "", "p.max_length": "64", "p.visible_if": "status = 'active'",
                      "p.rules": '[{"when": "x"}]', "p.required": "true", "p.help.zh": "", "p.help.en": ""})
    values, cleared = parse_props(specs, form)
    assert values == {"label": {"zh": "微信号", "en": "微信号"}, "max_length": 64, "visible_if": "status = 'active'",
                      "rules": [{"when": "x"}], "required": True}
    assert "help" in cleared and "unique" in cleared
    with pytest.raises(PropertyError) as info:
        parse_props(specs, MultiDict({"p.max_length": "long", "p.rules": "[oops"}))
    assert set(info.value.errors) == {"max_length", "rules"}


def test_options_parse_with_values_labels_and_colours():
    registry = default_registry("Asia/Shanghai")
    specs = [s for s in field_prop_specs(registry, registry.get("single_select")) if s.name == "options"]
    form = MultiDict([("p.options.value", "sh"), ("p.options.zh", "上海店"), ("p.options.en", "Shanghai"), ("p.options.color", "#2563eb"),
                      ("p.options.value", ""), ("p.options.zh", "北京店"), ("p.options.en", "Beijing"), ("p.options.color", "")])
    values, _ = parse_props(specs, form)
    assert values["options"] == [{"value": "sh", "label": {"zh": "上海店", "en": "Shanghai"}, "color": "#2563eb"},
                                 {"value": "beijing", "label": {"zh": "北京店", "en": "Beijing"}}]
    with pytest.raises(PropertyError):
        parse_props(specs, MultiDict([("p.options.value", "a"), ("p.options.zh", "甲"), ("p.options.value", "a"), ("p.options.zh", "乙")]))


def test_entity_properties_beyond_the_settings_form_are_generic():
    names = {s.name for s in entity_extra_specs(default_registry("Asia/Shanghai"))}
    assert not names & {"label", "fields", "title_field"}  # those have their own inputs
