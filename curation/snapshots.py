"""Freezing approved examples into snapshots behind the quality gate, and the snapshot review."""
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from ftplatform import jobrows, queues
from ftplatform.errors import Conflict, NotAllowed, ServiceError
from ftplatform.roles import require_permission

from .access import reviewable_datasets
from .choices import ExampleStatus, SnapshotStatus
from .models import (
    FROZEN_DATASET_SETTINGS,
    SNAPSHOT_HASH_VERSION,
    Dataset,
    Example,
    Snapshot,
    SnapshotItem,
    SnapshotJob,
)
from .near_duplicates import near_duplicate_inputs
from .quality import QualityExample, TokenLimits, blocking_findings, describe_findings, quality_report
from .schemas import check_evaluation_settings
from .splits import DEFAULT_FRACTIONS, MAX_SEED, assign_splits, snapshot_hash, validate_fractions


def default_token_limits() -> TokenLimits:
    """The tokenizer and limits the quality gate uses when the caller gives none.

    curation sits below training (training imports curation's models), so it never imports
    training: it calls the loader named by ``settings.SNAPSHOT_TOKENIZER_LOADER`` (default
    ``training.base_models.snapshot_token_limits``: the tokenizer of ``settings.SNAPSHOT_BASE_MODEL``,
    the default base model unless set, at training's default max_seq_length). The loader may
    raise ServiceError when the model cannot be loaded.
    """
    return import_string(settings.SNAPSHOT_TOKENIZER_LOADER)()


def settings_to_freeze(dataset: Dataset, outputs: list[str]) -> dict:
    """The dataset settings a snapshot freezes ({name: value} of FROZEN_DATASET_SETTINGS), with the
    primary metric resolved: the dataset's, or when blank the one proposed from the shape of
    ``outputs`` (the approved examples' final assistant turns; ftml.metrics.propose_primary_metric).

    Raises:
        ValueError: a setting is invalid (curation.schemas.check_evaluation_settings names it).
    """
    from ftml.metrics import propose_primary_metric  # the ML package; heavy to import

    frozen = {name: getattr(dataset, name) for name in FROZEN_DATASET_SETTINGS}
    frozen["regex_checks"] = frozen["regex_checks"] or {}
    frozen["primary_metric"] = (frozen["primary_metric"]
                                or propose_primary_metric(outputs, frozen["output_json_schema"])[0])
    check_evaluation_settings(frozen["language"], frozen["regex_checks"], frozen["primary_metric"],
                              frozen["output_json_schema"])
    return frozen


@transaction.atomic
def create_snapshot(
    dataset: Dataset, *, by, seed: int = 0, fractions: dict | None = None, tokens: TokenLimits | None = None,
    on_progress=None,
) -> tuple[Snapshot, bool]:
    """Freeze the dataset's approved examples into a snapshot pending review, behind the quality gate.

    Items hold copies of the messages, tool settings and metadata, and the snapshot a copy of the dataset
    settings training and evaluation read (settings_to_freeze: system prompt, language, output schema, regex checks,
    primary metric), so later edits to examples or to the dataset never change a snapshot; the
    content hash (curation.splits.snapshot_hash, version 2) covers both. The
    split is by distinct input, near-duplicate inputs (curation.near_duplicates.near_duplicate_inputs)
    kept together (curation.splits.assign_splits). Before anything is written the quality
    report (curation.quality.quality_report) runs over the approved examples with ``tokens``:
    blocking findings refuse the snapshot; its settings, summary and warnings are stored in
    ``Snapshot.quality_report``, frozen with the rest.

    Args:
        tokens: the tokenizer and limits to check against; None loads default_token_limits()
            (the demo passes the base model it will train, tests a tiny tokenizer). Not loaded
            at all when an identical snapshot already exists.
        on_progress: ``on_progress(stage, done, total)`` at each stage ("reading examples", "near-duplicate
            inputs", "quality gate" per example, "writing items" per thousand); a job's cancel check may
            raise from it (nothing is written before "writing items", which is one transaction).
    Returns:
        (snapshot, created). When a snapshot with the same content hash exists for the
        dataset, that one is returned with ``created=False``.
    Raises:
        NotAllowed: ``by`` lacks 'curation.add_snapshot' (engineers hold it).
        ServiceError: no approved examples, bad seed or split fractions, an invalid dataset
            setting, the same content and settings were rejected before, blocking quality findings
            (listed by example id, the first 20 of them, with the total), an invalid output
            schema, or a tokenizer that cannot be loaded.
    """
    fractions = _checked_request(by, seed, fractions)
    progress = on_progress or (lambda stage, done, total: None)
    progress("reading examples", 0, None)
    rows = list(
        Example.objects.filter(dataset=dataset, status=ExampleStatus.APPROVED)
        .order_by("content_hash")
        .values("id", "content_hash", "input_hash", "messages", "tool_settings", "metadata")
    )
    if not rows:
        raise ServiceError(f"dataset '{dataset}' has no approved examples to snapshot")
    try:
        frozen = settings_to_freeze(dataset, [r["messages"][-1].get("content") or "" for r in rows])
    except ValueError as exc:
        raise ServiceError(f"dataset '{dataset}': {exc}") from exc
    examples = [QualityExample(r["id"], r["messages"], r["input_hash"]) for r in rows]
    progress("near-duplicate inputs", 0, len(rows))
    input_pairs = near_duplicate_inputs(examples)
    assignment = assign_splits([r["input_hash"] for r in rows], seed, fractions,
                               [(p.first, p.second) for p in input_pairs])
    digest = snapshot_hash(seed, fractions, [(r["content_hash"], assignment[r["input_hash"]]) for r in rows],
                           frozen)
    existing = Snapshot.objects.filter(dataset=dataset, content_hash=digest).first()
    if existing and existing.status == SnapshotStatus.REJECTED:
        raise ServiceError(
            f"snapshot {existing.pk} with exactly this content, settings and seed was rejected "
            f"({existing.review_comment!r}); change the approved examples, the dataset's settings or the seed"
        )
    if existing:
        return existing, False
    checked = iter(range(1, len(rows) + 1))
    try:
        report = quality_report(examples, tokens=tokens or default_token_limits(),
                                output_json_schema=frozen["output_json_schema"],
                                system_prompt=frozen["system_prompt"], input_pairs=input_pairs,
                                on_example=lambda: progress("quality gate", next(checked), len(rows)))
    except ValueError as exc:
        raise ServiceError(f"dataset '{dataset}': {exc}") from exc
    if report["summary"]["blocking"]:
        raise ServiceError(
            f"dataset '{dataset}': the quality gate refused the snapshot, {report['summary']['blocking']} blocking "
            f"finding(s): {describe_findings(blocking_findings(report), report['summary']['blocking'])}. "
            "Their authors fix them (an edit sends an example back to review), then create the snapshot again."
        )
    split_counts = {name: 0 for name in fractions}
    for r in rows:
        split_counts[assignment[r["input_hash"]]] += 1
    try:
        with transaction.atomic():  # the snapshot and all its items, or nothing (a cancel between chunks included)
            try:
                with transaction.atomic():  # a savepoint: a concurrent identical snapshot wins the unique constraint
                    snapshot = Snapshot(
                        dataset=dataset,
                        content_hash=digest,
                        hash_version=SNAPSHOT_HASH_VERSION,
                        seed=seed,
                        split_fractions=fractions,
                        split_counts=split_counts,
                        example_count=len(rows),
                        quality_report=report,
                        created_by=by,
                        **frozen,
                    )
                    snapshot._history_user = by
                    snapshot._change_reason = "created"
                    snapshot.save()
            except IntegrityError:
                raise _SameSnapshotExists from None
            for start in range(0, len(rows), ITEMS_PER_CHUNK):
                progress("writing items", start, len(rows))
                SnapshotItem.objects.bulk_create([
                    SnapshotItem(
                        snapshot=snapshot,
                        example_id=r["id"],
                        example_content_hash=r["content_hash"],
                        input_hash=r["input_hash"],
                        messages=r["messages"],
                        tool_settings=r["tool_settings"],
                        metadata=r["metadata"],
                        split=assignment[r["input_hash"]],
                    )
                    for r in rows[start:start + ITEMS_PER_CHUNK]
                ])
    except _SameSnapshotExists:
        return Snapshot.objects.get(dataset=dataset, content_hash=digest), False
    progress("writing items", len(rows), len(rows))
    return snapshot, True


ITEMS_PER_CHUNK = 1000


class _SameSnapshotExists(Exception):
    """A concurrent request created the identical snapshot first."""


def _checked_request(by, seed, fractions) -> dict:
    """The permission, the seed and the split fractions of a snapshot request; returns the fractions.
    Raises NotAllowed or ServiceError."""
    require_permission(by, "curation.add_snapshot", "create snapshots")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ServiceError(f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}", field="seed")
    try:
        return validate_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    except ValueError as exc:
        raise ServiceError(str(exc), field="split_fractions") from exc


def submit_snapshot(dataset: Dataset, *, by, seed: int = 0, fractions: dict | None = None):
    """Make a snapshot now (create_snapshot) when the dataset has at most settings.SNAPSHOT_INLINE_MAX_EXAMPLES
    approved examples; else queue a SnapshotJob for a worker (start_snapshot_job). Returns
    ``(snapshot, created, None)`` or ``(None, None, job)``. Raises like create_snapshot."""
    approved = Example.objects.filter(dataset=dataset, status=ExampleStatus.APPROVED).count()
    if approved <= settings.SNAPSHOT_INLINE_MAX_EXAMPLES:
        snapshot, created = create_snapshot(dataset, by=by, seed=seed, fractions=fractions)
        return snapshot, created, None
    return None, None, start_snapshot_job(dataset, by=by, seed=seed, fractions=fractions)


def start_snapshot_job(dataset: Dataset, *, by, seed: int = 0, fractions: dict | None = None) -> SnapshotJob:
    """Check the request (as create_snapshot does), save a queued SnapshotJob and enqueue
    curation.jobs.run_snapshot_job after commit. Raises NotAllowed or ServiceError."""
    _checked_request(by, seed, fractions)
    with transaction.atomic():
        job = SnapshotJob.objects.create(dataset=dataset, seed=seed, split_fractions=fractions, created_by=by)
        queues.enqueue_job_row(job, "default", "curation.jobs.run_snapshot_job")
    return job


def cancel_snapshot_job(job: SnapshotJob, *, by) -> SnapshotJob:
    """Cancel a queued snapshot job at once, or have a running one stop at its next stage or chunk, writing
    nothing (ftplatform.jobrows.request_cancel: its creator or an engineer). Raises NotAllowed or Conflict."""
    return jobrows.request_cancel(job, by=by, noun=f"snapshot job {job.pk}")


def _require_snapshot_reviewer(by, snapshot: Snapshot) -> None:
    require_permission(by, "curation.review_snapshot", "review snapshots")
    if not reviewable_datasets(by).filter(pk=snapshot.dataset_id).exists():
        raise NotAllowed(f"snapshot {snapshot.pk}: {by} does not review dataset '{snapshot.dataset}'")


def _review_snapshot(snapshot: Snapshot, by, to_status: str, comment: str) -> Snapshot:
    _require_snapshot_reviewer(by, snapshot)
    snapshot = Snapshot.objects.select_for_update().get(pk=snapshot.pk)
    if snapshot.created_by_id is not None and snapshot.created_by_id == by.pk:
        raise NotAllowed(f"snapshot {snapshot.pk}: its creator cannot review it; ask another reviewer")
    if snapshot.status != SnapshotStatus.PENDING_REVIEW:
        raise Conflict(f"snapshot {snapshot.pk} is already {snapshot.status}")
    snapshot.status = to_status
    snapshot.reviewed_by = by
    snapshot.reviewed_at = timezone.now()
    snapshot.review_comment = comment
    snapshot._history_user = by
    snapshot._change_reason = to_status
    snapshot.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_comment"])
    return snapshot


@transaction.atomic
def approve_snapshot(snapshot: Snapshot, *, by, comment: str = "") -> Snapshot:
    """Sign off a pending snapshot so runs may train on it. Raises NotAllowed or Conflict."""
    return _review_snapshot(snapshot, by, SnapshotStatus.APPROVED, comment)


@transaction.atomic
def reject_snapshot(snapshot: Snapshot, *, by, comment: str) -> Snapshot:
    """Reject a pending snapshot; ``comment`` is required. Raises ServiceError, NotAllowed, Conflict."""
    _require_snapshot_reviewer(by, snapshot)
    if not comment or not comment.strip():
        raise ServiceError("rejecting a snapshot needs a comment saying why")
    return _review_snapshot(snapshot, by, SnapshotStatus.REJECTED, comment.strip())
