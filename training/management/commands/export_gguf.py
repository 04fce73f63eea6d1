from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation.selectors import snapshot_by_reference
from ftml.gguf import DEFAULT_GGUF_OUTTYPE, GGUF_OUTTYPES
from ftplatform.cli import user_named
from ftplatform.errors import ServiceError
from training.exports import PARITY_MAX_NEW_TOKENS, export_gguf_model, read_export_record
from training.model_versions import model_version_by_reference


class Command(BaseCommand):
    help = ("Export a LoRA model version as one GGUF file for llama.cpp and Ollama (merged, converted by "
            "llama.cpp's converter, chat template and EOS checked); optionally compare its answers with the "
            "original model's on a snapshot's test split.")

    def add_arguments(self, parser):
        parser.add_argument("--model-version", dest="model_version", required=True,
                            help="Model version (a LoRA adapter): id or name, or a dataset name: its newest.")
        parser.add_argument("--as", dest="username", required=True)
        parser.add_argument("--outtype", choices=GGUF_OUTTYPES, default=DEFAULT_GGUF_OUTTYPE,
                            help=f"Weight type in the file (default {DEFAULT_GGUF_OUTTYPE}).")
        parser.add_argument("--parity-snapshot", dest="parity_snapshot",
                            help="Snapshot id, or a dataset name for its newest approved snapshot: answer its test "
                                 "split with the original model and the GGUF, score both, record the difference.")
        parser.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=PARITY_MAX_NEW_TOKENS,
                            help=f"Answer length limit of the parity check (default {PARITY_MAX_NEW_TOKENS}).")
        parser.add_argument("--output", type=Path,
                            help="Folder to create (must not exist); default: ARTIFACTS_ROOT/gguf/model-version-<id>.")

    def handle(self, *args, model_version, username, outtype, parity_snapshot, max_new_tokens, output, **options):
        try:
            version = model_version_by_reference(model_version)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        snapshot = None
        if parity_snapshot is not None:
            try:
                snapshot = snapshot_by_reference(parity_snapshot)
            except ServiceError as exc:
                raise CommandError(f"--parity-snapshot: {exc}") from exc
        if not 1 <= max_new_tokens <= 4096:
            raise CommandError(f"--max-new-tokens must be from 1 to 4096, got {max_new_tokens}")
        user = user_named(username)
        from training.jobs import prepare_torch

        prepare_torch()
        try:
            path = export_gguf_model(version, by=user, output_dir=output, outtype=outtype, parity_snapshot=snapshot,
                                     max_new_tokens=max_new_tokens)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        record = read_export_record(path)
        self.stdout.write(f"exported model version {version.pk} as {path / record['gguf_file']} ({record['outtype']})")
        self.stdout.write(f"chat template and EOS token {record['eos_token']!r} (id {record['eos_token_id']}) "
                          "checked in the file's metadata")
        parity = record["parity"]
        if parity is None:
            return
        self.stdout.write(f"parity on snapshot {parity['snapshot_id']} ({parity['split']}, {parity['inputs']} inputs, "
                          f"greedy, up to {parity['max_new_tokens']} tokens): {parity['identical_answers']} of "
                          f"{parity['inputs']} answers identical ({parity['identical_fraction']:.1%})")
        for name, scores in parity["metrics"].items():
            self.stdout.write(f"  {name}: original {scores['original']:.2f}, GGUF {scores['converted']:.2f}, "
                              f"difference {scores['difference']:+.2f}")
