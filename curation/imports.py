"""Importing example files into a dataset: a job that streams the file, all or nothing.

``create_import_batch`` stores the upload under ``ARTIFACTS_ROOT/uploads/`` and saves a queued
ImportBatch; ``start_import`` also enqueues ``curation.jobs.run_import`` for a worker, ``import_examples``
runs it in this process, and ``submit_import`` (the admin's and the API's entry) picks one of
the two by the upload's size. The job itself:

* reads the file record by record (curation.formats / curation.hf_datasets), never the
  whole file: memory holds one chunk of CHUNK_ROWS records, the 32-byte digests of the
  file's conversations (duplicates within the file) and the lists of errors and duplicates;
* validates each record, drops duplicates within the file and, chunk by chunk, those already
  in the dataset (one indexed query per chunk);
* inserts each chunk as it goes, inside one transaction for the whole file, and rolls it
  back when the file turns out to have an invalid record (unless ``skip_invalid``).

Why one pass in one transaction rather than "validate everything, then insert": the file is
parsed once, and on PostgreSQL it is parsed while the server ingests the previous chunk
(COPY), so the two cores work at once; nothing is visible to anyone before the commit, so a
refused file leaves nothing behind, and a refused file's cost is only the rows sent before its
first bad record. Progress (``rows_done`` of ``rows_total``) is written by a second,
autocommit connection so the admin and API see it move while the transaction is open.
"""
import json
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connection, connections, transaction
from django.db.models.sql import UpdateQuery
from simple_history.utils import bulk_create_with_history

from ftplatform import jobrows, queues
from ftplatform.errors import Conflict, ServiceError, without_server_paths
from ftplatform.jobrows import JobStatus, unique_folder
from ftplatform.roles import require_permission

from .choices import ExampleSource, ExampleStatus, ImportFormat
from .formats import (
    DELIMITERS,
    check_column_mapping,
    conversation_hashes,
    count_records,
    read_records,
)
from .models import Dataset, Example, ImportBatch

logger = logging.getLogger(__name__)

CHUNK_ROWS = 5000  # records read between progress updates, dataset-duplicate queries and inserts
BULK_SIZE = 1000  # rows per INSERT on the portable (non-PostgreSQL) path
UPLOADS_FOLDER = "uploads"
HF_COMMAND_HINT = ("a Hugging Face datasets folder is imported from the command line: "
                   "manage.py import_examples FOLDER --format hf_dataset --dataset NAME --as USER")


def create_import_batch(
    dataset: Dataset, source, fmt: str, *, by, filename: str = "", skip_invalid: bool = False,
    column_mapping: dict | None = None, hf_split: str = "",
) -> ImportBatch:
    """Check the request, store the upload and save a queued ImportBatch (no job is started).

    Args:
        source: the file as bytes, a binary file object (a Django upload is copied chunk by
            chunk), or a Path: a file, or for ``hf_dataset`` a folder written by ``save_to_disk``.
            It is copied into a new folder ``ARTIFACTS_ROOT/uploads/import-<id>-<random>/`` (unique:
            databases sharing one artifacts root have batches with the same ids) so a worker on
            another machine can read it, and removed when the job ends.
        fmt: a curation.choices.ImportFormat value.
        column_mapping: csv/tsv only, ``{"prompt": column, "completion": column, "system": column?}``.
        hf_split: hf_dataset only, the split of a DatasetDict folder.

    Raises:
        NotAllowed: ``by`` lacks 'curation.add_importbatch' (annotators and engineers hold it).
        ServiceError: unknown format, a mapping or split that does not apply, an hf_dataset
            source that is not a folder, or a missing file.
    """
    require_permission(by, "curation.add_importbatch", "import examples")
    _check_request(source, fmt, column_mapping, hf_split)
    with transaction.atomic():
        batch = ImportBatch.objects.create(
            dataset=dataset, format=fmt, filename=(filename or _name_of(source))[:255], created_by=by,
            skip_invalid=skip_invalid, column_mapping=column_mapping, hf_split=hf_split,
        )
        folder = None
        try:
            folder = unique_folder(Path(settings.ARTIFACTS_ROOT) / UPLOADS_FOLDER, f"import-{batch.pk}-")
            batch.upload_path = str(_store(source, folder))
        except OSError as exc:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            logger.exception("could not store the upload of import %s", batch.pk)
            raise ServiceError(f"could not store the upload: {without_server_paths(str(exc))}") from exc
        batch.save(update_fields=["upload_path"])
    return batch


def start_import(dataset: Dataset, source, fmt: str, *, by, **options) -> ImportBatch:
    """create_import_batch, then enqueue curation.jobs.run_import on the ``default`` queue after commit.

    With ``REDIS_URL`` set a worker runs it (poll the batch's status and ``rows_done``);
    without it the job runs in this process when the transaction commits. Raises ServiceError
    like create_import_batch.
    """
    with transaction.atomic():
        batch = create_import_batch(dataset, source, fmt, by=by, **options)
        queues.enqueue_job_row(batch, "default", "curation.jobs.run_import")
    return batch


def import_examples(dataset: Dataset, source, fmt: str, *, by, on_progress=None, **options) -> ImportBatch:
    """Import a file in this process (small uploads, the command, tests, the benchmark).

    Same checks and job as start_import, run now; ``on_progress(rows_done, rows_total)`` is
    called after every chunk. Returns the finished ImportBatch: ``succeeded``, or ``failed``
    with nothing imported and either ``errors`` (``[{"line": n, "reason": str}]``) or
    ``error`` (the file could not be read, or another import added the same examples at the
    same moment). Duplicates are listed in ``duplicates`` and not inserted.

    Raises:
        ServiceError: see create_import_batch.
    """
    batch = create_import_batch(dataset, source, fmt, by=by, **options)
    from .jobs import run_import  # jobs imports this module

    run_import(batch.pk, on_progress=on_progress)
    batch.refresh_from_db()
    return batch


def submit_import(dataset: Dataset, upload, fmt: str, *, by, **options) -> ImportBatch:
    """The admin's and the API's import: in this process up to ``IMPORT_INLINE_MAX_BYTES``, else as a job.

    ``upload`` is a Django UploadedFile (or bytes). Returns the batch: finished when the file
    was small or jobs run synchronously (no ``REDIS_URL``), else ``queued``/``running``.

    Raises:
        ServiceError: see create_import_batch; hf_dataset (a folder) is refused here, see
            HF_COMMAND_HINT.
    """
    if fmt == ImportFormat.HF_DATASET:
        raise ServiceError(HF_COMMAND_HINT)
    size = len(upload) if isinstance(upload, (bytes, bytearray)) else upload.size
    if size <= settings.IMPORT_INLINE_MAX_BYTES:
        return import_examples(dataset, upload, fmt, by=by, **options)
    batch = start_import(dataset, upload, fmt, by=by, **options)
    batch.refresh_from_db()
    return batch


def cancel_import(batch: ImportBatch, *, by) -> ImportBatch:
    """Cancel a queued import at once, or have a running one stop at its next chunk, importing nothing
    (ftplatform.jobrows.request_cancel: its creator or an engineer). Raises NotAllowed or Conflict."""
    return jobrows.request_cancel(batch, by=by, noun=f"import {batch.pk}")


def describe_batch(batch: ImportBatch, limit: int | None = 20) -> list[str]:
    """Human-readable lines for a batch's state or outcome (used by the command and the admin)."""
    unit = "row" if batch.format == ImportFormat.HF_DATASET else "line"
    name = batch.filename or "upload"
    if batch.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        total = f"{batch.rows_total:,}" if batch.rows_total is not None else "?"
        return [f"{name}: {batch.status}; {batch.rows_done:,} of {total} records read"]
    lines = [
        f"{name}: {batch.status}; {batch.total_lines} records, "
        f"{batch.created_count} created, {batch.duplicate_count} duplicates, {batch.error_count} invalid"
    ]
    if batch.error:
        lines.append(f"Nothing was imported: {batch.error}")
    elif batch.status == JobStatus.FAILED:
        lines.append(f"Nothing was imported: fix these {unit}s or import with skip-invalid to leave them out.")
    elif batch.error_count:
        lines.append(f"Skipped invalid {unit}s:")
    lines += _listed(batch.errors, limit, batch, lambda e: f"  {unit} {e['line']}: {e['reason']}")
    if batch.duplicates:
        lines.append("Duplicates (not inserted):")
        lines += _listed(batch.duplicates, limit, batch,
                         lambda d: f"  {unit} {d['line']}: same as {d['duplicate_of'].replace('line', unit)}")
    return lines


def _listed(entries: list, limit: int | None, batch: ImportBatch, render) -> list[str]:
    shown = entries if limit is None else entries[:limit]
    lines = [render(entry) for entry in shown]
    if len(shown) < len(entries):
        lines.append(f"  ... and {len(entries) - len(shown)} more (see import batch {batch.pk})")
    return lines


# -- checks and storage ------------------------------------------------------------------------

def _check_request(source, fmt: str, column_mapping, hf_split: str) -> None:
    if fmt not in ImportFormat.values:
        raise ServiceError(f"unknown format {fmt!r}; expected one of {', '.join(ImportFormat.values)}")
    if column_mapping and fmt not in DELIMITERS:
        raise ServiceError(f"a column mapping only applies to csv and tsv, not {fmt}")
    if fmt in DELIMITERS:
        try:
            check_column_mapping(column_mapping)
        except ValueError as exc:
            raise ServiceError(str(exc)) from exc
    if hf_split and fmt != ImportFormat.HF_DATASET:
        raise ServiceError(f"a split only applies to hf_dataset folders, not {fmt}")
    if fmt == ImportFormat.HF_DATASET:
        if not (isinstance(source, Path) and source.is_dir()):
            raise ServiceError(f"{source if isinstance(source, Path) else 'the upload'} is not a folder; "
                               + HF_COMMAND_HINT)
    elif isinstance(source, Path) and not source.is_file():
        raise ServiceError(f"{source}: no such file")


def _name_of(source) -> str:
    if isinstance(source, Path):
        return source.name
    return getattr(source, "name", "") or ""


def _store(source, folder: Path) -> Path:
    """Copy ``source`` (bytes, Path, Django upload or binary file) into the existing ``folder``; returns the
    stored path."""
    if isinstance(source, Path) and source.is_dir():
        return Path(shutil.copytree(source, folder / "dataset"))
    target = folder / "upload"
    if isinstance(source, Path):
        shutil.copyfile(source, target)
    elif isinstance(source, (bytes, bytearray)):
        target.write_bytes(source)
    else:
        with open(target, "wb") as handle:
            if hasattr(source, "chunks"):
                for block in source.chunks():
                    handle.write(block)
            else:
                shutil.copyfileobj(source, handle)
    return target


# -- the job ------------------------------------------------------------------------------------

class _Refused(Exception):
    """The file has invalid records and skip_invalid is off: roll the transaction back."""


@dataclass(slots=True)
class _Row:
    line: int
    messages: list
    metadata: dict
    messages_json: str  # canonical JSON: what the content hash is computed over
    content_hash: str
    input_hash: str


class ImportJob:
    def __init__(self, batch: ImportBatch, on_progress=None):
        self.batch = batch
        self.check_cancel = jobrows.CancelCheck(batch)
        self.by = batch.created_by
        self.on_progress = on_progress
        self.errors: list[dict] = []
        self.duplicates: list[dict] = []
        self.seen: dict[bytes, int] = {}  # sha256 digest -> first line, for duplicates within the file
        self.created = 0
        self.read = 0

    @property
    def accepting(self) -> bool:
        return self.batch.skip_invalid or not self.errors

    def run(self) -> None:
        batch = self.batch
        progress = _Progress(batch, self.on_progress)
        try:
            total = self._count()
            progress.write(rows_done=0, rows_total=total)
            if total == 0:
                raise ServiceError(f"{batch.filename or 'the file'} has no records (it is empty or holds only blank "
                                   "lines)")
            try:
                with transaction.atomic():
                    with self._records() as records:
                        self._import(records, progress)
                    if not self.accepting:
                        raise _Refused
                    self.duplicates.sort(key=lambda d: d["line"])
                    jobrows.finish(batch, JobStatus.SUCCEEDED, **self._counts())
            except _Refused:
                jobrows.finish(batch, JobStatus.FAILED, **{**self._counts(), "created_count": 0,
                                                               "duplicate_count": 0, "duplicates": []})
            except IntegrityError as exc:
                raise Conflict(
                    "another import or edit added some of these examples at the same moment; nothing was imported, "
                    "run the import again (the duplicates will then be reported)"
                ) from exc
        finally:
            progress.close()

    def _counts(self) -> dict:
        return {"total_lines": self.read, "rows_done": self.read, "created_count": self.created,
                "duplicate_count": len(self.duplicates), "duplicates": self.duplicates,
                "error_count": len(self.errors), "errors": self.errors}

    def _count(self) -> int:
        batch = self.batch
        try:
            if batch.format == ImportFormat.HF_DATASET:
                from .hf_datasets import count_hf_rows

                return count_hf_rows(Path(batch.upload_path), batch.hf_split)
            with open(batch.upload_path, "rb") as handle:
                return count_records(handle, batch.format)
        except ValueError as exc:
            raise ServiceError(str(exc)) from exc

    def _records(self):
        return _RecordStream(self.batch)

    def _import(self, records, progress) -> None:
        inserter = (_CopyInserter if connection.vendor == "postgresql" else _OrmInserter)(self.batch, self.by)
        # An empty dataset has nothing to compare with. Examples another import commits meanwhile
        # are still caught: the unique constraint refuses them and the import fails as a conflict.
        compare = Example.objects.filter(dataset_id=self.batch.dataset_id).exists()
        chunks = self._chunks(records)
        step = next(chunks)
        while step is not None:
            chunk = step
            if compare and self.accepting and chunk:
                chunk = self._without_dataset_duplicates(chunk, inserter)
            progress.write(rows_done=self.read)  # between chunks: never while a COPY is open
            self.check_cancel()
            if self.accepting and chunk:
                self.created += len(chunk)
                # Parse the next chunk while the database ingests this one.
                step = inserter.insert(chunk, then=lambda: next(chunks, None))
            else:
                step = next(chunks, None)
        if self.accepting:
            inserter.finish()

    def _chunks(self, records):
        """Lists of new, valid rows, one per CHUNK_ROWS records read (possibly empty)."""
        chunk = []
        for parsed in records:
            self.read += 1
            if parsed.error:
                self.errors.append({"line": parsed.line, "reason": parsed.error})
            elif self.accepting:  # once a file is refused, only its errors are still collected
                text, digest, input_hex = conversation_hashes(parsed.messages)
                first = self.seen.setdefault(digest, parsed.line)
                if first != parsed.line:
                    self.duplicates.append({"line": parsed.line, "duplicate_of": f"line {first}"})
                else:
                    chunk.append(_Row(parsed.line, parsed.messages, {**parsed.metadata, "import_line": parsed.line},
                                      text, digest.hex(), input_hex))
            if self.read % CHUNK_ROWS == 0:
                yield chunk
                chunk = []
        yield chunk

    def _without_dataset_duplicates(self, chunk: list[_Row], inserter) -> list[_Row]:
        existing = inserter.existing([row.content_hash for row in chunk])
        if not existing:
            return chunk
        self.duplicates += [{"line": row.line, "duplicate_of": f"example {existing[row.content_hash]}"}
                            for row in chunk if row.content_hash in existing]
        return [row for row in chunk if row.content_hash not in existing]


class _RecordStream:
    """Context manager: the batch's stored upload opened as a stream of ParsedLines."""

    def __init__(self, batch: ImportBatch):
        self.batch = batch
        self.handle = None

    def __enter__(self):
        batch = self.batch
        if batch.format == ImportFormat.HF_DATASET:
            from .hf_datasets import read_hf_dataset

            return _file_errors(read_hf_dataset(Path(batch.upload_path), batch.hf_split))
        self.handle = open(batch.upload_path, "rb")  # noqa: SIM115 - closed in __exit__
        return _file_errors(read_records(self.handle, batch.format, batch.column_mapping))

    def __exit__(self, *exc_info):
        if self.handle is not None:
            self.handle.close()


def _file_errors(records):
    """Re-raise a reader's ValueError (a file that cannot be read on) as a ServiceError."""
    try:
        yield from records
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc


class _Progress:
    """Writes ``rows_done``/``rows_total`` where others can see them during the import's transaction.

    On PostgreSQL, when the job is not inside a caller's transaction (a worker, or a
    synchronous job run after commit), a second connection in autocommit mode writes them at
    once. Otherwise (SQLite has one writer; or a caller's transaction holds the batch row) they
    are written on the job's own connection and seen when it commits.
    """

    def __init__(self, batch: ImportBatch, on_progress=None):
        self.batch = batch
        self.check_cancel = jobrows.CancelCheck(batch)
        self.on_progress = on_progress
        self.total = None
        self.side = None
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            self.side = connections.create_connection(DEFAULT_DB_ALIAS)

    def write(self, **fields) -> None:
        self.total = fields.get("rows_total", self.total)
        if self.on_progress is not None:
            self.on_progress(fields["rows_done"], self.total)
        query = ImportBatch.objects.filter(pk=self.batch.pk)
        if self.side is None:
            query.update(**fields)
            return
        update = query.query.chain(UpdateQuery)
        update.add_update_values(fields)
        sql, params = update.get_compiler(connection=self.side).as_sql()
        try:
            with self.side.cursor() as cursor:
                cursor.execute("SET lock_timeout = '2s'")  # never wait long on a progress figure
                cursor.execute(sql, params)
        except DatabaseError:
            logger.warning("import %s: progress not written; it shows when the import ends", self.batch.pk,
                           exc_info=True)

    def close(self) -> None:
        if self.side is not None:
            self.side.close()


def _example_template(batch: ImportBatch, by) -> Example:
    return Example(dataset_id=batch.dataset_id, messages=[], metadata={}, content_hash="", input_hash="",
                   status=ExampleStatus.SUBMITTED, author=by, source=ExampleSource.IMPORT, import_batch=batch)


def _change_reason(batch: ImportBatch) -> str:
    return f"imported (batch {batch.pk}, {batch.filename or 'upload'})"[:100]


class _OrmInserter:
    """The portable path (SQLite and any other database): bulk INSERTs with history rows
    (simple_history's bulk_create_with_history)."""

    def __init__(self, batch: ImportBatch, by):
        self.batch, self.by = batch, by

    def existing(self, hashes: list[str]) -> dict[str, int]:
        """``{content_hash: example id}`` of those ``hashes`` already in the batch's dataset."""
        size = (connection.features.max_query_params or len(hashes) + 1) - 1  # SQLite: 999 parameters
        found = {}
        for start in range(0, len(hashes), size):
            found.update(Example.objects.filter(dataset_id=self.batch.dataset_id,
                                                content_hash__in=hashes[start:start + size])
                         .values_list("content_hash", "id"))
        return found

    def insert(self, rows: list[_Row], then):
        examples = []
        for row in rows:
            example = _example_template(self.batch, self.by)
            example.messages, example.metadata = row.messages, row.metadata
            example.content_hash, example.input_hash = row.content_hash, row.input_hash
            examples.append(example)
        bulk_create_with_history(examples, Example, batch_size=BULK_SIZE, default_user=self.by,
                                 default_change_reason=_change_reason(self.batch))
        return then()

    def finish(self) -> None:
        pass


class _CopyInserter:
    """PostgreSQL: examples through COPY (psycopg 3 ``cursor.copy``), then their history rows with
    one ``INSERT ... SELECT`` of the batch's examples.

    Column lists come from the models' fields, and the values of every column but the four
    that vary per row come from a template Example prepared by Django (``pre_save`` and
    ``get_db_prep_save``), so new fields with defaults need no change here. Measured on 100k
    examples, this is several times faster than bulk_create_with_history (bench/curation_bench.py).
    """

    PER_ROW = ("messages", "metadata", "content_hash", "input_hash")

    def __init__(self, batch: ImportBatch, by):
        from psycopg.copy import QueuedLibpqWriter

        self.writer = QueuedLibpqWriter
        self.batch, self.by = batch, by
        quote = connection.ops.quote_name
        template = _example_template(batch, by)
        fields = [f for f in Example._meta.concrete_fields if not f.primary_key]
        self.values = [f.get_db_prep_save(f.pre_save(template, add=True), connection) for f in fields]
        # COPY's text format reads ISO 8601; formatting the timestamps once, not per row, saves
        # psycopg about 3 µs a row.
        self.values = [v.isoformat() if isinstance(v, datetime) else v for v in self.values]
        names = [f.name for f in fields]
        self.positions = [names.index(name) for name in self.PER_ROW]
        self.copy_sql = (f"COPY {quote(Example._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
                         "FROM STDIN")
        self.history_sql, self.history_params = self._history_insert(template.created_at)

    def existing(self, hashes: list[str]) -> dict[str, int]:
        """``{content_hash: example id}`` of those ``hashes`` already in the batch's dataset.

        One probe of the unique (dataset, content_hash) index per hash, written so that no
        other plan is possible: with ``content_hash IN (...)`` the planner, whose statistics
        do not yet count the rows this import has added, may scan the whole dataset for every
        chunk (quadratic in the file's size). The hashes travel as one array parameter.
        """
        quote = connection.ops.quote_name
        table, id_, hash_, dataset = (quote(name) for name in (Example._meta.db_table, "id", "content_hash",
                                                               "dataset_id"))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT h, (SELECT {id_} FROM {table} WHERE {dataset} = %s AND {hash_} = h) "
                           "FROM unnest(%s::varchar[]) AS h", [self.batch.dataset_id, hashes])
            return {content_hash: pk for content_hash, pk in cursor.fetchall() if pk is not None}

    def insert(self, rows: list[_Row], then):
        values = self.values
        messages, metadata, content, input_ = self.positions
        # The psycopg cursor itself, as Django's debug cursor wrapper does not pass a writer on;
        # wrap_database_errors still turns psycopg's errors into Django's (IntegrityError, ...).
        with connection.wrap_database_errors, connection.cursor() as wrapper, \
                wrapper.cursor.copy(self.copy_sql, writer=self.writer(wrapper.cursor)) as copy:
            for row in rows:
                values[messages], values[metadata] = row.messages_json, json.dumps(row.metadata)
                values[content], values[input_] = row.content_hash, row.input_hash
                copy.write_row(values)
            return then()

    def finish(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(self.history_sql, self.history_params)

    def _history_insert(self, now) -> tuple[str, list]:
        """``INSERT INTO <history> (...) SELECT ... FROM <examples> WHERE import_batch_id = %s``:
        what bulk_create_with_history writes (type '+', user, reason, date), copied server-side."""
        quote = connection.ops.quote_name
        history = Example.history.model._meta
        example_columns = {f.column for f in Example._meta.concrete_fields}
        constants = {"history_date": now, "history_change_reason": _change_reason(self.batch), "history_type": "+",
                     "history_user": self.by.pk if self.by else None}
        columns, selected, params = [], [], []
        for f in history.concrete_fields:
            if f.primary_key:
                continue
            columns.append(quote(f.column))
            if f.name in constants:
                selected.append("%s")
                params.append(constants[f.name])
            elif f.column in example_columns:
                selected.append(quote(f.column))
            else:
                raise ImproperlyConfigured(f"history column {f.column} has no source column in the example table; "
                                           "teach curation.imports._CopyInserter about it")
        sql = (f"INSERT INTO {quote(history.db_table)} ({', '.join(columns)}) "
               f"SELECT {', '.join(selected)} FROM {quote(Example._meta.db_table)} "
               f"WHERE {quote(Example._meta.get_field('import_batch').column)} = %s")
        return sql, [*params, self.batch.pk]

