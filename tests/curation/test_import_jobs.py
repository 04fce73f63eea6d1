"""Imports as jobs: stored uploads streamed in chunks, all or nothing, progress, history on both insert paths."""
import json
import threading
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection, connections
from django.urls import reverse
from rest_framework.test import APIClient

from curation import import_job, jobs
from curation.imports import import_examples, start_import
from curation.models import Example, ImportBatch
from ftplatform import queues
from ftplatform.jobrows import JobStatus
from tests.support.factories import DatasetFactory, EngineerFactory, as_if_another_database_reused


def chat(n: int) -> dict:
    return {"messages": [{"role": "user", "content": f"name: Place {n}"},
                         {"role": "assistant", "content": f"Place {n} is a pub."}]}


def write_jsonl(path, records) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record if isinstance(record, str) else json.dumps(record))
            handle.write("\n")


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 100 records, so a few hundred lines span several inserts and progress updates."""
    monkeypatch.setattr(import_job, "CHUNK_ROWS", 100)


@pytest.mark.django_db(transaction=True)
def test_queued_import_runs_on_a_worker_and_ends_with_its_counts(run_jobs, tmp_path, small_chunks):
    path = tmp_path / "examples.jsonl"
    write_jsonl(path, [chat(n) for n in range(450)])
    batch = start_import(DatasetFactory(), path, "chat_jsonl", by=EngineerFactory())
    run_jobs()
    batch.refresh_from_db()
    assert (batch.status, batch.rows_done, batch.rows_total, batch.created_count) == ("succeeded", 450, 450, 450)
    assert batch.finished_at is not None and batch.upload_path == ""
    assert list((tmp_path / "artifacts" / "uploads").iterdir()) == []  # its folder is removed
    assert Example.objects.filter(import_batch=batch).count() == 450


@pytest.mark.django_db(transaction=True)
def test_progress_moves_while_a_worker_imports(run_jobs, tmp_path, small_chunks):
    if not (queues.is_async() and connection.vendor == "postgresql"):
        pytest.skip("needs a worker on Redis and PostgreSQL, where progress is committed while the import runs")
    path = tmp_path / "examples.jsonl"
    write_jsonl(path, [chat(n) for n in range(3000)])
    batch = start_import(DatasetFactory(), path, "chat_jsonl", by=EngineerFactory())
    seen, stop = [], threading.Event()

    def poll():  # another connection, as the admin page or an API client would be
        try:
            while not stop.is_set():
                seen.append(ImportBatch.objects.values_list("status", "rows_done", "rows_total").get(pk=batch.pk))
                time.sleep(0.002)
        finally:
            connections.close_all()

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        run_jobs()
    finally:
        stop.set()
        poller.join()
    midway = {done for state, done, total in seen if state == "running" and total == 3000 and 0 < done < 3000}
    assert len(midway) >= 2, seen[::50]


@pytest.mark.django_db
def test_a_bad_line_near_the_end_imports_nothing(tmp_path, small_chunks):
    path = tmp_path / "examples.jsonl"
    records = [chat(n) for n in range(1000)]
    records[997] = {"messages": [{"role": "system", "content": "only a prompt"}]}
    write_jsonl(path, records)
    batch = import_examples(DatasetFactory(), path, "chat_jsonl", by=EngineerFactory())
    assert batch.status == JobStatus.FAILED
    assert batch.errors == [{"line": 998, "reason": "the conversation has no assistant turn (nothing to learn)"}]
    assert (batch.created_count, batch.total_lines, batch.rows_done) == (0, 1000, 1000)
    assert not Example.objects.exists() and not Example.history.exists()


@pytest.mark.django_db
def test_skip_invalid_lists_every_skipped_line_across_chunks(tmp_path, small_chunks):
    path = tmp_path / "examples.jsonl"
    records = [chat(n) for n in range(350)]
    for line in (3, 101, 250, 350):
        records[line - 1] = "{not json"
    write_jsonl(path, records)
    batch = import_examples(DatasetFactory(), path, "chat_jsonl", by=EngineerFactory(), skip_invalid=True)
    assert batch.status == JobStatus.SUCCEEDED
    assert [e["line"] for e in batch.errors] == [3, 101, 250, 350]
    assert (batch.created_count, batch.error_count) == (346, 4)
    assert Example.objects.count() == 346


@pytest.mark.django_db
def test_duplicates_within_the_file_and_against_the_dataset_are_counted(tmp_path, small_chunks):
    dataset, user = DatasetFactory(), EngineerFactory()
    first = tmp_path / "first.jsonl"
    write_jsonl(first, [chat(n) for n in range(150)])
    import_examples(dataset, first, "chat_jsonl", by=user)
    existing = dict(Example.objects.values_list("messages__0__content", "id"))

    second = tmp_path / "second.jsonl"  # lines 1-50 and 151-200 are in the dataset; 201-320 repeat lines 51-150
    write_jsonl(second, [chat(n) for n in range(100, 250)] + [chat(n) for n in range(0, 50)]
                + [chat(n) for n in range(150, 250)] + [chat(n) for n in range(200, 220)])
    batch = import_examples(dataset, second, "chat_jsonl", by=user)

    assert (batch.status, batch.created_count, batch.duplicate_count) == ("succeeded", 100, 220)
    assert batch.duplicates[0] == {"line": 1, "duplicate_of": f"example {existing['name: Place 100']}"}
    assert {"line": 201, "duplicate_of": "line 51"} in batch.duplicates
    assert {"line": 320, "duplicate_of": "line 120"} in batch.duplicates
    assert [d["line"] for d in batch.duplicates] == sorted(d["line"] for d in batch.duplicates)
    assert Example.objects.filter(dataset=dataset).count() == 250


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["copy", "bulk_create"])
def test_every_imported_example_has_its_creation_in_the_history(path, tmp_path, monkeypatch, small_chunks):
    if path == "copy" and connection.vendor != "postgresql":
        pytest.skip("COPY is the PostgreSQL path")
    if path == "bulk_create":
        monkeypatch.setattr(import_job, "_CopyInserter", import_job._OrmInserter)  # the portable path, on any database
    user = EngineerFactory(username="annie")
    file = tmp_path / "examples.jsonl"
    write_jsonl(file, [chat(n) for n in range(250)])
    batch = import_examples(DatasetFactory(), file, "chat_jsonl", by=user)

    records = Example.history.filter(import_batch=batch)
    assert records.count() == 250
    assert set(records.values_list("history_type", "history_user__username", "history_change_reason")) == {
        ("+", "annie", f"imported (batch {batch.pk}, examples.jsonl)")}
    example = Example.objects.get(metadata__import_line=7)
    record = example.history.get()
    assert (record.messages, record.status, record.version) == (example.messages, "submitted", 1)


@pytest.mark.django_db
def test_a_mid_file_encoding_error_fails_the_import_with_the_line(tmp_path):
    path = tmp_path / "examples.jsonl"
    path.write_bytes("\n".join(json.dumps(chat(n)) for n in range(3)).encode("utf-16") + b"\x00\xd8")
    batch = import_examples(DatasetFactory(), path, "chat_jsonl", by=EngineerFactory())
    assert batch.status == JobStatus.FAILED and batch.error.startswith("line 3: the file starts with a UTF-16")
    assert not Example.objects.exists()


@pytest.mark.django_db
def test_a_line_over_the_limit_is_named_without_reading_it_whole(tmp_path, monkeypatch):
    from curation import formats

    monkeypatch.setattr(formats, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "examples.jsonl"
    long_line = json.dumps({"messages": [], "metadata": {"x": "é" * 5000}}, ensure_ascii=False)
    write_jsonl(path, [chat(1), long_line, chat(2)])
    batch = import_examples(DatasetFactory(), path, "chat_jsonl", by=EngineerFactory(), skip_invalid=True)
    size = len(long_line.encode())
    assert batch.errors == [{"line": 2, "reason": f"line is {size} bytes; the limit is 1000"}]
    assert batch.created_count == 2


@pytest.mark.django_db(transaction=True)
def test_api_answers_202_for_a_large_upload_and_the_batch_to_poll(run_jobs, settings):
    settings.IMPORT_INLINE_MAX_BYTES = 10  # every upload counts as large
    client = APIClient()
    client.force_authenticate(EngineerFactory())
    content = "\n".join(json.dumps(chat(n)) for n in range(5)).encode()
    response = client.post("/api/v1/imports/", {"dataset": DatasetFactory().pk, "format": "chat_jsonl",
                                                "file": SimpleUploadedFile("big.jsonl", content)}, format="multipart")
    if queues.is_async():
        assert response.status_code == 202 and response.json()["status"] == "queued"
    else:  # no REDIS_URL: the job ran in the request, after commit
        assert response.status_code == 201
    run_jobs()
    polled = client.get(f"/api/v1/imports/{response.json()['id']}/").json()
    assert (polled["status"], polled["rows_done"], polled["rows_total"], polled["progress"]) == ("succeeded", 5, 5, 1.0)


@pytest.mark.django_db
def test_api_refuses_a_hf_dataset_upload_that_is_no_archive_saying_what_it_takes():
    client = APIClient()
    client.force_authenticate(EngineerFactory())
    response = client.post("/api/v1/imports/", {"dataset": DatasetFactory().pk, "format": "hf_dataset",
                                                "file": SimpleUploadedFile("d.zip", b"PK")}, format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("d.zip: the upload is not a .tar (.tar.gz, .tgz) or .zip archive of "
                                                "a folder written by save_to_disk")


@pytest.mark.django_db(transaction=True)
def test_admin_upload_of_a_large_file_lands_on_the_batch_page(run_jobs, settings, django_user_model, client):
    settings.IMPORT_INLINE_MAX_BYTES = 10
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    content = "\n".join(json.dumps(chat(n)) for n in range(3)).encode()
    response = client.post(reverse("admin:curation_importbatch_add"), {
        "dataset": DatasetFactory().pk, "format": "chat_jsonl", "file": SimpleUploadedFile("big.jsonl", content),
    })
    batch = ImportBatch.objects.get()
    assert response.status_code == 302 and response.url == reverse("admin:curation_importbatch_change",
                                                                   args=[batch.pk])
    page = client.get(response.url).content.decode()
    if queues.is_async():
        assert "is queued: a worker imports the file" in page and 'http-equiv="refresh"' in page
        run_jobs()
        page = client.get(response.url).content.decode()
    assert "3 created" in page and 'http-equiv="refresh"' not in page


@pytest.mark.django_db(transaction=True)
def test_command_queue_prints_the_outcome(tmp_path, capsys, settings):
    if settings.REDIS_URL:
        pytest.skip("the command waits for a worker; the API and job tests above cover the queue")
    dataset, user = DatasetFactory(), EngineerFactory()
    path = tmp_path / "examples.jsonl"
    write_jsonl(path, [chat(1), chat(2), chat(1)])
    call_command("import_examples", str(path), dataset=dataset.name, username=user.username, queue=True)
    out = capsys.readouterr().out
    assert "queued" in out and "2 created, 1 duplicates" in out and "line 3: same as line 1" in out


@pytest.mark.django_db
def test_a_utf16_csv_file_with_crlf_and_a_quoted_line_break_imports(tmp_path):
    path = tmp_path / "examples.csv"
    path.write_bytes('question,answer\r\n"Two\r\nlines?",Yes.\r\nOne?,No.\r\n'.encode("utf-16"))
    batch = import_examples(DatasetFactory(), path, "csv", by=EngineerFactory(),
                            column_mapping={"prompt": "question", "completion": "answer"})
    assert (batch.status, batch.created_count) == ("succeeded", 2)
    assert Example.objects.get(metadata__import_line=2).messages[0]["content"] == "Two\nlines?"
    assert Example.objects.filter(metadata__import_line=4).exists()


@pytest.mark.django_db
def test_examples_added_by_someone_else_meanwhile_fail_the_import_as_a_conflict(tmp_path, small_chunks):
    from tests.support.factories import ExampleFactory

    dataset = DatasetFactory()
    path = tmp_path / "examples.jsonl"
    write_jsonl(path, [chat(n) for n in range(250)])

    def add_the_same_example_meanwhile(done, total):
        if done == 100:  # after the dataset was found empty, before the second chunk is inserted
            ExampleFactory(dataset=dataset, messages=chat(150)["messages"])

    batch = import_examples(dataset, path, "chat_jsonl", by=EngineerFactory(),
                            on_progress=add_the_same_example_meanwhile)
    assert batch.status == JobStatus.FAILED
    assert batch.error.startswith("another import or edit added some of these examples at the same moment")
    assert not Example.objects.filter(import_batch=batch).exists()


@pytest.mark.django_db
def test_uploads_with_the_same_batch_id_never_share_a_folder(tmp_path, monkeypatch, django_capture_on_commit_callbacks):
    """Folders were named by the batch id alone: a second database's batch with the same id
    overwrote this one's queued upload, and removed it when its own import ended."""
    path = tmp_path / "mine.jsonl"
    write_jsonl(path, [chat(1)])
    dataset, engineer = DatasetFactory(), EngineerFactory()
    with django_capture_on_commit_callbacks(execute=False):  # queued: no worker has run it yet
        mine = start_import(dataset, path, "chat_jsonl", by=engineer)
    ImportBatch.objects.filter(pk=mine.pk).delete()  # the other database never had this row
    as_if_another_database_reused(ImportBatch, mine.pk, monkeypatch)
    theirs = import_examples(dataset, b'{"messages": [{"role": "system", "content": "x"}]}\n', "chat_jsonl",
                             by=engineer)
    assert theirs.pk == mine.pk and theirs.status == "failed"  # it ran and removed its own upload
    assert json.loads(open(mine.upload_path, encoding="utf-8").read()) == chat(1)


@pytest.mark.django_db
# "Jane Doe": paths were cut at their first space, leaving "Doe/artifacts/uploads/import-1-.../upload".
@pytest.mark.parametrize("root", ["artifacts", "Jane Doe/artifacts"])
def test_an_import_whose_file_is_gone_fails_without_showing_server_paths(root, tmp_path, settings,
                                                                         django_capture_on_commit_callbacks):
    settings.ARTIFACTS_ROOT = tmp_path / root
    path = tmp_path / "examples.jsonl"
    write_jsonl(path, [chat(1)])
    with django_capture_on_commit_callbacks(execute=False):
        batch = start_import(DatasetFactory(), path, "chat_jsonl", by=EngineerFactory())
    Path(batch.upload_path).unlink()
    with pytest.raises(FileNotFoundError):
        jobs.run_import(batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.error) == ("failed", "FileNotFoundError: [Errno 2] No such file or directory: 'upload'")
