import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from curation.choices import ImportFormat
from curation.datasets import create_dataset
from curation.formats import parse_column_mapping
from curation.imports import describe_batch, import_examples, start_import
from curation.models import Dataset
from ftplatform.cli import user_named
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus

POLL_SECONDS = 2.0


class Command(BaseCommand):
    help = ("Import a file of examples (JSONL, CSV/TSV) or a Hugging Face datasets folder into a dataset, "
            "all or nothing unless --skip-invalid.")

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="The file, or for --format hf_dataset the save_to_disk folder "
                                                    "or a .tar/.zip of it.")
        parser.add_argument("--dataset", required=True, help="Dataset name.")
        parser.add_argument("--format", choices=ImportFormat.values, default=ImportFormat.CHAT_JSONL)
        parser.add_argument("--as", dest="username", required=True, help="User recorded as the author.")
        parser.add_argument("--skip-invalid", action="store_true", help="Import valid lines; list every skipped one.")
        parser.add_argument("--columns", default="",
                            help="CSV/TSV column mapping, e.g. 'prompt=question,completion=answer,system=instructions' "
                                 "(default: columns named prompt and completion).")
        parser.add_argument("--split", default="",
                            help="hf_dataset: the split of a DatasetDict folder (needed when it has several).")
        parser.add_argument("--create-dataset", action="store_true", help="Create the dataset if missing.")
        parser.add_argument("--system-prompt", default="", help="System prompt of a dataset created here.")
        parser.add_argument("--queue", action="store_true",
                            help="Hand the import to a worker (needs REDIS_URL) and print its progress; by default "
                                 "this process imports the file and draws a progress bar.")

    def handle(self, *args, file, dataset, format, username, skip_invalid, columns, split, create_dataset,
               system_prompt, queue, **opts):
        user = user_named(username)
        try:
            column_mapping = parse_column_mapping(columns)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not file.exists():
            raise CommandError(f"{file}: no such file or folder")
        target = Dataset.objects.filter(name=dataset).first()
        if target is None and not create_dataset:
            raise CommandError(f"no dataset named {dataset!r} (use --create-dataset)")
        options = {"by": user, "filename": file.name, "skip_invalid": skip_invalid, "column_mapping": column_mapping,
                   "hf_split": split}
        # A dataset created here exists only if its first import succeeds.
        created = target is None
        if queue:
            if created:
                target = self._create_dataset(dataset, system_prompt, user)
            batch = None
            try:
                batch = self._queued(target, file, format, options)
            finally:
                if created and (batch is None or batch.status != JobStatus.SUCCEEDED):
                    target.delete()
        else:
            with transaction.atomic():
                if created:
                    target = self._create_dataset(dataset, system_prompt, user)
                batch = self._here(target, file, format, options)
                if batch.status == JobStatus.FAILED and created:
                    transaction.set_rollback(True)
        if batch.status == JobStatus.FAILED:
            reason = batch.error or f"{batch.error_count} invalid line(s)"
            raise CommandError(f"import refused: {reason}; nothing was imported")

    def _create_dataset(self, name, system_prompt, user) -> Dataset:
        try:
            return create_dataset(by=user, name=name, system_prompt=system_prompt)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc

    def _here(self, target, file, format, options):
        """Import in this process with a progress bar (on stderr)."""
        bar = None

        def on_progress(done, total):
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, unit="records", desc=f"import {file.name}", disable=None)
            bar.update(done - bar.n)

        try:
            batch = import_examples(target, file, format, on_progress=on_progress, **options)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if bar is not None:
                bar.close()
        for line in describe_batch(batch, limit=None):
            self.stdout.write(line)
        return batch

    def _queued(self, target, file, format, options):
        """Queue the import and print a line whenever its progress moves, until it ends."""
        try:
            batch = start_import(target, file, format, **options)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"import {batch.pk} queued (job {batch.rq_job_id})")
        shown = None
        while True:
            batch.refresh_from_db()
            if batch.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
                break
            state = (batch.status, batch.rows_done, batch.rows_total)
            if state != shown:
                self.stdout.write(f"import {batch.pk}: {describe_batch(batch)[0]}")
                shown = state
            time.sleep(POLL_SECONDS)
        for line in describe_batch(batch, limit=None):
            self.stdout.write(line)
        return batch
