"""Training throughput: ftplatform's training job against a plain transformers Trainer + peft script.

    .venv/bin/python bench/training_bench.py --steps 40 --json var/training_bench.json
    .venv/bin/python bench/training_bench.py --steps 4       # smoke run: does everything work?

One command, one snapshot, one base model, one set of hyperparameters. It prepares, in a child
process, a throwaway SQLite database (DATABASE_URL under a temp folder, no REDIS_URL: jobs run
in-process) and a temp FTPLATFORM_ARTIFACTS whose base_models/ links to the cache of dequantized
base models (default var/artifacts/base_models, so the ~20 s dequantization happens once per
machine): it imports the E2E NLG file (examples/e2e_nlg.chat.jsonl), approves every example,
creates and approves a snapshot (seed 0, the quality gate counting tokens with the base model),
loads the base model once to record its description (what ftplatform does the first time a base
model is used; done here so the measured run is a steady-state one), and writes the train split
to a JSONL file exactly as the training job reads it (items in id order, the dataset's system
prompt added). Then it trains, each in a fresh child process, one after the other:

  ftplatform          start_training_run() on that snapshot: the whole job (RQ synchronous mode,
                      claims the row, TrainingEvents, progress, heartbeat, cancel polling, adapter
                      saved, run row finished, ModelVersion created), as the demo runs it.
  reference (pad to max_length)
                      reference_train() below, a plain script as the transformers/peft docs write
                      it: the same train rows tokenized with ftml.data.tokenize_for_training
                      (the same completion-only labels), padded to max_seq_length at tokenization
                      (pad id, label -100, attention 0), default_data_collator, get_peft_model,
                      Trainer, adapter saved.
  reference (dynamic padding)
                      the same script with unpadded rows and DataCollatorForSeq2Seq(padding=True),
                      each batch padded to its longest row.

Every side gets the same hyperparameters (HYPERPARAMETERS; the reference reads them through
ftml.config.LoraConfig, so learning rate 2e-4, warmup 5 % of the steps, linear
schedule, LoRA dropout 0.05 on q/k/v/o_proj come from one place), the same seed, batch size 8,
max_seq_length 256, torch threads = settings.TORCH_THREADS, no validation.

What is measured, the same way on every side:
  tokens/s          non-padding input tokens (attention_mask sum) of the batches the optimiser
                    steps trained on, divided by the seconds of the training loop.
                    Reference: Trainer(include_num_input_tokens_seen="non_padding") counts them;
                    the loop is timed by a TrainerCallback from on_train_begin to on_train_end
                    (time.perf_counter; CPU, so no device sync is needed). That excludes loading
                    and tokenizing before trainer.train() and saving after it.
                    ftplatform: run.metrics["tokens_per_second"] and ["train_seconds"] reported by
                    the engine, which must time and count the same span. Until the engine reports
                    them the table shows an estimate marked "~": mean non-padding tokens of a
                    train row x batch size x steps, over the engine's wall_seconds (which also
                    includes loading, tokenizing and saving, so it is pessimistic).
  s/step            training-loop seconds / optimiser steps.
  bookkeeping       ftplatform only: run.metrics["bookkeeping_seconds"], the time spent in
                    ftplatform's own callbacks (events, progress, heartbeat, cancel polling), and
                    its share of the training loop.
  job wall s        ftplatform: start_training_run() until it returns with the run finished
                    (in-process jobs); reference: reference_train() from its first line (imports
                    of torch/transformers included) to the saved adapter.
  process wall s    the child process from its start to its exit, measured by the parent:
                    interpreter, imports, Django setup (ftplatform), everything.
  peak RSS MiB      the child process's VmHWM (/proc/self/status) when its work is done: the
                    kernel's high-water mark of resident memory, which exec resets, so the
                    parent's memory is not counted.
  train loss        a sanity check, not a benchmark figure: every side trains the same rows with
                    the same labels for the same steps; ftplatform groups batches by length, so
                    its batches (and loss) differ a little from the references', which share theirs.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402  (after sys.path: the bench runs as a script)
    DATA_FILE,
    DEFAULT_BASE_MODELS,
    answer_as_child,
    child_environment,
    prepare_demo_snapshot,
    run_child,
    train_on_prepared,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ftplatform.settings")

REFERENCE_VARIANTS = {"max_length": "reference (pad to max_length)",
                      "dynamic": "reference (dynamic padding)"}


def hyperparameters(steps: int) -> dict:
    """The run's hyperparameters; every key is a ftml.config.LoraConfig field."""
    return {
        "max_steps": steps,
        "batch_size": 8,
        "max_seq_length": 256,
        "lora_rank": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "learning_rate": 2e-4,
        "loraplus_lr_ratio": 1,  # plain LoRA, as the reference trains: one learning rate, the same task
        "max_eval_examples": 0,  # no validation: the bench measures training only
        "seed": 0,
    }


# --- the reference: a plain Trainer + peft script ----------------------------------------------


def reference_train(base_model_dir: Path, train_file: Path, output_dir: Path, *, padding: str, steps: int,
                    batch_size: int, max_seq_length: int, learning_rate: float, warmup_steps: int, lora_rank: int,
                    lora_alpha: int, lora_dropout: float, target_modules: list[str], logging_steps: int, seed: int,
                    threads: int) -> dict:
    """LoRA fine-tuning the way the transformers and peft docs write it, on a chat JSONL file.

    ``padding="max_length"`` pads every row to max_seq_length when tokenizing and batches them with
    default_data_collator; ``padding="dynamic"`` leaves rows unpadded and lets
    DataCollatorForSeq2Seq pad each batch to its longest row. Returns the loop's figures.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    from ftml.data import IGNORE_INDEX, tokenize_for_training

    torch.set_num_threads(threads)
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    rows = []
    with open(train_file, encoding="utf-8") as handle:
        for line in handle:
            example = tokenize_for_training(tokenizer, json.loads(line)["messages"], max_seq_length)
            if example.target_tokens == 0:
                continue  # nothing to learn once truncated (the engine skips these too)
            input_ids, labels = example.input_ids, example.labels
            attention_mask = [1] * len(input_ids)
            if padding == "max_length":
                missing = max_seq_length - len(input_ids)
                input_ids = input_ids + [tokenizer.pad_token_id] * missing
                labels = labels + [IGNORE_INDEX] * missing
                attention_mask = attention_mask + [0] * missing
            rows.append({"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask})

    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                             target_modules=target_modules, task_type="CAUSAL_LM"))
    if padding == "max_length":
        collator = default_data_collator
    else:
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)

    class LoopClock(TrainerCallback):
        """Seconds from on_train_begin to on_train_end: the training loop."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.started

    clock = LoopClock()
    args = TrainingArguments(
        output_dir=str(output_dir / "trainer"),
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        learning_rate=learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=warmup_steps,
        logging_steps=logging_steps,
        seed=seed,
        save_strategy="no",
        report_to=[],
        dataloader_pin_memory=False,
        include_num_input_tokens_seen="non_padding",  # attention_mask.sum() of every trained batch
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator, callbacks=[clock])
    output = trainer.train()
    model.save_pretrained(output_dir / "adapter")
    tokenizer.save_pretrained(output_dir / "adapter")
    return {
        "steps": int(output.global_step),
        "train_examples": len(rows),
        "train_loss": float(output.training_loss),
        "train_seconds": clock.seconds,
        "input_tokens": int(trainer.state.num_input_tokens_seen),
        "tokens_per_second": trainer.state.num_input_tokens_seen / clock.seconds,
    }


# --- child processes ---------------------------------------------------------------------------


def child_prepare(args) -> dict:
    """Database, users, import, review, snapshot, base model folder; the train split as JSONL."""
    import django

    django.setup()
    from django.conf import settings

    from curation.choices import Split
    from ftml.config import LoraConfig
    from ftml.data import tokenize_for_training
    from training.runs import snapshot_conversations

    config = LoraConfig.from_dict(hyperparameters(args.steps))
    snapshot, base_model, folder, _, tokens = prepare_demo_snapshot(
        args.data, "training-bench", config.max_seq_length, "training bench")

    # The train split exactly as training.jobs.run_training reads it.
    conversations = snapshot_conversations(snapshot, Split.TRAIN)[1]
    with open(args.scratch / "train.jsonl", "w", encoding="utf-8") as handle:
        for messages in conversations:
            handle.write(json.dumps({"messages": messages}) + "\n")
    lengths = [len(tokenize_for_training(tokens.tokenizer, messages, config.max_seq_length).input_ids)
               for messages in conversations]
    return {
        "snapshot_id": snapshot.pk,
        "snapshot_hash": snapshot.content_hash,
        "split_counts": snapshot.split_counts,
        "base_model": base_model.name,
        "base_model_id": base_model.pk,
        "base_model_dir": str(folder),
        "torch_threads": settings.TORCH_THREADS,
        "train_rows": len(conversations),
        "mean_row_tokens": sum(lengths) / len(lengths),
    }


def child_ftplatform(args) -> dict:
    """ftplatform's training job, end to end, on the prepared snapshot."""
    prepared = json.loads((args.scratch / "prepare.json").read_text())
    run, job_seconds = train_on_prepared(prepared, hyperparameters(args.steps))
    metrics = dict(run.metrics or {})
    return {
        "steps": run.step,
        "train_examples": metrics.get("train_examples"),
        "train_loss": metrics.get("train_loss"),
        "train_seconds": metrics.get("train_seconds"),
        "tokens_per_second": metrics.get("tokens_per_second"),
        "bookkeeping_seconds": metrics.get("bookkeeping_seconds"),
        "engine_wall_seconds": metrics.get("wall_seconds"),
        "trained_target_tokens": run.trained_tokens,
        "events": run.events.count(),
        "metrics": metrics,
        "job_seconds": job_seconds,
    }


def child_reference(args) -> dict:
    """reference_train() with the run's hyperparameters, on the exported train split."""
    from ftml.config import LoraConfig

    prepared = json.loads((args.scratch / "prepare.json").read_text())
    config = LoraConfig.from_dict(hyperparameters(args.steps))
    started = time.perf_counter()
    result = reference_train(
        Path(prepared["base_model_dir"]), args.scratch / "train.jsonl", args.scratch / f"reference-{args.padding}",
        padding=args.padding, steps=config.max_steps, batch_size=config.batch_size,
        max_seq_length=config.max_seq_length, learning_rate=config.learning_rate,
        warmup_steps=int(config.warmup_ratio * config.max_steps), lora_rank=config.lora_rank,
        lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules), logging_steps=config.logging_steps, seed=config.seed,
        threads=prepared["torch_threads"],
    )
    return {**result, "job_seconds": time.perf_counter() - started}


CHILDREN = {"prepare": child_prepare, "ftplatform": child_ftplatform, "reference": child_reference}


def run_training_child(role: str, args, env: dict, *extra: str) -> dict:
    """This file as a child process for ``role`` (bench.common.run_child)."""
    return run_child(__file__, role, args.scratch, env, "--steps", str(args.steps), "--data", str(args.data), *extra,
                     result_name="-".join((role, *extra[1:])))


# --- the parent: orchestration and the table ---------------------------------------------------


def summarise(name: str, result: dict, prepared: dict, batch_size: int) -> dict:
    """One column of the table: measured figures, or marked estimates where the engine has none yet."""
    steps = result["steps"]
    figures = {"side": name, "steps": steps, "estimated": False, **result}
    if result.get("tokens_per_second") is None:  # ftplatform before the engine reports it
        wall = result.get("engine_wall_seconds")
        tokens = prepared["mean_row_tokens"] * batch_size * steps
        figures["estimated"] = True
        figures["tokens_per_second"] = tokens / wall if wall else None
    seconds = result.get("train_seconds")
    figures["seconds_per_step"] = seconds / steps if seconds and steps else None
    bookkeeping = result.get("bookkeeping_seconds")
    figures["bookkeeping_share"] = bookkeeping / seconds if bookkeeping is not None and seconds else None
    return figures


def cell(value, digits=1, suffix="") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def markdown_table(columns: list[dict]) -> str:
    ftplatform = columns[0]
    rows = [
        ("tokens/s (non-padding input tokens / training-loop s)",
         lambda c: ("~" if c["estimated"] else "") + cell(c["tokens_per_second"], 0)),
        ("ftplatform / this side, tokens/s",
         lambda c: "1.00" if c is ftplatform else cell(ratio(ftplatform, c), 2)),
        ("s/step", lambda c: cell(c["seconds_per_step"], 2)),
        ("training-loop s", lambda c: cell(c.get("train_seconds"), 1)),
        ("ftplatform bookkeeping s (share of the loop)",
         lambda c: "–" if c is not ftplatform else
         f"{cell(c.get('bookkeeping_seconds'), 2)} ({cell(_percent(c['bookkeeping_share']), 1, ' %')})"),
        ("job wall s", lambda c: cell(c["job_seconds"], 1)),
        ("process wall s (end to end)", lambda c: cell(c["process_seconds"], 1)),
        ("peak RSS MiB", lambda c: cell(c["peak_rss_mib"], 0)),
        ("train loss (sanity check)", lambda c: cell(c.get("train_loss"), 4)),
    ]
    lines = ["| | " + " | ".join(c["side"] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(render(c) for c in columns) + " |" for label, render in rows]
    return "\n".join(lines)


def _percent(share):
    return None if share is None else 100 * share


def ratio(ftplatform: dict, other: dict):
    if not ftplatform.get("tokens_per_second") or not other.get("tokens_per_second"):
        return None
    return ftplatform["tokens_per_second"] / other["tokens_per_second"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="Optimiser steps of every side (default %(default)s).")
    parser.add_argument("--reference", choices=["both", *REFERENCE_VARIANTS], default="both",
                        help="Which reference variant(s) to run (default: both).")
    parser.add_argument("--data", type=Path, default=DATA_FILE, help="Chat JSONL to import (default: the E2E file).")
    parser.add_argument("--base-models", type=Path,
                        default=DEFAULT_BASE_MODELS,
                        help="Cache of dequantized base models to reuse (default: the demo's, %(default)s).")
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch folder (database, adapters).")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--padding", choices=sorted(REFERENCE_VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    if args.child:
        answer_as_child(args, CHILDREN)
        return

    command = shlex.join([".venv/bin/python", "bench/training_bench.py", *sys.argv[1:]])
    scratch_dir = tempfile.mkdtemp(prefix="training-bench-")
    args.scratch = Path(scratch_dir)
    try:
        env = child_environment(args.scratch, args.base_models)
        print(f"== preparing database, snapshot and base model in {args.scratch}", flush=True)
        prepared = run_training_child("prepare", args, env)
        (args.scratch / "prepare.json").write_text(json.dumps(prepared))
        env["FTPLATFORM_TORCH_THREADS"] = str(prepared["torch_threads"])  # the same threads for every side
        print(f"   snapshot {prepared['snapshot_hash'][:12]}… {prepared['split_counts']}, "
              f"{prepared['train_rows']} train rows, mean {prepared['mean_row_tokens']:.1f} tokens a row; "
              f"torch threads {prepared['torch_threads']}; {prepared['process_seconds']:.0f} s", flush=True)
        config = hyperparameters(args.steps)
        print("== ftplatform: start_training_run()", flush=True)
        columns = [summarise("ftplatform", run_training_child("ftplatform", args, env), prepared, config["batch_size"])]
        variants = list(REFERENCE_VARIANTS) if args.reference == "both" else [args.reference]
        for padding in variants:
            print(f"== {REFERENCE_VARIANTS[padding]}: reference_train(padding={padding!r})", flush=True)
            result = run_training_child("reference", args, env, "--padding", padding)
            columns.append(summarise(REFERENCE_VARIANTS[padding], result, prepared, config["batch_size"]))
    finally:
        if args.keep:
            print(f"kept {args.scratch}")
        else:
            import shutil

            shutil.rmtree(args.scratch, ignore_errors=True)

    ftplatform = columns[0]
    date = datetime.date.today().isoformat()
    print(f"\n```bash\n{command}\n```\n")
    print(f"{prepared['base_model']}, snapshot `{prepared['snapshot_hash'][:8]}…` ({prepared['train_rows']} train "
          f"rows), {args.steps} steps of batch {config['batch_size']}, max_seq_length {config['max_seq_length']}, "
          f"LoRA r{config['lora_rank']}/alpha {config['lora_alpha']}, {prepared['torch_threads']} torch threads, "
          f"{os.cpu_count()} CPUs, {date}:\n")
    print(markdown_table(columns))
    if ftplatform["estimated"]:
        print("\n~ estimated: the engine does not report tokens_per_second/train_seconds yet; mean tokens of a "
              "train row x batch x steps over the engine's wall_seconds (loading and saving included).")
    for column in columns[1:]:
        if ftplatform.get("train_examples") not in (None, column["train_examples"]):
            print(f"WARNING: ftplatform trained on {ftplatform['train_examples']} examples, "
                  f"{column['side']} on {column['train_examples']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": command, "date": date, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                          "python": platform.python_version()},
            "prepared": prepared, "hyperparameters": config,
            "ratios": {c["side"]: ratio(ftplatform, c) for c in columns[1:]},
            "sides": columns,
        }, indent=2, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
