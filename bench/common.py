"""What the benchmarks share: a throwaway ftplatform (SQLite, in-process jobs) with the demo's
snapshot, child processes, and peak memory. Imported by the bench scripts; not part of the app."""
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from ftplatform.jobrows import JobStatus

ROOT = Path(__file__).resolve().parent.parent
DATA_FILE = ROOT / "examples" / "e2e_nlg.chat.jsonl"  # the same bytes as /work/shared/data/e2e_nlg.chat.jsonl
DEFAULT_BASE_MODELS = Path(os.environ.get("FTPLATFORM_ARTIFACTS", ROOT / "var" / "artifacts")) / "base_models"


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB; ru_maxrss where there is no /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_environment(scratch: Path, base_models: Path) -> dict:
    """The children's environment: a throwaway SQLite database and artifacts folder under
    ``scratch``, in-process jobs (no REDIS_URL), and ``base_models`` linked in as the cache of
    dequantized base models (so the ~20 s dequantization happens once per machine)."""
    artifacts = scratch / "artifacts"
    artifacts.mkdir()
    base_models.mkdir(parents=True, exist_ok=True)
    (artifacts / "base_models").symlink_to(base_models.resolve(), target_is_directory=True)
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.setdefault("FTPLATFORM_SECRET_KEY", secrets.token_urlsafe(50))  # a throwaway: debug stays off
    env.update(DATABASE_URL=f"sqlite:///{scratch / 'bench.sqlite3'}", FTPLATFORM_VAR=str(scratch),
               FTPLATFORM_ARTIFACTS=str(artifacts), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               DJANGO_SETTINGS_MODULE="ftplatform.settings")
    return env


def answer_as_child(args, children: dict) -> None:
    """In a child process: run its role (``children[args.child](args)``) and write the result, with
    the child's peak memory, to ``args.result`` for the parent's run_child to read."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ftplatform.settings")
    result = children[args.child](args)
    result["peak_rss_mib"] = peak_rss_mib()
    args.result.write_text(json.dumps(result, indent=2, default=str))


def run_child(script: str, role: str, scratch: Path, env: dict, *extra: str, result_name: str) -> dict:
    """Run ``script --child role --scratch ... --result scratch/<result_name>.json extra...`` in a
    fresh process; its result (the JSON it wrote) plus ``process_seconds``, the child's wall time
    seen by the parent."""
    result_file = scratch / f"{result_name}.json"
    command = [sys.executable, script, "--child", role, "--scratch", str(scratch), "--result", str(result_file),
               *extra]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True)
    result = json.loads(result_file.read_text())
    result["process_seconds"] = time.perf_counter() - started
    return result


def prepare_demo_snapshot(data: Path, dataset_name: str, max_seq_length: int, comment: str):
    """Inside a child with Django set up: migrate, import ``data`` as the demo does, approve every
    example, create and approve the snapshot (seed 0, the quality gate counting tokens with the
    default base model at ``max_seq_length``), and record the base model's first-use description
    outside any measured run.

    Returns:
        (snapshot, base_model, base_model_dir, users, tokens): tokens is the quality gate's
        curation.quality.TokenLimits (its ``tokenizer`` is the base model's).
    """
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from config.management.commands.demo import demo_users, first_system_prompt
    from curation.choices import ExampleStatus, ImportFormat, SnapshotStatus
    from curation.datasets import create_dataset
    from curation.imports import import_examples
    from curation.models import Example
    from curation.snapshots import approve_snapshot, create_snapshot
    from curation.workflow import approve_examples
    from training.base_models import (
        base_model_token_limits,
        default_base_model,
        materialized_base_model_folder,
        record_base_model_info,
    )

    users = demo_users()
    raw_lines = [line for line in Path(data).read_bytes().split(b"\n") if line.strip()]
    dataset = create_dataset(by=users["demo-engineer"], name=dataset_name, system_prompt=first_system_prompt(raw_lines))
    batch = import_examples(dataset, b"\n".join(raw_lines), ImportFormat.CHAT_JSONL, by=users["demo-annotator"],
                            filename=Path(data).name)
    assert batch.status == JobStatus.SUCCEEDED, (batch.error, batch.errors[:3])
    pending = Example.objects.filter(dataset=dataset, status=ExampleStatus.SUBMITTED)
    approve_examples(pending.iterator(), by=users["demo-reviewer"], comment=comment)

    base_model = default_base_model()
    folder = materialized_base_model_folder(base_model)  # dequantized once into the base model cache
    record_base_model_info(base_model, folder)  # the first-use description, outside the measured run
    tokens = base_model_token_limits(base_model, max_seq_length)
    snapshot, _ = create_snapshot(dataset, by=users["demo-engineer"], seed=0, tokens=tokens)
    if snapshot.status == SnapshotStatus.PENDING_REVIEW:
        snapshot = approve_snapshot(snapshot, by=users["demo-reviewer"], comment=comment)
    assert snapshot.status == SnapshotStatus.APPROVED, snapshot.status
    return snapshot, base_model, folder, users, tokens


def train_on_prepared(prepared: dict, hyperparameters: dict):
    """Inside a child: ftplatform's training job, end to end (training.runs.start_training_run
    with in-process jobs), on the snapshot and base model ``prepared`` names, as demo-engineer.

    Returns:
        (run, job_seconds): the succeeded TrainingRun, refreshed, and the wall seconds of the call.
    Raises:
        SystemExit: the run did not succeed (its status and error).
    """
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from curation.models import Snapshot
    from training.models import BaseModel
    from training.runs import start_training_run

    snapshot = Snapshot.objects.get(pk=prepared["snapshot_id"])
    base_model = BaseModel.objects.get(pk=prepared["base_model_id"])
    engineer = get_user_model().objects.get(username="demo-engineer")
    started = time.perf_counter()
    run = start_training_run(snapshot, base_model, by=engineer, hyperparameters=hyperparameters)
    run.refresh_from_db()  # no REDIS_URL: the job ran in this process when the run's row committed
    job_seconds = time.perf_counter() - started
    if run.status != "succeeded":
        raise SystemExit(f"training run {run.pk} {run.status}: {run.error}")
    return run, job_seconds
