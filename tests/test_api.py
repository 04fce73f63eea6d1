"""The REST API: authentication, thin views over the services, errors as 400/403/409, the report."""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from curation.choices import ExampleStatus
from curation.models import Example
from evaluation.models import EvalRun
from tests.support.clients import client_for
from tests.support.factories import (
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    ExampleFactory,
    ReviewerFactory,
    engineer_and_reviewer,
    tiny_base_model,
)
from training.choices import RunStatus
from training.models import ModelVersion
from training.services import prompted_model_version

pytestmark = pytest.mark.django_db

LIST_ENDPOINTS = ["datasets", "examples", "imports", "snapshots", "base-models", "training-runs",
                  "model-versions", "eval-runs"]


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
def test_anonymous_requests_get_401(endpoint):
    assert APIClient().get(f"/api/v1/{endpoint}/").status_code == 401


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
def test_token_authenticated_user_can_list(endpoint):
    assert client_for(EngineerFactory()).get(f"/api/v1/{endpoint}/").status_code == 200


def test_session_authentication_works():
    client = APIClient()
    client.force_login(EngineerFactory())
    assert client.get("/api/v1/datasets/").status_code == 200


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


def test_approving_own_example_is_403():
    reviewer = ReviewerFactory()
    example = ExampleFactory(author=reviewer)
    response = client_for(reviewer).post(f"/api/v1/examples/{example.pk}/approve/",
                                         {"expected_version": example.version}, format="json")
    assert response.status_code == 403 and "an example they wrote" in response.json()["detail"]


def test_stale_decision_is_409():
    example = ExampleFactory()
    client = client_for(ReviewerFactory())
    response = client.post(f"/api/v1/examples/{example.pk}/approve/", {"expected_version": example.version + 5},
                           format="json")
    assert response.status_code == 409
    example.refresh_from_db()
    assert example.status == ExampleStatus.SUBMITTED


def test_reject_without_comment_is_400():
    example = ExampleFactory()
    response = client_for(ReviewerFactory()).post(f"/api/v1/examples/{example.pk}/reject/",
                                                  {"expected_version": example.version}, format="json")
    assert response.status_code == 400 and "needs a comment" in response.json()["detail"]


def test_a_decision_without_the_version_it_was_made_on_is_400():
    example = ExampleFactory()
    response = client_for(ReviewerFactory()).post(f"/api/v1/examples/{example.pk}/approve/", {}, format="json")
    assert response.status_code == 400 and "expected_version" in response.json()
    example.refresh_from_db()
    assert example.status == ExampleStatus.SUBMITTED


def test_snapshot_create_then_approve_by_another_reviewer():
    dataset = DatasetFactory()
    ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED)
    creator = engineer_and_reviewer()
    created = client_for(creator).post("/api/v1/snapshots/", {"dataset": dataset.pk}, format="json")
    assert created.status_code == 201
    snapshot_id = created.json()["id"]
    again = client_for(creator).post("/api/v1/snapshots/", {"dataset": dataset.pk}, format="json")
    assert (again.status_code, again.json()["id"]) == (200, snapshot_id)
    assert client_for(creator).post(f"/api/v1/snapshots/{snapshot_id}/approve/").status_code == 403
    approved = client_for(ReviewerFactory()).post(f"/api/v1/snapshots/{snapshot_id}/approve/")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"


def test_training_run_on_pending_snapshot_is_400():
    dataset = DatasetFactory()
    ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED)
    client = client_for(EngineerFactory())
    snapshot_id = client.post("/api/v1/snapshots/", {"dataset": dataset.pk}, format="json").json()["id"]
    response = client.post("/api/v1/training-runs/", {"snapshot": snapshot_id}, format="json")
    assert response.status_code == 400 and "approve" in response.json()["detail"]


def test_events_after_a_cursor(tiny_model_dir, e2e_records):
    from tests.support.factories import snapshot_of
    from training.models import TrainingRun
    from training.services import log_event

    run = TrainingRun.objects.create(snapshot=snapshot_of(e2e_records[:20]), base_model=tiny_base_model(tiny_model_dir),
                                     hyperparameters={})
    first, second = log_event(run, "log", "one"), log_event(run, "log", "two")
    client = client_for(EngineerFactory())

    response = client.get(f"/api/v1/training-runs/{run.pk}/events/?after={first.pk}")
    assert [e["id"] for e in response.json()] == [second.pk]
    assert [e["id"] for e in client.get(f"/api/v1/training-runs/{run.pk}/").json()["events"]] == [first.pk, second.pk]
    assert "events" not in client.get("/api/v1/training-runs/").json()["results"][0]
    assert client.get(f"/api/v1/training-runs/{run.pk}/events/?after=x").status_code == 400
    assert client.get("/api/v1/training-runs/999999/events/").status_code == 404


def test_report_shows_metrics_beside_the_prompted_base_model(tiny_model_dir, e2e_records):
    from tests.support.factories import snapshot_of

    snapshot = snapshot_of(e2e_records[:20])
    base = tiny_base_model(tiny_model_dir)
    prompted, _ = prompted_model_version(base, "Describe it.", by=EngineerFactory())
    tuned = ModelVersion.objects.create(name="tuned", kind="lora_adapter", base_model=base)
    for version, bleu in ((prompted, 10.0), (tuned, 35.5)):
        EvalRun.objects.create(model_version=version, snapshot=snapshot, status=RunStatus.SUCCEEDED,
                               metrics={"bleu": bleu, "chrf": 40.0, "n_inputs": 2})

    response = client_for(EngineerFactory()).get(f"/api/v1/model-versions/{tuned.pk}/report/")

    assert response.status_code == 200
    evaluation = response.json()["evaluations"][0]
    assert evaluation["snapshot_hash"] == snapshot.content_hash
    assert evaluation["baseline"]["model_version_id"] == prompted.pk
    assert evaluation["difference"] == {"bleu": 25.5, "chrf": 0.0}
    assert response.json()["lineage"]["base_model"]["name"] == base.name


def test_schema_is_served():
    assert client_for(EngineerFactory()).get("/api/schema/").status_code == 200


def test_out_of_range_seed_is_400_not_500():
    dataset = DatasetFactory()
    ExampleFactory(dataset=dataset, status=ExampleStatus.APPROVED)
    response = client_for(EngineerFactory()).post("/api/v1/snapshots/", {"dataset": dataset.pk, "seed": 2**31},
                                              format="json")
    assert response.status_code == 400 and "seed" in response.json()


def test_deeply_nested_json_body_is_400():
    body = "[" * 100_000 + "]" * 100_000
    response = client_for(EngineerFactory()).post("/api/v1/datasets/", body, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("schema, message", [
    ({"type": "nonsense"}, "not a valid JSON Schema"),
    ({"a\u0000": "x"}, "NUL character"),
])
def test_dataset_output_schema_is_checked(schema, message):
    response = client_for(EngineerFactory()).post("/api/v1/datasets/", {"name": "d", "output_json_schema": schema},
                                              format="json")
    assert response.status_code == 400 and message in str(response.json())


def test_unicode_digits_are_not_an_event_cursor(tiny_model_dir, e2e_records):
    from tests.support.factories import snapshot_of
    from training.models import TrainingRun

    run = TrainingRun.objects.create(snapshot=snapshot_of(e2e_records[:20]), base_model=tiny_base_model(tiny_model_dir),
                                     hyperparameters={})
    assert client_for(EngineerFactory()).get(f"/api/v1/training-runs/{run.pk}/events/?after=²").status_code == 400


def test_eval_run_on_a_pending_snapshot_is_400(tiny_model_dir, e2e_records):
    from tests.support.factories import snapshot_of

    snapshot = snapshot_of(e2e_records[:20], approve=False)
    version, _ = prompted_model_version(tiny_base_model(tiny_model_dir), "Describe it.", by=EngineerFactory())
    response = client_for(EngineerFactory()).post("/api/v1/eval-runs/", {"model_version": version.pk,
                                                                     "snapshot": snapshot.pk}, format="json")
    assert response.status_code == 400 and "approve" in response.json()["detail"]
    assert not EvalRun.objects.exists()


def test_prompted_base_version_is_created_once(tiny_model_dir):
    base = tiny_base_model(tiny_model_dir)
    client = client_for(EngineerFactory())
    body = {"base_model": base.pk, "system_prompt": "Answer with SQL."}
    first = client.post("/api/v1/model-versions/", body, format="json")
    again = client.post("/api/v1/model-versions/", body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and first.json()["kind"] == "prompted_base"


def test_csv_upload_with_a_column_mapping():
    response = upload(client_for(AnnotatorFactory()), DatasetFactory(), b"question,answer\nHow many?,select 1\n",
                      format="csv", column_mapping=json.dumps({"prompt": "question", "completion": "answer"}))
    assert response.status_code == 201, response.json()
    assert Example.objects.get().messages[-1]["content"] == "select 1"
