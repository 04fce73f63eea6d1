"""Work queues: hand each annotator or reviewer a different example, even under concurrency.

A handed-out example is reserved for its taker for RESERVATION (it expires, so an abandoned
one returns to the queue). Queues hand out the oldest example first, or, by QueueOrder, the one
the model is least sure of, the one two models disagree on most, or one of each near-duplicate
cluster before the second of any (active ordering: annotation effort goes where it teaches most).
Candidates are read with ``select_for_update(skip_locked=True)``
where the database supports it (PostgreSQL), and claimed with a conditional UPDATE that only
succeeds while the example is still free, so two takers never get the same one on any database.
"""
from datetime import timedelta

from django.db import transaction
from django.db.models import Case, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from ftplatform.errors import ServiceError

from .access import is_reviewer, reviewable_datasets
from .choices import ExampleStatus, QueueOrder, ReviewDecision
from .formats import input_messages
from .models import Example, Review, Suggestion
from .near_duplicates import conversation_text, near_duplicates

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


def _diversity_rank(candidates) -> Case:
    """Each candidate's place in its near-duplicate cluster of inputs (curation.near_duplicates; 0 for
    the oldest), as an ordering expression: every cluster's first example comes before any cluster's
    second."""
    texts = {pk: conversation_text(input_messages(messages))
             for pk, messages in candidates.values_list("pk", "messages")}
    # A few lines of union-find over the pairs: near_duplicates' own groups are internal to one call.
    parent = {pk: pk for pk in texts}

    def root(pk):
        while parent[pk] != pk:
            parent[pk] = parent[parent[pk]]
            pk = parent[pk]
        return pk

    for pair in near_duplicates(texts):
        parent[max(root(pair.first), root(pair.second))] = min(root(pair.first), root(pair.second))
    seen: dict[int, int] = {}
    ranks = {}
    for pk in sorted(texts):
        ranks[pk] = seen.get(root(pk), 0)
        seen[root(pk)] = ranks[pk] + 1
    later = [When(pk=pk, then=Value(rank)) for pk, rank in ranks.items() if rank]
    return Case(*later, default=Value(0), output_field=IntegerField())


def ordered(candidates, order: str = QueueOrder.OLDEST):
    """``candidates`` (examples) in a queue order (QueueOrder), ties broken oldest first: ``low_confidence``
    by the lowest confidence of their model suggestions (those without come last), ``disagreement`` by
    the largest disagreement between two model versions' suggestions (none last), ``diversity`` by
    _diversity_rank. Raises ServiceError for an unknown order."""
    if order not in QueueOrder.values:
        raise ServiceError(f"unknown queue order {order!r}; expected one of {', '.join(QueueOrder.values)}",
                           field="order")
    suggestions = Suggestion.objects.filter(example=OuterRef("pk"))
    if order == QueueOrder.LOW_CONFIDENCE:
        lowest = suggestions.filter(confidence__isnull=False).order_by("confidence").values("confidence")[:1]
        return candidates.annotate(queue_key=Subquery(lowest)).order_by(F("queue_key").asc(nulls_last=True), "id")
    if order == QueueOrder.DISAGREEMENT:
        largest = suggestions.filter(disagreement__isnull=False).order_by("-disagreement").values("disagreement")[:1]
        return candidates.annotate(queue_key=Subquery(largest)).order_by(F("queue_key").desc(nulls_last=True), "id")
    if order == QueueOrder.DIVERSITY:
        return candidates.annotate(queue_key=_diversity_rank(candidates)).order_by("queue_key", "id")
    return candidates.order_by("id")


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


def next_example_to_review(user, dataset=None, after: int | None = None,
                           order: str = QueueOrder.OLDEST) -> Example | None:
    """Reserve and return the first example of review_candidates(user, dataset) in ``order`` (see
    ``ordered``), or None.

    ``after``: an example id the reviewer skipped; oldest first, examples after it come first, then
    the queue wraps around to the start; in other orders it comes last. Raises nothing; a user without
    the review permission gets None.
    """
    candidates = ordered(review_candidates(user, dataset), order)
    if after is not None:
        if order == QueueOrder.OLDEST:
            return _claim(candidates.filter(id__gt=after), user) or _claim(candidates.exclude(id=after), user)
        return _claim(candidates.exclude(id=after), user) or _claim(candidates, user)
    return _claim(candidates, user)


def next_example_to_annotate(user, dataset=None, order: str = QueueOrder.OLDEST) -> Example | None:
    """Reserve and return the first example of annotation_candidates(user, dataset) in ``order`` (see
    ``ordered``), or None."""
    return _claim(ordered(annotation_candidates(user, dataset), order), user)


def release(example: Example, user) -> None:
    """Give a reserved example back to the queue (no-op if someone else holds it)."""
    Example.objects.filter(pk=example.pk, reserved_by=user).update(reserved_by=None, reserved_until=None)
