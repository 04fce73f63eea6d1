"""Regressions for what an adversarial review found: read-only history pages, schemas that never
fetch, assignees who cannot approve, snapshot visibility, 405s, tampered cursors, odd mappings."""
import base64
import json
import re
import secrets
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from curation.choices import ExampleStatus
from curation.formats import read_delimited
from curation.models import SnapshotExport
from curation.snapshots import create_snapshot
from curation.workflow import approve_example, assign_example
from ftplatform.errors import NotAllowed, ServiceError
from tests.support.clients import client_for
from tests.support.factories import (
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    ExampleFactory,
    ReviewerFactory,
    conversation,
)

pytestmark = pytest.mark.django_db


def test_history_version_pages_never_save_a_revert(client):
    dataset = DatasetFactory(description="before")
    dataset.description = "after"
    dataset.save()
    first = dataset.history.earliest()
    for user in (AnnotatorFactory(), ReviewerFactory(), EngineerFactory()):
        client.force_login(user)
        url = reverse("admin:curation_dataset_simple_history", args=[dataset.pk, first.history_id])
        response = client.post(url, {"name": dataset.name, "description": "pwned", "approvals_required": 1})
        assert response.status_code == 403
    dataset.refresh_from_db()
    assert dataset.description == "after"


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


def test_admin_dataset_form_checks_the_schema(client):
    client.force_login(EngineerFactory())
    response = client.post(reverse("admin:curation_dataset_add"), {
        "name": "d", "approvals_required": 1, "output_json_schema": json.dumps({"$ref": "file:///etc/passwd"})})
    assert response.status_code == 200 and "not followed" in response.content.decode()


def test_an_assignee_cannot_approve_and_only_annotators_are_assigned():
    reviewer, example = ReviewerFactory(), ExampleFactory()
    with pytest.raises(ServiceError, match="not an annotator"):
        assign_example(example, to=reviewer, by=EngineerFactory())
    annotator_reviewer = AnnotatorFactory()
    annotator_reviewer.groups.add(*reviewer.groups.all())
    assign_example(example, to=annotator_reviewer, by=EngineerFactory())
    with pytest.raises(NotAllowed, match="wrote or are assigned"):
        approve_example(example, by=annotator_reviewer)


def test_reviewers_see_only_snapshots_of_the_datasets_they_review():
    theirs, others = DatasetFactory(), DatasetFactory()
    insider, outsider = ReviewerFactory(), ReviewerFactory()
    theirs.reviewers.add(insider)
    others.reviewers.add(outsider)
    ExampleFactory(dataset=theirs, status=ExampleStatus.APPROVED)
    snapshot, _ = create_snapshot(theirs, by=EngineerFactory())
    assert client_for(insider).get(f"/api/v1/snapshots/{snapshot.pk}/").status_code == 200
    assert client_for(outsider).get(f"/api/v1/snapshots/{snapshot.pk}/diff/").status_code == 404
    assert client_for(outsider).get("/api/v1/snapshots/").json()["count"] == 0


@pytest.mark.parametrize("method, url", [("delete", "/api/v1/examples/{pk}/"), ("put", "/api/v1/snapshots/{pk}/"),
                                         ("post", "/api/v1/examples/{pk}/"), ("delete", "/api/v1/datasets/{pk}/")])
def test_methods_an_endpoint_lacks_are_405(method, url):
    example = ExampleFactory(status=ExampleStatus.APPROVED)
    snapshot, _ = create_snapshot(example.dataset, by=EngineerFactory())
    pk = {"examples": example.pk, "snapshots": snapshot.pk, "datasets": example.dataset_id}[url.split("/")[3]]
    assert getattr(client_for(EngineerFactory()), method)(url.format(pk=pk)).status_code == 405


@pytest.mark.parametrize("position", ["NaN", "1e5", "1' OR 1=1--", "%00"])
def test_tampered_cursors_are_404_not_500(position):
    example = ExampleFactory()
    cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
    client = client_for(EngineerFactory())
    assert client.get(f"/api/v1/examples/?cursor={cursor}").status_code == 404
    assert client.get(f"/api/v1/examples/{example.pk}/history/?cursor={cursor}").status_code == 404


@pytest.mark.parametrize("mapping", ["[1, 2]", "5", "abc"])
def test_a_column_mapping_that_is_not_an_object_is_400(mapping):
    response = client_for(AnnotatorFactory()).post("/api/v1/imports/", {
        "dataset": DatasetFactory().pk, "format": "csv", "column_mapping": mapping,
        "file": SimpleUploadedFile("x.csv", b"prompt,completion\nq,a\n")}, format="multipart")
    assert response.status_code == 400


def test_long_csv_fields_are_read_and_an_unreadable_rest_refuses_the_whole_file():
    long_answer = "x" * 200_000
    rows = list(read_delimited(f"prompt,completion\nq1,a1\nq2,{long_answer}\nq3,a3\n".encode(), "csv"))
    assert [row.messages[-1]["content"] for row in rows] == ["a1", long_answer, "a3"]
    too_long = "y" * 1_000_001  # over the one limit every format shares (curation.formats.MAX_LINE_BYTES)
    with pytest.raises(ValueError, match="line 3: invalid CSV.*nothing is imported"):
        list(read_delimited(f"prompt,completion\nq1,a1\nq2,{too_long}\nq3,a3\n".encode(), "csv"))


def test_edit_and_approve_by_an_assigned_reviewer_is_refused():
    annotator_reviewer = AnnotatorFactory()
    annotator_reviewer.groups.add(*ReviewerFactory().groups.all())
    example = ExampleFactory()
    assign_example(example, to=annotator_reviewer, by=EngineerFactory())
    response = client_for(annotator_reviewer).post(f"/api/v1/examples/{example.pk}/edit-and-approve/", {
        "messages": conversation("q", "mine"), "expected_version": example.version + 1}, format="json")
    assert response.status_code == 403


def _manage(*args, **env):
    """Run manage.py in a fresh process with the given FTPLATFORM_* variables only."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    base = {k: v for k, v in os.environ.items() if not k.startswith("FTPLATFORM_")}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=Path(__file__).resolve().parent.parent,
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_debug_is_off_unless_turned_on():
    code = "from django.conf import settings; print(settings.DEBUG)"
    assert _manage("shell", "-v", "0", "-c", code, FTPLATFORM_SECRET_KEY="k" * 50).stdout.strip() == "False"
    assert _manage("shell", "-v", "0", "-c", code, FTPLATFORM_DEBUG="1").stdout.strip() == "True"


def test_a_production_start_without_a_secret_key_says_so_without_a_traceback():
    done = _manage("check")
    assert done.returncode == 1
    assert "set FTPLATFORM_SECRET_KEY" in done.stderr and "Traceback" not in done.stderr


def test_check_deploy_behind_https_leaves_only_the_hsts_advice():
    done = _manage("check", "--deploy", FTPLATFORM_SECRET_KEY=secrets.token_urlsafe(50), FTPLATFORM_HTTPS="1")
    warnings = sorted(set(re.findall(r"security\.W\d+", done.stdout + done.stderr)))
    assert warnings == ["security.W004"]  # HSTS stays the operator's choice (FTPLATFORM_HSTS_SECONDS)


def test_api_urls_no_route_matches_answer_json_as_the_schema_documents(client):
    """/api/v1/datasets/0.5/ matches no route (ids have no dot): Django answered its HTML 404 page,
    which no client generated from the schema can read."""
    client.force_login(EngineerFactory())
    response = client.get("/api/v1/datasets/0.5/history/")
    assert (response.status_code, response["Content-Type"], response.json()) == (
        404, "application/json", {"detail": "Not found."})
    assert client.get("/admin/no-such-page/")["Content-Type"].startswith("text/html")


def test_the_schema_documents_the_400_of_a_download_that_is_not_ready():
    """Found by schemathesis on PostgreSQL + Redis, where exports stay queued: a GET without
    parameters answered an undocumented 400 (a service rule), so 400 is documented everywhere."""
    from curation.exports import start_snapshot_export

    example = ExampleFactory(status=ExampleStatus.APPROVED)
    engineer = EngineerFactory()
    export = start_snapshot_export(create_snapshot(example.dataset, by=engineer)[0], by=engineer)
    SnapshotExport.objects.filter(pk=export.pk).update(status="queued")
    client = client_for(engineer)
    response = client.get(f"/api/v1/snapshot-exports/{export.pk}/hf-dataset/")
    assert response.status_code == 400 and "download it once it has succeeded" in response.json()["detail"]
    schema = client.get("/api/schema/?format=json").json()
    documented = schema["paths"]["/api/v1/snapshot-exports/{id}/hf-dataset/"]["get"]["responses"]["400"]
    error_detail = {"$ref": "#/components/schemas/ErrorDetail"}
    assert documented["content"]["application/json"]["schema"]["oneOf"][0] == error_detail


def test_options_on_the_api_docs_page_is_a_405_not_a_500():
    """The Swagger page described itself to OPTIONS with its HTML renderer, which had no template: a 500
    for every signed-in user."""
    response = client_for(EngineerFactory()).options("/api/docs/")
    assert (response.status_code, response["Allow"]) == (405, "GET, HEAD")
