"""RQ entry point for evaluation: generate for each distinct input of a split, then score."""
import logging
import math
import re
from pathlib import Path

from django.db import transaction
from tqdm import tqdm

from curation import workflow
from curation.formats import input_messages, prompt_messages
from curation.models import Example
from curation.selectors import split_inputs
from ftml.metrics import latency_percentiles, metric_spec, score_corpus, token_throughput
from ftplatform import jobrows, liveness, tracking
from ftplatform.jobrows import JobStatus
from training.base_models import materialized_base_model_folder, record_base_model_info
from training.choices import ModelVersionKind
from training.jobs import MLFLOW_RUN_ID, prepare_torch

from .models import EvalRun, PreannotationRun, Prediction
from .scoring import scoring_options

logger = logging.getLogger(__name__)


def _generator(version, max_new_tokens: int, batch_size: int = 1):
    """``(generate(prompts) -> iterator of Generation, environment)`` for a model version: the local
    model (base + adapter, greedy; batch size 1 for honest latency, else batched with the KV cache
    and amortised latencies) or its OpenAI-compatible endpoint (one request per input)."""
    if version.kind == ModelVersionKind.OPENAI_COMPATIBLE:
        from .backends import OpenAICompatibleBackend

        backend = OpenAICompatibleBackend(version.base_url, version.remote_model, version.api_key_env or None)
        backend.check()  # the worker's environment must hold the key: fail before generating anything
        environment = {"backend": "openai_compatible", "base_url": version.base_url, "model": version.remote_model,
                       "request": backend.request_options}

        def generate_remote(prompts):
            yield from backend.generate(prompts, max_new_tokens=max_new_tokens)
            environment["request"] = backend.request_options  # after any adaptation to the server

        return generate_remote, environment
    import torch

    from ftml.inference import generate_batched, generate_greedy, load_for_inference

    prepare_torch()
    folder = materialized_base_model_folder(version.base_model)
    record_base_model_info(version.base_model, folder)
    model, tokenizer = load_for_inference(folder, Path(version.adapter_path) if version.adapter_path else None)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    environment = {"backend": "local", "device": device, "torch_threads": torch.get_num_threads(),
                   "batch_size": batch_size, "warmup": "one untimed 8-token answer to the first input"}

    def generate_local(prompts):
        # The first forward passes allocate and tune kernels: seconds on a CPU, which would land in
        # the first requests' latency (and p95/p99 of a small split) without this warm-up.
        if prompts:
            list(generate_greedy(model, tokenizer, prompts[:1], min(8, max_new_tokens)))
        if batch_size > 1:
            yield from generate_batched(model, tokenizer, prompts, batch_size=batch_size,
                                        max_new_tokens=max_new_tokens)
        else:
            yield from generate_greedy(model, tokenizer, prompts, max_new_tokens)

    return generate_local, environment


# What no text column holds: NUL (PostgreSQL refuses it) and unpaired surrogates (not UTF-8; a server's
# JSON may carry "\ud800", a byte-level tokenizer may decode a 0x00 byte).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` with NUL characters and unpaired surrogates replaced by U+FFFD, so that the output
    scored is the output stored."""
    return _UNSTORABLE.sub("\ufffd", text)


def run_evaluation(eval_run_id: int) -> None:
    """Generate and score EvalRun ``eval_run_id``; the row records the outcome.

    While it runs, a heartbeat (ftplatform.liveness) shows the worker is alive; a run whose
    heartbeat stops is failed as worker lost by evaluation.services.reap_lost_eval_runs. The job
    ends its row only while it is still running, so a reaped run is never overwritten, and it
    stops generating once it sees its row ended.
    """
    run = jobrows.claim(EvalRun, eval_run_id, select_related=("model_version__base_model", "snapshot"))
    if run is None:
        return
    heartbeat = liveness.start_heartbeat(run)
    mine = {"status": JobStatus.RUNNING}  # what another process (the reaper) decided meanwhile stands
    try:
        version = run.model_version
        inputs = split_inputs(run.snapshot, run.split)
        EvalRun.objects.filter(pk=run.pk).update(total=len(inputs))
        prompts = [prompt_messages(entry["input_messages"], version.system_prompt, version.few_shot)
                   for entry in inputs]
        generate, environment = _generator(version, run.generation["max_new_tokens"],
                                           run.generation.get("batch_size", 1))
        EvalRun.objects.filter(pk=run.pk).update(environment=environment)
        generations = []
        check_cancel = jobrows.CancelCheck(run)
        progress = tqdm(generate(prompts), total=len(prompts), desc=f"eval {run.pk}: generating", unit="input")
        for done, generation in enumerate(progress, start=1):
            check_cancel()
            generations.append(generation)
            if not EvalRun.objects.filter(pk=run.pk, **mine).update(done=done):
                logger.warning("eval run %s: stopped, its row was ended by another process", run.pk)
                return
        outputs = [storable_text(g.text) for g in generations]
        scores = score_corpus(outputs, [entry["references"] for entry in inputs], **scoring_options(run.snapshot))
        finish_evaluation(run, inputs, generations, outputs, scores, mine, environment)
    except jobrows.JobCancelled:
        jobrows.finish(run, JobStatus.CANCELLED, where=mine, error="cancelled; no predictions were kept")
    except Exception as exc:
        logger.exception("eval run %s failed", run.pk)
        jobrows.fail(run, exc, where=mine)
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop()


def finish_evaluation(run: EvalRun, inputs: list[dict], generations: list, outputs: list[str], scores,
                      where: dict, environment: dict) -> None:
    """Record the metrics, predictions and final environment (a remote backend's request options
    are known only after generating) of a generated and scored run and end it succeeded (one
    transaction), if the row still matches ``where`` (still running: not failed by the reaper)."""
    metrics = {
        "n_inputs": len(inputs),
        "n_references": sum(len(entry["references"]) for entry in inputs),
        **{name: value["score"] for name, value in scores.corpus.items()},
        "confidence_intervals": {name: {"ci_low": value["ci_low"], "ci_high": value["ci_high"]}
                                 for name, value in scores.corpus.items()},
        "bootstrap": scores.bootstrap,
        **latency_percentiles([g.latency_ms for g in generations]),
        **token_throughput([g.output_tokens for g in generations], [g.latency_ms for g in generations]),
        "mean_input_tokens": sum(g.prompt_tokens for g in generations) / len(generations),
        "mean_output_tokens": sum(g.output_tokens for g in generations) / len(generations),
    }
    with transaction.atomic():
        ended = jobrows.finish(
            run, JobStatus.SUCCEEDED, where=where, metrics=metrics, environment=environment,
            signatures={name: value["signature"] for name, value in scores.corpus.items()
                        if metric_spec(name).aggregation == "corpus"},
        )
        if not ended:  # the row lock taken by finish() keeps the reaper out until this commits
            logger.warning("eval run %s: generated and scored, but its row was ended meanwhile; "
                           "no predictions recorded", run.pk)
            return
        Prediction.objects.bulk_create([
            Prediction(eval_run=run, input_hash=entry["input_hash"], input_messages=entry["input_messages"],
                       references=entry["references"], output=text, latency_ms=g.latency_ms,
                       prompt_tokens=g.prompt_tokens, output_tokens=g.output_tokens, mean_logprob=g.mean_logprob,
                       scores=example_scores)
            for entry, g, text, example_scores in zip(inputs, generations, outputs, scores.per_example, strict=True)
        ])
    track_evaluation(run, metrics, environment)


def track_evaluation(run: EvalRun, metrics: dict, environment: dict) -> None:
    """Log a succeeded evaluation's metrics into the MLflow run of the training run that made its
    model version (when MLFLOW_TRACKING_URI is set and that run was tracked), named by split:
    ``test_bleu``, ``test_chrf``, ``test_bleu_ci_low``, ``test_latency_p95_ms``, ... at the training
    run's last step, with the tag ``ftplatform.<split>_eval_run_id``. The training run's own MLflow run,
    not a child run: its test scores then sit in one row with its hyperparameters, where MLflow
    compares runs. The run's environment records the MLflow run id, or the warning when MLflow
    failed; tracking never fails the evaluation."""
    training_run = run.model_version.training_run
    mlflow_run_id = training_run.environment.get(MLFLOW_RUN_ID) if training_run else None
    if not (mlflow_run_id and tracking.is_enabled()):
        return
    warnings = []
    tracked = tracking.open_run(mlflow_run_id, on_warning=warnings.append)
    values = {f"{run.split}_{name}": value for name, value in metrics.items()}
    values.update({f"{run.split}_{name}_{bound}": value
                   for name, interval in metrics["confidence_intervals"].items() for bound, value in interval.items()})
    tracked.log_metrics(values, step=training_run.step)
    tracked.set_tags({f"ftplatform.{run.split}_eval_run_id": run.pk})
    outcome = {"mlflow_warning": warnings[0]} if warnings else {MLFLOW_RUN_ID: mlflow_run_id}
    EvalRun.objects.filter(pk=run.pk).update(environment={**environment, **outcome})


def run_preannotation(run_id: int) -> None:
    """Draft an answer for each example of PreannotationRun ``run_id`` with its model version (the
    generators evaluation uses), recording each as a suggestion with its confidence (the mean token
    log-probability; None when unknown or not finite) through curation.workflow.record_suggestion, one
    example at a time: a cancelled or failed run keeps the suggestions recorded before it stopped."""
    run = jobrows.claim(PreannotationRun, run_id, select_related=("model_version__base_model", "dataset"))
    if run is None:
        return
    mine = {"status": JobStatus.RUNNING}
    try:
        version = run.model_version
        examples = list(Example.objects.filter(pk__in=run.example_ids, dataset=run.dataset).order_by("id"))
        PreannotationRun.objects.filter(pk=run.pk).update(total=len(examples))
        prompts = [prompt_messages(input_messages(example.messages), version.system_prompt, version.few_shot)
                   for example in examples]
        generate, environment = _generator(version, run.generation["max_new_tokens"],
                                           run.generation.get("batch_size", 1))
        PreannotationRun.objects.filter(pk=run.pk).update(environment=environment)
        check_cancel = jobrows.CancelCheck(run)
        counts = {"suggested": 0, "prefilled": 0, "skipped": 0}
        for done, (example, generation) in enumerate(zip(examples, generate(prompts), strict=True), start=1):
            check_cancel()
            confidence = generation.mean_logprob
            suggestion = workflow.record_suggestion(
                example, model_version_id=version.pk, model_name=version.name, text=storable_text(generation.text),
                confidence=confidence if confidence is not None and math.isfinite(confidence) else None,
                by=run.created_by, preannotation_run_id=run.pk)
            counts["skipped" if suggestion is None else "suggested"] += 1
            counts["prefilled"] += bool(suggestion and suggestion.prefilled)
            if not PreannotationRun.objects.filter(pk=run.pk, **mine).update(done=done, **counts):
                logger.warning("pre-annotation %s: stopped, its row was ended by another process", run.pk)
                return
        jobrows.finish(run, JobStatus.SUCCEEDED, where=mine, environment=environment)
    except jobrows.JobCancelled:
        jobrows.finish(run, JobStatus.CANCELLED, where=mine, error="cancelled; the suggestions recorded so far stay")
    except Exception as exc:
        logger.exception("pre-annotation %s failed", run.pk)
        jobrows.fail(run, exc, where=mine)
        raise
