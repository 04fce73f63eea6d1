"""One LoRA run on several data-parallel processes, through ``accelerate launch`` (torchrun underneath).

The platform writes no distributed code: accelerate starts the processes and sets RANK / WORLD_SIZE,
and the Trainer inside train_lora runs DDP (gloo on CPU, NCCL on GPU), all-reducing gradients and
dealing out batches. This module is both sides of that launch, without Django:

- The training script (``python -m ftml.launch``, run by every process). From the
  command line, e.g. on a 4-GPU machine:

      accelerate launch --multi_gpu --num_processes 4 -m ftml.launch \\
          --base-model var/artifacts/base_models/SmolLM2-135M-Instruct --data train.jsonl \\
          [--validation validation.jsonl] --hyperparameters '{"epochs": 2}' --output var/artifacts/runs/multi-gpu

  ``--data`` is chat JSONL (one ``{"messages": [...]}`` per line, e.g. a snapshot export's
  train.jsonl). With ``--events FILE`` the main process (rank 0) appends one JSON line per
  progress report, metric log, finished checkpoint and warning, then the result or the error;
  the other processes write nothing but their share of each checkpoint (their RNG state).

- train_lora_in_processes, the caller's side (the platform's training job, when
  FTPLATFORM_TRAINING_PROCESSES > 1): it writes the splits to a work folder, starts
  ``accelerate launch`` in a session of its own, tails the event file and calls the same callbacks
  train_lora would (on_progress, on_metrics, on_checkpoint, on_warning) in the caller's thread, and
  polls should_stop; cancel, timeout or any error in a callback stops the whole process tree. A
  checkpoint is announced only once every process has written its part, so a resume (``--resume-from``)
  never reads a half-written one.

Hyperparameters mean the same on any number of processes: batch_size is the global batch of a
micro-step (config.split_batch gives each process its share), so one optimiser step trains on
batch_size * gradient_accumulation_steps sequences either way.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .config import LoraConfig
from .train import ExampleError, TrainingCancelled, TrainingFailed, TrainingResult, train_lora

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # where ``-m ftml.launch`` resolves
EVENTS_FILE = "events.jsonl"
LOG_FILE = "launch.log"
STOP_GRACE_SECONDS = 30.0  # torchrun's agent gives its workers 30 s to exit on SIGTERM before it kills them


class LaunchFailed(RuntimeError):
    """The training processes failed; the message says how (the error of rank 0, or the end of their log)."""


def read_chat_jsonl(path: Path) -> list[list[dict] | dict]:
    """The ``messages`` of every non-empty line, or the whole line when it has more (tools: see
    ftml.data.conversation_parts). Raises SystemExit naming the file and line."""
    conversations = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                conversations.append(record if len(record) > 1 else record["messages"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SystemExit(f"{path}:{number}: not a chat JSONL line with 'messages' ({exc})") from None
    return conversations


def write_chat_jsonl(path: Path, conversations: list[list[dict] | dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for conversation in conversations:
            record = conversation if isinstance(conversation, dict) else {"messages": conversation}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


class EventWriter:
    """Rank 0's side of the event file: one JSON object per line, flushed as it is written."""

    def __init__(self, path: Path):
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, event: str, **fields) -> None:
        self.handle.write(json.dumps({"event": event, **fields}) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _quiet_libraries() -> None:
    """Loading bars and notices off, as the in-process job has them (training.jobs.prepare_torch)."""
    import warnings

    import datasets
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-model", type=Path, required=True, help="A Hugging Face model folder.")
    parser.add_argument("--data", type=Path, required=True, help="Train split, chat JSONL.")
    parser.add_argument("--validation", type=Path, help="Validation split, chat JSONL.")
    parser.add_argument("--hyperparameters", type=json.loads, default={}, help="JSON (ftml.config).")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--checkpoint-dir", type=Path, help="Default: next to --output, '.checkpoints' added.")
    parser.add_argument("--resume-from", type=Path, help="A checkpoint folder of this run to resume from.")
    parser.add_argument("--events", type=Path, help="Rank 0 appends progress, metrics, checkpoints and the "
                                                    "result here as JSON lines (no progress bar then).")
    args = parser.parse_args(argv)
    try:
        config = LoraConfig.from_dict(args.hyperparameters)
    except ValueError as exc:
        raise SystemExit(f"--hyperparameters: {exc}") from None
    _die_with_parent()  # the launcher (torchrun's agent) killed outright: this process must not train on alone
    _quiet_libraries()
    main_process = int(os.environ.get("RANK", "0")) == 0
    events = EventWriter(args.events) if args.events and main_process else None
    report = {}
    if events is not None:
        report = {
            "on_progress": lambda progress: events.write("progress", progress=progress),
            "on_metrics": lambda step, logs: events.write("metrics", step=step, logs=logs),
            "on_checkpoint": lambda step, path, info: events.write("checkpoint", step=step, path=str(path),
                                                                   info=info),
            "on_warning": lambda message: events.write("warning", message=message),
        }
    try:
        result = train_lora(
            args.base_model, read_chat_jsonl(args.data),
            read_chat_jsonl(args.validation) if args.validation else [], config, args.output,
            checkpoint_dir=args.checkpoint_dir or args.output.with_name(args.output.name + ".checkpoints"),
            resume_from=args.resume_from, show_progress_bar=main_process and events is None, **report)
    except Exception as exc:
        if events is not None:
            fields = {"index": exc.index, "reason": exc.reason} if isinstance(exc, ExampleError) else {}
            events.write("error", type=type(exc).__name__, message=str(exc), **fields)
        raise
    if events is not None:
        events.write("result", result={**asdict(result), "adapter_dir": str(result.adapter_dir)})
        events.close()
    elif main_process:
        print(f"train loss {result.train_loss:.4f}, {result.steps} steps, {result.tokens_per_second:.0f} tokens/s "
              f"over {result.environment['processes']} process(es); adapter in {result.adapter_dir}")
    from accelerate import PartialState

    PartialState().destroy_process_group()  # torch warns at exit about a group left open
    return 0


def launch_command(processes: int, script_args: list[str], accelerate_config: str | Path | None = None) -> list[str]:
    """The ``accelerate launch`` command line that runs this module on ``processes`` processes of this machine.

    Without ``accelerate_config``: plain DDP through torchrun (accelerate's ``--multi_gpu`` launcher,
    which on a machine without GPUs starts CPU processes that join with gloo), on a free port, mixed
    precision left to the Trainer (bf16 where the GPU has it). With it: that accelerate config file
    (FSDP, DeepSpeed, GPU ids, ...); ``--num_processes`` still comes from ``processes``.
    """
    if accelerate_config:
        where = ["--config_file", str(accelerate_config)]
    else:
        where = ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    # Through this module (ACCELERATE_FLAG), which ties the launcher's life to its caller's, then accelerate's own CLI.
    return [sys.executable, "-m", "ftml.launch", ACCELERATE_FLAG, *where, "--num_processes",
            str(processes), "--main_process_port", "0", "-m", "ftml.launch", *script_args]


ACCELERATE_FLAG = "--accelerate-launch"
PARENT_VARIABLE = "FTPLATFORM_LAUNCHED_BY"  # the caller's pid, to notice it died before the launcher started


def _die_with_parent() -> None:
    """Get SIGTERM when the parent process dies (Linux's PR_SET_PDEATHSIG; elsewhere nothing). The job
    that started a launch, or torchrun's agent that started a training process, may be killed outright
    (out of memory, SIGKILL): its children must not train on unwatched, writing checkpoints a resume
    also writes. torchrun's agent stops its workers on SIGTERM."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def run_accelerate_launch(arguments: list[str]) -> int:
    """``accelerate launch <arguments>``, in this process, once it dies with the process that started it."""
    _die_with_parent()
    expected = os.environ.get(PARENT_VARIABLE)
    if expected and os.getppid() != int(expected):
        return 1  # the caller died before the line above took effect: nobody would watch this launch
    from accelerate.commands.launch import launch_command, launch_command_parser

    launch_command(launch_command_parser().parse_args(arguments))
    return 0


def stop_process_tree(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the launcher and every process under it (torchrun starts each worker in a session of
    its own, so a process-group signal would miss them), then SIGKILL what is left after ``grace`` s."""
    import psutil

    try:
        root = psutil.Process(process.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for member in tree:
        try:
            member.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=grace)
    for member in alive:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    process.wait()


class EventTail:
    """The caller's side of the event file: complete lines appended since the last read."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, 0, b""

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()  # an unfinished last line waits for the next read
        return [json.loads(line) for line in lines if line.strip()]


def _log_tail(path: Path, characters: int = 3000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no output)"
    return text[-characters:].strip() or "(no output)"


def _raised(event: dict) -> Exception:
    """Rank 0's error as the exception train_lora raised in-process, so callers handle both alike."""
    if event["type"] == "TrainingFailed":
        return TrainingFailed(event["message"])
    if event["type"] == "ExampleError":
        return ExampleError(event["index"], event["reason"])
    return LaunchFailed(f"{event['type']} in the training processes: {event['message']}")


def train_lora_in_processes(
    base_model_dir: Path,
    train_conversations: list[list[dict]],
    validation_conversations: list[list[dict]],
    config: LoraConfig,
    output_dir: Path,
    *,
    processes: int,
    work_dir: Path,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
    on_progress: Callable[[dict], None] | None = None,
    on_metrics: Callable[[int, dict], None] | None = None,
    on_checkpoint: Callable[[int, Path, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_warning: Callable[[str], None] | None = None,
    accelerate_config: str | Path | None = None,
    threads_per_process: int | None = None,
    poll_seconds: float = 0.2,
    stop_grace_seconds: float = STOP_GRACE_SECONDS,
) -> TrainingResult:
    """train_lora on ``processes`` data-parallel processes started by ``accelerate launch``.

    Same arguments, callbacks and result as train_lora, plus:
        processes: how many processes (GPUs; on CPU, processes joined with gloo).
        work_dir: a new folder for this launch: the splits as chat JSONL (removed at the end), the
            event file rank 0 writes (EVENTS_FILE) and the processes' output (LOG_FILE).
        accelerate_config: an accelerate config file (see launch_command).
        threads_per_process: torch threads of each process (OMP_NUM_THREADS); default: accelerate's.

    Callbacks run in the caller's thread as rank 0's events arrive (every ``poll_seconds``), between
    polls of should_stop. should_stop returning True, or raising, or a callback raising, stops every
    process (SIGTERM, SIGKILL after ``stop_grace_seconds``); checkpoints already announced stay.

    Raises:
        TrainingCancelled (should_stop), TrainingFailed and ExampleError as train_lora raises them on
        rank 0, LaunchFailed for any other failure of the processes (the message carries rank 0's
        error or the end of their output), and whatever a callback or should_stop raises.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=False)  # a launch never reads another launch's events
    data, validation = work_dir / "train.jsonl", work_dir / "validation.jsonl"
    write_chat_jsonl(data, train_conversations)
    write_chat_jsonl(validation, validation_conversations)
    events_path, log_path = work_dir / EVENTS_FILE, work_dir / LOG_FILE
    script_args = ["--base-model", str(base_model_dir), "--data", str(data), "--validation", str(validation),
                   "--hyperparameters", json.dumps(config.to_dict()), "--output", str(output_dir),
                   "--events", str(events_path)]
    if checkpoint_dir is not None:
        script_args += ["--checkpoint-dir", str(checkpoint_dir)]
    if resume_from is not None:
        script_args += ["--resume-from", str(resume_from)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", PARENT_VARIABLE: str(os.getpid()),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    if threads_per_process:
        env["OMP_NUM_THREADS"] = str(threads_per_process)
    tail = EventTail(events_path)
    handlers = {
        "progress": lambda e: on_progress and on_progress(e["progress"]),
        "metrics": lambda e: on_metrics and on_metrics(e["step"], e["logs"]),
        "checkpoint": lambda e: on_checkpoint and on_checkpoint(e["step"], Path(e["path"]), e["info"]),
        "warning": lambda e: on_warning and on_warning(e["message"]),
    }
    ending = {}

    def dispatch():
        for event in tail.read():
            if event["event"] in handlers:
                handlers[event["event"]](event)
            else:
                ending[event["event"]] = event  # result or error: read once the processes are gone

    with open(log_path, "wb") as log:
        process = subprocess.Popen(launch_command(processes, script_args, accelerate_config), cwd=PROJECT_ROOT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        while process.poll() is None:
            dispatch()
            if should_stop and should_stop():
                raise TrainingCancelled()
            time.sleep(poll_seconds)
        dispatch()
    except BaseException:
        stop_process_tree(process, stop_grace_seconds)
        raise
    finally:
        data.unlink(missing_ok=True)
        validation.unlink(missing_ok=True)
    if "error" in ending:
        raise _raised(ending["error"])
    if "result" not in ending:
        raise LaunchFailed(f"accelerate launch exited with code {process.returncode} before rank 0 reported a "
                           f"result; the end of its output:\n{_log_tail(log_path)}")
    if process.returncode != 0 and on_warning:  # the adapter is complete (rank 0 wrote it before its result)
        on_warning(f"the training processes exited with code {process.returncode} after the adapter was saved; "
                   f"the end of their output: {_log_tail(log_path, 500)}")
    fields = ending["result"]["result"]
    return TrainingResult(**{**fields, "adapter_dir": Path(fields["adapter_dir"])})


if __name__ == "__main__":
    if sys.argv[1:2] == [ACCELERATE_FLAG]:
        sys.exit(run_accelerate_launch(sys.argv[2:]))
    sys.exit(main())
