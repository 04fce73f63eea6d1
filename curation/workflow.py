"""Example review workflow: draft -> submitted -> approved | rejected.

Every state change goes through these functions; the admin, the API and the management
commands call them. Each takes the row lock, checks the expected version when given, and
records an append-only Review for decisions.
"""
from django.db import transaction
from django.db.models import F

from ftplatform.errors import Conflict, NotAllowed, ServiceError

from .choices import ExampleStatus, ReviewDecision
from .models import Example, Review


def can_review(user) -> bool:
    return bool(user and user.is_active and user.has_perm("curation.review_example"))


def _locked(example: Example, expected_version: int | None) -> Example:
    locked = Example.objects.select_for_update().get(pk=example.pk)
    if expected_version is not None and locked.version != expected_version:
        raise Conflict(
            f"example {locked.pk} changed since you loaded it (version {expected_version}, now {locked.version}); "
            "reload it and try again"
        )
    return locked


def _transition(example: Example, to_status: str, allowed_from: tuple[str, ...]) -> Example:
    if example.status not in allowed_from:
        raise Conflict(
            f"example {example.pk} is {example.status}; it must be {' or '.join(allowed_from)} to become {to_status}"
        )
    Example.objects.filter(pk=example.pk).update(status=to_status, version=F("version") + 1)
    example.refresh_from_db()
    return example


@transaction.atomic
def submit_example(example: Example, *, by, expected_version: int | None = None) -> Example:
    """Send a draft or rejected example for review. Raises Conflict (state or stale version)."""
    example = _locked(example, expected_version)
    return _transition(example, ExampleStatus.SUBMITTED, (ExampleStatus.DRAFT, ExampleStatus.REJECTED))


def _decide(example, by, decision, comment, expected_version, to_status):
    if not can_review(by):
        raise NotAllowed(f"{by} is not a reviewer (needs the 'curation.review_example' permission)")
    example = _locked(example, expected_version)
    if example.author_id is not None and example.author_id == by.pk:
        raise NotAllowed(f"example {example.pk}: reviewers cannot approve or reject their own example")
    decided_version = example.version
    example = _transition(example, to_status, (ExampleStatus.SUBMITTED,))
    Review.objects.create(
        example=example, reviewer=by, decision=decision, comment=comment, example_version=decided_version
    )
    return example


@transaction.atomic
def approve_example(example: Example, *, by, comment: str = "", expected_version: int | None = None) -> Example:
    """Approve a submitted example. Raises NotAllowed (not a reviewer, own example) or Conflict."""
    return _decide(example, by, ReviewDecision.APPROVE, comment, expected_version, ExampleStatus.APPROVED)


@transaction.atomic
def reject_example(example: Example, *, by, comment: str, expected_version: int | None = None) -> Example:
    """Reject a submitted example; ``comment`` (why) is required. Raises ServiceError, NotAllowed, Conflict."""
    if not comment or not comment.strip():
        raise ServiceError("a rejection needs a comment telling the author what to fix")
    return _decide(example, by, ReviewDecision.REJECT, comment.strip(), expected_version, ExampleStatus.REJECTED)


def approve_examples(examples, *, by, comment: str = "") -> tuple[int, list[str]]:
    """Approve many examples, each in its own transaction.

    Returns (approved count, list of "example N: reason" for those that could not be approved).
    """
    approved, problems = 0, []
    for example in examples:
        try:
            approve_example(example, by=by, comment=comment)
            approved += 1
        except ServiceError as exc:
            problems.append(str(exc))
    return approved, problems
