"""Pre-annotation: a model version drafts answers for a dataset's drafts as suggestions with its
confidence, through the one job path; the API starts it and reports edit effort per model version."""
import pytest

from curation.choices import ExampleStatus
from curation.models import Example, Suggestion
from curation.workflow import submit_example
from evaluation.models import PreannotationRun
from evaluation.preannotation import start_preannotation
from ftplatform.errors import NotAllowed, ServiceError
from ftplatform.jobrows import JobStatus
from tests.support.clients import client_for
from tests.support.factories import (
    AnnotatorFactory,
    DatasetFactory,
    EngineerFactory,
    ExampleFactory,
    tiny_base_model,
    unloadable_base_model,
)
from training.model_versions import prompted_model_version
from training.models import ModelVersion


def drafts(dataset, author, texts):
    return [ExampleFactory(dataset=dataset, author=author, status=ExampleStatus.DRAFT,
                           messages=[{"role": "user", "content": text}]) for text in texts]


@pytest.mark.django_db(transaction=True)
def test_the_tiny_model_drafts_an_answer_with_its_confidence_for_every_unanswered_draft(tiny_model_dir, run_jobs):
    dataset, annotator, engineer = DatasetFactory(), AnnotatorFactory(), EngineerFactory()
    waiting = drafts(dataset, annotator, ["name: Aromi, eatType: pub", "name: Blue Spice, area: riverside"])
    answered = ExampleFactory(dataset=dataset, author=annotator, status=ExampleStatus.DRAFT)
    version, _ = prompted_model_version(tiny_base_model(tiny_model_dir), dataset.system_prompt, by=engineer)
    run = start_preannotation(version, dataset, by=engineer, generation={"max_new_tokens": 6})
    run_jobs()
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert (run.example_ids, run.done, run.suggested) == ([e.pk for e in waiting], 2, 2)
    assert not answered.suggestions.exists()
    for example in waiting:
        example.refresh_from_db()
        suggestion = example.suggestions.get()
        assert (suggestion.model_version_id, suggestion.model_name, suggestion.preannotation_run_id) == (
            version.pk, version.name, run.pk)
        assert suggestion.confidence is not None and suggestion.confidence <= 0
        # The untrained tiny model may answer with nothing but whitespace: no answer to start from then.
        assert suggestion.prefilled == bool(suggestion.text.strip())
        assert example.messages[-1] == ({"role": "assistant", "content": suggestion.text} if suggestion.prefilled
                                        else {"role": "user", "content": example.messages[0]["content"]})
    assert run.prefilled == Suggestion.objects.filter(prefilled=True).count()


@pytest.mark.django_db(transaction=True)
def test_a_remote_model_suggests_through_its_endpoint_and_the_api_reports_its_acceptance(fake_openai, run_jobs):
    fake_openai.reply = lambda messages: "Aromi is a pub."
    fake_openai.logprobs = [("Aromi", -0.2), (" is", -0.4)]
    dataset, annotator, engineer = DatasetFactory(), AnnotatorFactory(), EngineerFactory()
    example, = drafts(dataset, annotator, ["name: Aromi"])
    version = client_for(engineer).post("/api/v1/model-versions/", {
        "kind": "openai_compatible", "name": "big model", "base_url": fake_openai.base_url,
        "remote_model": "fake-model", "system_prompt": ""}, format="json").json()
    response = client_for(engineer).post("/api/v1/preannotation-runs/", {
        "model_version": version["id"], "dataset": dataset.pk, "example_ids": [example.pk]}, format="json")
    run_jobs()
    assert response.status_code == 201, response.content
    run = PreannotationRun.objects.get()
    assert run.status == JobStatus.SUCCEEDED, run.error
    suggestion = Suggestion.objects.get()
    assert (suggestion.text, suggestion.prefilled) == ("Aromi is a pub.", True)
    assert suggestion.confidence == pytest.approx(-0.3)

    example.refresh_from_db()
    submit_example(example, by=annotator)
    stats = client_for(annotator).get(f"/api/v1/suggestions/statistics/?dataset={dataset.pk}").json()
    assert [(row["model_name"], row["submitted"], row["acceptance_rate"], row["mean_normalized_distance"])
            for row in stats] == [("big model", 1, 1.0, 0.0)]
    listed = client_for(annotator).get("/api/v1/suggestions/").json()["results"]
    assert [(row["example"], row["outcome"]) for row in listed] == [(example.pk, "accepted")]


@pytest.mark.django_db
def test_only_drafts_of_the_dataset_can_be_pre_annotated():
    dataset, engineer = DatasetFactory(), EngineerFactory()
    submitted = ExampleFactory(dataset=dataset)
    version, _ = prompted_model_version(unloadable_base_model(), "", by=engineer)
    with pytest.raises(ServiceError, match=f"example\\(s\\) {submitted.pk} are not drafts of dataset"):
        start_preannotation(version, dataset, by=engineer, example_ids=[submitted.pk])
    with pytest.raises(ServiceError, match="has no drafts waiting for an answer"):
        start_preannotation(version, dataset, by=engineer)
    assert not PreannotationRun.objects.exists()


@pytest.mark.django_db
def test_annotators_may_not_start_pre_annotation():
    dataset, annotator = DatasetFactory(), AnnotatorFactory()
    drafts(dataset, annotator, ["name: Aromi"])
    version, _ = prompted_model_version(unloadable_base_model(), "", by=EngineerFactory())
    with pytest.raises(NotAllowed, match="evaluation.add_preannotationrun"):
        start_preannotation(version, dataset, by=annotator)
    assert Example.objects.get().suggestions.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_second_model_suggests_beside_the_first_and_the_queue_starts_where_they_disagree(fake_openai, run_jobs):
    from curation.work_queues import next_example_to_annotate

    dataset, annotator, engineer = DatasetFactory(), AnnotatorFactory(), EngineerFactory()
    agreed, disputed = drafts(dataset, annotator, ["name: Aromi", "name: Blue Spice"])
    versions = [ModelVersion.objects.create(name=name, kind="openai_compatible", base_model=unloadable_base_model(name),
                                            base_url=fake_openai.base_url, remote_model="fake-model")
                for name in ("first", "second")]
    answers = {"first": {"name: Aromi": "Aromi is a pub.", "name: Blue Spice": "Blue Spice is a pub."},
               "second": {"name: Aromi": "Aromi is a pub!", "name: Blue Spice": "A riverside coffee shop."}}
    for version in versions:
        fake_openai.reply = lambda messages, name=version.name: answers[name].get(messages[-1]["content"], "OK")
        start_preannotation(version, dataset, by=engineer)  # the second one: the drafts the first answered
        run_jobs()
    assert PreannotationRun.objects.filter(status=JobStatus.SUCCEEDED).count() == 2
    disputed.refresh_from_db()
    assert disputed.output_text == "Blue Spice is a pub."  # the first suggestion stays the draft's answer
    assert sorted(disputed.suggestions.values_list("model_name", "prefilled")) == [("first", True), ("second", False)]
    assert next_example_to_annotate(annotator, order="disagreement") == disputed
