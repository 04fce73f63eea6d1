"""Training recipes side by side: LoRA targets, rank, steps and learning rate against quality and wall time.

    .venv/bin/python bench/recipe_bench.py --json var/recipe_bench.json          # the recipes in RECIPES
    .venv/bin/python bench/recipe_bench.py --recipe 'demo={}' --recipe 'r32={"lora_rank": 32, "lora_alpha": 64}'

One command, one snapshot (the demo's, prepared as bench/quality_bench.py prepares it), and for every
recipe, in a fresh child process: ftplatform's training job (training.runs.start_training_run
with the demo's hyperparameters, config.management.commands.demo.py DEMO_HYPERPARAMETERS,
overridden by the recipe's), then ftplatform's eval job on the validation split and on the test split
(greedy, 64 new tokens, multi-reference BLEU and chrF as the platform computes them).

The recipe to keep is chosen on the validation split (the highest validation BLEU among the recipes
whose training fitted --budget-minutes); its test score is the one to report. Training time is the
training loop's wall time on this machine, measured in the same run as the others, so compare recipes
within one run only (this shared machine's speed varies several-fold from hour to hour).
"""
import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402  (after sys.path: the bench runs as a script)
    DATA_FILE,
    DEFAULT_BASE_MODELS,
    answer_as_child,
    child_environment,
    run_child,
    train_on_prepared,
)
from bench.quality_bench import MAX_NEW_TOKENS, child_prepare  # noqa: E402

QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The candidates: 80 steps (the demo's) on q/k/v/o and on every linear layer of the blocks
# (attention and MLP), and about 15 minutes of training on either on the 2-core development
# machine on a busy day (about 3 s a step on q/k/v/o, 3.7-4.1 s on every linear layer).
RECIPES = {
    "q/k/v/o, 80 steps": {"max_steps": 80, "target_modules": QKVO},
    "all linear layers, 80 steps (the demo)": {"max_steps": 80, "target_modules": ALL_LINEAR},
    "q/k/v/o, 240 steps": {"max_steps": 240, "target_modules": QKVO},
    "all linear layers, 200 steps": {"max_steps": 200, "target_modules": ALL_LINEAR},
}


def child_train(args) -> dict:
    import django

    django.setup()
    from config.management.commands.demo import DEMO_HYPERPARAMETERS

    prepared = json.loads((args.scratch / "prepare.json").read_text())
    hyperparameters = {**DEMO_HYPERPARAMETERS, "checkpoint_steps": 0, **json.loads(args.hyperparameters)}
    run, job_seconds = train_on_prepared(prepared, hyperparameters)
    metrics = run.metrics
    return {"training_run_id": run.pk, "steps": run.step, "hyperparameters": run.hyperparameters,
            "train_loss": metrics.get("train_loss"), "eval_loss": metrics.get("eval_loss"),
            "train_seconds": metrics.get("train_seconds"), "tokens_per_second": metrics.get("tokens_per_second"),
            "job_seconds": job_seconds}


def child_evaluate(args) -> dict:
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from curation.models import Snapshot
    from evaluation.services import start_eval_run
    from training.models import TrainingRun

    prepared = json.loads((args.scratch / "prepare.json").read_text())
    run = TrainingRun.objects.get(pk=json.loads(args.train_result.read_text())["training_run_id"])
    snapshot = Snapshot.objects.get(pk=prepared["snapshot_id"])
    engineer = get_user_model().objects.get(username="demo-engineer")
    scores = {}
    for split in ("validation", "test"):
        evaluation = start_eval_run(run.model_version, snapshot, by=engineer, split=split,
                                    generation={"max_new_tokens": MAX_NEW_TOKENS})
        evaluation.refresh_from_db()
        if evaluation.status != "succeeded":
            raise SystemExit(f"eval run {evaluation.pk} {evaluation.status}: {evaluation.error}")
        scores[split] = {"bleu": evaluation.metrics["bleu"], "chrf": evaluation.metrics["chrf"]}
    return scores


CHILDREN = {"prepare": child_prepare, "train": child_train, "evaluate": child_evaluate}


def parse_recipe(text: str) -> tuple[str, dict]:
    name, _, hyperparameters = text.partition("=")
    try:
        value = json.loads(hyperparameters)
    except ValueError:
        value = None
    if not name or not isinstance(value, dict):
        raise ValueError(f"{text!r}: expected NAME=JSON object")
    return name, value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", action="append", default=[], metavar="NAME=JSON",
                        help="A recipe: a name and hyperparameters over the demo's (repeat; default: RECIPES).")
    parser.add_argument("--budget-minutes", type=float, default=15.0,
                        help="Training time a recipe may take to be chosen (default %(default)s).")
    parser.add_argument("--data", type=Path, default=DATA_FILE, help="Chat JSONL to import (default: the E2E file).")
    parser.add_argument("--base-models", type=Path, default=DEFAULT_BASE_MODELS,
                        help="Cache of dequantized base models to reuse (default %(default)s).")
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hyperparameters", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--train-result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        answer_as_child(args, CHILDREN)
        return
    try:
        recipes = dict(parse_recipe(text) for text in args.recipe) if args.recipe else RECIPES
    except ValueError as exc:
        parser.error(f"--recipe: {exc}")

    command = shlex.join([".venv/bin/python", "bench/recipe_bench.py", *sys.argv[1:]])
    load_before = os.getloadavg()[0]
    scratch = Path(tempfile.mkdtemp(prefix="recipe-bench-"))
    env = child_environment(scratch, args.base_models)
    common = ("--data", str(args.data))
    print(f"== preparing database, snapshot and base model in {scratch}", flush=True)
    prepared = run_child(__file__, "prepare", scratch, env, *common, result_name="prepare")
    (scratch / "prepare.json").write_text(json.dumps(prepared))
    env["FTPLATFORM_TORCH_THREADS"] = str(prepared["torch_threads"])
    rows = {}
    try:
        for index, (name, hyperparameters) in enumerate(recipes.items()):
            print(f"== {name}: training {json.dumps(hyperparameters)}", flush=True)
            trained = run_child(__file__, "train", scratch, env, *common, "--hyperparameters",
                                json.dumps(hyperparameters), result_name=f"train-{index}")
            print(f"== {name}: validation and test through the eval job", flush=True)
            scores = run_child(__file__, "evaluate", scratch, env, *common, "--train-result",
                               str(scratch / f"train-{index}.json"), result_name=f"evaluate-{index}")
            rows[name] = {"recipe": hyperparameters, **trained, **scores}
            print(f"   {trained['steps']} steps in {trained['train_seconds']:.0f} s; BLEU validation "
                  f"{scores['validation']['bleu']:.2f}, test {scores['test']['bleu']:.2f}", flush=True)
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)

    budget = args.budget_minutes * 60
    fitting = [name for name, row in rows.items() if row["train_seconds"] <= budget]
    chosen = max(fitting, key=lambda name: rows[name]["validation"]["bleu"]) if fitting else None
    print(f"\n```bash\n{command}\n```\n")
    print(f"{prepared['base_model']}, snapshot `{prepared['snapshot_hash'][:8]}…` {prepared['split_counts']}, "
          f"{prepared['torch_threads']} torch threads, {os.cpu_count()} CPUs, {datetime.date.today().isoformat()}; "
          f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}:\n")
    print("| recipe | steps | training s | s/step | train loss | validation BLEU | validation chrF | test BLEU "
          "| test chrF |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        mark = " (chosen)" if name == chosen else ("" if name in fitting else " (over budget)")
        seconds = row["train_seconds"]
        print(f"| {name}{mark} | {row['steps']} | {seconds:.0f} | {seconds / row['steps']:.2f} "
              f"| {row['train_loss']:.3f} | {row['validation']['bleu']:.2f} | {row['validation']['chrf']:.2f} "
              f"| {row['test']['bleu']:.2f} | {row['test']['chrf']:.2f} |")
    print(f"\nchosen on validation BLEU among recipes within {args.budget_minutes:g} min of training: {chosen}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, "prepared": prepared, "rows": rows, "chosen": chosen,
                                         "budget_minutes": args.budget_minutes}, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
