"""Turning logged requests into dataset examples: how a team distils the model that answered (often a
prompted large model behind a pass-through deployment) into a small one.

Each answered request whose messages were kept becomes one example: its messages plus the answer
as the final assistant turn, as a draft (or submitted for review), deduplicated by content hash
within the dataset, with provenance both ways: the example's ``metadata["request_log"]`` names the
request, the log row's ``example`` points at the example. Review, snapshot, training and evaluation
follow as for any example.
"""
from django.db import transaction

from curation.choices import ExampleSource, ExampleStatus
from curation.formats import content_hash
from curation.models import Dataset, Example
from curation.workflow import save_new_example, validated_messages
from ftplatform.errors import ServiceError
from ftplatform.roles import require_permission

from .choices import RequestStatus
from .models import RequestLog

MAX_LOGS = 10_000


@transaction.atomic
def logs_to_examples(logs, dataset: Dataset, *, by, submit: bool = False) -> dict:
    """Make examples of ``dataset`` from the request logs ``logs`` (a queryset or list), authored by ``by``.

    Returns {"created": [example ids], "duplicates": [{"request_id", "example_id"}], "skipped":
    [{"request_id", "reason"}]}: a log already in the dataset (same content hash) is a duplicate and
    points at that example; one that failed, kept no content, or whose conversation is not a valid
    training example is skipped with its reason. Nothing is written when a check of the whole fails.

    Raises NotAllowed (needs 'serving.view_requestlog' and 'curation.add_importbatch', as imports), ServiceError (no
    logs, or more than MAX_LOGS at once)."""
    require_permission(by, "serving.view_requestlog", "read request logs")
    require_permission(by, "curation.add_importbatch", "add examples in bulk (as an import does)")
    logs = list(logs.select_for_update() if hasattr(logs, "select_for_update") else logs)
    if not logs:
        raise ServiceError("no request logs selected", field="request_logs")
    if len(logs) > MAX_LOGS:
        raise ServiceError(f"{len(logs)} request logs selected; at most {MAX_LOGS} at once", field="request_logs")
    existing = dict(Example.objects.filter(dataset=dataset).values_list("content_hash", "id"))
    result = {"created": [], "duplicates": [], "skipped": []}
    status = ExampleStatus.SUBMITTED if submit else ExampleStatus.DRAFT
    for log in sorted(logs, key=lambda row: (row.created_at, row.pk)):
        if log.status != RequestStatus.ANSWERED:
            result["skipped"].append({"request_id": log.request_id, "reason": "the request was not answered"})
            continue
        if not log.content_logged:
            result["skipped"].append({"request_id": log.request_id,
                                      "reason": "its messages were not kept (log sampling)"})
            continue
        try:  # the rules of every new example (curation.workflow), size limit included
            messages = validated_messages([*log.messages, {"role": "assistant", "content": log.answer}],
                                          "not a valid example")
        except ServiceError as exc:
            result["skipped"].append({"request_id": log.request_id, "reason": str(exc)})
            continue
        digest = content_hash(messages)
        if digest in existing:
            result["duplicates"].append({"request_id": log.request_id, "example_id": existing[digest]})
            continue
        example = save_new_example(
            dataset, messages, by=by, status=status, source=ExampleSource.TRAFFIC,
            reason=f"from request {log.request_id}",
            metadata={"request_log": {"request_id": log.request_id, "deployment": log.deployment_name,
                                      "answered_by": log.answered_by_id, "fell_back": log.fell_back,
                                      "confidence": log.confidence}})
        existing[digest] = example.pk
        RequestLog.objects.filter(pk=log.pk).update(example=example)
        result["created"].append(example.pk)
    return result
