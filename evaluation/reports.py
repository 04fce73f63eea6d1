"""The model report: lineage plus metrics side by side with the prompted base model."""
from ftml.metrics import metric_spec
from ftplatform.jobrows import JobStatus
from training.choices import ModelVersionKind
from training.models import ModelVersion

from .costs import UNKNOWN_COST, training_cost
from .decision import eval_run_cost_per_1k, leaderboard, pricing_of, rating_summary
from .models import EvalRun
from .scoring import primary_metric, snapshot_metrics

LATENCY_METRICS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")


def _lineage(version: ModelVersion) -> dict:
    base = version.base_model
    lineage = {
        "model_version": {"id": version.pk, "name": version.name, "kind": version.kind},
        "base_model": {"id": base.pk, "name": base.name, "source": base.source, "gguf_file": base.gguf_file,
                       "licence": base.licence, "parameter_count": base.parameter_count},
        "system_prompt": version.system_prompt,
        "few_shot": version.few_shot,
    }
    run = version.training_run
    if run is not None:
        lineage["training_run"] = {
            "id": run.pk,
            "snapshot_id": run.snapshot_id,
            "snapshot_hash": run.snapshot.content_hash,
            "hyperparameters": run.hyperparameters,
            "seed": run.seed,
            "system_prompt": run.system_prompt,
            "prompt_prefix": run.prompt_prefix,
            "metrics": run.metrics,
            "trained_tokens": run.trained_tokens,
            "environment": run.environment,
            "training_cost": training_cost(pricing_of(version), (run.metrics or {}).get("wall_seconds")),
        }
    return lineage


def _latest_baseline_eval(version: ModelVersion, eval_run: EvalRun):
    """The newest succeeded eval of a prompted version of the same base model on the same snapshot split."""
    return (
        EvalRun.objects.filter(
            model_version__kind=ModelVersionKind.PROMPTED_BASE,
            model_version__base_model=version.base_model,
            snapshot=eval_run.snapshot,
            split=eval_run.split,
            status=JobStatus.SUCCEEDED,
        )
        .exclude(model_version=version)
        .order_by("-finished_at", "-id")
        .first()
    )


def _number(value) -> bool:
    """A metric both sides recorded as a number (older runs lack some, or stored null)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def model_version_report(version: ModelVersion) -> dict:
    """Lineage and, per snapshot split it was evaluated on, its metrics beside the prompted base model's.

    Returns a JSON-ready dict: ``lineage`` and ``evaluations``, a list of
    ``{snapshot_id, snapshot_hash, split, eval_run_id, primary_metric, metric_names (the metrics
    the snapshot scores, evaluation.scoring.snapshot_metrics), metrics, baseline: {...} | None,
    difference: {metric: model - baseline}, human_ratings, cost_per_1k_requests}``; a fine-tuned
    version's ``lineage.training_run`` carries its ``training_cost`` (None without a GPU-hour price),
    the ``system_prompt`` it trained with (None: not recorded) and its rendered ``prompt_prefix``.
    Only the newest succeeded eval per snapshot split counts.
    """
    evaluations, seen = [], set()
    runs = (EvalRun.objects.filter(model_version=version, status=JobStatus.SUCCEEDED)
            .select_related("snapshot").order_by("-finished_at", "-id"))
    for eval_run in runs:
        key = (eval_run.snapshot_id, eval_run.split)
        if key in seen:
            continue
        seen.add(key)
        entry = {
            "snapshot_id": eval_run.snapshot_id,
            "snapshot_hash": eval_run.snapshot.content_hash,
            "split": eval_run.split,
            "eval_run_id": eval_run.pk,
            "primary_metric": primary_metric(eval_run.snapshot),
            "metric_names": snapshot_metrics(eval_run.snapshot),
            "metrics": eval_run.metrics,
            "signatures": eval_run.signatures,
            "baseline": None,
            "difference": {},
            "human_ratings": rating_summary(eval_run),
            "cost_per_1k_requests": eval_run_cost_per_1k(eval_run),
        }
        baseline = _latest_baseline_eval(version, eval_run)
        if baseline is not None:
            entry["baseline"] = {"model_version_id": baseline.model_version_id,
                                 "model_version": baseline.model_version.name,
                                 "eval_run_id": baseline.pk, "metrics": baseline.metrics}
            entry["difference"] = {
                name: eval_run.metrics[name] - baseline.metrics[name]
                for name in (*entry["metric_names"], *LATENCY_METRICS)
                if _number(eval_run.metrics.get(name)) and _number(baseline.metrics.get(name))
            }
        evaluations.append(entry)
    report = {"lineage": _lineage(version), "evaluations": evaluations}
    if version.training_run is not None:
        board = leaderboard(version.training_run.snapshot.dataset)
        report["leaderboard"] = {"judgments": board["judgments"],
                                 "position": next((r for r in board["ratings"] if r["item"] == version.pk), None)}
    return report


def format_report(report: dict) -> str:
    """A plain-text table of a model_version_report, for the terminal."""
    lineage = report["lineage"]
    lines = [f"Model report: {lineage['model_version']['name']}",
             f"  base model: {lineage['base_model']['name']}"]
    run = lineage.get("training_run")
    if run:
        hp = run["hyperparameters"]
        lines += [
            f"  trained on snapshot {run['snapshot_hash']} (id {run['snapshot_id']}), seed {run['seed']}",
            f"  LoRA rank {hp['lora_rank']}, alpha {hp['lora_alpha']}, lr {hp['learning_rate']}, "
            f"batch {hp['batch_size']}x{hp['gradient_accumulation_steps']}, max steps {hp['max_steps'] or 'epochs'}, "
            f"mean train loss {run['metrics'].get('train_loss', float('nan')):.4f}",
            "  system prompt: " + ("not recorded" if run["system_prompt"] is None else repr(run["system_prompt"])),
        ]
        if run["prompt_prefix"]:
            lines.append(f"  rendered before the user's text: {run['prompt_prefix']!r}")
    for entry in report["evaluations"]:
        metrics = entry["metrics"]
        baseline = entry["baseline"]
        lines += ["", f"  snapshot {entry['snapshot_hash']} [{entry['split']}], "
                      f"{metrics.get('n_inputs')} inputs, {metrics.get('n_references')} references"]
        if baseline:
            lines.append(f"    prompted base: {baseline['model_version']} (eval {baseline['eval_run_id']})")
        header = f"    {'metric':<24}{'fine-tuned' if run else 'this model':>12}"
        if baseline:
            header += f"{'prompted base':>15}{'difference':>12}"
        lines.append(header)
        for name in (*entry["metric_names"], *LATENCY_METRICS):
            if not _number(metrics.get(name)):
                continue
            label = metric_spec(name).label if name in entry["metric_names"] else name
            label += " *" if name == entry["primary_metric"] else ""
            row = f"    {label:<24}{metrics[name]:>12.2f}"
            if name in entry["difference"]:
                row += f"{baseline['metrics'][name]:>15.2f}{entry['difference'][name]:>+12.2f}"
            lines.append(row)
        lines.append("    * the snapshot's primary metric")
        cost = entry.get("cost_per_1k_requests")
        lines.append(f"    cost per 1,000 requests: {UNKNOWN_COST if cost is None else f'{cost:.4g}'}")
        lines += [f"    {metric_spec(name).label} signature: {signature}"
                  for name, signature in (entry["signatures"] or {}).items()]
        if baseline:
            delta = entry["difference"].get(entry["primary_metric"])
            if delta is not None:
                lines.append(f"  {metric_spec(entry['primary_metric']).label} difference from the prompted base model: "
                             f"{delta:+.2f} (its interval, test and verdict: `manage.py report --decision <dataset>`)")
        elif run:
            lines.append(f"  No prompted-base evaluation on this snapshot split yet: run `manage.py evaluate "
                         f"--prompted-base --snapshot {entry['snapshot_id']} --split {entry['split']} --as USER`.")
    if not report["evaluations"]:
        lines.append("  (no succeeded evaluations yet)")
    return "\n".join(lines)
