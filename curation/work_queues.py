"""Work queues: hand each annotator or reviewer a different example, even under concurrency.

A handed-out example is reserved for its taker for RESERVATION (it expires, so an abandoned
one returns to the queue). Candidates are read with ``select_for_update(skip_locked=True)``
where the database supports it (PostgreSQL), and claimed with a conditional UPDATE that only
succeeds while the example is still free, so two takers never get the same one on any database.
"""
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from .access import is_reviewer, reviewable_datasets
from .choices import ExampleStatus, ReviewDecision
from .models import Example, Review

RESERVATION = timedelta(minutes=15)
ATTEMPTS = 20


def _free_or_mine(user, now) -> Q:
    return Q(reserved_until__isnull=True) | Q(reserved_until__lt=now) | Q(reserved_by=user)


def _claim(candidates, user) -> Example | None:
    # Lock one candidate at a time: locking several would hide them all from concurrent takers.
    for _ in range(ATTEMPTS):
        now = timezone.now()
        with transaction.atomic():
            example = candidates.filter(_free_or_mine(user, now)).select_for_update(skip_locked=True).first()
            if example is None:
                return None
            claimed = Example.objects.filter(Q(pk=example.pk) & _free_or_mine(user, now)).update(
                reserved_by=user, reserved_until=now + RESERVATION)
        if claimed:
            example.refresh_from_db()
            return example
        # Without row locks (SQLite) another taker won this one; it is now filtered out, try the next.
    return None


def review_candidates(user, dataset=None) -> QuerySet:
    """Submitted examples ``user`` may decide, oldest first (the review queue, reserved or not).

    Only datasets the reviewer reviews (curation.access); leaves out the reviewer's own examples
    and those they already approved in the current round. Empty for a user without the review permission.
    """
    if not is_reviewer(user):
        return Example.objects.none()
    already_approved = Review.objects.filter(
        example=OuterRef("pk"), reviewer=user, review_round=OuterRef("review_round"),
        decision=ReviewDecision.APPROVE,
    )
    candidates = (Example.objects.filter(status=ExampleStatus.SUBMITTED)
                  .filter(dataset__in=reviewable_datasets(user).values("pk"))
                  .exclude(author=user).exclude(assignee=user).exclude(Exists(already_approved)).order_by("id"))
    return candidates if dataset is None else candidates.filter(dataset=dataset)


def annotation_candidates(user, dataset=None) -> QuerySet:
    """Draft and rejected examples ``user`` wrote or is assigned, oldest first (the annotation queue)."""
    candidates = (Example.objects.filter(status__in=[ExampleStatus.DRAFT, ExampleStatus.REJECTED])
                  .filter(Q(author=user) | Q(assignee=user)).order_by("id"))
    return candidates if dataset is None else candidates.filter(dataset=dataset)


def waiting_for(user, candidates: QuerySet) -> QuerySet:
    """``candidates`` that the next_example_* functions could hand ``user`` now: free, or reserved
    for ``user`` (what is left for them: others' reservations are theirs until they expire)."""
    return candidates.filter(_free_or_mine(user, timezone.now()))


def next_example_to_review(user, dataset=None, after: int | None = None) -> Example | None:
    """Reserve and return the oldest example of review_candidates(user, dataset), or None.

    ``after``: an example id the reviewer skipped; examples after it come first, then the
    queue wraps around to the start. Raises nothing; a user without the review permission gets None.
    """
    candidates = review_candidates(user, dataset)
    if after is not None:
        return _claim(candidates.filter(id__gt=after), user) or _claim(candidates.exclude(id=after), user)
    return _claim(candidates, user)


def next_example_to_annotate(user, dataset=None) -> Example | None:
    """Reserve and return the oldest example of annotation_candidates(user, dataset), or None."""
    return _claim(annotation_candidates(user, dataset), user)


def release(example: Example, user) -> None:
    """Give a reserved example back to the queue (no-op if someone else holds it)."""
    Example.objects.filter(pk=example.pk, reserved_by=user).update(reserved_by=None, reserved_until=None)
