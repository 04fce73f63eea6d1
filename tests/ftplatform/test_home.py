"""The admin home page: one section per role, built from the work queues and selectors (config.home)."""
import html
import json

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from config.home import home_sections, recent_verdicts
from curation.imports import submit_import
from curation.models import Example
from curation.workflow import reject_example, submit_example
from evaluation.models import EvalRun
from ftplatform.roles import REVIEWER
from tests.support.factories import (
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    ExampleFactory,
    RaterFactory,
    ReviewerFactory,
    UserFactory,
    approved_snapshot,
    tiny_base_model,
    tuned_vs_prompted_runs,
    two_eval_runs,
)
from training.models import TrainingRun

pytestmark = pytest.mark.django_db


def _page(client, user) -> str:
    client.force_login(user)
    return client.get(reverse("admin:index")).content.decode()


def test_the_site_is_branded_ftplatform(client):
    page = _page(client, AnnotatorFactory())
    assert "<title>Home | ftplatform</title>" in page
    assert '<a href="/admin/">ftplatform</a>' in page


def test_the_header_links_to_no_site_the_platform_does_not_serve(client):
    """Django's "View site" linked to /, which is no page here (404 for everyone)."""
    page = _page(client, AnnotatorFactory())
    assert "View site" not in page


def test_an_annotator_sees_assigned_and_rejected_examples_with_the_rejection_comment(client):
    dataset = DatasetFactory(name="venues")
    ann, rita = AnnotatorFactory(username="ann"), ReviewerFactory(username="rita")
    assigned = ExampleFactory(dataset=dataset, author=UserFactory(), assignee=ann, status="draft")
    rejected = ExampleFactory(dataset=dataset, author=ann)
    reject_example(rejected, by=rita, comment="Say where it is.")
    ExampleFactory(dataset=dataset, author=UserFactory(), status="draft")  # someone else's draft: not ann's work

    section = home_sections(ann)["annotator"]
    assert (section["total"], section["assigned"], section["rejected"]) == (2, 1, 1)
    assert [row["example"].pk for row in section["examples"]] == [assigned.pk, rejected.pk]
    page = _page(client, ann)
    assert "2 waiting for you: 1 assigned, 1 rejected" in page
    assert "Say where it is." in page
    assert f'href="{reverse("admin:curation_example_edit_messages", args=[assigned.pk])}"' in page
    assert "ft-home-reviewer" not in page and "ft-home-engineer" not in page


def test_write_next_opens_the_oldest_waiting_example_then_the_page_for_a_new_one(client):
    ann = AnnotatorFactory()
    example = ExampleFactory(dataset=DatasetFactory(), author=ann, status="draft")
    client.force_login(ann)
    response = client.get(reverse("admin:curation_example_annotate_next"))
    assert response.url == reverse("admin:curation_example_change", args=[example.pk])
    example.refresh_from_db()
    assert example.reserved_by == ann
    submit_example(example, by=ann)
    response = client.get(reverse("admin:curation_example_annotate_next"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:curation_example_add")
    assert "No draft or rejected example is waiting for you" in response.content.decode()


def test_a_reviewer_sees_how_many_remain_per_dataset_and_pending_snapshots(client):
    rita = ReviewerFactory(username="rita")
    ann = AnnotatorFactory()
    venues, menus = DatasetFactory(name="venues"), DatasetFactory(name="menus")
    for dataset, count in ((venues, 2), (menus, 1)):
        for i in range(count):
            ExampleFactory(dataset=dataset, author=ann, messages=[
                {"role": "user", "content": f"{dataset.name} {i}"}, {"role": "assistant", "content": "ok"}])
    ExampleFactory(dataset=venues, author=rita)  # her own example is not hers to review
    snapshot = approved_snapshot(DatasetFactory(name="places"), [("a", "b")], approve=False)

    section = home_sections(rita)["reviewer"]
    assert section["total"] == 3
    assert [(row["name"], row["left"]) for row in section["datasets"]] == [("menus", 1), ("venues", 2)]
    page = _page(client, rita)
    assert "3 examples left to review" in page
    assert f'{reverse("admin:curation_example_review_next")}?dataset={venues.pk}' in page
    assert f'href="{reverse("admin:curation_snapshot_review", args=[snapshot.pk])}"' in page


def test_another_reviewers_reservation_is_not_left_for_me(client):
    rita, sam, ann = ReviewerFactory(), ReviewerFactory(), AnnotatorFactory()
    example = ExampleFactory(dataset=DatasetFactory(), author=ann)
    Example.objects.filter(pk=example.pk).update(reserved_by=sam, reserved_until=timezone.now() + timezone.timedelta(
        minutes=5))
    assert home_sections(rita)["reviewer"]["total"] == 0
    assert home_sections(sam)["reviewer"]["total"] == 1


def test_an_engineer_sees_running_jobs_with_progress_failed_jobs_and_verdicts(client, tmp_path):
    dataset, (prompted, tuned) = two_eval_runs()
    snapshot = prompted.snapshot
    base = tiny_base_model(tmp_path)
    running = TrainingRun.objects.create(snapshot=snapshot, base_model=base, hyperparameters={}, status="running",
                                         step=40, total_steps=80)
    TrainingRun.objects.create(snapshot=snapshot, base_model=base, hyperparameters={}, status="failed",
                               error="out of memory at step 3\nTraceback ...", finished_at=timezone.now())
    evaluating = EvalRun.objects.create(model_version=prompted.model_version, snapshot=snapshot, status="running",
                                        done=3, total=10)

    section = home_sections(EngineerFactory())["engineer"]
    assert [(job["kind"], job["done"], job["total"]) for job in section["running"]] == [
        ("Training run", 40, 80), ("Evaluation", 3, 10)]
    assert [(job["kind"], job["error"]) for job in section["failed"]] == [("Training run", "out of memory at step 3")]
    assert [(row["dataset"], row["verdict"]) for row in section["verdicts"]] == [(dataset, "not enough evidence")]
    page = _page(client, EngineerFactory())
    assert "step 40/80" in page and "3/10 inputs" in page
    assert f'href="{reverse("admin:training_trainingrun_change", args=[running.pk])}"' in page
    assert f'href="{reverse("admin:evaluation_evalrun_change", args=[evaluating.pk])}"' in page
    assert "out of memory at step 3" in page and "Traceback" not in page
    assert "no fine-tuned model of this dataset has been evaluated yet" in page
    assert 'id="ft-all-pages" open' in page  # the app list stays open for engineers


def test_a_failed_import_shows_its_first_invalid_line_on_the_engineer_home_page(client):
    """An import refused for its invalid lines has no error of its own: its row's Error cell was empty."""
    dataset, engineer = DatasetFactory(), EngineerFactory()
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    bad = f'{json.dumps(good)}\n{{"messages": "x"}}\n'.encode()
    batch = submit_import(dataset, bad, "chat_jsonl", by=engineer, filename="bad.jsonl")
    assert batch.status == "failed" and batch.error == ""
    (row,) = home_sections(engineer)["engineer"]["failed"]
    assert row["kind"] == "Import" and row["error"].startswith("1 invalid; line 2: 'messages' must be")
    assert row["error"] in html.unescape(_page(client, engineer))


def test_an_engineer_starts_every_kind_of_work_from_the_home_page_and_each_link_opens(client):
    engineer = EngineerFactory()
    page = _page(client, engineer)
    starts = home_sections(engineer)["engineer"]["starts"]
    assert [start["label"] for start in starts] == [
        "Start a training run", "Evaluate model versions", "Create a prompted baseline",
        "Compare versions side by side", "Start a learning curve", "Pre-annotate drafts with a model",
        "Decision report"]
    for start in starts:
        assert f'href="{start["url"]}"' in page
        assert client.get(start["url"]).status_code == 200, start["label"]


def test_a_rater_gets_links_to_each_likert_and_pairwise_queue_without_model_names(client):
    dataset, (run_a, run_b) = two_eval_runs()
    rater = RaterFactory()
    n = run_a.predictions.count()
    section = home_sections(rater)["rater"]
    assert [(row["dataset"], row["left"]) for row in section["likert"]] == [(dataset, 2 * n)]
    assert [row["left"] for row in section["pairwise"]] == [n]
    page = _page(client, rater)
    assert f'{reverse("admin:evaluation_evalrun_rate")}?dataset={dataset.pk}' in page
    assert f'{reverse("admin:evaluation_evalrun_pairwise")}?a={run_a.pk}&amp;b={run_b.pk}' in page
    assert "secret" not in page  # blind: no model version's name
    assert "ft-home-annotator" not in page and "ft-home-engineer" not in page


def test_a_user_with_several_roles_sees_each_section(client):
    user = AnnotatorFactory()
    user.groups.add(Group.objects.get(name=REVIEWER))
    page = _page(client, user)
    assert "ft-home-annotator" in page and "ft-home-reviewer" in page and "ft-home-rater" in page
    assert "ft-home-engineer" not in page


def test_a_new_evaluation_shows_in_the_verdict_at_once():
    """Verdicts are cached (each runs the bootstrap); the key follows the dataset's evaluations."""
    dataset, _, tuned = tuned_vs_prompted_runs(examples=40)
    EvalRun.objects.filter(pk=tuned.pk).update(status="running")
    assert [row["verdict"] for row in recent_verdicts()] == ["not enough evidence"]
    EvalRun.objects.filter(pk=tuned.pk).update(status="succeeded", finished_at=timezone.now())
    [row] = recent_verdicts()
    assert (row["dataset"], row["verdict"]) == (dataset, "fine-tune")
