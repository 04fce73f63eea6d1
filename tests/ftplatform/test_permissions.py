"""The permission walk: every admin page and every API endpoint, as anonymous, annotator,
reviewer and engineer, against a table of expected answers written out by hand.

Outcomes: "ok" (the request got past authorization: 2xx, 3xx other than to the login page,
or a 400/409 about the request itself), "401", "login" (the admin's redirect to its login
page), "403", "404", and "gone" (the admin's redirect to its index for an object the user
may not see). Two further tests fail when an endpoint or admin page exists that the table
does not cover, so a new one cannot go unchecked.
"""
import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from config.api import router
from curation.choices import ExampleStatus
from curation.models import ImportBatch, SnapshotExport, SnapshotJob
from curation.snapshots import create_snapshot
from evaluation.models import EvalRun
from serving.deployments import create_deployment
from serving.keys import create_api_key
from serving.models import RequestLog
from tests.support.factories import (
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    ExampleFactory,
    ReviewerFactory,
    UserFactory,
    conversation,
    unloadable_base_model,
)
from training.models import ModelVersion, TrainingRun

ROLES = ("anonymous", "annotator", "reviewer", "engineer")


@pytest.fixture
def world(db):
    """Two annotators (ann is the one walking), one reviewer, one engineer, and one of everything."""
    ann, bob = AnnotatorFactory(username="ann"), AnnotatorFactory(username="bob")
    reviewer, engineer = ReviewerFactory(username="rita"), EngineerFactory(username="eng")
    open_ds, blind_ds = DatasetFactory(name="open"), DatasetFactory(name="blind", blind_annotation=True)
    objs = {
        "ann_ex": ExampleFactory(dataset=open_ds, author=ann, messages=conversation("name: Aromi", "Aromi.")),
        "bob_same_input": ExampleFactory(dataset=open_ds, author=bob, messages=conversation("name: Aromi", "A pub.")),
        "bob_other": ExampleFactory(dataset=open_ds, author=bob, messages=conversation("name: Zizzi", "Zizzi.")),
        "ann_blind": ExampleFactory(dataset=blind_ds, author=ann, messages=conversation("name: Loch", "Loch.")),
        "bob_blind_same_input": ExampleFactory(dataset=blind_ds, author=bob,
                                               messages=conversation("name: Loch", "Loch Fyne.")),
    }
    ExampleFactory(dataset=open_ds, author=bob, status=ExampleStatus.APPROVED)
    objs["dataset"] = open_ds
    objs["import"] = ImportBatch.objects.create(dataset=open_ds, format="chat_jsonl", created_by=ann,
                                                status="succeeded")
    objs["snapshot"] = snapshot = create_snapshot(open_ds, by=engineer)[0]
    objs["export"] = SnapshotExport.objects.create(snapshot=snapshot, created_by=engineer)
    objs["snapshot_job"] = SnapshotJob.objects.create(dataset=open_ds, created_by=engineer, status="succeeded",
                                                      snapshot=snapshot)
    base = unloadable_base_model()
    objs["base_model"] = base
    objs["run"] = run = TrainingRun.objects.create(snapshot=snapshot, base_model=base, hyperparameters={},
                                                   created_by=engineer, status="succeeded")
    objs["version"] = version = ModelVersion.objects.create(name="v", kind="lora_adapter", base_model=base,
                                                            training_run=run)
    objs["eval"] = EvalRun.objects.create(model_version=version, snapshot=snapshot, created_by=engineer)
    objs["deployment"] = deployment = create_deployment(by=engineer, name="support", primary=version)
    objs["key"] = create_api_key(name="bot", by=engineer, deployment=deployment)[0]
    objs["log"] = RequestLog.objects.create(request_id="chatcmpl-1", created_at=timezone.now(), deployment=deployment,
                                            deployment_name="support", status="answered", http_status=200)
    objs["users"] = {"anonymous": None, "annotator": ann, "reviewer": reviewer, "engineer": engineer}
    return objs


def pk(name):
    return lambda w: w[name].pk


# (method, router URL name, object) -> expected outcome for (anonymous, annotator, reviewer, engineer)
API = {
    ("get", "api-root", None): ("401", "ok", "ok", "ok"),
    ("get", "dataset-list", None): ("401", "ok", "ok", "ok"),
    ("post", "dataset-list", None): ("401", "403", "403", "ok"),
    ("get", "dataset-detail", "dataset"): ("401", "ok", "ok", "ok"),
    ("get", "dataset-history", "dataset"): ("401", "ok", "ok", "ok"),
    ("get", "dataset-progress", "dataset"): ("401", "ok", "ok", "ok"),
    ("get", "example-list", None): ("401", "ok", "ok", "ok"),
    ("post", "example-list", None): ("401", "ok", "403", "403"),
    ("get", "example-detail", "ann_ex"): ("401", "ok", "ok", "ok"),
    ("get", "example-detail", "bob_same_input"): ("401", "ok", "ok", "ok"),  # open dataset: same input is shown
    ("get", "example-detail", "bob_other"): ("401", "404", "ok", "ok"),
    ("get", "example-detail", "bob_blind_same_input"): ("401", "404", "ok", "ok"),  # blind mode
    ("patch", "example-detail", "ann_ex"): ("401", "ok", "ok", "403"),
    ("patch", "example-detail", "bob_other"): ("401", "404", "ok", "403"),
    ("get", "example-history", "ann_ex"): ("401", "ok", "ok", "ok"),
    ("get", "example-history", "bob_blind_same_input"): ("401", "404", "ok", "ok"),
    ("post", "example-submit", "ann_ex"): ("401", "ok", "403", "403"),
    ("post", "example-approve", "bob_other"): ("401", "403", "ok", "403"),  # no review permission: 403 first
    ("post", "example-approve", "ann_ex"): ("401", "403", "ok", "403"),  # nobody approves their own
    ("post", "example-reject", "ann_ex"): ("401", "403", "ok", "403"),
    ("post", "example-edit-and-approve", "ann_ex"): ("401", "403", "ok", "403"),
    ("post", "example-release", "ann_ex"): ("401", "ok", "ok", "ok"),
    ("post", "example-assign", "bob_other"): ("401", "403", "403", "ok"),
    ("post", "example-next-to-review", None): ("401", "403", "ok", "403"),
    ("post", "example-next-to-annotate", None): ("401", "ok", "ok", "403"),
    ("get", "importbatch-list", None): ("401", "ok", "ok", "ok"),
    ("post", "importbatch-list", None): ("401", "ok", "403", "ok"),
    ("get", "importbatch-detail", "import"): ("401", "ok", "ok", "ok"),
    ("get", "snapshot-list", None): ("401", "403", "ok", "ok"),
    ("post", "snapshot-list", None): ("401", "403", "403", "ok"),
    ("get", "snapshot-detail", "snapshot"): ("401", "403", "ok", "ok"),
    ("get", "snapshot-history", "snapshot"): ("401", "403", "ok", "ok"),
    ("get", "snapshot-diff", "snapshot"): ("401", "403", "ok", "ok"),
    ("get", "snapshot-items", "snapshot"): ("401", "403", "ok", "ok"),
    ("post", "snapshot-approve", "snapshot"): ("401", "403", "ok", "403"),
    ("post", "snapshot-reject", "snapshot"): ("401", "403", "ok", "403"),
    ("post", "snapshot-export", "snapshot"): ("401", "403", "403", "ok"),
    ("get", "snapshotjob-list", None): ("401", "403", "403", "ok"),
    ("get", "snapshotjob-detail", "snapshot_job"): ("401", "403", "403", "ok"),
    ("post", "snapshotjob-cancel", "snapshot_job"): ("401", "403", "403", "ok"),  # engineer: 409, it has ended
    ("get", "snapshotexport-list", None): ("401", "403", "ok", "ok"),
    ("get", "snapshotexport-detail", "export"): ("401", "403", "ok", "ok"),
    ("get", "snapshotexport-download", "export"): ("401", "403", "ok", "ok"),
    ("get", "snapshotexport-hf-dataset", "export"): ("401", "403", "ok", "ok"),
    ("get", "basemodel-list", None): ("401", "403", "403", "ok"),
    ("get", "basemodel-detail", "base_model"): ("401", "403", "403", "ok"),
    ("get", "trainingrun-list", None): ("401", "403", "403", "ok"),
    ("post", "trainingrun-list", None): ("401", "403", "403", "ok"),
    ("get", "trainingrun-detail", "run"): ("401", "403", "403", "ok"),
    ("get", "trainingrun-events", "run"): ("401", "403", "403", "ok"),
    ("post", "trainingrun-cancel", "run"): ("401", "403", "403", "ok"),
    ("get", "comparison-list", None): ("401", "403", "403", "ok"),  # engineer: 400 without ?a=&b=
    ("get", "decision-report-list", None): ("401", "403", "403", "ok"),  # engineer: 400 without ?dataset=
    ("post", "trainingrun-resume", "run"): ("401", "403", "403", "ok"),  # engineer: 409 for a queued run
    ("post", "trainingrun-preflight", None): ("401", "403", "403", "ok"),  # engineer: 400 for an empty body
    ("get", "modelversion-list", None): ("401", "403", "403", "ok"),
    ("post", "modelversion-list", None): ("401", "403", "403", "ok"),
    ("get", "modelversion-detail", "version"): ("401", "403", "403", "ok"),
    ("patch", "modelversion-detail", "version"): ("401", "403", "403", "ok"),  # name and prices
    ("get", "modelversion-report-list", "version"): ("401", "403", "403", "ok"),
    ("get", "evalrun-list", None): ("401", "403", "403", "ok"),
    ("post", "evalrun-list", None): ("401", "403", "403", "ok"),
    ("get", "evalrun-detail", "eval"): ("401", "403", "403", "ok"),
    ("get", "evalrun-predictions", "eval"): ("401", "403", "403", "ok"),
    # Raters and reviewers rate, blind (400 here: no ?dataset= / ?a=&b=, or an empty body).
    ("get", "rating-next", None): ("401", "403", "ok", "403"),
    ("post", "rating-list", None): ("401", "403", "ok", "403"),
    ("get", "judgment-next", None): ("401", "403", "ok", "403"),
    ("post", "judgment-list", None): ("401", "403", "ok", "403"),
    # Cancel: the job's creator or an engineer (the import is ann's and has ended: 409, which is "ok" here).
    ("post", "importbatch-cancel", "import"): ("401", "ok", "403", "ok"),
    ("post", "snapshotexport-cancel", "export"): ("401", "403", "403", "ok"),
    ("post", "evalrun-cancel", "eval"): ("401", "403", "403", "ok"),
    ("get", "schema", None): ("401", "ok", "ok", "ok"),
    ("get", "api-docs", None): ("401", "ok", "ok", "ok"),
    # Serving: engineers deploy, hand out keys and read the request log (engineer: 400 for an empty body).
    ("get", "deployment-list", None): ("401", "403", "403", "ok"),
    ("post", "deployment-list", None): ("401", "403", "403", "ok"),
    ("get", "deployment-detail", "deployment"): ("401", "403", "403", "ok"),
    ("patch", "deployment-detail", "deployment"): ("401", "403", "403", "ok"),
    ("get", "deployment-history", "deployment"): ("401", "403", "403", "ok"),
    ("get", "apikey-list", None): ("401", "403", "403", "ok"),
    ("post", "apikey-list", None): ("401", "403", "403", "ok"),
    ("get", "apikey-detail", "key"): ("401", "403", "403", "ok"),
    ("post", "apikey-revoke", "key"): ("401", "403", "403", "ok"),
    ("get", "requestlog-list", None): ("401", "403", "403", "ok"),
    ("get", "requestlog-detail", "log"): ("401", "403", "403", "ok"),
    ("post", "requestlog-to-dataset", None): ("401", "403", "403", "ok"),
}

# (admin URL name, object) -> expected outcome of a GET for (anonymous, annotator, reviewer, engineer)
ADMIN = {
    ("index", None): ("login", "ok", "ok", "ok"),
    ("curation_dataset_changelist", None): ("login", "ok", "ok", "ok"),
    ("curation_dataset_add", None): ("login", "403", "403", "ok"),
    ("curation_dataset_change", "dataset"): ("login", "ok", "ok", "ok"),
    ("curation_dataset_history", "dataset"): ("login", "ok", "ok", "ok"),
    ("curation_dataset_simple_history", "dataset"): ("login", "ok", "ok", "ok"),
    ("curation_dataset_delete", "dataset"): ("login", "403", "403", "403"),
    ("curation_example_changelist", None): ("login", "ok", "ok", "ok"),
    ("curation_example_add", None): ("login", "ok", "403", "403"),
    ("curation_example_change", "ann_ex"): ("login", "ok", "ok", "ok"),
    ("curation_example_change", "bob_same_input"): ("login", "ok", "ok", "ok"),
    ("curation_example_change", "bob_other"): ("login", "gone", "ok", "ok"),
    ("curation_example_change", "bob_blind_same_input"): ("login", "gone", "ok", "ok"),
    ("curation_example_history", "bob_blind_same_input"): ("login", "404", "ok", "ok"),
    ("curation_example_simple_history", "bob_blind_same_input"): ("login", "404", "ok", "ok"),
    ("curation_example_simple_history", "ann_ex"): ("login", "ok", "ok", "ok"),
    ("curation_example_delete", "ann_ex"): ("login", "403", "403", "403"),
    ("curation_example_edit_messages", "ann_ex"): ("login", "ok", "ok", "403"),
    ("curation_example_edit_messages", "bob_same_input"): ("login", "403", "ok", "403"),
    ("curation_example_edit_messages", "bob_other"): ("login", "404", "ok", "403"),
    ("curation_example_submit", "ann_ex"): ("login", "ok", "ok", "ok"),  # GET only redirects to the example
    ("curation_example_review_next", None): ("login", "403", "ok", "403"),
    ("curation_example_annotate_next", None): ("login", "ok", "ok", "403"),
    ("curation_example_review", "ann_ex"): ("login", "403", "ok", "403"),
    ("curation_example_review", "bob_other"): ("login", "404", "ok", "403"),
    ("curation_review_changelist", None): ("login", "ok", "ok", "ok"),
    ("curation_review_add", None): ("login", "403", "403", "403"),
    ("curation_importbatch_changelist", None): ("login", "ok", "ok", "ok"),
    ("curation_importbatch_add", None): ("login", "ok", "403", "ok"),
    ("curation_importbatch_change", "import"): ("login", "ok", "ok", "ok"),
    ("curation_importbatch_history", "import"): ("login", "ok", "ok", "ok"),
    ("curation_importbatch_delete", "import"): ("login", "403", "403", "403"),
    ("curation_snapshot_changelist", None): ("login", "403", "ok", "ok"),
    ("curation_snapshotjob_changelist", None): ("login", "403", "403", "ok"),
    ("curation_snapshot_add", None): ("login", "403", "403", "403"),
    ("curation_snapshot_change", "snapshot"): ("login", "403", "ok", "ok"),
    ("curation_snapshot_history", "snapshot"): ("login", "403", "ok", "ok"),
    ("curation_snapshot_simple_history", "snapshot"): ("login", "403", "ok", "ok"),
    ("curation_snapshot_delete", "snapshot"): ("login", "403", "403", "403"),
    ("curation_snapshot_review", "snapshot"): ("login", "403", "ok", "ok"),
    ("curation_snapshotitem_changelist", None): ("login", "403", "ok", "ok"),
    ("curation_snapshotexport_changelist", None): ("login", "403", "ok", "ok"),
    ("training_basemodel_changelist", None): ("login", "403", "403", "ok"),
    ("training_basemodel_add", None): ("login", "403", "403", "403"),
    ("training_basemodel_change", "base_model"): ("login", "403", "403", "ok"),
    ("training_trainingrun_changelist", None): ("login", "403", "403", "ok"),
    ("training_trainingrun_change", "run"): ("login", "403", "403", "ok"),
    ("training_trainingrun_history", "run"): ("login", "403", "403", "ok"),
    ("training_modelversion_changelist", None): ("login", "403", "403", "ok"),
    ("training_modelversion_change", "version"): ("login", "403", "403", "ok"),
    ("evaluation_evalrun_changelist", None): ("login", "403", "403", "ok"),
    ("evaluation_evalrun_change", "eval"): ("login", "403", "403", "ok"),
    ("evaluation_evalrun_rate", None): ("login", "403", "ok", "403"),  # raters and reviewers rate, blind
    ("evaluation_evalrun_pairwise", None): ("login", "403", "ok", "403"),
    ("evaluation_ratingcriterion_changelist", None): ("login", "403", "ok", "ok"),
    ("evaluation_evalrun_decision", None): ("login", "403", "403", "ok"),  # reports: engineers
    ("evaluation_evalrun_compare", None): ("login", "403", "403", "ok"),
    ("evaluation_evalrun_model_report", "version"): ("login", "403", "403", "ok"),
    ("serving_deployment_changelist", None): ("login", "403", "403", "ok"),
    ("serving_deployment_add", None): ("login", "403", "403", "ok"),
    ("serving_deployment_change", "deployment"): ("login", "403", "403", "ok"),
    ("serving_deployment_history", "deployment"): ("login", "403", "403", "ok"),
    ("serving_deployment_simple_history", "deployment"): ("login", "403", "403", "ok"),
    ("serving_deployment_delete", "deployment"): ("login", "403", "403", "403"),
    ("serving_apikey_changelist", None): ("login", "403", "403", "ok"),
    ("serving_apikey_add", None): ("login", "403", "403", "ok"),
    ("serving_apikey_delete", "key"): ("login", "403", "403", "403"),
    ("serving_requestlog_changelist", None): ("login", "403", "403", "ok"),
    ("serving_requestlog_change", "log"): ("login", "403", "403", "ok"),
    ("serving_requestlog_add", None): ("login", "403", "403", "403"),
    ("auth_user_changelist", None): ("login", "403", "403", "403"),
    ("auth_group_changelist", None): ("login", "403", "403", "403"),
    ("authtoken_tokenproxy_changelist", None): ("login", "403", "403", "403"),
}
# Django's standard pages of a model (add, change, history, delete) are enforced by Django's own
# permission checks; the table lists them where our code changes them, and the changelist of
# every registered model. Every page of our own must be listed.
STANDARD_PAGE = re.compile(r"_(add|change|history|delete|password_change)$")


def api_outcome(response) -> str:
    if response.status_code in (401, 403, 404):
        return str(response.status_code)
    assert response.status_code < 500, response.content[:300]
    return "ok"


def admin_outcome(response) -> str:
    if response.status_code in (403, 404):
        return str(response.status_code)
    assert response.status_code < 400, response.status_code
    if response.status_code == 302:
        if response.url.startswith(reverse("admin:login")):
            return "login"
        if response.url == reverse("admin:index"):
            return "gone"
    return "ok"


def api_url(name, obj, world):
    if name in ("schema", "api-docs"):
        return reverse(name)
    url = reverse(name, args=[world[obj].pk] if obj else [])
    return url + ("?split=train" if name == "snapshotexport-download" else "")


@pytest.mark.parametrize("role_index, role", list(enumerate(ROLES)))
def test_api_answers_each_role_as_the_table_says(world, role_index, role):
    client = APIClient()
    if world["users"][role]:
        client.force_authenticate(world["users"][role])
    wrong = {}
    for (method, name, obj), expected in API.items():
        response = getattr(client, method)(api_url(name, obj, world), {}, format="json")
        got = api_outcome(response)
        if got != expected[role_index]:
            wrong[(method, name, obj)] = (expected[role_index], got, response.content[:160])
    assert not wrong


@pytest.mark.parametrize("role_index, role", list(enumerate(ROLES)))
def test_admin_answers_each_role_as_the_table_says(world, role_index, role):
    client = Client()
    if world["users"][role]:
        client.force_login(world["users"][role])
    wrong = {}
    for (name, obj), expected in ADMIN.items():
        args = [world[obj].pk] if obj else []
        if name.endswith("_simple_history"):
            args.append(world[obj].history.earliest().history_id)
        got = admin_outcome(client.get(reverse(f"admin:{name}", args=args)))
        if got != expected[role_index]:
            wrong[(name, obj)] = (expected[role_index], got)
    assert not wrong


def test_every_api_endpoint_and_method_is_in_the_table():
    table = {(method, name) for method, name, _ in API}
    served = {(method, pattern.name) for pattern in router.urls
              for method in getattr(pattern.callback, "actions", {"get": "root"})
              if method not in ("head", "options") and method in pattern.callback.cls.http_method_names}
    assert served - table == set()


def test_every_admin_page_is_in_the_table():
    table = {name for name, _ in ADMIN}
    missing = set()
    for model, model_admin in admin.site._registry.items():
        prefix = f"{model._meta.app_label}_{model._meta.model_name}"
        for url in model_admin.get_urls():
            standard = url.name and STANDARD_PAGE.search(url.name) and f"{prefix}_changelist" in table
            if url.name and not standard and url.name not in table:
                missing.add(url.name)
    assert missing == set()


@pytest.mark.parametrize("role", ["annotator", "reviewer", "engineer", "superuser"])
def test_options_on_every_endpoint_describes_it_and_never_fails(world, role):
    """OPTIONS asks, for each write method, whether to describe its form: that check used to raise
    ImproperlyConfigured (500) for actions outside action_permissions, and a viewset without a
    serializer failed to describe itself to a superuser."""
    user = UserFactory(is_superuser=True, is_staff=True) if role == "superuser" else world["users"][role]
    client = APIClient()
    client.force_authenticate(user)
    answers = {}
    for _, name, obj in API:
        if name in ("schema", "api-docs"):
            continue  # not the API's views: no OPTIONS description
        response = client.options(api_url(name, obj, world))
        answers[name] = (response.status_code, response.json())
    described = lambda code, body: code == 200 and body.get("name") or code in (403, 404) and body.get("detail")  # noqa: E731
    failed = {name: answer for name, answer in answers.items() if not described(*answer)}
    assert failed == {}
    if role in ("engineer", "superuser"):
        assert answers["trainingrun-cancel"][0] == 200 and answers["dataset-list"][1]["actions"]["POST"]["name"]
