"""A dataset's evaluation settings (language, regex checks, output schema) are checked where they are
set (API, admin; a schema never fetches a reference) and reach the metrics."""
import json

import pytest
from django.urls import reverse

from curation.models import Dataset
from evaluation.services import start_eval_run
from ftplatform.jobrows import JobStatus
from tests.support.clients import client_for
from tests.support.factories import EngineerFactory, snapshot_of, tiny_base_model
from training.model_versions import prompted_model_version


@pytest.mark.django_db
@pytest.mark.parametrize("fields, message", [
    ({"language": "english"}, "language must be an ISO 639 code"),
    ({"regex_checks": {"price": "(unclosed"}}, "regex check 'price': pattern '(unclosed' does not compile"),
    ({"regex_checks": ["\\\\d"]}, "regex_checks must be an object of name -> pattern strings"),
    ({"primary_metric": "bleurt"}, "primary_metric must be blank (proposed from the outputs) or one of exact_match, "
                                   "bleu, chrf, rouge_l, json_valid, got 'bleurt'"),
    ({"primary_metric": "json_schema_valid"}, "json_schema_valid needs an output_json_schema"),
    ({"primary_metric": "regex:price", "regex_checks": {"currency": "£"}}, "regex:currency, got 'regex:price'"),
    # A NUL or an unpaired surrogate in a check was a 500 (PostgreSQL's JSON refuses them; SQLite stored
    # the surrogate and the response could not be encoded).
    ({"regex_checks": {"a\u0000b": "x"}}, "regex_checks key: contains a NUL character"),
    ({"regex_checks": {"price": "\ud800"}}, "regex_checks.price: contains an unpaired surrogate"),
    # Comparisons report McNemar's test of check "price" as "regex:price_mcnemar": a check of that name
    # overwrote it, and the decision report on regex:price answered 500 (KeyError 'b01').
    ({"regex_checks": {"price": "£", "price_mcnemar": "€"}},
     "regex check 'price_mcnemar': names ending in _mcnemar are taken by comparisons"),
])
def test_bad_evaluation_settings_are_400s_naming_them(fields, message):
    # Encoded here (ASCII escapes): the test client's encoder cannot write an unpaired surrogate.
    response = client_for(EngineerFactory()).post("/api/v1/datasets/", json.dumps({"name": "d", **fields}),
                                                  content_type="application/json")
    assert response.status_code == 400 and message in response.json()["non_field_errors"][0]
    assert not Dataset.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_eval_scores_the_snapshot_regex_checks(e2e_records, tiny_model_dir, run_jobs):
    snapshot = snapshot_of(e2e_records[:60], language="en", regex_checks={"any_text": ".", "never": "^zzz$"})
    Dataset.objects.filter(pk=snapshot.dataset_id).update(regex_checks={"edited_later": "x"})  # frozen: no effect
    version, _ = prompted_model_version(tiny_base_model(tiny_model_dir), "", by=EngineerFactory())
    run = start_eval_run(version, snapshot, by=EngineerFactory(), generation={"max_new_tokens": 4})
    run_jobs()
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.metrics["regex:never"] == 0.0
    assert "regex:any_text" in run.metrics["confidence_intervals"]
    assert all("regex:never" in p.scores for p in run.predictions.all())
    assert "regex:edited_later" not in run.metrics


@pytest.mark.django_db
@pytest.mark.parametrize("schema, message", [
    ({"type": "nonsense"}, "not a valid JSON Schema"),
    ({"a\u0000": "x"}, "NUL character"),
])
def test_dataset_output_schema_is_checked(schema, message):
    response = client_for(EngineerFactory()).post("/api/v1/datasets/", {"name": "d", "output_json_schema": schema},
                                              format="json")
    assert response.status_code == 400 and message in str(response.json())


@pytest.mark.django_db
@pytest.mark.parametrize("schema, message", [
    ({"$ref": "http://127.0.0.1:9/internal"}, "not followed"),
    ({"$ref": "file:///etc/hostname"}, "not followed"),
    ({"$ref": "#/definitions/nope"}, "does not resolve"),
    (5, "is an object"),
    ({"$schema": 5}, "must be a string"),
])
def test_dataset_schemas_never_fetch_and_bad_ones_are_400(schema, message):
    response = client_for(EngineerFactory()).post("/api/v1/datasets/", {"name": "d", "output_json_schema": schema},
                                           format="json")
    assert response.status_code == 400 and message in json.dumps(response.json())


@pytest.mark.django_db
def test_admin_dataset_form_checks_the_schema(client):
    client.force_login(EngineerFactory())
    response = client.post(reverse("admin:curation_dataset_add"), {
        "name": "d", "approvals_required": 1, "output_json_schema": json.dumps({"$ref": "file:///etc/passwd"})})
    assert response.status_code == 200 and "not followed" in response.content.decode()
