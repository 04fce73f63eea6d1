"""Importing example files into a dataset, all or nothing."""
from django.db import IntegrityError, transaction
from simple_history.utils import bulk_create_with_history

from ftplatform.errors import Conflict, ServiceError

from .choices import ExampleSource, ExampleStatus, ImportStatus
from .formats import content_hash, input_hash, read_records
from .models import Dataset, Example, ImportBatch

BULK_SIZE = 1000


def import_examples(
    dataset: Dataset, data: bytes, fmt: str, *, by, filename: str = "", skip_invalid: bool = False,
    column_mapping: dict | None = None,
) -> ImportBatch:
    """Validate every record of a file, then insert its new examples as ``submitted``.

    Args:
        data: the file's bytes (UTF-8, optional BOM, LF or CRLF).
        fmt: ``chat_jsonl``, ``prompt_completion_jsonl``, ``csv`` or ``tsv`` (curation.choices.ImportFormat).
        column_mapping: for csv/tsv, ``{"prompt": column, "completion": column, "system": column?}``.
        by: the user recorded as author of the new examples and creator of the batch.
        skip_invalid: when False (default) a file with any invalid line imports nothing;
            when True, valid lines are imported and every invalid one is listed.

    Returns:
        The saved ImportBatch: status ``failed`` (nothing inserted) or ``succeeded``, with
        ``errors`` as ``[{"line": n, "reason": str}]`` and duplicates (same content hash
        within the file or already in the dataset) listed and not inserted.

    Raises:
        ServiceError: unknown format, or a file with no records at all.
    """
    try:
        parsed = list(read_records(data, fmt, column_mapping))
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc
    if not parsed:
        raise ServiceError(f"{filename or 'the file'} has no records (it is empty or holds only blank lines)")

    errors = [{"line": p.line, "reason": p.error} for p in parsed if p.error]
    batch = ImportBatch(
        dataset=dataset,
        format=fmt,
        filename=filename[:255],
        created_by=by,
        skip_invalid=skip_invalid,
        column_mapping=column_mapping,
        total_lines=len(parsed),
        errors=errors,
        error_count=len(errors),
    )
    if errors and not skip_invalid:
        batch.status = ImportStatus.FAILED
        batch.save()
        return batch

    try:
        _insert_new_examples(dataset, parsed, batch, by)
    except IntegrityError as exc:
        raise Conflict(
            "another import or edit added some of these examples at the same moment; nothing was imported, "
            "run the import again (the duplicates will then be reported)"
        ) from exc
    return batch


@transaction.atomic
def _insert_new_examples(dataset, parsed, batch, by) -> None:
    """Insert the valid, new examples of ``parsed`` and save ``batch`` with its counts, in one transaction."""
    existing = dict(
        Example.objects.filter(dataset=dataset).values_list("content_hash", "id")
    )
    seen_in_file: dict[str, int] = {}
    duplicates, new_examples = [], []
    for p in parsed:
        if p.error:
            continue
        digest = content_hash(p.messages)
        if digest in existing:
            duplicates.append({"line": p.line, "duplicate_of": f"example {existing[digest]}"})
        elif digest in seen_in_file:
            duplicates.append({"line": p.line, "duplicate_of": f"line {seen_in_file[digest]}"})
        else:
            seen_in_file[digest] = p.line
            new_examples.append(
                Example(
                    dataset=dataset,
                    messages=p.messages,
                    metadata={**p.metadata, "import_line": p.line},
                    content_hash=digest,
                    input_hash=input_hash(p.messages),
                    status=ExampleStatus.SUBMITTED,
                    author=by,
                    source=ExampleSource.IMPORT,
                )
            )
    batch.status = ImportStatus.SUCCEEDED
    batch.duplicates = duplicates
    batch.duplicate_count = len(duplicates)
    batch.created_count = len(new_examples)
    batch.save()
    for example in new_examples:
        example.import_batch = batch
    bulk_create_with_history(new_examples, Example, batch_size=BULK_SIZE, default_user=by,
                             default_change_reason=f"imported (batch {batch.pk}, {batch.filename or 'upload'})")


def describe_batch(batch: ImportBatch, limit: int | None = 20) -> list[str]:
    """Human-readable lines for a batch's outcome (used by the command and the admin)."""
    lines = [
        f"{batch.filename or 'upload'}: {batch.status}; {batch.total_lines} records, "
        f"{batch.created_count} created, {batch.duplicate_count} duplicates, {batch.error_count} invalid"
    ]
    if batch.status == ImportStatus.FAILED:
        lines.append("Nothing was imported: fix these lines or import with skip-invalid to leave them out.")
    elif batch.error_count:
        lines.append("Skipped invalid lines:")
    lines += _listed(batch.errors, limit, batch, lambda e: f"  line {e['line']}: {e['reason']}")
    if batch.duplicates:
        lines.append("Duplicates (not inserted):")
        lines += _listed(batch.duplicates, limit, batch, lambda d: f"  line {d['line']}: same as {d['duplicate_of']}")
    return lines


def _listed(entries: list, limit: int | None, batch: ImportBatch, render) -> list[str]:
    shown = entries if limit is None else entries[:limit]
    lines = [render(entry) for entry in shown]
    if len(shown) < len(entries):
        lines.append(f"  ... and {len(entries) - len(shown)} more (see import batch {batch.pk})")
    return lines
