"""Creating evaluation runs, and failing those whose worker is gone."""
from django.db import transaction

from curation.choices import SnapshotStatus, Split
from curation.models import Snapshot
from ftplatform import jobrows, liveness, queues
from ftplatform.errors import ServiceError
from ftplatform.roles import require_permission
from training.models import ModelVersion

# batch_size 1: each latency is one request's; above 1, inputs are generated in length-sorted batches
# with the KV cache (much higher throughput, latencies amortised over the batch).
DEFAULT_GENERATION = {"max_new_tokens": 64, "decoding": "greedy", "batch_size": 1}


def validate_generation(generation: dict | None) -> dict:
    """Merge with defaults and check. Raises ServiceError naming the bad key."""
    values = {**DEFAULT_GENERATION, **(generation or {})}
    unknown = set(values) - set(DEFAULT_GENERATION)
    if unknown:
        raise ServiceError(f"generation: unknown key(s) {', '.join(sorted(unknown))}; "
                           "known: max_new_tokens, decoding, batch_size")
    tokens = values["max_new_tokens"]
    if not isinstance(tokens, int) or isinstance(tokens, bool) or not 1 <= tokens <= 4096:
        raise ServiceError(f"generation: max_new_tokens must be an integer from 1 to 4096, got {tokens!r}")
    size = values["batch_size"]
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 256:
        raise ServiceError(f"generation: batch_size must be an integer from 1 to 256, got {size!r}")
    if values["decoding"] != "greedy":
        raise ServiceError(f"generation: decoding {values['decoding']!r} is not supported; use 'greedy'")
    return values


@transaction.atomic
def start_eval_run(model_version: ModelVersion, snapshot: Snapshot, *, by, split: str = Split.TEST,
                   generation: dict | None = None):
    """Create a queued EvalRun and enqueue its job after commit.

    Raises:
        NotAllowed: ``by`` lacks 'evaluation.add_evalrun' (engineers hold it).
        ServiceError: snapshot not approved, unknown split, a split with no examples, or bad
            generation settings.
    """
    from .models import EvalRun

    require_permission(by, "evaluation.add_evalrun", "start evaluation runs")

    if snapshot.status != SnapshotStatus.APPROVED:
        raise ServiceError(f"snapshot {snapshot.pk} is {snapshot.status}; a reviewer must approve it before "
                           "models are evaluated on it")
    if split not in Split.values:
        raise ServiceError(f"split must be one of {', '.join(Split.values)}, got {split!r}")
    if not snapshot.split_counts.get(split):
        raise ServiceError(f"snapshot {snapshot.pk} has no {split} examples")
    _check_few_shot_unseen(model_version, snapshot, split)
    run = EvalRun.objects.create(
        model_version=model_version, snapshot=snapshot, split=split,
        generation=validate_generation(generation), created_by=by,
    )
    queues.enqueue_job_row(run, "evaluation", "evaluation.jobs.run_evaluation")
    return run


def _check_few_shot_unseen(model_version: ModelVersion, snapshot: Snapshot, split: str) -> None:
    """Refuse to evaluate a few-shot version on inputs it is shown as worked examples: examples are
    drawn from one snapshot's train split, and another snapshot (other seed, more data) or the
    train split itself may put those inputs among the ones evaluated. Raises ServiceError."""
    from curation.formats import input_hash

    shown = {input_hash(shot) for shot in model_version.few_shot or []}
    if shown and snapshot.items.filter(split=split, input_hash__in=shown).exists():
        raise ServiceError(f"model version {model_version.pk} shows worked examples whose inputs are in snapshot "
                           f"{snapshot.pk}'s {split} split: its answers to them would not be a fair test; evaluate "
                           "on a split without them (e.g. the test split of the snapshot its examples came from)")


def reap_lost_eval_runs() -> list[int]:
    """Fail running eval runs whose worker stopped sending heartbeats (killed, out of memory,
    machine gone): ftplatform.liveness.reap_lost, the rule training runs follow too. Called through
    ftplatform.liveness.reap_all by every worker process every heartbeat interval and by ``manage.py
    reap_jobs``, and while the evaluate and demo commands wait. Returns the ids it failed.
    """
    from .models import EvalRun

    return liveness.reap_lost(EvalRun, "start the evaluation again")


def cancel_eval_run(run, *, by):
    """Cancel EvalRun ``run``: a queued one at once, a running one before its next input, keeping no
    predictions (ftplatform.jobrows.request_cancel: its creator or an engineer). Raises NotAllowed or Conflict."""
    return jobrows.request_cancel(run, by=by, noun=f"eval run {run.pk}")
