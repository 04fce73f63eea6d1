"""Who sees and may change which examples: the per-object rules, in one place.

Model-level permissions come from the roles (ftplatform.roles); these functions add the
object-level rules on top, and the admin, the API and the services all call them:

- everyone with ``view_all_examples`` (engineers) or a superuser sees every example;
- annotators see the examples they wrote or are assigned, plus, in datasets that are not in
  blind mode, the other examples on the same inputs (the other references); in blind mode
  they never see another annotator's work on an input;
- reviewers see every example of the datasets they review (``Dataset.reviewers``, or every
  dataset whose reviewer list is empty) and decide on those, never on their own;
- an example is edited by its author or assignee, or, while it waits for review, by a
  reviewer who may decide on it (edit-and-approve).

Invisible objects answer 404 in the API and the admin; visible ones the user may not change
answer 403 (``NotAllowed``).
"""
from django.db.models import Exists, OuterRef, Q, QuerySet

from ftplatform.errors import NotAllowed

from .choices import ExampleStatus
from .models import Dataset, Example, ImportBatch, PreferencePair


def sees_everything(user) -> bool:
    return bool(user.is_active and (user.is_superuser or user.has_perm("curation.view_all_examples")))


def is_reviewer(user) -> bool:
    return bool(user and user.is_active and user.has_perm("curation.review_example"))


def reviewable_datasets(user) -> QuerySet:
    """Datasets ``user`` reviews: those listing them, and those with no reviewer list. Empty for non-reviewers."""
    if not is_reviewer(user):
        return Dataset.objects.none()
    if user.is_superuser:
        return Dataset.objects.all()
    listed = Dataset.reviewers.through.objects.filter(dataset=OuterRef("pk"))
    return Dataset.objects.filter(Q(reviewers=user) | ~Exists(listed)).distinct()


def visible_examples(user, queryset: QuerySet | None = None) -> QuerySet:
    """``queryset`` (default: all examples) narrowed to what ``user`` may see (rules above)."""
    queryset = Example.objects.all() if queryset is None else queryset
    if not (user and user.is_authenticated and user.has_perm("curation.view_example")):
        return queryset.none()
    if sees_everything(user):
        return queryset
    mine = Q(author=user) | Q(assignee=user)
    same_input_as_mine = Example.objects.filter(
        mine, dataset=OuterRef("dataset"), input_hash=OuterRef("input_hash"))
    visible = mine | (Q(dataset__blind_annotation=False) & Exists(same_input_as_mine))
    if is_reviewer(user):
        visible |= Q(dataset__in=reviewable_datasets(user).values("pk"))
    return queryset.filter(visible)


def visible_import_batches(user, queryset: QuerySet | None = None) -> QuerySet:
    """Import batches: all for those who see every example; a reviewer's datasets' batches; else
    only the user's own uploads."""
    queryset = ImportBatch.objects.all() if queryset is None else queryset
    if not (user and user.is_authenticated and user.has_perm("curation.view_importbatch")):
        return queryset.none()
    if sees_everything(user):
        return queryset
    return queryset.filter(Q(created_by=user) | Q(dataset__in=reviewable_datasets(user).values("pk")))


def visible_preference_pairs(user, queryset: QuerySet | None = None) -> QuerySet:
    """Preference pairs, as import batches: all for those who see every example; a reviewer's datasets'
    pairs; else only the pairs the user imported."""
    queryset = PreferencePair.objects.all() if queryset is None else queryset
    if not (user and user.is_authenticated and user.has_perm("curation.view_preferencepair")):
        return queryset.none()
    if sees_everything(user):
        return queryset
    return queryset.filter(Q(created_by=user) | Q(dataset__in=reviewable_datasets(user).values("pk")))


def _wrote(user, example: Example) -> bool:
    return user.pk in (example.author_id, example.assignee_id)


def visible_snapshots(user, queryset: QuerySet, dataset_field: str = "dataset") -> QuerySet:
    """Snapshots (or rows hanging off one: pass ``dataset_field``, e.g. "snapshot__dataset") that
    ``user`` may see: all for those who see every example, else those of the datasets they
    review; a snapshot's items are copies of its examples."""
    if sees_everything(user):
        return queryset
    return queryset.filter(**{f"{dataset_field}__in": reviewable_datasets(user).values("pk")})


def may_review(user, example: Example) -> bool:
    """True when ``user`` may approve or reject ``example`` (reviewer of its dataset, neither its
    author nor its assignee)."""
    return (is_reviewer(user) and not _wrote(user, example)
            and reviewable_datasets(user).filter(pk=example.dataset_id).exists())


def require_review(user, example: Example) -> None:
    """Raise NotAllowed naming the reason unless ``user`` may decide on ``example``."""
    if not is_reviewer(user):
        raise NotAllowed(f"{user} is not a reviewer (needs the 'curation.review_example' permission)")
    if _wrote(user, example):
        raise NotAllowed(f"example {example.pk}: reviewers cannot approve or reject an example they wrote or "
                         "are assigned")
    if not reviewable_datasets(user).filter(pk=example.dataset_id).exists():
        raise NotAllowed(f"example {example.pk}: {user} does not review dataset '{example.dataset}'")


def may_edit(user, example: Example) -> bool:
    """True when ``user`` may change ``example``'s conversation (rules above)."""
    if not (user and user.is_active):
        return False
    if user.is_superuser:
        return True
    if not user.has_perm("curation.change_example"):
        return False
    if _wrote(user, example):
        return True
    return example.status == ExampleStatus.SUBMITTED and may_review(user, example)


def require_edit(user, example: Example) -> None:
    if not may_edit(user, example):
        raise NotAllowed(f"example {example.pk}: only its author or assignee can edit it "
                         "(or, while it waits for review, a reviewer of its dataset)")


def may_submit(user, example: Example) -> bool:
    """Submitting is for the author or assignee (or a superuser)."""
    return bool(user.is_superuser or _wrote(user, example))


def require_author(user, example: Example) -> None:
    if not may_submit(user, example):
        raise NotAllowed(f"example {example.pk}: only its author or assignee can submit it")
