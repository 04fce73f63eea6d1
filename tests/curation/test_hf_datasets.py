"""Hugging Face datasets folders: import (save_to_disk folders) and export (a DatasetDict beside the JSONL)."""
import io
import tarfile

import datasets
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
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
    with pytest.raises(CommandError, match="is not a .tar"):
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


def tarred(folder, name="hf_dataset", mode="w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        archive.add(folder, arcname=name)
    return buffer.getvalue()


def admin_import(client, dataset, **fields):
    return client.post(reverse("admin:curation_importbatch_add"), {"dataset": dataset.pk, "format": "hf_dataset",
                                                                   **fields}, follow=True).content.decode()


@pytest.mark.django_db
def test_the_admin_imports_an_uploaded_archive_of_a_dataset_dict_split(superuser_client, tmp_path):
    dataset = DatasetFactory()
    folder = saved(tmp_path, train=chat_rows(3), test=chat_rows(2))
    page = admin_import(superuser_client, dataset, hf_split="test",
                        file=SimpleUploadedFile("hf_dataset.tar.gz", tarred(folder, mode="w:gz")))
    assert "hf_dataset.tar.gz: succeeded; 2 records, 2 created" in page
    assert sorted(e.metadata["source"] for e in dataset.examples.all()) == ["row-0", "row-1"]


@pytest.mark.django_db
def test_the_api_imports_a_zip_of_a_dataset(tmp_path):
    import zipfile

    folder = saved(tmp_path, chat_rows(4))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, path.name)
    client = APIClient()
    client.force_authenticate(EngineerFactory())
    response = client.post("/api/v1/imports/", {"dataset": DatasetFactory().pk, "format": "hf_dataset",
                                                "file": SimpleUploadedFile("rows.zip", buffer.getvalue())})
    assert response.status_code == 201 and response.json()["created_count"] == 4


@pytest.mark.django_db
def test_an_archive_escaping_its_folder_or_not_an_archive_is_refused_and_nothing_is_kept(superuser_client, tmp_path,
                                                                                        settings):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"x"
        member = tarfile.TarInfo("../../escaped.txt")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    dataset = DatasetFactory()
    page = admin_import(superuser_client, dataset, file=SimpleUploadedFile("evil.tar", buffer.getvalue()))
    assert ("Evil.tar: the tar archive&#x27;s member &#x27;../../escaped.txt&#x27; is refused (outside destination "
            "error): members must be files and folders inside the archive&#x27;s folder") in page
    assert str(settings.ARTIFACTS_ROOT) not in page
    page = admin_import(superuser_client, dataset, file=SimpleUploadedFile("rows.jsonl", b"{}"))
    assert "Rows.jsonl: the upload is not a .tar" in page
    assert not (tmp_path / "escaped.txt").exists() and not (settings.ARTIFACTS_ROOT.parent / "escaped.txt").exists()
    assert list((settings.ARTIFACTS_ROOT / "uploads").iterdir()) == []
    assert not dataset.examples.exists()


@pytest.mark.django_db
def test_an_archive_larger_unpacked_than_allowed_is_refused(superuser_client, tmp_path, settings):
    settings.IMPORT_ARCHIVE_MAX_BYTES = 100
    page = admin_import(superuser_client, DatasetFactory(),
                        file=SimpleUploadedFile("big.tar", tarred(saved(tmp_path, chat_rows(3)))))
    assert "more than the 100 allowed" in page


@pytest.mark.django_db
def test_a_server_folder_is_taken_only_under_the_import_root(superuser_client, tmp_path, settings):
    dataset = DatasetFactory()
    saved(tmp_path / "root", chat_rows(2))  # tmp_path/root/hf
    assert "server_folder" not in superuser_client.get(reverse("admin:curation_importbatch_add")).content.decode()
    settings.IMPORT_ROOT = str(tmp_path / "root")
    assert "server_folder" in superuser_client.get(reverse("admin:curation_importbatch_add")).content.decode()
    for outside in ("../root/../", "/etc", "hf/../.."):
        page = admin_import(superuser_client, dataset, server_folder=outside)
        assert "leaves the import root" in page or "relative to the import root" in page, outside
    assert "no such folder under the import root" in admin_import(superuser_client, dataset, server_folder="nope")
    assert "Only Hugging Face datasets folders" in admin_import(superuser_client, dataset, server_folder="hf",
                                                                format="chat_jsonl")
    assert "hf: succeeded; 2 records, 2 created" in admin_import(superuser_client, dataset, server_folder="hf")
