"""Evaluations from the admin: start one eval run per chosen model version on a snapshot split through
evaluation.services, refusals named per version, and the live panel an eval run's page polls."""
import pytest
from django.urls import reverse

from evaluation.models import EvalRun
from ftplatform.jobrows import JobStatus
from tests.support.factories import AnnotatorFactory, EngineerFactory, snapshot_of, unloadable_base_model
from tests.training.test_admin_pages import text_of
from training.model_versions import few_shot_examples, prompted_model_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def engineer(client):
    client.force_login(EngineerFactory())
    return client


def test_one_eval_run_per_chosen_version_and_a_named_refusal(engineer, e2e_records, django_capture_on_commit_callbacks):
    snapshot = snapshot_of(e2e_records[:60])
    base, by = unloadable_base_model(), EngineerFactory()
    zero_shot = prompted_model_version(base, "Describe it.", by=by)[0]
    # Its worked examples come from the train split: evaluating it there would not be a fair test.
    few_shot = prompted_model_version(base, "Describe it.", few_shot_examples(snapshot, 2), by=by)[0]
    page = engineer.get(reverse("admin:evaluation_evalrun_start") + f"?snapshot={snapshot.pk}&versions={few_shot.pk}")
    assert f'value="{few_shot.pk}" id="id_model_versions_0" checked' in page.content.decode()
    with django_capture_on_commit_callbacks(execute=False):  # queued only: the base model has no weights here
        response = engineer.post(reverse("admin:evaluation_evalrun_start"), {
            "snapshot": snapshot.pk, "split": "train", "model_versions": [zero_shot.pk, few_shot.pk],
            "max_new_tokens": 16, "batch_size": 1}, follow=True)
    run = EvalRun.objects.get()
    assert (run.model_version, run.split, run.generation["max_new_tokens"]) == (zero_shot, "train", 16)
    assert response.redirect_chain[-1][0] == reverse("admin:evaluation_evalrun_change", args=[run.pk])
    page = text_of(response)
    assert f"Started 1 eval run(s) on {snapshot} [train]: eval {run.pk} ({zero_shot.name})" in page
    # Each refusal names its version (the admin's messages start with a capital).
    assert f"{few_shot.name}: model version {few_shot.pk} shows worked examples whose inputs are in snapshot" \
        in page.lower()


def test_the_eval_run_page_polls_its_progress_until_the_run_ends(engineer, e2e_records):
    snapshot = snapshot_of(e2e_records[:30])
    version = prompted_model_version(unloadable_base_model(), "Describe it.", by=EngineerFactory())[0]
    run = EvalRun.objects.create(model_version=version, snapshot=snapshot, split="test", status=JobStatus.RUNNING,
                                 done=1, total=3)
    page = engineer.get(reverse("admin:evaluation_evalrun_change", args=[run.pk])).content.decode()
    url = reverse("admin:evaluation_evalrun_progress", args=[run.pk])
    assert f'data-live-url="{url}"' in page and 'data-live-running="true"' in page
    assert 'document.querySelectorAll("[data-live-url]")' in page
    EvalRun.objects.filter(pk=run.pk).update(done=3, status=JobStatus.SUCCEEDED, metrics={"chrf": 41.5})
    fragment = engineer.get(url).content.decode()
    assert 'data-live-running="false"' in fragment and 'value="3" max="3"' in fragment
    assert "generated 3/3 inputs" in fragment and "41.50" in fragment
    assert f"{reverse('admin:evaluation_evalrun_decision')}?dataset={snapshot.dataset_id}" in fragment


def test_annotators_cannot_start_evaluations(client):
    client.force_login(AnnotatorFactory())
    assert client.get(reverse("admin:evaluation_evalrun_start")).status_code == 403
