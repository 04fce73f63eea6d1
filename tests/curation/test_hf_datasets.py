"""Hugging Face datasets folders: import (save_to_disk folders) and export (a DatasetDict beside the JSONL)."""
import io
import tarfile

import datasets
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from curation.choices import ExampleStatus
from curation.formats import with_system_prompt
from curation.imports import describe_batch, import_examples
from curation.models import Example, SnapshotExport
from curation.snapshots import create_snapshot
from ftplatform.jobrows import JobStatus
from tests.support.factories import DatasetFactory, EngineerFactory, ExampleFactory, conversation


def chat_rows(n: int) -> list[dict]:
    return [{"messages": conversation(f"name: Place {i}", f"Place {i} is a pub."), "source": f"row-{i}"}
            for i in range(n)]


def saved(tmp_path, rows=None, **splits):
    """A folder written by save_to_disk: a Dataset of ``rows``, or a DatasetDict of ``splits``."""
    folder = tmp_path / "hf"
    if rows is not None:
        datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    else:
        datasets.DatasetDict({name: datasets.Dataset.from_list(r) for name, r in splits.items()}).save_to_disk(
            str(folder))
    return folder


@pytest.mark.django_db
def test_chat_folder_imports_every_row_with_the_other_columns_as_metadata(tmp_path):
    batch = import_examples(DatasetFactory(), saved(tmp_path, chat_rows(5)), "hf_dataset", by=EngineerFactory())
    assert (batch.status, batch.created_count, batch.rows_total) == (JobStatus.SUCCEEDED, 5, 5)
    example = Example.objects.get(metadata__import_line=3)
    assert example.messages == conversation("name: Place 2", "Place 2 is a pub.")
    assert example.metadata == {"source": "row-2", "import_line": 3}


@pytest.mark.django_db
def test_a_bad_row_is_named_by_its_row_number_and_nothing_is_imported(tmp_path):
    rows = chat_rows(4)
    rows[2]["messages"] = [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]
    batch = import_examples(DatasetFactory(), saved(tmp_path, rows), "hf_dataset", by=EngineerFactory())
    assert batch.status == JobStatus.FAILED and Example.objects.count() == 0
    assert batch.errors == [{"line": 3, "reason": "message 2 has role 'bot'; expected one of system, developer, user, "
                                                  "assistant, tool, function"}]
    assert "  row 3: message 2 has role 'bot'" in "\n".join(describe_batch(batch))


@pytest.mark.django_db
def test_tool_call_turns_survive_the_nulls_arrow_adds(tmp_path):
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    rows = [{"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None,
                                                                    "tool_calls": [call]},
                          {"role": "tool", "content": "rain", "tool_call_id": "call_1"},
                          {"role": "assistant", "content": "It rains."}]},
            {"messages": conversation("q", "a")}]
    batch = import_examples(DatasetFactory(), saved(tmp_path, rows), "hf_dataset", by=EngineerFactory())
    assert batch.created_count == 2, batch.errors
    assert Example.objects.get(metadata__import_line=2).messages == conversation("q", "a")


@pytest.mark.django_db
def test_prompt_completion_columns_become_a_conversation(tmp_path):
    folder = saved(tmp_path, [{"prompt": "How many singers?", "completion": "select count(*) from singer"}])
    import_examples(DatasetFactory(), folder, "hf_dataset", by=EngineerFactory())
    assert Example.objects.get().messages == conversation("How many singers?", "select count(*) from singer")


@pytest.mark.django_db
def test_a_dataset_dict_needs_a_split_when_it_has_several(tmp_path):
    folder = saved(tmp_path, train=chat_rows(3), test=chat_rows(2))
    dataset, user = DatasetFactory(), EngineerFactory()
    refused = import_examples(dataset, folder, "hf_dataset", by=user)
    assert refused.status == JobStatus.FAILED
    assert "DatasetDict with splits train, test; say which split to import" in refused.error

    batch = import_examples(dataset, folder, "hf_dataset", by=user, hf_split="test")
    assert (batch.created_count, batch.hf_split) == (2, "test")


@pytest.mark.django_db
def test_a_refused_folder_is_named_without_its_server_path(tmp_path):
    """The job's message named the stored copy by its whole path (".../artifacts/uploads/import-1-x/dataset"),
    which the import's API answer shows to the uploader and the dataset's reviewers."""
    folder = saved(tmp_path, train=chat_rows(3), test=chat_rows(2))
    refused = import_examples(DatasetFactory(), folder, "hf_dataset", by=EngineerFactory())
    assert refused.error == ("dataset holds a DatasetDict with splits train, test; say which split to import (one "
                             "split per import, so row numbers stay unambiguous)")


@pytest.mark.django_db
def test_a_table_without_conversation_columns_is_refused_by_name(tmp_path):
    batch = import_examples(DatasetFactory(), saved(tmp_path, [{"text": "hello"}]), "hf_dataset", by=EngineerFactory())
    assert batch.error == "the dataset has columns text; expected 'messages' (chat) or 'prompt' and 'completion'"


@pytest.mark.django_db
def test_command_imports_a_folder(tmp_path, capsys):
    dataset, user = DatasetFactory(), EngineerFactory()
    folder = saved(tmp_path, chat_rows(3))
    call_command("import_examples", str(folder), dataset=dataset.name, username=user.username, format="hf_dataset")
    assert "3 created" in capsys.readouterr().out
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("import_examples", str(folder / "dataset_info.json"), dataset=dataset.name,
                     username=user.username, format="hf_dataset")


@pytest.mark.django_db(transaction=True)
def test_export_round_trips_through_load_from_disk_and_the_download(run_jobs, tmp_path):
    dataset = DatasetFactory()
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED,
                   messages=[{"role": "user", "content": "find it"}, {"role": "assistant", "content": "",
                                                                     "tool_calls": [call]}])
    for i in range(11):
        ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED, messages=conversation(f"in {i}", f"out {i}"))
    snapshot, _ = create_snapshot(dataset, by=EngineerFactory())
    client = APIClient()
    client.force_authenticate(EngineerFactory())
    export_id = client.post(f"/api/v1/snapshots/{snapshot.pk}/export/").json()["id"]
    run_jobs()
    export = SnapshotExport.objects.get(pk=export_id)

    def frozen(split):  # as training reads them: the snapshot's system prompt first
        return sorted((with_system_prompt(messages, snapshot.system_prompt)
                       for messages in snapshot.items.filter(split=split).values_list("messages", flat=True)), key=str)

    def without_nulls(messages):
        return [{k: v for k, v in m.items() if v is not None} for m in messages]

    loaded = datasets.load_from_disk(f"{export.path}/hf_dataset")
    assert list(loaded) == ["train", "validation", "test"]
    for split in loaded:
        assert sorted((without_nulls(m) for m in loaded[split]["messages"]), key=str) == frozen(split)

    response = client.get(f"/api/v1/snapshot-exports/{export_id}/hf-dataset/")
    assert response.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content))) as archive:
        archive.extractall(tmp_path / "download", filter="data")
    downloaded = datasets.load_from_disk(str(tmp_path / "download" / "hf_dataset"))
    assert {split: len(part) for split, part in downloaded.items()} == snapshot.split_counts
