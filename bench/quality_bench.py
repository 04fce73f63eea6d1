"""Training quality: ftplatform's training job against a plain PyTorch loop, same snapshot, same steps, several seeds.

    .venv/bin/python bench/quality_bench.py --steps 80 --seeds 0,1,2 --json var/quality_bench.json
    .venv/bin/python bench/quality_bench.py --steps 2 --seeds 0        # smoke run: does everything work?

One command, one snapshot (the demo's: examples/e2e_nlg.chat.jsonl imported, approved and
snapshotted with seed 0 in a throwaway SQLite database, in-process jobs), one base model
(SmolLM2-135M-Instruct), and for every seed, each in a fresh child process:

  plain loop   plain_train() below, about 60 lines written here and not imported from the engine:
               the train split tokenized with the chat template (prompt tokens labelled -100, the
               answer and its final end-of-turn token labelled), random batches of shuffled rows
               padded to their longest row, torch.optim.AdamW at a constant learning rate, no
               scheduler, no gradient clipping, no weight decay.
  ftplatform   training.runs.start_training_run() on the snapshot: the whole job as the demo
               runs it, with ftplatform's defaults for everything the shared settings leave open
               (learning-rate schedule, warmup, sampling, clipping, LoRA+ ratio).
  evaluation   both adapters registered as model versions and scored by ftplatform's own eval job
               (evaluation.services.start_eval_run) on the snapshot's test split: greedy, 64 new
               tokens, batch 1, multi-reference BLEU as the platform computes it.

Both sides share SHARED (LoRA rank/alpha/dropout/targets, learning rate, batch size,
max_seq_length), the steps and the seed; --platform-hyperparameters overrides the platform's
side only (e.g. '{"learning_rate": "auto"}' to check what "auto" resolves to).

What it prints: BLEU on the test split per seed and side; the mean over seeds of the difference
(ftplatform - plain) with a 95 % paired-bootstrap interval over the test inputs (Koehn 2004: the
same resampled inputs for every seed and both sides, corpus BLEU recomputed from sacrebleu's
sufficient statistics, ftml.stats.paired_bootstrap); the training loop's tokens/s
(non-padding input tokens / seconds from the first to the last optimiser step) and wall seconds of
both. Seeds vary the LoRA initialisation, the batch order and dropout; on 21 test inputs one
seed's BLEU moves by several points, so a difference means little below three seeds.
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

# The settings both sides share (the measurement: LoRA on q/k/v/o, lr 1e-3, as the demo trained then).
SHARED = {
    "lora_rank": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "learning_rate": 1e-3,
    "batch_size": 8,
    "max_seq_length": 160,
}
MAX_NEW_TOKENS = 64


def platform_hyperparameters(args) -> dict:
    return {**SHARED, "max_steps": args.steps, "seed": args.seed, "max_eval_examples": 0, "checkpoint_steps": 0,
            **json.loads(args.platform_hyperparameters)}


# --- the plain loop --------------------------------------------------------------------------


def plain_train(base_model_dir: Path, conversations: list[list[dict]], output_dir: Path, *, steps: int, seed: int,
                threads: int) -> dict:
    """LoRA fine-tuning in a plain PyTorch loop: what a careful engineer writes in an afternoon."""
    import random

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []
    for messages in conversations:
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        answer = full[len(prompt): full.rfind(tokenizer.eos_token) + len(tokenizer.eos_token)]  # ends with EOS
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        cut = SHARED["max_seq_length"]
        rows.append(((prompt_ids + answer_ids)[:cut], ([-100] * len(prompt_ids) + answer_ids)[:cut]))

    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(
        r=SHARED["lora_rank"], lora_alpha=SHARED["lora_alpha"], lora_dropout=SHARED["lora_dropout"],
        target_modules=SHARED["target_modules"], task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=SHARED["learning_rate"], weight_decay=0.0)
    model.train()
    shuffler, queue, losses, tokens = random.Random(seed), [], [], 0
    batch_size = SHARED["batch_size"]
    started = time.perf_counter()
    for _ in range(steps):
        if len(queue) < batch_size:  # a new epoch: reshuffle
            order = list(range(len(rows)))
            shuffler.shuffle(order)
            queue += order
        batch, queue = [rows[i] for i in queue[:batch_size]], queue[batch_size:]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in batch])
        labels = torch.tensor([labels + [-100] * (width - len(labels)) for _, labels in batch])
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        tokens += int(attention.sum())
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    seconds = time.perf_counter() - started
    model.save_pretrained(output_dir / "adapter")
    tokenizer.save_pretrained(output_dir / "adapter")
    return {"steps": steps, "train_loss": sum(losses) / len(losses), "train_seconds": seconds,
            "tokens_per_second": tokens / seconds, "adapter_dir": str(output_dir / "adapter")}


# --- child processes ---------------------------------------------------------------------------


def child_prepare(args) -> dict:
    """Database, users, import, review, snapshot, base model folder; the train split as the job reads it."""
    import django

    django.setup()
    from django.conf import settings

    from curation.choices import Split
    from training.runs import snapshot_conversations

    snapshot, base_model, folder, _, _ = prepare_demo_snapshot(args.data, "quality-bench", SHARED["max_seq_length"],
                                                               "quality bench")
    train = snapshot_conversations(snapshot, Split.TRAIN)[1]  # as training.jobs.run_training reads it
    (args.scratch / "train.json").write_text(json.dumps(train))
    return {"snapshot_id": snapshot.pk, "snapshot_hash": snapshot.content_hash, "split_counts": snapshot.split_counts,
            "base_model": base_model.name, "base_model_id": base_model.pk, "base_model_dir": str(folder),
            "torch_threads": settings.TORCH_THREADS, "train_rows": len(train)}


def child_plain(args) -> dict:
    prepared = json.loads((args.scratch / "prepare.json").read_text())
    conversations = json.loads((args.scratch / "train.json").read_text())
    started = time.perf_counter()
    result = plain_train(Path(prepared["base_model_dir"]), conversations, args.scratch / f"plain-{args.seed}",
                         steps=args.steps, seed=args.seed, threads=prepared["torch_threads"])
    return {**result, "job_seconds": time.perf_counter() - started}


def child_platform(args) -> dict:
    prepared = json.loads((args.scratch / "prepare.json").read_text())
    run, job_seconds = train_on_prepared(prepared, platform_hyperparameters(args))
    metrics = run.metrics
    return {"steps": run.step, "train_loss": metrics.get("train_loss"), "train_seconds": metrics.get("train_seconds"),
            "tokens_per_second": metrics.get("tokens_per_second"),
            "hyperparameters": run.hyperparameters, "training_run_id": run.pk,
            "job_seconds": job_seconds}


def child_evaluate(args) -> dict:
    """Both adapters of a seed through ftplatform's eval job on the test split; per-input outputs."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from curation.models import Snapshot
    from evaluation.scoring import scoring_options
    from evaluation.services import start_eval_run
    from training.choices import ModelVersionKind
    from training.models import BaseModel, ModelVersion, TrainingRun

    prepared = json.loads((args.scratch / "prepare.json").read_text())
    plain = json.loads(args.plain_result.read_text())
    platform_run = TrainingRun.objects.get(pk=json.loads(args.platform_result.read_text())["training_run_id"])
    snapshot = Snapshot.objects.get(pk=prepared["snapshot_id"])
    engineer = get_user_model().objects.get(username="demo-engineer")
    plain_version = ModelVersion.objects.create(  # an adapter trained outside the platform, scored inside it
        name=f"plain loop, seed {args.seed}", kind=ModelVersionKind.LORA_ADAPTER,
        base_model=BaseModel.objects.get(pk=prepared["base_model_id"]), adapter_path=plain["adapter_dir"],
        system_prompt=platform_run.model_version.system_prompt)
    outputs = {}
    for side, version in (("plain", plain_version), ("ftplatform", platform_run.model_version)):
        run = start_eval_run(version, snapshot, by=engineer, generation={"max_new_tokens": MAX_NEW_TOKENS})
        run.refresh_from_db()
        if run.status != "succeeded":
            raise SystemExit(f"eval run {run.pk} {run.status}: {run.error}")
        outputs[side] = {"bleu": run.metrics["bleu"], "language": scoring_options(snapshot)["language"],
                         "predictions": list(run.predictions.order_by("input_hash").values(
                             "input_hash", "output", "references"))}
    return outputs


CHILDREN = {"prepare": child_prepare, "plain": child_plain, "platform": child_platform, "evaluate": child_evaluate}


# --- the parent: statistics and the table ------------------------------------------------------


def seed_averaged_difference(evaluations: list[dict]) -> dict:
    """Mean over seeds of corpus BLEU (ftplatform - plain), with a 95 % paired-bootstrap interval
    over the test inputs: every resample draws the same inputs for all seeds and both sides, and
    each seed's corpus BLEU is recomputed from its sufficient statistics (ftml.metrics.
    corpus_statistics), so the interval carries the input sampling noise of the seed-averaged score."""
    import numpy as np

    from ftml.metrics import corpus_statistics
    from ftml.stats import paired_bootstrap

    stats, width, corpus_fn = {"plain": [], "ftplatform": []}, None, None
    for evaluation in evaluations:
        hashes = [p["input_hash"] for p in evaluation["plain"]["predictions"]]
        assert hashes == [p["input_hash"] for p in evaluation["ftplatform"]["predictions"]], "different inputs"
        for side in stats:
            predictions = evaluation[side]["predictions"]
            statistics = corpus_statistics([p["output"] for p in predictions], [p["references"] for p in predictions],
                                           "bleu", evaluation[side]["language"])
            stats[side].append(statistics.stats)
            width, corpus_fn = statistics.stats.shape[1], statistics.corpus_fn

    def mean_over_seeds(rows: np.ndarray) -> float:
        return float(np.mean([corpus_fn(rows[:, i * width:(i + 1) * width]) for i in range(len(evaluations))]))

    return paired_bootstrap(np.hstack(stats["plain"]), np.hstack(stats["ftplatform"]), mean_over_seeds,
                            resamples=10_000, seed=0)


def markdown_table(seeds: list[int], rows: dict) -> str:
    lines = ["| seed | plain loop BLEU | ftplatform BLEU | difference | plain tokens/s | ftplatform tokens/s "
             "| plain loop s | ftplatform loop s |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for seed in seeds:
        plain, ours = rows[seed]["plain"], rows[seed]["ftplatform"]
        lines.append(f"| {seed} | {plain['bleu']:.2f} | {ours['bleu']:.2f} | {ours['bleu'] - plain['bleu']:+.2f} | "
                     f"{plain['tokens_per_second']:.0f} | {ours['tokens_per_second']:.0f} | "
                     f"{plain['train_seconds']:.1f} | {ours['train_seconds']:.1f} |")
    mean = {side: {key: sum(rows[s][side][key] for s in seeds) / len(seeds)
                   for key in ("bleu", "tokens_per_second", "train_seconds")} for side in ("plain", "ftplatform")}
    lines.append(f"| **mean** | **{mean['plain']['bleu']:.2f}** | **{mean['ftplatform']['bleu']:.2f}** | "
                 f"**{mean['ftplatform']['bleu'] - mean['plain']['bleu']:+.2f}** | "
                 f"{mean['plain']['tokens_per_second']:.0f} | {mean['ftplatform']['tokens_per_second']:.0f} | "
                 f"{mean['plain']['train_seconds']:.1f} | {mean['ftplatform']['train_seconds']:.1f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=80, help="Optimiser steps of both sides (default %(default)s).")
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds (default %(default)s).")
    parser.add_argument("--platform-hyperparameters", default="{}",
                        help="JSON overriding ftplatform's side only (e.g. '{\"learning_rate\": \"auto\"}').")
    parser.add_argument("--data", type=Path, default=DATA_FILE, help="Chat JSONL to import (default: the E2E file).")
    parser.add_argument("--base-models", type=Path, default=DEFAULT_BASE_MODELS,
                        help="Cache of dequantized base models to reuse (default %(default)s).")
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch folder (database, adapters).")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--plain-result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--platform-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    try:
        seeds = [int(seed) for seed in args.seeds.split(",")]
        json.loads(args.platform_hyperparameters)
    except ValueError as exc:
        parser.error(f"--seeds must be integers separated by commas and --platform-hyperparameters JSON: {exc}")

    if args.child:
        answer_as_child(args, CHILDREN)
        return

    command = shlex.join([".venv/bin/python", "bench/quality_bench.py", *sys.argv[1:]])
    load_before = os.getloadavg()[0]
    scratch = Path(tempfile.mkdtemp(prefix="quality-bench-"))
    common = ("--steps", str(args.steps), "--data", str(args.data),
              "--platform-hyperparameters", args.platform_hyperparameters)

    def child(role: str, seed: int | None = None, *extra: str) -> dict:
        name = role if seed is None else f"{role}-{seed}"
        seeded = () if seed is None else ("--seed", str(seed))
        return run_child(__file__, role, scratch, env, *common, *seeded, *extra, result_name=name)

    rows = {}
    try:
        env = child_environment(scratch, args.base_models)
        print(f"== preparing database, snapshot and base model in {scratch}", flush=True)
        prepared = child("prepare")
        (scratch / "prepare.json").write_text(json.dumps(prepared))
        env["FTPLATFORM_TORCH_THREADS"] = str(prepared["torch_threads"])  # the same threads for both sides
        print(f"   snapshot {prepared['snapshot_hash'][:12]}… {prepared['split_counts']}; "
              f"torch threads {prepared['torch_threads']}", flush=True)
        for seed in seeds:
            print(f"== seed {seed}: plain loop", flush=True)
            plain = child("plain", seed)
            print(f"== seed {seed}: ftplatform training job", flush=True)
            ours = child("platform", seed)
            print(f"== seed {seed}: both through the eval job", flush=True)
            evaluation = child("evaluate", seed, "--plain-result", str(scratch / f"plain-{seed}.json"),
                               "--platform-result", str(scratch / f"platform-{seed}.json"))
            rows[seed] = {"plain": {**plain, **evaluation["plain"]}, "ftplatform": {**ours, **evaluation["ftplatform"]}}
            print(f"   BLEU plain {evaluation['plain']['bleu']:.2f}, ftplatform {evaluation['ftplatform']['bleu']:.2f}",
                  flush=True)
        difference = seed_averaged_difference([rows[seed] for seed in seeds])
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)

    date = datetime.date.today().isoformat()
    resolved = rows[seeds[0]]["ftplatform"]["hyperparameters"]
    print(f"\n```bash\n{command}\n```\n")
    print(f"{prepared['base_model']}, snapshot `{prepared['snapshot_hash'][:8]}…` "
          f"({prepared['train_rows']} train rows, test split {prepared['split_counts'].get('test')} examples), "
          f"{args.steps} steps, shared settings "
          f"{json.dumps(SHARED)}; ftplatform's run resolved to learning rate {resolved['learning_rate']}, "
          f"schedule {resolved.get('lr_scheduler')}, warmup {resolved.get('warmup_ratio')}, "
          f"sampling {'length-grouped' if resolved.get('group_by_length') else 'random'}, "
          f"LoRA+ ratio {resolved.get('loraplus_lr_ratio', 1)}; "
          f"{prepared['torch_threads']} torch threads, {os.cpu_count()} CPUs, {date}; load average before "
          f"{load_before:.2f}, after {os.getloadavg()[0]:.2f}:\n")
    print(markdown_table(seeds, rows))
    print(f"\nftplatform - plain loop, BLEU averaged over {len(seeds)} seed(s): {difference['difference']:+.2f} "
          f"(95 % paired-bootstrap interval over the {difference['n']} test inputs {difference['ci_low']:+.2f} to "
          f"{difference['ci_high']:+.2f}, p = {difference['p_value']:.3f}, {difference['resamples']:,} resamples)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": command, "date": date, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                          "python": platform.python_version()},
            "prepared": prepared, "shared": SHARED, "seeds": seeds, "difference": difference,
            "rows": {seed: {side: {k: v for k, v in figures.items() if k != "predictions"}
                            for side, figures in row.items()} for seed, row in rows.items()},
            "outputs": {seed: {side: figures["predictions"] for side, figures in row.items()}
                        for seed, row in rows.items()},
        }, indent=2, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
