from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from curation.choices import ImportFormat, ImportStatus
from curation.formats import parse_column_mapping
from curation.imports import describe_batch, import_examples
from curation.models import Dataset
from ftplatform.cli import user_named
from ftplatform.errors import ServiceError


class Command(BaseCommand):
    help = "Import a JSONL file of examples into a dataset (all or nothing unless --skip-invalid)."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--dataset", required=True, help="Dataset name.")
        parser.add_argument("--format", choices=ImportFormat.values, default=ImportFormat.CHAT_JSONL)
        parser.add_argument("--as", dest="username", required=True, help="User recorded as the author.")
        parser.add_argument("--skip-invalid", action="store_true", help="Import valid lines; list every skipped one.")
        parser.add_argument("--columns", default="",
                            help="CSV/TSV column mapping, e.g. 'prompt=question,completion=answer,system=instructions' "
                                 "(default: columns named prompt and completion).")
        parser.add_argument("--create-dataset", action="store_true", help="Create the dataset if missing.")
        parser.add_argument("--system-prompt", default="", help="System prompt of a dataset created here.")

    def handle(self, *args, file, dataset, format, username, skip_invalid, columns, create_dataset, system_prompt,
               **opts):
        user = user_named(username)
        try:
            column_mapping = parse_column_mapping(columns)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        target = Dataset.objects.filter(name=dataset).first()
        if target is None and not create_dataset:
            raise CommandError(f"no dataset named {dataset!r} (use --create-dataset)")
        data = file.read_bytes()
        # A dataset created here exists only if its first import succeeds.
        with transaction.atomic():
            created = target is None
            if created:
                target = Dataset(name=dataset, system_prompt=system_prompt, created_by=user)
                try:
                    target.full_clean()
                except ValidationError as exc:
                    raise CommandError("; ".join(f"{field}: {' '.join(errors)}"
                                                 for field, errors in exc.message_dict.items())) from exc
                target.save()
            try:
                batch = import_examples(target, data, format, by=user, filename=file.name, skip_invalid=skip_invalid,
                                        column_mapping=column_mapping)
            except ServiceError as exc:
                raise CommandError(str(exc)) from exc
            for line in describe_batch(batch, limit=None):
                self.stdout.write(line)
            if batch.status == ImportStatus.FAILED and created:
                transaction.set_rollback(True)
        if batch.status == ImportStatus.FAILED:
            raise CommandError(f"import refused: {batch.error_count} invalid line(s); nothing was imported")
