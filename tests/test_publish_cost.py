"""What a publish costs: each changed document is validated against its meta-schema once, the catalog is
compiled once and planned once, and a worker reloading after the stamp moves re-validates only the changed
documents. The remembered results are keyed by content, so they can never vouch for a document that changed."""
from __future__ import annotations

import copy
from collections import OrderedDict

import pytest

from builder_support import ADMIN, builder_of
from core_support import SAMPLE, L, entity_doc, lab_documents
from crmkit.builder import edits
from crmkit.runtime.errors import DefinitionError
from crmkit.runtime.meta import store as store_module, validate as validate_module
from crmkit.runtime.meta.compile import RawDocument
from crmkit.runtime.meta.store import MetadataStore
from crmkit.runtime.storage.plan import Planner

MEMBER = "membership.member"
SAMPLE_FILE = "lab/entities/sample.json"


class Counter:
    def __init__(self):
        self.calls = 0


def count_schema_runs(monkeypatch, validator) -> Counter:
    """Count the real meta-schema runs of one validator (the work the cache saves)."""
    counter, real = Counter(), validator.schema_problems

    def counted(kind, document):
        counter.calls += 1
        return real(kind, document)

    monkeypatch.setattr(validator, "schema_problems", counted)
    return counter


def count_calls(monkeypatch, owner, name) -> Counter:
    counter, real = Counter(), getattr(owner, name)

    def counted(*args, **kwargs):
        counter.calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return counter


def test_a_changed_document_is_validated_again_and_refused(base_services, monkeypatch):
    store = base_services.store
    monkeypatch.setattr(validate_module, "_KNOWN", OrderedDict())  # shared by the process: earlier tests may have validated SAMPLE
    runs = count_schema_runs(monkeypatch, store.validator)
    body = copy.deepcopy(SAMPLE)
    assert store.validator.problems("entity", body, SAMPLE_FILE) == []
    assert store.validator.problems("entity", copy.deepcopy(SAMPLE), SAMPLE_FILE) == [] and runs.calls == 1  # same content: remembered

    body["fields"][0]["type"] = "txt"  # the same object, changed in place: new content, validated again
    problems = store.validator.problems("entity", body, SAMPLE_FILE)
    assert runs.calls == 2
    assert [(f, p) for f, p, _ in problems] == [(SAMPLE_FILE, "/fields/0/type")] and "unknown field type 'txt'" in problems[0][2]
    # The remembered problems name the file they are asked about, not the one that was validated first.
    assert [f for f, _, _ in store.validator.problems("entity", copy.deepcopy(body), "other/sample.json")] == ["other/sample.json"]
    assert runs.calls == 2

    # Through the store: a document that passed a preview and was then changed in place is refused on save.
    before = store.stamp()
    docs = lab_documents()
    store.preview(docs)
    docs[2].body["fields"][0]["required"] = "yes"
    with pytest.raises(DefinitionError) as info:
        store.save(docs)
    assert (SAMPLE_FILE, "/fields/0/required") in [(f, p) for f, p, _ in info.value.problems]
    assert store.stamp() == before
    with base_services.engine.connect() as conn:
        assert store.raw_documents(conn) == []  # nothing was stored


def test_a_remembered_catalog_never_stands_in_for_changed_cross_references(base_services):
    """Schema-valid documents whose references broke after a preview fail the compile's own checks."""
    store = base_services.store
    store.save(lab_documents())
    form = RawDocument("form", "lab", {"entity": "lab.sample", "name": "default",
                                       "sections": [{"id": "main", "label": L("主要"), "fields": ["title"]}]}, "lab/forms/sample.json")
    store.preview([form])
    form.body["sections"][0]["fields"].append("nope")
    with pytest.raises(DefinitionError) as info:
        store.save([form])
    assert ("lab/forms/sample.json", "/sections/0/fields/1", "'nope' is not a field of lab.sample") in info.value.problems
    assert ("lab.sample", "default") not in store.catalog().forms

    # A rename elsewhere in the same document set changes the key too: the title field must still exist.
    renamed = copy.deepcopy(SAMPLE)
    renamed["fields"][0]["name"] = "heading"
    with pytest.raises(DefinitionError) as info:
        store.save([entity_doc(renamed)])
    assert any(p == "/title_field" for _, p, _ in info.value.problems)
    assert store.catalog().entity("lab.sample").has_field("title")


def test_a_builder_publish_validates_changed_documents_once_and_compiles_and_plans_once(services, monkeypatch):
    b = builder_of(services)
    other = MetadataStore(services.engine, services.field_types)  # another worker process, already serving
    assert not other.catalog().entity(MEMBER).has_field("wechat_id")
    draft = b.open(ADMIN, MEMBER)
    draft = b.edit(ADMIN, MEMBER, draft.revision, "add_field",
                   lambda docs: edits.add_field(docs, services.field_types, "text", "wechat_id",
                                                {"label": {"zh": "微信号", "en": "WeChat ID"}, "max_length": 64}))
    runs = count_schema_runs(monkeypatch, services.store.validator)
    other_runs = count_schema_runs(monkeypatch, other.validator)
    compiles = count_calls(monkeypatch, store_module, "compile_documents")
    plans = count_calls(monkeypatch, Planner, "plan")

    known_before = set(validate_module._KNOWN)
    result = b.publish(ADMIN, MEMBER, draft.revision)

    changed = len(result.changes)
    assert changed >= 1 and [s.op for s in result.plan.steps] == ["add_column"]
    assert runs.calls == changed  # only the changed documents met the meta-schema, each once (was 3 × every document)
    assert compiles.calls == 1  # preview, the check before the plan runs and the check in the save share one compile (was 3)
    assert plans.calls == 1  # the plan shown and confirmed is the plan applied (was 2)

    # This worker's next catalog (read back from the database) re-validates nothing.
    assert services.store.catalog().entity(MEMBER).has_field("wechat_id")
    assert runs.calls == changed and compiles.calls == 2
    # Another worker notices the stamp and validates only what changed. It is another process, so it has not seen
    # what this one validated during the publish (the results this process shares between its own validators).
    for key in set(validate_module._KNOWN) - known_before:
        del validate_module._KNOWN[key]
    assert other.catalog().entity(MEMBER).has_field("wechat_id")
    assert other_runs.calls == changed


def test_a_refused_publish_reports_problems_every_time(services):
    """Failures are not remembered: the same invalid draft is refused with the same problems on each try."""
    b = builder_of(services)
    draft = b.edit(ADMIN, MEMBER, 0, "add_field",
                   lambda d: edits.add_field(d, services.field_types, "single_select", "bad", {"label": {"zh": "坏", "en": "Bad"}}))
    first = b.preview(ADMIN, MEMBER).problems
    assert first
    with pytest.raises(DefinitionError) as info:
        b.publish(ADMIN, MEMBER, draft.revision)
    assert info.value.problems == first
    assert not services.store.catalog().entity(MEMBER).has_field("bad")


def test_validators_share_remembered_results_only_when_their_field_types_match(monkeypatch):
    """Every app in a process (a test run, a worker rebuilding its app) validates a document once; a validator with
    other field types has other meta-schemas, so it validates for itself (a type it lacks is refused there)."""
    from crmkit.runtime.fields import FieldTypeRegistry, default_registry

    monkeypatch.setattr(validate_module, "_KNOWN", OrderedDict())
    first, second = validate_module.DefinitionValidator(default_registry()), validate_module.DefinitionValidator(default_registry())
    runs_first, runs_second = count_schema_runs(monkeypatch, first), count_schema_runs(monkeypatch, second)
    assert first.problems("entity", copy.deepcopy(SAMPLE), SAMPLE_FILE) == []
    assert second.problems("entity", copy.deepcopy(SAMPLE), SAMPLE_FILE) == []
    assert (runs_first.calls, runs_second.calls) == (1, 0)

    only_text = FieldTypeRegistry([t for t in default_registry().all() if t.name == "text"])
    narrow = validate_module.DefinitionValidator(only_text)
    problems = narrow.problems("entity", copy.deepcopy(SAMPLE), SAMPLE_FILE)
    types = {f["type"] for f in SAMPLE["fields"]}
    assert types - {"text"}, "SAMPLE must use a type other than text for this test to mean anything"
    assert any("/type" in at for _, at, _ in problems)
