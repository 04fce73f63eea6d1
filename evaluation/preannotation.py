"""Pre-annotation: a model version drafts answers for a dataset's drafts, as suggestions annotators
accept, edit or rewrite (curation.suggestions judges which). The job is evaluation.jobs.run_preannotation;
it writes through curation.workflow.record_suggestion."""
from django.db import transaction

from curation.choices import ExampleStatus
from curation.formats import needs_answer
from curation.models import Dataset, Example
from ftplatform import jobrows, queues
from ftplatform.errors import ServiceError
from ftplatform.roles import require_permission
from training.models import ModelVersion

from .models import PreannotationRun
from .services import validate_generation


def drafts_to_preannotate(dataset: Dataset, model_version: ModelVersion,
                          example_ids: list[int] | None = None) -> list[int]:
    """Ids of the drafts a pre-annotation run of ``model_version`` answers: ``example_ids`` (each must
    be a draft of ``dataset``), or, when None or empty, oldest first, every draft of ``dataset`` still
    needing its answer (its conversation ends in a user turn) and every draft another model version
    suggested an answer for that this one has not (a second opinion: the disagreement queue order).
    Raises ServiceError naming ids that are not drafts of the dataset, or saying there is nothing to
    answer."""
    drafts = Example.objects.filter(dataset=dataset, status=ExampleStatus.DRAFT).order_by("id")
    if example_ids:
        wanted = sorted(set(example_ids))
        found = set(drafts.filter(pk__in=wanted).values_list("pk", flat=True))
        missing = [pk for pk in wanted if pk not in found]
        if missing:
            raise ServiceError(f"example(s) {', '.join(map(str, missing[:20]))} are not drafts of dataset '{dataset}': "
                               "only drafts get model suggestions", field="example_ids")
        return wanted
    second_opinions = set(drafts.filter(suggestions__isnull=False)
                          .exclude(suggestions__model_version_id=model_version.pk).values_list("pk", flat=True))
    ids = [pk for pk, messages in drafts.values_list("pk", "messages")
           if needs_answer(messages) or pk in second_opinions]
    if not ids:
        raise ServiceError(f"dataset '{dataset}' has no drafts waiting for an answer: import inputs without answers "
                           "(conversations ending in a user turn) or name the drafts to answer", field="example_ids")
    return ids


@transaction.atomic
def start_preannotation(model_version: ModelVersion, dataset: Dataset, *, by, example_ids: list[int] | None = None,
                        generation: dict | None = None) -> PreannotationRun:
    """Create a queued PreannotationRun of ``model_version`` (fine-tuned, prompted base or
    OpenAI-compatible) over drafts_to_preannotate(dataset, model_version, example_ids) and enqueue its job
    after commit.

    Raises:
        NotAllowed: ``by`` lacks 'evaluation.add_preannotationrun' (engineers hold it).
        ServiceError: no drafts to answer, ids that are not drafts of the dataset, or bad generation
            settings (evaluation.services.validate_generation).
    """
    require_permission(by, "evaluation.add_preannotationrun", "start pre-annotation runs")
    ids = drafts_to_preannotate(dataset, model_version, example_ids)
    run = PreannotationRun.objects.create(model_version=model_version, dataset=dataset, example_ids=ids,
                                          total=len(ids), generation=validate_generation(generation), created_by=by)
    queues.enqueue_job_row(run, "evaluation", "evaluation.jobs.run_preannotation")
    return run


def cancel_preannotation(run: PreannotationRun, *, by) -> PreannotationRun:
    """Cancel a queued run at once, or stop a running one before its next answer; suggestions already
    recorded stay (ftplatform.jobrows.request_cancel). Raises NotAllowed or Conflict."""
    return jobrows.request_cancel(run, by=by, noun=f"pre-annotation {run.pk}")
