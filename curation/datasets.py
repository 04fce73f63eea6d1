"""Creating datasets: the one rule the API, the import command and the demo share."""
from django.core.exceptions import ValidationError
from django.db import transaction

from ftplatform.errors import ServiceError
from ftplatform.roles import require_permission

from .models import Dataset


@transaction.atomic
def create_dataset(*, by, name: str, reviewers=(), **fields) -> Dataset:
    """A new Dataset named ``name`` created by ``by``, with any other model ``fields`` (system_prompt,
    guidelines, output_json_schema, ...) and ``reviewers`` (users).

    Raises:
        NotAllowed: ``by`` lacks 'curation.add_dataset' (engineers hold it).
        ServiceError: a field the model refuses (a taken name, a bad schema), naming each field.
    """
    require_permission(by, "curation.add_dataset", "create datasets")
    dataset = Dataset(name=name, created_by=by, **fields)
    try:
        dataset.full_clean()
    except ValidationError as exc:
        raise ServiceError("; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())) \
            from None
    dataset.save()
    dataset.reviewers.set(reviewers)
    return dataset
