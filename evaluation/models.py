"""Evaluation runs of model versions on snapshot splits, and their predictions."""
from django.db import models

from curation.choices import Split
from curation.models import Snapshot
from ftplatform.jobrows import JobRow
from training.models import ModelVersion


class EvalRun(JobRow):
    """A model version answering every distinct input of a snapshot split, scored against all its references."""

    model_version = models.ForeignKey(ModelVersion, related_name="eval_runs", on_delete=models.PROTECT)
    snapshot = models.ForeignKey(Snapshot, related_name="eval_runs", on_delete=models.PROTECT)
    split = models.CharField(max_length=16, choices=Split.choices, default=Split.TEST)
    generation = models.JSONField(default=dict, help_text='{"max_new_tokens": 64, "decoding": "greedy"}')
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(
        default=dict, blank=True,
        help_text="exact_match, bleu, chrf, rouge_l (0-100), latency_p50_ms, latency_p95_ms, n_inputs",
    )
    signatures = models.JSONField(default=dict, blank=True, help_text="sacrebleu signatures for BLEU and chrF.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Eval {self.pk}: {self.model_version} on {self.snapshot} [{self.split}] ({self.status})"


class Prediction(models.Model):
    """One generated output for one distinct input, with its references and scores."""

    eval_run = models.ForeignKey(EvalRun, related_name="predictions", on_delete=models.CASCADE)
    input_hash = models.CharField(max_length=64)
    input_messages = models.JSONField()
    references = models.JSONField(help_text="All approved outputs for this input in the snapshot.")
    output = models.TextField()
    latency_ms = models.FloatField()
    prompt_tokens = models.PositiveIntegerField()
    output_tokens = models.PositiveIntegerField()
    scores = models.JSONField(default=dict, help_text="Sentence-level exact_match, bleu, chrf, rouge_l.")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["eval_run", "input_hash"], name="one_prediction_per_input")]

    def __str__(self):
        return f"Prediction {self.pk} of eval {self.eval_run_id}"
