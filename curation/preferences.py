"""Pairwise preferences in OpenAI's DPO format: import a file into a dataset's PreferencePair rows, and write
them back as the lines they came from.

A line is ``{"input": {"messages": [...], "tools"?, "parallel_tool_calls"?, "functions"?},
"preferred_output": [assistant message], "non_preferred_output": [assistant message], "metadata"?}``
(curation.formats.parse_preference_record, FORMAT_SCHEMA's ``preference_line``). Imports are all or
nothing unless ``skip_invalid``; duplicates (same content hash, metadata aside) within the file or
already in the dataset are listed and skipped.
"""
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import transaction

from ftplatform.errors import ServiceError
from ftplatform.roles import require_permission

from .formats import FormatError, PreferenceRecord, Source, parse_preference_record, read_json_lines
from .models import Dataset, PreferencePair

INSERT_ROWS = 1000


@dataclass
class PreferenceImport:
    """What an import of preference pairs did: ``created`` rows, ``duplicates`` (``[{"line", "duplicate_of"}]``)
    and ``errors`` (``[{"line", "reason"}]``); ``imported`` is False when nothing was written."""

    total_lines: int = 0
    created: int = 0
    duplicates: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    imported: bool = True

    def describe(self, limit: int = 20) -> list[str]:
        """Human-readable lines (the command's and the admin's output)."""
        lines = [f"{self.total_lines} lines, {self.created} preference pairs created, {len(self.duplicates)} "
                 f"duplicates, {len(self.errors)} invalid"]
        if not self.imported:
            lines.append("Nothing was imported: fix these lines or import with skip-invalid to leave them out.")
        lines += [f"  line {e['line']}: {e['reason']}" for e in self.errors[:limit]]
        lines += [f"  line {d['line']}: same as {d['duplicate_of']}" for d in self.duplicates[:limit]]
        hidden = max(0, len(self.errors) - limit) + max(0, len(self.duplicates) - limit)
        if hidden:
            lines.append(f"  ... and {hidden} more")
        return lines


@transaction.atomic
def import_preference_pairs(dataset: Dataset, source: Source, *, by, skip_invalid: bool = False) -> PreferenceImport:
    """Import a JSONL file of DPO lines (bytes or a binary file) into ``dataset``, streaming.

    Returns the PreferenceImport; with invalid lines and not ``skip_invalid`` nothing is written
    (``imported`` False) and every invalid line is listed.

    Raises:
        NotAllowed: ``by`` lacks 'curation.add_preferencepair' (annotators and engineers hold it).
        ServiceError: the file has no lines, or cannot be decoded (naming the line).
    """
    require_permission(by, "curation.add_preferencepair", "import preference pairs")
    outcome, pending, seen = PreferenceImport(), [], {}
    try:
        for line, value, error in read_json_lines(source):
            outcome.total_lines += 1
            if error is None:
                try:
                    record = parse_preference_record(value)
                except FormatError as exc:
                    error = str(exc)
            if error is not None:
                outcome.errors.append({"line": line, "reason": error})
                continue
            digest = record.content_hash
            first = seen.setdefault(digest, line)
            if first != line:
                outcome.duplicates.append({"line": line, "duplicate_of": f"line {first}"})
                continue
            pending.append((line, digest, record))
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc
    if outcome.total_lines == 0:
        raise ServiceError("the file has no lines (it is empty or holds only blank lines)")
    if outcome.errors and not skip_invalid:
        outcome.imported = False
        return outcome
    existing = dict(PreferencePair.objects.filter(dataset=dataset, content_hash__in=list(seen))
                    .values_list("content_hash", "id"))
    rows = []
    for line, digest, record in pending:
        if digest in existing:
            outcome.duplicates.append({"line": line, "duplicate_of": f"preference pair {existing[digest]}"})
            continue
        rows.append(PreferencePair(
            dataset=dataset, input_messages=record.input_messages, tool_settings=record.tool_settings,
            preferred_output=record.preferred_output, non_preferred_output=record.non_preferred_output,
            metadata=record.metadata, content_hash=digest, input_hash=record.input_hash, created_by=by))
    PreferencePair.objects.bulk_create(rows, batch_size=INSERT_ROWS)
    outcome.created = len(rows)
    outcome.duplicates.sort(key=lambda d: d["line"])
    return outcome


def preference_record(pair: PreferencePair) -> PreferenceRecord:
    return PreferenceRecord(pair.input_messages, pair.tool_settings, pair.preferred_output,
                            pair.non_preferred_output, pair.metadata)


def preference_lines(pairs) -> Iterator[str]:
    """JSONL lines (with their newline) of ``pairs`` (a PreferencePair queryset), oldest first, streamed: each
    the DPO line it was imported from (PreferenceRecord.as_line)."""
    for pair in pairs.order_by("id").iterator(chunk_size=INSERT_ROWS):
        yield json.dumps(preference_record(pair).as_line(), ensure_ascii=False) + "\n"
