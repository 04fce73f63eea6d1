"""Deployments, keys and the request log through the REST API, the admin and the commands: the same services."""
import pytest
from django.core.management import CommandError, call_command

from curation.choices import ExampleSource, ExampleStatus
from curation.models import Example
from serving.choices import RequestStatus, Routing
from serving.keys import authenticate
from serving.models import ApiKey, Deployment, RequestLog
from tests.support.clients import api_client, signed_in_client
from tests.support.factories import AnnotatorFactory, DatasetFactory, EngineerFactory, unloadable_base_model
from training.model_versions import prompted_model_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(engineer):
    base = unloadable_base_model()
    return [prompted_model_version(base, prompt, by=engineer)[0] for prompt in ("A.", "B.")]


def log(deployment, number, *, status=RequestStatus.ANSWERED, answer="A coffee shop.", **fields):
    from django.utils import timezone

    return RequestLog.objects.create(
        request_id=f"chatcmpl-{number}", created_at=timezone.now(), deployment=deployment,
        deployment_name=deployment.name, status=status, http_status=200 if status == RequestStatus.ANSWERED else 502,
        messages=[{"role": "user", "content": f"question {number}"}], answer=answer if status == "answered" else "",
        answered_by=deployment.primary if status == RequestStatus.ANSWERED else None, **fields)


def test_engineers_create_and_switch_deployments_over_the_api_with_history(engineer, versions):
    client = api_client(engineer)
    created = client.post("/api/v1/deployments/", {"name": "support", "primary": versions[0].pk}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["routing"] == Routing.PRIMARY_ONLY and created.json()["fallback"] is None
    pk = created.json()["id"]
    switched = client.patch(f"/api/v1/deployments/{pk}/", {"fallback": versions[1].pk, "threshold": -0.7,
                                                           "reason": "route hard cases"}, format="json")
    assert switched.status_code == 200, switched.json()
    body = switched.json()
    assert (body["fallback"], body["routing"], body["threshold"]) == (versions[1].pk, Routing.CONFIDENCE, -0.7)
    assert body["threshold_source"] == {"set_by": "hand"}
    history = client.get(f"/api/v1/deployments/{pk}/history/").json()["results"]
    assert [h["reason"] for h in history] == ["route hard cases", "created"]
    assert {c["field"] for c in history[0]["changes"]} >= {"fallback", "routing", "threshold"}
    assert history[0]["user"] == engineer.username


@pytest.mark.parametrize("fields, field, words", [
    ({"name": "bad name"}, "name", "Letters, digits"),
    ({"fallback": "same"}, "fallback", "another model version"),
    ({"routing": "confidence"}, "routing", "needs a fallback"),
    ({"fallback": "other", "threshold": 0.5}, "threshold", "at most 0"),
    ({"engine": "vllm"}, "engine_base_url", "http(s) URL"),
    ({"max_tokens": 0}, "max_tokens", "from 1 to"),
])
def test_deployment_rules_are_400s_naming_the_field(engineer, versions, fields, field, words):
    body = {"name": "x", "primary": versions[0].pk, **fields}
    body.update({k: {"same": versions[0].pk, "other": versions[1].pk}[v] for k, v in fields.items()
                 if k == "fallback"})
    answer = api_client(engineer).post("/api/v1/deployments/", body, format="json")
    assert answer.status_code == 400 and answer.json()["field"] == field and words in answer.json()["detail"]
    assert not Deployment.objects.exists()


def test_a_threshold_needs_validation_evals_of_both_models(engineer, versions):
    answer = api_client(engineer).post("/api/v1/deployments/", {"name": "x", "primary": versions[0].pk,
                                                                "fallback": versions[1].pk}, format="json")
    assert answer.status_code == 400 and answer.json()["field"] == "threshold"
    assert "was not trained here" in answer.json()["detail"]


def test_a_taken_name_is_a_conflict(engineer, versions):
    client = api_client(engineer)
    assert client.post("/api/v1/deployments/", {"name": "x", "primary": versions[0].pk}, format="json").status_code \
        == 201
    again = client.post("/api/v1/deployments/", {"name": "x", "primary": versions[1].pk}, format="json")
    assert again.status_code == 409 and "exists already" in again.json()["detail"]


def test_api_keys_are_shown_once_then_only_by_prefix_and_can_be_revoked(engineer, versions):
    client = api_client(engineer)
    created = client.post("/api/v1/api-keys/", {"name": "bot"}, format="json")
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("ftp-") and created.json()["prefix"] == key[:12]
    assert authenticate(f"Bearer {key}").pk == created.json()["id"]
    listed = client.get("/api/v1/api-keys/").json()["results"]
    assert "key" not in listed[0] and key not in str(listed) and ApiKey.objects.get().key_hash != key
    revoked = client.post(f"/api/v1/api-keys/{created.json()['id']}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    again = client.post(f"/api/v1/api-keys/{created.json()['id']}/revoke/")
    assert again.status_code == 409 and "revoked already" in again.json()["detail"]


def test_only_engineers_manage_serving(versions):
    annotator = api_client(AnnotatorFactory())
    for url in ("/api/v1/deployments/", "/api/v1/api-keys/", "/api/v1/request-logs/"):
        assert annotator.get(url).status_code == 403
    assert annotator.post("/api/v1/api-keys/", {"name": "x"}, format="json").status_code == 403
    assert not ApiKey.objects.exists()


def test_request_logs_filter_and_become_deduplicated_examples_with_provenance(engineer, versions):
    from serving.deployments import create_deployment

    support = create_deployment(by=engineer, name="support", primary=versions[0])
    other = create_deployment(by=engineer, name="other", primary=versions[1])
    log(support, 1, tags={"team": "a"}, confidence=-0.2)
    log(support, 2, tags={"team": "b"}, confidence=-1.5, fell_back=True)
    log(support, 3, status=RequestStatus.FAILED)
    log(support, 4, tags={"team": "a"}, content_logged=False, answer="")
    log(other, 5, tags={"team": "a"})
    client = api_client(engineer)
    ids = lambda query: sorted(r["request_id"] for r in client.get(f"/api/v1/request-logs/?{query}").json()["results"])  # noqa: E731
    assert ids(f"deployment={support.pk}&tag=team:a") == ["chatcmpl-1", "chatcmpl-4"]
    assert ids("confidence_below=-1") == ["chatcmpl-2"]
    assert ids("fell_back=true") == ["chatcmpl-2"]
    assert ids("status=failed") == ["chatcmpl-3"]
    assert client.get("/api/v1/request-logs/?tag=nocolon").status_code == 400
    dataset = DatasetFactory()
    answer = client.post(f"/api/v1/request-logs/to-dataset/?deployment={support.pk}",
                         {"dataset": dataset.pk, "submit": True}, format="json")
    result = answer.json()
    assert answer.status_code == 200, result
    assert len(result["created"]) == 2
    assert {s["request_id"]: s["reason"] for s in result["skipped"]} == {
        "chatcmpl-3": "the request was not answered", "chatcmpl-4": "its messages were not kept (log sampling)"}
    example = Example.objects.get(metadata__request_log__request_id="chatcmpl-1")
    assert example.messages == [{"role": "user", "content": "question 1"},
                                {"role": "assistant", "content": "A coffee shop."}]
    assert (example.status, example.source, example.author) == (ExampleStatus.SUBMITTED, ExampleSource.TRAFFIC,
                                                                engineer)
    assert RequestLog.objects.get(request_id="chatcmpl-1").example == example
    again = client.post("/api/v1/request-logs/to-dataset/", {"dataset": dataset.pk, "ids": [
        RequestLog.objects.get(request_id="chatcmpl-1").pk]}, format="json").json()
    assert again["created"] == [] and again["duplicates"] == [{"request_id": "chatcmpl-1", "example_id": example.pk}]


def test_the_admin_turns_selected_logs_into_examples(client, engineer, versions):
    from serving.deployments import create_deployment

    support = create_deployment(by=engineer, name="support", primary=versions[0])
    rows = [log(support, n) for n in (1, 2)]
    dataset = DatasetFactory()
    signed_in_client(client, engineer)
    asked = client.post("/admin/serving/requestlog/", {"action": "add_to_dataset",
                                                       "_selected_action": [r.pk for r in rows]})
    assert asked.status_code == 200 and b"Add to the dataset" in asked.content
    done = client.post("/admin/serving/requestlog/", {"action": "add_to_dataset", "confirm": "yes",
                                                      "dataset": dataset.pk, "_selected_action": [r.pk for r in rows]},
                       follow=True)
    assert "2 example(s) added" in done.content.decode()
    assert dataset.examples.count() == 2


def test_the_admin_refuses_a_bad_deployment_on_its_field_and_saves_nothing(client, engineer, versions):
    signed_in_client(client, engineer)
    answer = client.post("/admin/serving/deployment/add/", {
        "name": "x", "primary": versions[0].pk, "fallback": versions[0].pk, "routing": "confidence",
        "engine": "builtin", "max_tokens": 100, "active": "on"})
    assert answer.status_code == 200
    assert "must be another model version than the primary" in answer.context["adminform"].form.errors["fallback"][0]
    assert not Deployment.objects.exists()
    saved = client.post("/admin/serving/deployment/add/", {
        "name": "x", "primary": versions[0].pk, "routing": "primary_only", "engine": "builtin", "max_tokens": 100,
        "active": "on"})
    assert saved.status_code == 302 and Deployment.objects.get().history.first().history_user == engineer


def test_the_admin_shows_a_new_key_once(client, engineer):
    signed_in_client(client, engineer)
    done = client.post("/admin/serving/apikey/add/", {"name": "bot"}, follow=True)
    page = done.content.decode()
    row = ApiKey.objects.get()
    assert "shown this once" in page and row.prefix in page
    key = page.split("<code>")[1].split("</code>")[0]
    assert authenticate(f"Bearer {key}") == row


def test_the_deploy_command_creates_switches_and_prints_a_key(engineer, versions, capsys):
    call_command("deploy", "support", "--model-version", str(versions[0].pk), "--key", "bot", "--as",
                 engineer.username)
    out = capsys.readouterr().out
    assert "Created deployment support" in out and "primary only" in out
    key = out.split("shown this once): ")[1].strip()
    assert authenticate(f"Bearer {key}").deployment.name == "support"
    call_command("deploy", "support", "--fallback", str(versions[1].pk), "--threshold", "-0.5", "--reason", "hard",
                 "--as", engineer.username)
    deployment = Deployment.objects.get()
    assert (deployment.fallback, deployment.threshold) == (versions[1], -0.5)
    assert deployment.history.first().history_change_reason == "hard"
    with pytest.raises(CommandError, match="needs --model-version"):
        call_command("deploy", "new", "--as", engineer.username)
    with pytest.raises(CommandError, match="at most 0"):
        call_command("deploy", "support", "--threshold", "2", "--as", engineer.username)


def test_request_logs_past_retention_are_pruned(settings, engineer, versions, capsys):
    from django.utils import timezone

    from serving.deployments import create_deployment

    support = create_deployment(by=engineer, name="support", primary=versions[0])
    old, new = log(support, 1), log(support, 2)
    RequestLog.objects.filter(pk=old.pk).update(created_at=timezone.now() - timezone.timedelta(days=31))
    settings.SERVING_LOG_RETENTION_DAYS = 0
    call_command("prune_request_logs")
    assert RequestLog.objects.count() == 2 and "nothing deleted" in capsys.readouterr().out
    settings.SERVING_LOG_RETENTION_DAYS = 30
    call_command("prune_request_logs")
    assert list(RequestLog.objects.all()) == [new] and "Deleted 1 request log(s)" in capsys.readouterr().out


def test_engineers_hold_the_serving_permissions():
    engineer = EngineerFactory()
    assert engineer.has_perm("serving.add_deployment") and engineer.has_perm("serving.view_requestlog")
    assert not AnnotatorFactory().has_perm("serving.view_requestlog")


def test_to_dataset_refuses_a_misspelt_filter_and_an_empty_selection(engineer, versions):
    from serving.deployments import create_deployment

    support = create_deployment(by=engineer, name="support", primary=versions[0])
    rows = [log(support, n) for n in (1, 2)]
    dataset = DatasetFactory()
    client = api_client(engineer)
    for query, body, field in (("?deploymnet=1", {"dataset": dataset.pk}, "deploymnet"),
                               ("", {"dataset": dataset.pk}, "ids")):
        answer = client.post(f"/api/v1/request-logs/to-dataset/{query}", body, format="json")
        assert answer.status_code == 400 and field in answer.json(), answer.json()
    assert not dataset.examples.exists()
    listed = client.get("/api/v1/request-logs/?deploymnet=1")
    assert listed.status_code == 400 and "Unknown filter" in listed.json()["deploymnet"][0]
    found = client.get(f"/api/v1/request-logs/?request_id={rows[1].request_id}").json()["results"]
    assert [r["id"] for r in found] == [rows[1].pk]


def test_deploying_the_same_primary_again_keeps_a_threshold_set_by_hand(engineer, versions, capsys):
    from serving.deployments import create_deployment

    create_deployment(by=engineer, name="support", primary=versions[0], fallback=versions[1], threshold=-0.3)
    call_command("deploy", "support", "--model-version", str(versions[0].pk), "--as", engineer.username)
    deployment = Deployment.objects.get()
    assert (deployment.threshold, deployment.threshold_source) == (-0.3, {"set_by": "hand"})
    assert "Unchanged: deployment support" in capsys.readouterr().out
    assert deployment.history.count() == 1


def test_the_admin_switches_a_deployment_through_the_service_with_its_reason(client, engineer, versions):
    from serving.deployments import create_deployment

    deployment = create_deployment(by=engineer, name="x", primary=versions[0], fallback=versions[1], threshold=-0.4)
    signed_in_client(client, engineer)
    form = {"name": "x", "primary": versions[0].pk, "fallback": versions[1].pk, "routing": "confidence",
            "threshold": "-0.4", "engine": "builtin", "max_tokens": 256, "active": "on"}
    unchanged = client.post(f"/admin/serving/deployment/{deployment.pk}/change/", form)
    assert unchanged.status_code == 302 and deployment.history.count() == 1  # nothing differed: no record
    switched = client.post(f"/admin/serving/deployment/{deployment.pk}/change/",
                           {**form, "threshold": "-0.9", "reason": "fewer fallbacks"})
    assert switched.status_code == 302
    deployment.refresh_from_db()
    assert deployment.threshold == -0.9 and deployment.history.first().history_change_reason == "fewer fallbacks"
