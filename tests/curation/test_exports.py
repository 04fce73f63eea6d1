"""Snapshot export: chat JSONL per split, streamed, through the job queue."""
import json
import shutil

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from curation.choices import ExampleStatus
from curation.exports import start_snapshot_export
from curation.formats import content_hash, with_system_prompt
from curation.models import SnapshotExport
from curation.snapshots import create_snapshot
from tests.support.factories import (
    DatasetFactory,
    EngineerFactory,
    ExampleFactory,
    as_if_another_database_reused,
    conversation,
)


def snapshot_with(n):
    dataset = DatasetFactory()
    for i in range(n):
        ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED, messages=conversation(f"in {i}", f"out {i}"))
    return create_snapshot(dataset, by=EngineerFactory())[0]


@pytest.mark.django_db(transaction=True)
def test_export_round_trips_every_item_into_its_split_file(run_jobs):
    snapshot = snapshot_with(12)
    client = APIClient()
    client.force_authenticate(EngineerFactory())
    export_id = client.post(f"/api/v1/snapshots/{snapshot.pk}/export/").json()["id"]
    run_jobs()
    export = SnapshotExport.objects.get(pk=export_id)
    assert export.status == "succeeded" and export.counts == snapshot.split_counts

    for split in ("train", "validation", "test"):
        response = client.get(f"/api/v1/snapshot-exports/{export_id}/download/", {"split": split})
        assert response.status_code == 200
        lines = b"".join(response.streaming_content).decode().splitlines()
        exported = sorted(content_hash(json.loads(line)["messages"]) for line in lines)
        # Each frozen item as training reads it: the snapshot's system prompt first.
        frozen = sorted(content_hash(with_system_prompt(messages, snapshot.system_prompt))
                        for messages in snapshot.items.filter(split=split).values_list("messages", flat=True))
        assert exported == frozen


@pytest.mark.django_db(transaction=True)
def test_an_export_carries_the_frozen_system_prompt_not_the_edited_one(run_jobs):
    snapshot = snapshot_with(6)
    frozen_prompt = snapshot.dataset.system_prompt
    snapshot.dataset.system_prompt = "Answer in French."
    snapshot.dataset.save()
    export = start_snapshot_export(snapshot, by=EngineerFactory())
    run_jobs()
    export.refresh_from_db()
    with open(f"{export.path}/train.jsonl", encoding="utf-8") as handle:
        firsts = {json.dumps(json.loads(line)["messages"][0]) for line in handle}
    assert firsts == {json.dumps({"role": "system", "content": frozen_prompt})}


@pytest.mark.django_db
def test_download_before_success_or_of_an_unknown_split_is_400():
    export = SnapshotExport.objects.create(snapshot=snapshot_with(3))
    client = APIClient()
    client.force_authenticate(EngineerFactory())
    assert client.get(f"/api/v1/snapshot-exports/{export.pk}/download/", {"split": "test"}).status_code == 400
    assert client.get(f"/api/v1/snapshot-exports/{export.pk}/download/", {"split": "dev"}).status_code == 400


@pytest.mark.django_db(transaction=True)
def test_export_command(capsys, settings):
    if settings.REDIS_URL:
        pytest.skip("the command waits for a worker; the API test above covers the queue")
    snapshot = snapshot_with(4)
    call_command("export_snapshot", snapshot.pk, username=EngineerFactory().username)
    assert "train" in capsys.readouterr().out


@pytest.mark.django_db
def test_exports_with_the_same_id_never_share_a_folder(monkeypatch, django_capture_on_commit_callbacks):
    """Export folders were named by the export id alone: a second database's export with the same
    id could not move its files into place (and cleared this one's staging folder first)."""
    from curation.exports import start_snapshot_export
    from curation.jobs import run_snapshot_export

    snapshot, engineer = snapshot_with(3), EngineerFactory()
    with django_capture_on_commit_callbacks(execute=False):
        mine = start_snapshot_export(snapshot, by=engineer)
    run_snapshot_export(mine.pk)
    mine.refresh_from_db()
    SnapshotExport.objects.filter(pk=mine.pk).delete()  # the other database never had this row
    as_if_another_database_reused(SnapshotExport, mine.pk, monkeypatch)
    with django_capture_on_commit_callbacks(execute=False):
        theirs = start_snapshot_export(snapshot, by=engineer)
    run_snapshot_export(theirs.pk)
    theirs.refresh_from_db()
    assert theirs.pk == mine.pk and (theirs.status, mine.status) == ("succeeded", "succeeded")
    assert theirs.path != mine.path
    assert all(len(open(f"{export.path}/train.jsonl").readlines()) == snapshot.split_counts["train"]
               for export in (mine, theirs))


@pytest.mark.django_db(transaction=True)
def test_downloading_an_export_whose_files_were_removed_is_a_400_saying_so(run_jobs):
    """A finished export whose folder was cleaned up answered 500 (FileNotFoundError) on download, and
    "it predates them" for the Hugging Face archive."""
    client = APIClient()
    client.force_authenticate(EngineerFactory())
    export_id = client.post(f"/api/v1/snapshots/{snapshot_with(6).pk}/export/").json()["id"]
    run_jobs()
    shutil.rmtree(SnapshotExport.objects.get(pk=export_id).path)
    for url, name in ((f"/api/v1/snapshot-exports/{export_id}/download/?split=train", "train.jsonl"),
                      (f"/api/v1/snapshot-exports/{export_id}/hf-dataset/", "hf_dataset.tar")):
        response = client.get(url)
        assert (response.status_code, response.json()) == (400, {"detail": (
            f"export {export_id} has no {name} on the server (its files were removed, or it was made before "
            "exports had one); export the snapshot again")})
