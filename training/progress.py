"""How a training run's progress reads: durations, the progress fields shown by the admin and the
train command's bar, and event lines for the commands that poll a run trained elsewhere."""
import math
import sys
from collections.abc import Callable

from django.utils import timezone
from tqdm import tqdm

from ftplatform.jobrows import JobStatus

from .choices import EventKind
from .models import TrainingRun


def format_duration(seconds: float | None) -> str:
    """``seconds`` as a short human-readable duration: "42s", "3m 20s", "2h 5m", "3d 4h".

    Rounded to whole seconds; the smaller unit is dropped from hours up. Negative values read
    as "0s"; None, NaN and infinity as "?".
    """
    if seconds is None or not math.isfinite(seconds):
        return "?"
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def run_progress_fields(run: TrainingRun, now=None) -> dict[str, str]:
    """The run's progress as ordered label -> text, only what the row records.

    Labels: "step" ("40/80"), "epoch" ("0.40"), "tokens/s" ("1,234"), "elapsed", "ETA" (while
    not finished) and "heartbeat" ("12s ago", while running). ``now`` (an aware datetime, default
    the current time) dates the heartbeat. The epoch, throughput, timing and heartbeat fields are
    read with getattr so rows without them (older schemas) still render.
    """
    fields = {"step": f"{run.step}/{run.total_steps or '?'}"}
    epoch = getattr(run, "epoch", None)
    if epoch:
        fields["epoch"] = f"{epoch:.2f}"
    tokens_per_second = getattr(run, "tokens_per_second", None)
    if tokens_per_second is not None:
        fields["tokens/s"] = f"{tokens_per_second:,.0f}"
    elapsed = getattr(run, "elapsed_seconds", None)
    if elapsed is not None:
        fields["elapsed"] = format_duration(elapsed)
    eta = getattr(run, "eta_seconds", None)
    if eta is not None and run.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        fields["ETA"] = format_duration(eta)
    heartbeat_at = getattr(run, "heartbeat_at", None)
    if heartbeat_at is not None and run.status == JobStatus.RUNNING:
        fields["heartbeat"] = f"{format_duration(((now or timezone.now()) - heartbeat_at).total_seconds())} ago"
    return fields


def _event_line(run: TrainingRun, event) -> str:
    prefix = f"[run {run.pk}] step {event.step}/{run.total_steps}" if event.step is not None else f"[run {run.pk}]"
    return f"{prefix} {event.kind}: {event.message}"


class TrainingProgressBar:
    """A tqdm bar for a run that a worker elsewhere trains, driven by the polled row.

    Pass ``describe`` and ``write`` to ``ftplatform.cli.wait_for_run``: each poll moves the bar to
    ``run.step``/``run.total_steps`` with the latest train loss, tokens/s and ETA as its postfix,
    and new events are written above the bar: ``write(line)`` (e.g. a command's
    ``self.stdout.write``) runs in tqdm's external write mode, which clears the bar first. Train-loss metric events only
    update the postfix (the admin charts them); validation losses, logs, warnings and
    checkpoints get a line. When the bar is disabled (output not a terminal, with the default
    ``disable=None``) every event gets a line.

    wait_for_run never calls ``describe`` for synchronous jobs (the job drew its own bar in
    this process), so the bar is created on the first poll only. Use as a context manager so
    the bar is closed.
    """

    def __init__(self, write: Callable[[str], object], *, file=None, disable: bool | None = None):
        """``write`` takes one line; the bar goes to ``file`` (default stderr)."""
        self._write, self.file, self.disable = write, file, disable
        self.bar: tqdm | None = None
        self.loss: float | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.bar is not None:
            self.bar.close()

    def describe(self, run: TrainingRun, last_event_id: int) -> tuple[list[str], int]:
        if self.bar is None:
            # No rate or remaining time from tqdm: it would time the polls; the worker's ETA is in the postfix.
            self.bar = tqdm(total=run.total_steps or None, desc=f"run {run.pk}", unit="step", file=self.file,
                            disable=self.disable, dynamic_ncols=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        lines = []
        for event in run.events.filter(id__gt=last_event_id).order_by("id"):
            last_event_id = event.id
            loss = event.payload.get("loss") if event.kind == EventKind.METRIC else None
            if isinstance(loss, (int, float)):
                self.loss = loss
            if self.bar.disable or event.kind != EventKind.METRIC or "eval_loss" in event.payload:
                lines.append(_event_line(run, event))
        self.bar.total = run.total_steps or None
        self.bar.n = run.step
        self.bar.set_postfix(self.postfix(run), refresh=False)
        self.bar.refresh()
        return lines, last_event_id

    def postfix(self, run: TrainingRun) -> dict[str, str]:
        """Latest train loss, tokens/s and ETA, as the bar shows them."""
        fields = run_progress_fields(run)
        shown = {"loss": f"{self.loss:.4f}"} if self.loss is not None else {}
        shown.update({label: fields[label] for label in ("tokens/s", "ETA") if label in fields})
        return shown

    def write(self, line: str) -> None:
        with tqdm.external_write_mode(file=self.file or sys.stderr):
            self._write(line)


def format_preflight(report: dict) -> list[str]:
    """A pre-flight report (ftml.preflight.PreflightReport.to_dict()) as readable lines."""
    hp = report["hyperparameters"]
    lines = [
        f"train examples {report['train_examples']}, validation examples {report['validation_examples']}",
        f"chat template from the {report['chat_template_source'] or '?'}; target modules "
        + ", ".join(f"{name} x{count}" if count else f"{name} MISSING"
                    for name, count in report["target_modules_found"].items()),
        f"epochs {hp['epochs']}, batch size {hp['batch_size']} x accumulation {hp['gradient_accumulation_steps']}, "
        f"learning rate {hp['learning_rate']}, max_seq_length {hp['max_seq_length']}"
        + (f" (auto: {', '.join(report['auto_resolved'])})" if report["auto_resolved"] else ""),
        f"over max length: {report['over_length']}; target fully truncated: {report['fully_truncated']}",
        # Older reports lack the prefix; repr shows its newlines and special tokens on one line.
        f"prompt before the user's text: {report['prompt_prefix']!r}" if report.get("prompt_prefix")
        else "prompt before the user's text: not recorded",
        f"estimated steps {report['estimated_steps']}, input tokens {report['estimated_input_tokens']:,}, "
        f"trained (answer) tokens {report['estimated_trained_tokens']:,}",
    ]
    if report["estimated_seconds"] is not None:
        lines.append(f"estimated wall time {format_duration(report['estimated_seconds'])} at "
                     f"{report['tokens_per_second_used']:.0f} tokens/s ({report['tokens_per_second_source']})"
                     + (f", cost {report['estimated_cost']:.2f}" if report["estimated_cost"] is not None else ""))
    lines += [f"warning: {w}" for w in report["warnings"]]
    lines += [f"BLOCKING: {b}" for b in report["blocking"]] or ["ready to train"]
    return lines


def wait_for_training(run: TrainingRun, write: Callable[[str], object]) -> TrainingRun:
    """Poll ``run`` until it finishes (ftplatform.cli.wait_for_run) with a TrainingProgressBar,
    failing it meanwhile if its worker stops sending heartbeats (a dead machine cannot report
    it). Used by the train and demo commands. Returns the refreshed row."""
    from ftplatform.cli import wait_for_run

    from .runs import reap_lost_runs

    with TrainingProgressBar(write) as bar:  # the bar on stderr, as the job draws it

        def describe(row, cursor):
            reap_lost_runs()
            return bar.describe(row, cursor)

        return wait_for_run(run, describe, bar.write)
