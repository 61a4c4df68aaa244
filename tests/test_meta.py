"""Meta-schema validation and compiling: every broken definition is reported with its file,
JSON pointer and problem; good definitions compile into immutable objects with stable ids."""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from core_support import CATEGORY, L, SAMPLE, SAMPLE_LINE, entity_doc, lab_documents
from crmkit.runtime.errors import DefinitionError
from crmkit.runtime.fields import default_registry
from crmkit.runtime.meta.compile import RawDocument, compile_documents
from crmkit.runtime.meta.loader import load_app_folder

REGISTRY = default_registry()
SAMPLE_FILE = "lab/entities/sample.json"
FIELD = {f["name"]: i for i, f in enumerate(SAMPLE["fields"])}


def compile_with(mutate=None, extra=()):
    """Compile the lab app after ``mutate(bodies)`` changed a copy of its entity bodies."""
    bodies = {"category": copy.deepcopy(CATEGORY), "sample": copy.deepcopy(SAMPLE), "sample_line": copy.deepcopy(SAMPLE_LINE)}
    if mutate:
        mutate(bodies)
    return compile_documents(lab_documents(*bodies.values()) + list(extra), REGISTRY)


def problems_of(mutate=None, extra=()) -> list[tuple[str, str, str]]:
    with pytest.raises(DefinitionError) as info:
        compile_with(mutate, extra)
    return info.value.problems


def field(name):
    return lambda b: b["sample"]["fields"][FIELD[name]]


def set_field(field_name, /, **changes):
    return lambda b: field(field_name)(b).update(changes)


def form(*fields):
    return RawDocument("form", "lab", {"entity": "lab.sample", "name": "default",
                                       "sections": [{"id": "main", "label": L("主要"), "fields": list(fields)}]}, "lab/forms/sample.json")


def view(**body):
    return RawDocument("view", "lab", {"entity": "lab.sample", "name": "default", "label": L("全部"), "columns": ["title"], **body},
                       "lab/views/sample.json")


# (id, mutate bodies, extra documents, file, pointer, words the message must contain)
MISTAKES = [
    ("missing_required_key", lambda b: b["sample"].pop("title_field"), (), SAMPLE_FILE, "", "'title_field' is a required property"),
    ("unknown_top_level_key", lambda b: b["sample"].update(colour="red"), (), SAMPLE_FILE, "", "'colour' was unexpected"),
    ("wrong_type_of_value", lambda b: b["sample"].update(search_fields="title"), (), SAMPLE_FILE, "/search_fields", "not of type 'array'"),
    ("wrong_type_in_field", set_field("title", required="yes"), (), SAMPLE_FILE, "/fields/0/required", "not of type 'boolean'"),
    ("label_without_english", lambda b: b["sample"].update(label={"zh": "样本"}), (), SAMPLE_FILE, "/label", "'en' is a required property"),
    ("unknown_field_type", set_field("title", type="txt"), (), SAMPLE_FILE, "/fields/0/type", "unknown field type 'txt'"),
    ("field_name_not_identifier", set_field("title", name="Title Name"), (), SAMPLE_FILE, "/fields/0/name", "required form"),
    ("field_name_reserved_id", set_field("title", name="id"), (), SAMPLE_FILE, "/fields/0/name", "'id' is reserved"),
    ("field_name_reserved_created_at", set_field("note", name="created_at"), (), SAMPLE_FILE, "/fields/1/name", "'created_at' is reserved"),
    ("duplicate_field_name", set_field("count", name="note"), (), SAMPLE_FILE, "/fields/2/name", "field name 'note' is used twice"),
    ("duplicate_field_id", set_field("note", id="fld_s_title"), (), SAMPLE_FILE, "/fields/1/id", "field id 'fld_s_title' is used twice"),
    ("title_field_missing", lambda b: b["sample"].update(title_field="nope"), (), SAMPLE_FILE, "/title_field", "'nope' is not a field"),
    ("title_field_without_value", lambda b: b["sample"].update(title_field="lines"), (), SAMPLE_FILE, "/title_field", "child_table"),
    ("search_field_missing", lambda b: b["sample"].update(search_fields=["title", "nope"]), (), SAMPLE_FILE, "/search_fields/1", "'nope' is not a field"),
    ("search_field_not_text", lambda b: b["sample"].update(search_fields=["count"]), (), SAMPLE_FILE, "/search_fields/0", "text-like"),
    ("link_to_unknown_entity", set_field("category", target="lab.nothing"), (), SAMPLE_FILE, f"/fields/{FIELD['category']}", "unknown entity 'lab.nothing'"),
    ("child_table_unknown_entity", set_field("lines", entity="lab.none"), (), SAMPLE_FILE, f"/fields/{FIELD['lines']}", "unknown entity 'lab.none'"),
    ("child_not_declared_child", lambda b: b["sample_line"].update(is_child=False), (), SAMPLE_FILE, f"/fields/{FIELD['lines']}", '"is_child": true'),
    ("select_duplicate_option_values", set_field("color", options=[{"value": "a", "label": L("甲", "A")}, {"value": "a", "label": L("乙", "B")}]),
     (), SAMPLE_FILE, f"/fields/{FIELD['color']}", "option value 'a' is used twice"),
    ("multi_select_duplicate_option_values", set_field("colors", options=[{"value": "a", "label": L("甲", "A")}, {"value": "a", "label": L("乙", "B")}]),
     (), SAMPLE_FILE, f"/fields/{FIELD['colors']}", "option value 'a' is used twice"),
    ("select_without_options", lambda b: field("color")(b).pop("options"), (), SAMPLE_FILE, f"/fields/{FIELD['color']}", "'options' is a required property"),
    ("option_property_on_text", set_field("title", options=[]), (), SAMPLE_FILE, "/fields/0/options", "not a property of a text field"),
    ("text_max_length_negative", set_field("title", max_length=-1), (), SAMPLE_FILE, "/fields/0/max_length", "less than the minimum of 1"),
    ("text_min_above_max_length", set_field("title", min_length=30, max_length=10), (), SAMPLE_FILE, "/fields/0", "min_length (30) is greater than max_length (10)"),
    ("text_pattern_not_regex", set_field("title", pattern="(["), (), SAMPLE_FILE, "/fields/0/pattern", "is not a 'regex'"),
    ("decimal_scale_above_precision", set_field("ratio", precision=4, scale=6), (), SAMPLE_FILE, f"/fields/{FIELD['ratio']}", "scale (6) is greater than precision (4)"),
    ("integer_min_above_max", set_field("count", min=10, max=1), (), SAMPLE_FILE, f"/fields/{FIELD['count']}", "min (10) is greater than max (1)"),
    ("date_bound_not_a_date", set_field("day", min="2024-13-01"), (), SAMPLE_FILE, f"/fields/{FIELD['day']}/min", "is not a 'date'"),
    ("sequence_without_digits", lambda b: field("serial")(b).pop("digits"), (), SAMPLE_FILE, f"/fields/{FIELD['serial']}", "'digits' is a required property"),
    ("default_not_valid_for_type", set_field("count", default="many"), (), SAMPLE_FILE, f"/fields/{FIELD['count']}/default", "Not a valid integer"),
    ("id_number_derives_into_wrong_type", set_field("idno", derive_gender="title"), (), SAMPLE_FILE, f"/fields/{FIELD['idno']}", "not a single_select field"),
    ("index_on_unknown_field", lambda b: b["sample"].update(indexes=[{"fields": ["title", "nope"]}]), (), SAMPLE_FILE, "/indexes/0/fields/1", "unknown field 'nope'"),
    ("index_on_field_without_column", lambda b: b["sample"].update(indexes=[{"fields": ["lines"]}]), (), SAMPLE_FILE, "/indexes/0/fields/0", "no column"),
    ("form_unknown_field", None, (form("title", "nope"),), "lab/forms/sample.json", "/sections/0/fields/1", "'nope' is not a field of lab.sample"),
    ("form_field_twice", None, (form("title", {"field": "title"}),), "lab/forms/sample.json", "/sections/0/fields/1", "appears twice"),
    ("form_unknown_entity", None, (RawDocument("form", "lab", {"entity": "lab.nope", "name": "default", "sections": [{"id": "m", "label": L("主"), "fields": ["title"]}]}, "lab/forms/nope.json"),),
     "lab/forms/nope.json", "/entity", "unknown entity 'lab.nope'"),
    ("view_unknown_column", None, (view(columns=["title", "nope"]),), "lab/views/sample.json", "/columns/1", "'nope' is not a field"),
    ("view_sort_not_sortable", None, (view(default_sort=[{"field": "note"}]),), "lab/views/sample.json", "/default_sort/0/field", "cannot be sorted"),
    ("view_filter_unknown_field", None, (view(filters=[{"name": "f", "label": L("筛"), "filter": {"and": [{"field": "nope", "op": "eq", "value": 1}]}}]),),
     "lab/views/sample.json", "/filters/0/filter/and/0/field", "'nope' is not a field"),
    ("view_filter_wrong_operator", None, (view(filters=[{"name": "f", "label": L("筛"), "filter": {"field": "title", "op": "between", "value": [1, 2]}}]),),
     "lab/views/sample.json", "/filters/0/filter/op", "operator 'between' does not apply to 'title'"),
    ("view_is_not_an_object", None, (RawDocument("view", "lab", [1], "lab/views/list.json"),), "lab/views/list.json", "", "not of type 'object'"),
]


@pytest.mark.parametrize("mutate, extra, file, ptr, words", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_each_mistake_names_file_pointer_and_problem(mutate, extra, file, ptr, words):
    problems = problems_of(mutate, extra)
    assert any(f == file and p == ptr and words in m for f, p, m in problems), problems
    # Exactly the one mistake is reported: no follow-on noise that would hide the cause.
    assert len(problems) == 1, problems


def test_unknown_property_is_reported_once_at_its_own_pointer():
    problems = problems_of(set_field("title", colour="red", max_length=0))
    assert sorted(p for _, p, _ in problems) == ["/fields/0/colour", "/fields/0/max_length"]
    assert "allowed:" in dict((p, m) for _, p, m in problems)["/fields/0/colour"]


def test_every_problem_in_several_files_is_reported_at_once():
    def break_two(b):
        b["sample"]["fields"][0]["type"] = "txt"
        b["category"]["fields"][1]["name"] = "Code"

    problems = problems_of(break_two)
    assert {(f, p) for f, p, _ in problems} == {(SAMPLE_FILE, "/fields/0/type"), ("lab/entities/category.json", "/fields/1/name")}


def test_error_message_and_api_body_carry_file_and_pointer():
    with pytest.raises(DefinitionError) as info:
        compile_with(set_field("title", type="txt"))
    err = info.value
    assert f"{SAMPLE_FILE}: /fields/0/type: unknown field type 'txt'" in str(err)
    body = err.to_dict()
    assert body["code"] == "invalid_definition" and err.status == 400
    assert body["details"]["problems"][0] == {"file": SAMPLE_FILE, "pointer": "/fields/0/type", "message": err.problems[0][2]}


def write_app(root: Path, entity_text: str) -> Path:
    folder = root / "shop"
    (folder / "entities").mkdir(parents=True)
    (folder / "app.json").write_text(json.dumps({"id": "shop", "version": "1.0.0", "title": L("商店", "Shop")}), "utf-8")
    (folder / "entities" / "item.json").write_text(entity_text, "utf-8")
    return folder


def test_malformed_json_names_file_line_and_column(tmp_path):
    folder = write_app(tmp_path, '{"id": "ent_item",\n  "name": "item",,\n}')
    with pytest.raises(DefinitionError) as info:
        load_app_folder(folder)
    [(file, ptr, msg)] = info.value.problems
    assert file == "shop/entities/item.json" and ptr == ""
    assert "not valid JSON: line 2" in msg


def test_missing_manifest_is_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DefinitionError) as info:
        load_app_folder(tmp_path / "empty")
    assert info.value.problems == [("empty/app.json", "", "missing: every app needs an app.json manifest")]


def test_loaded_folder_problem_names_relative_file(tmp_path):
    body = {"id": "ent_item", "name": "item", "label": L("商品", "Item"), "title_field": "name",
            "fields": [{"id": "fld_item_name", "name": "name", "type": "text", "label": L("名称", "Name"), "max_length": "long"}]}
    docs = load_app_folder(write_app(tmp_path, json.dumps(body)))
    with pytest.raises(DefinitionError) as info:
        compile_documents(docs, REGISTRY)
    assert info.value.problems == [("shop/entities/item.json", "/fields/0/max_length", "'long' is not of type 'integer'")]


def test_shipped_membership_app_compiles():
    from crmkit.apps.membership import package

    catalog = compile_documents(load_app_folder(package.path), REGISTRY)
    assert {"membership.member", "membership.level"} <= set(catalog.entities)
    member = catalog.entity("membership.member")
    assert member.field("card_no").type == "sequence" and member.field("level").opt("target") == "membership.level"


def test_compiled_definitions_are_immutable():
    catalog = compile_with()
    sample = catalog.entity("lab.sample")
    title = sample.field("title")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.name = "renamed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        title.required = True
    with pytest.raises(dataclasses.FrozenInstanceError):
        title.label.zh = "改"
    with pytest.raises(TypeError):
        title.config["max_length"] = 1  # type-specific settings are a read-only mapping
    with pytest.raises(TypeError):
        catalog.entities["lab.other"] = sample
    assert isinstance(sample.fields, tuple) and isinstance(sample.search_fields, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalog.version = 9


def test_ids_are_stable_and_separate_from_names():
    def rename(b):
        b["sample"]["fields"][0]["name"] = "headline"
        b["sample"]["title_field"] = "headline"
        b["sample"]["search_fields"] = ["headline"]
        b["sample"]["name"] = "specimen"
        b["sample_line"]["parent"] = "lab.specimen"

    before = compile_with().entity("lab.sample")
    after = compile_with(rename).entity("lab.specimen")
    assert after.id == before.id == "ent_lab_sample"
    assert after.field("headline").id == before.field("title").id == "fld_s_title"
    assert [f.id for f in after.fields] == [f.id for f in before.fields]


def test_typed_values_compile_from_raw_documents():
    catalog = compile_with(extra=[view(columns=["title", "count"], default_sort=[{"field": "count", "dir": "desc"}],
                                       filters=[{"name": "big", "label": L("大", "Big"), "filter": {"field": "count", "op": "gt", "value": 5}}])])
    v = catalog.view(catalog.entity("lab.sample"))
    assert v.columns == ("title", "count")
    assert v.default_sort[0].field == "count" and v.default_sort[0].descending is True
    assert v.filters[0].label.en == "Big" and v.filters[0].filter["op"] == "gt"
    assert catalog.entity("lab.sample").field("title").opt("max_length") == 20
    assert catalog.entity("lab.sample_line").parent == "lab.sample"


def test_store_refuses_broken_definitions_and_stores_nothing(base_services):
    store = base_services.store
    before = store.stamp()
    broken = copy.deepcopy(SAMPLE)
    broken["fields"][0]["type"] = "txt"
    with pytest.raises(DefinitionError) as info:
        store.save(lab_documents(CATEGORY, SAMPLE_LINE) + [entity_doc(broken)])
    assert (SAMPLE_FILE, "/fields/0/type") in [(f, p) for f, p, _ in info.value.problems]
    assert store.stamp() == before
    with base_services.engine.connect() as conn:
        assert store.raw_documents(conn) == []


def test_store_keeps_versions_with_a_diff(base_services):
    store = base_services.store
    store.save(lab_documents(), actor_id=None, comment="first")
    changed = copy.deepcopy(CATEGORY)
    changed["fields"][0]["max_length"] = 60
    stamp = store.save([entity_doc(changed)], comment="longer names")
    assert store.catalog().version == stamp
    assert store.catalog().entity("lab.category").field("name").opt("max_length") == 60
    history = store.history("entity", "lab.category")
    assert [h["version"] for h in history] == [1, 2]
    assert history[1]["diff"] == [{"path": "/fields/0/max_length", "old": 40, "new": 60}]
    assert history[1]["comment"] == "longer names"
    # saving identical definitions changes nothing
    assert store.save([entity_doc(changed)]) == stamp
