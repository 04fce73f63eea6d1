"""Imports of JSONL files, all or nothing: the service, the REST upload and the `import_examples`
command."""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from curation.choices import ExampleStatus
from curation.imports import import_examples
from curation.models import Example
from ftplatform.jobrows import JobStatus
from tests.support.clients import client_for
from tests.support.factories import AnnotatorFactory, DatasetFactory, EngineerFactory

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
        {"messages": [{"role": "system", "content": "only a prompt"}]},  # a question alone is a draft to answer
        chat("c", "d"),
    )
    batch = import_examples(DatasetFactory(), data, "chat_jsonl", by=AnnotatorFactory(), filename="bad.jsonl")

    assert batch.status == JobStatus.FAILED
    assert [e["line"] for e in batch.errors] == [2, 3, 4]
    assert "invalid JSON" in batch.errors[0]["reason"]
    assert "role 'robot'" in batch.errors[1]["reason"]
    assert "no assistant turn" in batch.errors[2]["reason"]
    assert Example.objects.count() == 0


def test_skip_invalid_imports_the_valid_lines_and_lists_every_skipped_one():
    data = jsonl(chat("a", "b"), "not json", chat("c", "d"), {"messages": []})
    batch = import_examples(DatasetFactory(), data, "chat_jsonl", by=AnnotatorFactory(), skip_invalid=True)

    assert batch.status == JobStatus.SUCCEEDED
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
    assert batch.status == JobStatus.FAILED
    assert "empty.jsonl has no records" in batch.error


def test_real_e2e_file_imports_completely(e2e_records):
    data = "\n".join(json.dumps(r) for r in e2e_records).encode()
    batch = import_examples(DatasetFactory(), data, "chat_jsonl", by=AnnotatorFactory())
    assert batch.status == JobStatus.SUCCEEDED
    assert batch.created_count + batch.duplicate_count == len(e2e_records) == 1000


def upload(client, dataset, content: bytes, **extra):
    return client.post("/api/v1/imports/", {"dataset": dataset.pk, "format": "chat_jsonl",
                                            "file": SimpleUploadedFile("data.jsonl", content), **extra},
                       format="multipart")


def test_import_with_bad_lines_answers_400_with_line_numbers_and_imports_nothing():
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    response = upload(client_for(AnnotatorFactory()), DatasetFactory(), f"{good}\n{{oops\n".encode())
    assert response.status_code == 400
    assert response.json()["errors"][0]["line"] == 2
    assert Example.objects.count() == 0


def test_import_succeeds_with_201():
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    response = upload(client_for(AnnotatorFactory()), DatasetFactory(), good.encode())
    assert response.status_code == 201 and response.json()["created_count"] == 1


def test_csv_upload_with_a_column_mapping():
    response = upload(client_for(AnnotatorFactory()), DatasetFactory(), b"question,answer\nHow many?,select 1\n",
                      format="csv", column_mapping=json.dumps({"prompt": "question", "completion": "answer"}))
    assert response.status_code == 201, response.json()
    assert Example.objects.get().messages[-1]["content"] == "select 1"


def test_import_command_lists_bad_lines_and_imports_nothing(tmp_path):
    dataset, user = DatasetFactory(), AnnotatorFactory()
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
                    + "\n" + json.dumps({"messages": [{"role": "system", "content": "q"}]}) + "\n")
    with pytest.raises(CommandError, match="1 invalid line"):
        call_command("import_examples", str(path), dataset=dataset.name, username=user.username)
    assert Example.objects.count() == 0


def test_import_command_with_skip_invalid(tmp_path, capsys):
    dataset, user = DatasetFactory(), AnnotatorFactory()
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\nnot json\n")
    call_command("import_examples", str(path), dataset=dataset.name, username=user.username,
                 format="prompt_completion_jsonl", skip_invalid=True)
    assert "line 2: invalid JSON" in capsys.readouterr().out
    assert Example.objects.count() == 1


def test_unknown_user_and_dataset_are_named(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("")
    with pytest.raises(CommandError, match="no active user named 'ghost'"):
        call_command("import_examples", str(path), dataset="d", username="ghost")
    with pytest.raises(CommandError, match="no dataset named 'nope'"):
        call_command("import_examples", str(path), dataset="nope", username=AnnotatorFactory().username)


def test_create_dataset_is_undone_when_its_first_import_is_refused(tmp_path):
    from curation.models import Dataset

    path = tmp_path / "bad.jsonl"
    path.write_text("{oops\n")
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_examples", str(path), dataset="fresh", username=EngineerFactory().username,
                     create_dataset=True)
    assert not Dataset.objects.filter(name="fresh").exists()


def test_create_dataset_refuses_a_name_that_does_not_fit(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    with pytest.raises(CommandError, match="name: Ensure this value has at most 200 characters"):
        call_command("import_examples", str(path), dataset="x" * 300, username=EngineerFactory().username,
                     format="prompt_completion_jsonl", create_dataset=True)


def test_an_annotator_cannot_create_a_dataset_from_the_import_command(tmp_path):
    """--as used to bypass the role table here: any user could create a dataset."""
    from curation.models import Dataset

    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    annotator = AnnotatorFactory()
    with pytest.raises(CommandError, match=f"{annotator.username} may not create datasets "
                                           r"\(needs the 'curation.add_dataset' permission\)"):
        call_command("import_examples", str(path), dataset="fresh", username=annotator.username,
                     format="prompt_completion_jsonl", create_dataset=True)
    assert not Dataset.objects.exists() and not Example.objects.exists()
