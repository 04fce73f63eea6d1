import json

import pytest

from curation.choices import ExampleStatus, ImportStatus
from curation.imports import import_examples
from curation.models import Example
from tests.support.factories import AnnotatorFactory, DatasetFactory

pytestmark = pytest.mark.django_db


def jsonl(*records) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()


def chat(user, assistant):
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def test_file_with_broken_line_unknown_role_and_no_assistant_turn_imports_nothing():
    data = jsonl(
        chat("a", "b"),
        '{"messages": [',
        {"messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        chat("c", "d"),
    )
    batch = import_examples(DatasetFactory(), data, "chat_jsonl", by=AnnotatorFactory(), filename="bad.jsonl")

    assert batch.status == ImportStatus.FAILED
    assert [e["line"] for e in batch.errors] == [2, 3, 4]
    assert "invalid JSON" in batch.errors[0]["reason"]
    assert "role 'robot'" in batch.errors[1]["reason"]
    assert "no assistant turn" in batch.errors[2]["reason"]
    assert Example.objects.count() == 0


def test_skip_invalid_imports_the_valid_lines_and_lists_every_skipped_one():
    data = jsonl(chat("a", "b"), "not json", chat("c", "d"), {"messages": []})
    batch = import_examples(DatasetFactory(), data, "chat_jsonl", by=AnnotatorFactory(), skip_invalid=True)

    assert batch.status == ImportStatus.SUCCEEDED
    assert (batch.created_count, batch.error_count) == (2, 2)
    assert [e["line"] for e in batch.errors] == [2, 4]
    assert set(Example.objects.values_list("status", flat=True)) == {ExampleStatus.SUBMITTED}


def test_duplicates_in_the_file_and_in_the_dataset_are_reported_not_inserted():
    dataset, user = DatasetFactory(), AnnotatorFactory()
    first = import_examples(dataset, jsonl(chat("a", "b")), "chat_jsonl", by=user)
    existing = Example.objects.get()

    batch = import_examples(dataset, jsonl(chat("a", "b"), chat("c", "d"), chat("c", "d")), "chat_jsonl", by=user)

    assert first.created_count == 1
    assert batch.created_count == 1
    assert batch.duplicates == [{"line": 1, "duplicate_of": f"example {existing.pk}"},
                                {"line": 3, "duplicate_of": "line 2"}]
    assert Example.objects.count() == 2


def test_imported_examples_record_author_batch_and_line():
    user = AnnotatorFactory()
    batch = import_examples(DatasetFactory(), jsonl(chat("a", "b")), "chat_jsonl", by=user)
    example = Example.objects.get()
    assert (example.author, example.import_batch, example.metadata["import_line"]) == (user, batch, 1)


def test_prompt_completion_file_imports():
    data = jsonl({"prompt": "How many singers?", "completion": "select count(*) from singer"})
    batch = import_examples(DatasetFactory(), data, "prompt_completion_jsonl", by=AnnotatorFactory())
    assert batch.created_count == 1
    assert Example.objects.get().messages[-1]["content"] == "select count(*) from singer"


def test_empty_file_is_refused_with_a_clear_error():
    batch = import_examples(DatasetFactory(), b"\n\n", "chat_jsonl", by=AnnotatorFactory(), filename="empty.jsonl")
    assert batch.status == ImportStatus.FAILED
    assert "empty.jsonl has no records" in batch.error


def test_real_e2e_file_imports_completely(e2e_records):
    data = "\n".join(json.dumps(r) for r in e2e_records).encode()
    batch = import_examples(DatasetFactory(), data, "chat_jsonl", by=AnnotatorFactory())
    assert batch.status == ImportStatus.SUCCEEDED
    assert batch.created_count + batch.duplicate_count == len(e2e_records) == 1000
