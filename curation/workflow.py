"""Example review workflow: draft -> submitted -> approved | rejected (-> submitted again).

Every state change goes through these functions; the admin, the API and the management
commands call them. Each takes the row lock, checks the expected version when given, and
records an append-only Review for decisions. A dataset's ``approvals_required`` distinct
reviewers must approve within one review round (a round starts at each resubmission).
"""
from django.db import transaction

from ftplatform.errors import Conflict, ServiceError
from ftplatform.roles import require_permission

from . import access
from .choices import ExampleSource, ExampleStatus, ReviewDecision
from .formats import (
    MAX_LINE_BYTES,
    FormatError,
    canonical_json,
    check_json_value,
    content_hash,
    input_hash,
    needs_answer,
    validate_messages,
)
from .models import Dataset, Example, Review, Suggestion
from .suggestions import record_outcomes, update_disagreement


def _locked(example: Example, expected_version: int | None) -> Example:
    locked = Example.objects.select_for_update().select_related("dataset").get(pk=example.pk)
    if expected_version is not None and locked.version != expected_version:
        raise Conflict(
            f"example {locked.pk} changed since you loaded it (version {expected_version}, now {locked.version}); "
            "reload it and try again"
        )
    return locked


def _require_status(example: Example, to_status: str, allowed_from: tuple[str, ...]) -> None:
    if example.status not in allowed_from:
        raise Conflict(
            f"example {example.pk} is {example.status}; it must be {' or '.join(allowed_from)} to become {to_status}"
        )


def _save(example: Example, by, reason: str, **changes) -> Example:
    """Apply ``changes`` to the locked row, bump its version, and record who and why in its history."""
    changes = {"reserved_by": None, "reserved_until": None, **changes}  # a decision ends any queue reservation
    for field, value in changes.items():
        setattr(example, field, value)
    example.version += 1  # the row is locked (select_for_update), so this cannot race
    example._history_user = by
    example._change_reason = reason
    example.save(update_fields=[*changes, "version", "updated_at"])
    return example


@transaction.atomic
def submit_example(example: Example, *, by, expected_version: int | None = None) -> Example:
    """Send a draft or rejected example (by its author or assignee) for a new review round. The model
    suggestions it was prefilled from are judged against its answer (curation.suggestions.record_outcomes).

    Raises NotAllowed (someone else's example), ServiceError (no answer yet) or Conflict (state or
    stale version).
    """
    example = _locked(example, expected_version)
    access.require_author(by, example)
    _require_status(example, ExampleStatus.SUBMITTED, (ExampleStatus.DRAFT, ExampleStatus.REJECTED))
    if needs_answer(example.messages):
        raise ServiceError(f"example {example.pk} has no answer yet: write the assistant turn (or accept a model's "
                           "suggestion) before submitting it")
    record_outcomes(example, by=by)
    next_round = example.review_round + (example.status == ExampleStatus.REJECTED)
    return _save(example, by, "submitted", status=ExampleStatus.SUBMITTED, review_round=next_round)


def _name_for(user, example: Example) -> str:
    """How a message names ``example`` to ``user``: by id only if they may see it (blind mode)."""
    return f"example {example.pk}" if access.visible_examples(user).filter(pk=example.pk).exists() else (
        "another example you cannot see")


def validated_messages(messages, where: str, *, allow_unanswered: bool = False) -> list[dict]:
    """Messages checked like an imported record, size limit included; what every new or edited example goes
    through. ``allow_unanswered``: a draft may end in a user turn still waiting for its answer. Raises
    ServiceError naming ``where``."""
    try:
        check_json_value(messages)
        messages = validate_messages(messages, allow_unanswered=allow_unanswered)
    except FormatError as exc:
        raise ServiceError(f"{where}: {exc}", field="messages", position=exc.position) from exc
    size = len(canonical_json(messages).encode("utf-8"))
    if size > MAX_LINE_BYTES:
        raise ServiceError(f"{where}: the conversation is {size} bytes as JSON; the limit is {MAX_LINE_BYTES}, "
                           "as for an imported line", field="messages")
    return messages


@transaction.atomic
def create_example(dataset: Dataset, *, by, messages, submit: bool = False) -> Example:
    """Write a new example by hand (the admin's structured editor, ``POST /api/v1/examples/``).

    It starts as a draft, or submitted for review when ``submit``; ``by`` is its author.

    Raises:
        NotAllowed: ``by`` lacks 'curation.add_example'.
        ServiceError: invalid messages (the message names the message and the problem).
        Conflict: the dataset already holds exactly this conversation.
    """
    require_permission(by, "curation.add_example", "write examples")
    messages = validated_messages(messages, f"new example in dataset '{dataset}'", allow_unanswered=not submit)
    digest = content_hash(messages)
    duplicate = Example.objects.filter(dataset=dataset, content_hash=digest).first()
    if duplicate is not None:
        raise Conflict(f"{_name_for(by, duplicate)} already holds exactly this conversation in dataset '{dataset}'")
    return save_new_example(dataset, messages, by=by, source=ExampleSource.MANUAL,
                            status=ExampleStatus.SUBMITTED if submit else ExampleStatus.DRAFT,
                            reason="created" + (" and submitted" if submit else ""))


def save_new_example(dataset: Dataset, messages: list[dict], *, by, source: str, status: str,
                     metadata: dict | None = None, reason: str, tool_settings: dict | None = None) -> Example:
    """Save a new example of ``messages`` and ``tool_settings`` (already checked, and not yet in the
    dataset: callers check duplicates and permissions their own way) authored by ``by``, with its first
    history record (``reason``)."""
    tool_settings = tool_settings or {}
    example = Example(dataset=dataset, messages=messages, tool_settings=tool_settings,
                      content_hash=content_hash(messages, tool_settings),
                      input_hash=input_hash(messages, tool_settings), author=by, source=source, status=status,
                      metadata=metadata or {})
    example._history_user = by
    example._change_reason = reason
    example.save()
    return example


@transaction.atomic
def edit_example(example: Example, *, by, messages, expected_version: int) -> Example:
    """Replace an example's conversation, made against ``expected_version``.

    The messages are validated like an import. An edit to a submitted, approved or rejected
    example sends it (back) to review in a new round, so earlier approvals no longer count;
    a draft stays a draft.

    Raises:
        NotAllowed: not allowed by curation.access.may_edit (author, assignee, or a reviewer of
            a submitted example).
        ServiceError: invalid messages (the message names the message and the problem).
        Conflict: a stale version, or the same conversation already exists in the dataset.
    """
    example = _locked(example, expected_version)
    access.require_edit(by, example)
    messages = validated_messages(messages, f"example {example.pk}",
                                  allow_unanswered=example.status == ExampleStatus.DRAFT)
    digest = content_hash(messages, example.tool_settings)  # an edit changes the conversation, not the tools
    if digest == example.content_hash:
        return example
    duplicate = Example.objects.filter(dataset_id=example.dataset_id, content_hash=digest).first()
    if duplicate is not None:
        raise Conflict(f"example {example.pk}: {_name_for(by, duplicate)} already holds exactly this conversation")
    changes = {"messages": messages, "content_hash": digest, "input_hash": input_hash(messages, example.tool_settings)}
    if example.status != ExampleStatus.DRAFT:
        changes.update(status=ExampleStatus.SUBMITTED, review_round=example.review_round + 1)
    was = example.status
    return _save(example, by, "edited" + ("" if was == ExampleStatus.DRAFT else f" (was {was}; back to review)"),
                 **changes)


@transaction.atomic
def record_suggestion(example: Example, *, model_version_id: int, model_name: str, text: str,
                      confidence: float | None, by, preannotation_run_id: int | None = None) -> Suggestion | None:
    """Record a model's suggested answer for a draft (the pre-annotation job, evaluation.jobs), with
    its confidence (mean token log-probability, or None).

    A draft still needing its answer gets the suggestion as its assistant turn (``prefilled``): the
    annotator accepts, edits or rewrites it, and submission judges which (curation.suggestions). A
    draft that has an answer keeps it; the suggestion still orders the queues (confidence, and its
    disagreement with other model versions' suggestions). Returns None, recording nothing, when the
    example is no longer a draft (submitted meanwhile). Callers check permissions (the job's row did).
    """
    example = _locked(example, None)
    if example.status != ExampleStatus.DRAFT:
        return None
    suggestion = Suggestion.objects.create(
        example=example, model_version_id=model_version_id, model_name=model_name[:200], text=text,
        confidence=confidence, preannotation_run_id=preannotation_run_id)
    update_disagreement(suggestion)
    answered = [*example.messages, {"role": "assistant", "content": text}]
    fits = len(canonical_json(answered).encode()) <= MAX_LINE_BYTES
    digest = content_hash(answered, example.tool_settings)
    if needs_answer(example.messages) and text.strip() and fits and not Example.objects.filter(
            dataset_id=example.dataset_id, content_hash=digest).exists():
        _save(example, by, f"answer suggested by {model_name}"[:100], messages=answered, content_hash=digest)
        Suggestion.objects.filter(pk=suggestion.pk).update(prefilled=True)
        suggestion.prefilled = True
    return suggestion


@transaction.atomic
def approve_example(example: Example, *, by, comment: str = "", expected_version: int | None = None) -> Example:
    """Record an approval; the example becomes approved once the dataset's required number of
    distinct reviewers approved in this round. Raises NotAllowed or Conflict (state, stale
    version, or this reviewer already approved this round)."""
    example = _locked(example, expected_version)
    access.require_review(by, example)
    _require_status(example, ExampleStatus.APPROVED, (ExampleStatus.SUBMITTED,))
    approvals = example.reviews.filter(review_round=example.review_round, decision=ReviewDecision.APPROVE)
    if approvals.filter(reviewer=by).exists():
        raise Conflict(f"example {example.pk}: {by} already approved it in this review round")
    Review.objects.create(example=example, reviewer=by, decision=ReviewDecision.APPROVE, comment=comment,
                          example_version=example.version, review_round=example.review_round)
    count, required = approvals.count(), example.dataset.approvals_required
    if count >= required:
        return _save(example, by, f"approved ({count}/{required})", status=ExampleStatus.APPROVED)
    return _save(example, by, f"approval {count}/{required}")


@transaction.atomic
def reject_example(example: Example, *, by, comment: str, expected_version: int | None = None) -> Example:
    """Reject a submitted example; ``comment`` (what to fix) is required. Raises NotAllowed,
    ServiceError (no comment) or Conflict."""
    access.require_review(by, example)  # who may decide first: a non-reviewer learns nothing about comments
    if not comment or not comment.strip():
        raise ServiceError("a rejection needs a comment telling the author what to fix")
    example = _locked(example, expected_version)
    _require_status(example, ExampleStatus.REJECTED, (ExampleStatus.SUBMITTED,))
    Review.objects.create(example=example, reviewer=by, decision=ReviewDecision.REJECT, comment=comment.strip(),
                          example_version=example.version, review_round=example.review_round)
    return _save(example, by, "rejected", status=ExampleStatus.REJECTED)


@transaction.atomic
def edit_and_approve_example(example: Example, *, by, messages, expected_version: int, comment: str = "") -> Example:
    """A reviewer's fix: replace the conversation, then approve the new version, atomically.

    The edit opens a new review round (as any edit does) and this reviewer's approval is its
    first; with ``approvals_required`` above 1 the example waits for the others. Both steps
    are in the history, and nothing changes if either is refused.

    Raises:
        NotAllowed: ``by`` may not review this example (see curation.access).
        ServiceError, Conflict: as edit_example and approve_example.
    """
    access.require_review(by, example)
    edited = edit_example(example, by=by, messages=messages, expected_version=expected_version)
    note = comment.strip() or "edited and approved"
    return approve_example(edited, by=by, comment=note, expected_version=edited.version)


@transaction.atomic
def assign_example(example: Example, *, to, by, expected_version: int | None = None) -> Example:
    """Hand an example to an annotator (``to``; None takes the assignment back).

    The assignee may then see, edit and submit it like its author.

    Raises:
        NotAllowed: ``by`` lacks 'curation.change_dataset' (engineers hold it).
        ServiceError: ``to`` is inactive or not an annotator (lacks 'curation.add_example').
        Conflict: a stale version.
    """
    require_permission(by, "curation.change_dataset", "assign examples")
    if to is not None and not (to.is_active and to.has_perm("curation.add_example")):
        raise ServiceError(f"{to} is not an annotator; give them the annotator role first")
    example = _locked(example, expected_version)
    if example.assignee_id == (to.pk if to else None):
        return example
    return _save(example, by, f"assigned to {to}" if to else "unassigned", assignee=to)


def approve_examples(examples, *, by, comment: str = "") -> tuple[int, list[str]]:
    """Approve many examples, each in its own transaction.

    Returns (examples approved by this call, list of "example N: reason" for those refused).
    """
    approved, problems = 0, []
    for example in examples:
        try:
            approved += approve_example(example, by=by, comment=comment).status == ExampleStatus.APPROVED
        except ServiceError as exc:
            problems.append(str(exc))
    return approved, problems
