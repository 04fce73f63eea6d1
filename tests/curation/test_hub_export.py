"""Snapshot exports in the Hugging Face Hub's dataset repo layout: data files per split, a dataset card with
provenance, loaded back offline with datasets.load_dataset."""
import io
import tarfile
from pathlib import Path

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from curation.exports import start_snapshot_export
from curation.formats import content_hash, with_system_prompt
from curation.hub_export import HUB_FOLDER, size_category
from curation.models import ImportBatch, SnapshotExport
from tests.support.factories import DatasetFactory, EngineerFactory, ReviewerFactory, approved_snapshot


def hub_snapshot(n=12, licence="CC-BY-4.0"):
    dataset = DatasetFactory(licence=licence, description="Describe restaurants.")
    return approved_snapshot(dataset, [(f"name: Place {i}, area: riverside {i}", f"Place {i} is by the river.")
                                       for i in range(n)])


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def load(folder, tmp_path):
    from curation.hf_datasets import _datasets

    return _datasets().load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("layout", ["hub_parquet", "hub_jsonl"])
def test_a_hub_export_loads_back_with_load_dataset_and_its_card_carries_the_provenance(layout, run_jobs, tmp_path):
    snapshot = hub_snapshot()
    client = APIClient()
    client.force_authenticate(engineer := EngineerFactory())
    response = client.post(f"/api/v1/snapshots/{snapshot.pk}/export/", {"layout": layout}, format="json")
    assert response.status_code == 201 and response.json()["layout"] == layout
    run_jobs()
    export = SnapshotExport.objects.get(pk=response.json()["id"])
    assert export.status == "succeeded", export.error

    tar = client.get(f"/api/v1/snapshot-exports/{export.pk}/hub-dataset/")
    assert tar.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(b"".join(tar.streaming_content))) as archive:
        archive.extractall(tmp_path, filter="data")
    folder = tmp_path / HUB_FOLDER
    suffix = "parquet" if layout == "hub_parquet" else "jsonl"
    assert sorted(p.name for p in (folder / "data").iterdir()) == sorted(
        f"{split}-00000-of-00001.{suffix}" for split, count in snapshot.split_counts.items() if count)

    loaded = load(folder, tmp_path)
    assert {split: len(part) for split, part in loaded.items()} == {
        split: count for split, count in snapshot.split_counts.items() if count}
    first = snapshot.items.filter(split="train").order_by("id").first()
    assert loaded["train"][0]["messages"] == with_system_prompt(first.messages, snapshot.system_prompt)

    card = (folder / "README.md").read_text(encoding="utf-8")
    meta = front_matter(card)
    assert meta["license"] == "cc-by-4.0"
    assert meta["task_categories"] == ["text-generation"] and meta["size_categories"] == ["n<1K"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [
        {"split": split, "path": f"data/{split}-*"} for split in ("train", "validation", "test")
        if snapshot.split_counts.get(split)]}]
    provenance = meta["ftplatform"]
    assert provenance["snapshot_id"] == snapshot.pk and provenance["snapshot_sha256"] == snapshot.content_hash
    assert provenance["dataset"] == snapshot.dataset.name
    assert provenance["reviewed_by"] == snapshot.reviewed_by.username
    assert provenance["created_by"] == snapshot.created_by.username
    assert provenance["examples_by_source"] == {"manual": 12}
    assert snapshot.content_hash in card and f"Exported by {engineer.username}" in card


@pytest.mark.django_db(transaction=True)
def test_the_folder_layout_has_no_hub_repo_and_an_unknown_layout_is_refused(run_jobs):
    snapshot = hub_snapshot(4)
    client = APIClient()
    client.force_authenticate(EngineerFactory())
    refused = client.post(f"/api/v1/snapshots/{snapshot.pk}/export/", {"layout": "zip"}, format="json")
    assert refused.status_code == 400 and "layout" in refused.json()
    export_id = client.post(f"/api/v1/snapshots/{snapshot.pk}/export/").json()["id"]
    run_jobs()
    response = client.get(f"/api/v1/snapshot-exports/{export_id}/hub-dataset/")
    assert response.status_code == 400 and "hub_parquet" in str(response.json())


@pytest.mark.django_db(transaction=True)
def test_an_unrecorded_licence_reads_unknown_in_the_card(run_jobs):
    export = start_snapshot_export(hub_snapshot(4, licence=""), by=EngineerFactory(), layout="hub_jsonl")
    run_jobs()
    export.refresh_from_db()
    text = (Path(export.path) / HUB_FOLDER / "README.md").read_text(encoding="utf-8")
    assert front_matter(text)["license"] == "unknown" and "not recorded on the dataset" in text


@pytest.mark.django_db(transaction=True)
def test_export_command_and_admin_action_take_a_layout(capsys, settings, client):
    if settings.REDIS_URL:
        pytest.skip("the command waits for a worker; the API test above covers the queue")
    snapshot = hub_snapshot(4)
    call_command("export_snapshot", snapshot.pk, username=EngineerFactory().username, layout="hub_parquet")
    out = capsys.readouterr().out
    assert f"load_dataset('{SnapshotExport.objects.get().path}/{HUB_FOLDER}')" in out

    url = reverse("admin:curation_snapshot_changelist")
    client.force_login(ReviewerFactory(is_staff=True))  # reviews snapshots, may not export them
    listing = client.get(url).content.decode()
    assert "approve_selected" in listing and "export_selected" not in listing
    client.force_login(EngineerFactory())
    assert "export_selected" in client.get(url).content.decode()
    form = client.post(url, {"action": "export_selected", "_selected_action": [snapshot.pk]})
    assert b"Hugging Face Hub dataset repo" in form.content
    done = client.post(url, {"action": "export_selected", "_selected_action": [snapshot.pk], "confirm": "yes",
                             "layout": "hub_jsonl"}, follow=True)
    export = SnapshotExport.objects.latest("id")
    assert export.layout == "hub_jsonl" and export.status == "succeeded"
    assert done.redirect_chain[-1][0] == reverse("admin:curation_snapshotexport_change", args=[export.pk])


def test_size_categories_follow_the_hub():
    assert [size_category(n) for n in (0, 999, 1000, 54_321, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]


@pytest.mark.django_db(transaction=True)
def test_a_hub_export_imports_back_into_a_dataset_from_its_archive(run_jobs):
    snapshot = hub_snapshot(12)
    client = APIClient()
    client.force_authenticate(EngineerFactory())
    export_id = client.post(f"/api/v1/snapshots/{snapshot.pk}/export/", {"layout": "hub_parquet"},
                            format="json").json()["id"]
    run_jobs()
    archive = b"".join(client.get(f"/api/v1/snapshot-exports/{export_id}/hub-dataset/").streaming_content)
    target = DatasetFactory()
    response = client.post("/api/v1/imports/", {"dataset": target.pk, "format": "hf_dataset", "hf_split": "train",
                                                "file": SimpleUploadedFile("hub_dataset.tar", archive)})
    run_jobs()
    batch = ImportBatch.objects.get(pk=response.json()["id"])
    assert batch.status == "succeeded", batch.error or batch.errors
    frozen = sorted(content_hash(with_system_prompt(messages, snapshot.system_prompt))
                    for messages in snapshot.items.filter(split="train").values_list("messages", flat=True))
    assert sorted(target.examples.values_list("content_hash", flat=True)) == frozen
