"""The admin home page's sections, one per role the user works in (ftplatform.roles): what is
waiting for them and a link to start. Reads only, through each app's selectors and work queues
(curation.work_queues, evaluation.ratings, evaluation.decision); the template lays them out.

It lives in ``config`` because it reads every app (the top layer may import them all).
"""
from django.core.cache import cache
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse

from curation import access, work_queues
from curation.choices import ExampleStatus, ReviewDecision, SnapshotStatus
from curation.imports import describe_batch
from curation.models import Dataset, ImportBatch, Review, Snapshot, SnapshotExport, SnapshotJob
from evaluation import ratings
from evaluation.decision import decision_report
from evaluation.models import EvalRun, PreannotationRun
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus
from ftplatform.roles import ANNOTATOR, ENGINEER, REVIEWER, has_role
from training.models import TrainingRun
from training.progress import run_progress_fields

SHOWN = 20  # rows per list; each list says how many there are in all
RECENT_VERDICTS = 3  # datasets whose decision report the engineer's home computes (each runs the bootstrap)
VERDICT_SECONDS = 120


def home_sections(user) -> dict:
    """``{"annotator": ..., "reviewer": ..., "engineer": ..., "rater": ...}``: the sections ``user``
    sees, each present only for a role they work in (superusers see all). Raters' section goes to
    everyone who may rate (reviewers rate too)."""
    sections = {}
    if has_role(user, ANNOTATOR):
        sections["annotator"] = annotator_section(user)
    if has_role(user, REVIEWER):
        sections["reviewer"] = reviewer_section(user)
    if has_role(user, ENGINEER):
        sections["engineer"] = engineer_section()
    if user.has_perm("evaluation.add_humanrating"):
        sections["rater"] = rater_section(user)
    return sections


def annotator_section(user) -> dict:
    """The examples waiting for ``user`` to write or fix (curation.work_queues.annotation_candidates):
    ``{"total", "assigned", "rejected", "examples": [{"example", "url", "rejection"}]}``, the newest
    rejection comment with each rejected example, and the "write next" URL."""
    waiting = work_queues.annotation_candidates(user)
    counts = waiting.aggregate(total=Count("id"), assigned=Count("id", filter=Q(assignee=user)),
                               rejected=Count("id", filter=Q(status=ExampleStatus.REJECTED)))
    newest_rejection = (Review.objects.filter(example=OuterRef("pk"), decision=ReviewDecision.REJECT)
                        .order_by("-created_at", "-id").values("comment")[:1])
    shown = waiting.select_related("dataset").annotate(rejection=Subquery(newest_rejection))[:SHOWN]
    return {**counts, "write_next_url": reverse("admin:curation_example_annotate_next"),
            "write_new_url": reverse("admin:curation_example_add"),
            "examples": [{"example": example, "assigned": example.assignee_id == user.pk,
                          "rejection": example.rejection if example.status == ExampleStatus.REJECTED else "",
                          "url": reverse("admin:curation_example_edit_messages", args=[example.pk])}
                         for example in shown]}


def reviewer_section(user) -> dict:
    """What ``user`` can review now, per dataset (curation.work_queues.review_candidates, less what
    other reviewers hold), and the snapshots waiting for sign-off:
    ``{"total", "datasets": [{"name", "left", "url"}], "review_next_url", "snapshots": [...]}``."""
    left = work_queues.waiting_for(user, work_queues.review_candidates(user))
    per_dataset = left.values("dataset", "dataset__name").annotate(left=Count("id")).order_by("dataset__name")
    review_next = reverse("admin:curation_example_review_next")
    snapshots = []
    if user.has_perm("curation.review_snapshot"):
        pending = access.visible_snapshots(user, Snapshot.objects.filter(status=SnapshotStatus.PENDING_REVIEW))
        snapshots = [{"snapshot": snapshot, "url": reverse("admin:curation_snapshot_review", args=[snapshot.pk])}
                     for snapshot in pending.select_related("dataset", "created_by").order_by("created_at")[:SHOWN]]
    return {"total": sum(row["left"] for row in per_dataset), "review_next_url": review_next,
            "datasets": [{"name": row["dataset__name"], "left": row["left"],
                          "url": f"{review_next}?dataset={row['dataset']}"} for row in per_dataset],
            "snapshots": snapshots}


def _job_kinds():
    """(label, model, admin URL name, row -> (done, total, text)) for every kind of job an engineer follows."""
    def training(run):
        return run.step, run.total_steps, " · ".join(f"{k} {v}" for k, v in run_progress_fields(run).items())

    return [
        ("Training run", TrainingRun.objects.select_related("snapshot__dataset", "base_model"),
         "admin:training_trainingrun_change", training),
        ("Evaluation", EvalRun.objects.select_related("model_version", "snapshot__dataset"),
         "admin:evaluation_evalrun_change", lambda run: (run.done, run.total, f"{run.done}/{run.total} inputs")),
        ("Import", ImportBatch.objects.select_related("dataset"), "admin:curation_importbatch_change",
         lambda batch: (batch.rows_done, batch.rows_total, f"{batch.rows_done:,}/{batch.rows_total or '?'} records")),
        ("Snapshot job", SnapshotJob.objects.select_related("dataset"), "admin:curation_snapshotjob_change",
         lambda job: (job.done, job.total, f"{job.stage or job.status}: {job.done}/{job.total or '?'}")),
        ("Snapshot export", SnapshotExport.objects.select_related("snapshot"), "admin:curation_snapshotexport_change",
         lambda export: (None, None, "")),
        ("Pre-annotation", PreannotationRun.objects.select_related("model_version", "dataset"),
         "admin:evaluation_preannotationrun_change",
         lambda run: (run.done, run.total, f"{run.done}/{run.total or '?'} drafts, {run.suggested} suggested")),
    ]


# What an engineer starts from the browser (each page calls the same service as the API and the commands).
ENGINEER_STARTS = [
    ("Start a training run", "admin:training_trainingrun_start"),
    ("Evaluate model versions", "admin:evaluation_evalrun_start"),
    ("Create a prompted baseline", "admin:training_modelversion_prompted"),
    ("Compare versions side by side", "admin:evaluation_evalrun_side_by_side"),
    ("Start a learning curve", "admin:evaluation_learningcurve_add"),
    ("Pre-annotate drafts with a model", "admin:evaluation_preannotationrun_add"),
    ("Decision report", "admin:evaluation_evalrun_decision"),
]


def _job_row(label, row, url_name, progress) -> dict:
    done, total, text = progress(row)
    return {"kind": label, "name": str(row), "status": row.get_status_display(), "done": done, "total": total,
            "progress": text, "error": _first_error(row),
            "when": row.finished_at or row.started_at or row.created_at,
            "url": reverse(url_name, args=[row.pk])}


def _first_error(row) -> str:
    """The first line of a failed job's error. An import refused for its invalid lines has no error of its
    own (the lines have theirs): the first of them stands in, as describe_batch words it."""
    if row.error:
        return row.error.strip().splitlines()[0]
    if isinstance(row, ImportBatch) and row.error_count:
        first = describe_batch(row, limit=1)[2].strip()  # after the counts and "Nothing was imported: ..."
        return f"{row.error_count} invalid; {first}"
    return ""


def engineer_section() -> dict:
    """Jobs queued or running (with their progress), the newest failed ones (with the first line of
    their error), the verdicts of the datasets evaluated last (evaluation.decision.decision_report) and
    the pages that start work: ``{"running": [...], "failed": [...], "verdicts": [{"dataset", "verdict",
    "reason", "url"}], "starts": [{"label", "url"}]}``."""
    running, failed = [], []
    for label, rows, url_name, progress in _job_kinds():
        running += [_job_row(label, row, url_name, progress)
                    for row in rows.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).order_by("created_at")]
        failed += [_job_row(label, row, url_name, progress)
                   for row in rows.filter(status=JobStatus.FAILED).order_by("-finished_at", "-id")[:SHOWN]]
    failed.sort(key=lambda job: job["when"], reverse=True)
    return {"running": running, "failed": failed[:SHOWN], "verdicts": recent_verdicts(),
            "starts": [{"label": label, "url": reverse(name)} for label, name in ENGINEER_STARTS]}


def recent_verdicts(limit: int = RECENT_VERDICTS) -> list[dict]:
    """The decision reports' verdicts of the ``limit`` datasets whose evaluations finished last.

    A report runs the bootstrap (about a second for a dataset of a few hundred test inputs), so each
    verdict is kept VERDICT_SECONDS in Django's cache, keyed by the dataset's newest succeeded eval
    run, their number and the time the last finished: a new evaluation shows at once; a price change
    within that time may not.
    """
    succeeded = EvalRun.objects.filter(status=JobStatus.SUCCEEDED, snapshot__dataset=OuterRef("pk"))
    datasets = (Dataset.objects.annotate(
        last_evaluated=Subquery(succeeded.annotate(at=Coalesce("finished_at", "created_at"))
                                .order_by("-at").values("at")[:1]),
        newest_eval=Subquery(succeeded.order_by("-id").values("id")[:1]),
        evals=Subquery(succeeded.values("snapshot__dataset").annotate(n=Count("id")).values("n")[:1]))
        .filter(last_evaluated__isnull=False).order_by("-last_evaluated")[:limit])
    verdicts = []
    for dataset in datasets:
        key = (f"ftplatform:home-verdict:{dataset.pk}:{dataset.newest_eval}:{dataset.evals}:"
               f"{dataset.last_evaluated.timestamp()}")
        verdict = cache.get_or_set(key, lambda dataset=dataset: _verdict(dataset), VERDICT_SECONDS)
        verdicts.append({"dataset": dataset, **verdict, "evaluated": dataset.last_evaluated,
                         "url": f"{reverse('admin:evaluation_evalrun_decision')}?dataset={dataset.pk}"})
    return verdicts


def _verdict(dataset: Dataset) -> dict:
    try:
        report = decision_report(dataset)
    except ServiceError as exc:
        return {"verdict": "no report", "reason": str(exc)}
    return {"verdict": report["verdict"], "reason": report.get("reason", "")}


def rater_section(user) -> dict:
    """The rating queues of ``user`` as links (evaluation.ratings): Likert per dataset and blind pairs.
    ``{"likert": [{"dataset", "left", "url"}], "pairwise": [{"dataset", "split", "left", "url"}]}``."""
    rate = reverse("admin:evaluation_evalrun_rate")
    pairwise = reverse("admin:evaluation_evalrun_pairwise")
    return {
        "likert": [{**queue, "url": f"{rate}?dataset={queue['dataset'].pk}"}
                   for queue in ratings.rating_queues(by=user)],
        "pairwise": [{"dataset": queue["dataset"], "split": queue["split"], "left": queue["left"],
                      "url": f"{pairwise}?a={queue['eval_a'].pk}&b={queue['eval_b'].pk}"}
                     for queue in ratings.pairwise_queues(by=user)],
    }
