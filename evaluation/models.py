"""Evaluation runs of model versions on snapshot splits, their predictions, and human ratings."""
import uuid

from django.conf import settings
from django.db import models

from curation.choices import Split
from curation.models import Dataset, Snapshot
from ftplatform.jobrows import JobRow
from ftplatform.liveness import LiveJobRow
from training.models import ModelVersion


class EvalRun(LiveJobRow):
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
    environment = models.JSONField(default=dict, blank=True, help_text="Device, batch size, library versions.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Eval {self.pk}: {self.model_version} on {self.snapshot} [{self.split}] ({self.status})"


class PreannotationRun(JobRow):
    """A model version drafting answers for a dataset's drafts (pre-annotation): each answer becomes a
    curation.Suggestion with the model's confidence, and the answer of a draft that still needs one."""

    model_version = models.ForeignKey(ModelVersion, related_name="preannotation_runs", on_delete=models.PROTECT)
    dataset = models.ForeignKey(Dataset, related_name="preannotation_runs", on_delete=models.CASCADE)
    example_ids = models.JSONField(default=list, help_text="The drafts to answer, chosen when the run was started.")
    generation = models.JSONField(default=dict, help_text='{"max_new_tokens": 64, "decoding": "greedy"}')
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    suggested = models.PositiveIntegerField(default=0, help_text="Suggestions recorded.")
    prefilled = models.PositiveIntegerField(default=0, help_text="Drafts whose answer is now the suggestion.")
    skipped = models.PositiveIntegerField(default=0, help_text="Examples no longer drafts when their answer came.")
    environment = models.JSONField(default=dict, blank=True, help_text="Backend, device, request options.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Pre-annotation {self.pk}: {self.model_version} on {self.dataset} ({self.status})"


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
    mean_logprob = models.FloatField(null=True, blank=True,
                                     help_text="Mean log-probability of the output tokens (the model's confidence).")
    scores = models.JSONField(default=dict, help_text="Sentence-level exact_match, bleu, chrf, rouge_l.")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["eval_run", "input_hash"], name="one_prediction_per_input")]

    def __str__(self):
        return f"Prediction {self.pk} of eval {self.eval_run_id}"


class RatingCriterion(models.Model):
    """A named criterion raters score predictions on (e.g. correctness), 1-5 with anchored descriptions."""

    dataset = models.ForeignKey(Dataset, related_name="rating_criteria", on_delete=models.CASCADE)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    anchors = models.JSONField(default=dict, help_text='What each score means: {"1": "...", ..., "5": "..."}.')

    class Meta:
        ordering = ["dataset", "name"]
        verbose_name_plural = "rating criteria"
        constraints = [models.UniqueConstraint(fields=["dataset", "name"], name="one_criterion_name_per_dataset")]

    def __str__(self):
        return self.name


class HumanRating(models.Model):
    """One rater's Likert score (1-5) of one prediction on one criterion."""

    prediction = models.ForeignKey(Prediction, related_name="ratings", on_delete=models.CASCADE)
    criterion = models.ForeignKey(RatingCriterion, related_name="ratings", on_delete=models.PROTECT)
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="+", on_delete=models.PROTECT)
    score = models.PositiveSmallIntegerField()
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["prediction", "criterion", "rater"], name="one_rating_per_rater"),
            models.CheckConstraint(condition=models.Q(score__gte=1, score__lte=5), name="likert_1_to_5"),
        ]


class PairwiseJudgment(models.Model):
    """A blind A/B/tie judgment between two predictions for the same input from two model versions.

    ``left`` stores which prediction the rater saw on the left (the order was random)."""

    class Side(models.TextChoices):
        A = "a", "A"
        B = "b", "B"

    class Outcome(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "Tie"

    prediction_a = models.ForeignKey(Prediction, related_name="+", on_delete=models.CASCADE)
    prediction_b = models.ForeignKey(Prediction, related_name="+", on_delete=models.CASCADE)
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="+", on_delete=models.PROTECT)
    left = models.CharField(max_length=1, choices=Side.choices)
    outcome = models.CharField(max_length=3, choices=Outcome.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["prediction_a", "prediction_b", "rater"],
                                               name="one_judgment_per_pair_and_rater")]


class PairAssignment(models.Model):
    """A blind pair handed to a rater: the two predictions and which one is shown on the left stay on
    the server; the rater holds only ``token``, an opaque random id (a signed token could be decoded
    to learn which model wrote which side). Asking again for the same pair hands out the same
    assignment, so the order recorded is the order shown."""

    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    prediction_a = models.ForeignKey(Prediction, related_name="+", on_delete=models.CASCADE)
    prediction_b = models.ForeignKey(Prediction, related_name="+", on_delete=models.CASCADE)
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="+", on_delete=models.CASCADE)
    left = models.CharField(max_length=1, choices=PairwiseJudgment.Side.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prediction_a", "prediction_b", "rater"],
                                               name="one_assignment_per_pair_and_rater")]


class LearningCurve(models.Model):
    """Training runs of one base model on growing, nested shares of a snapshot's train split, each
    evaluated on one split of it: quality against the number of train examples
    (evaluation.learning_curves). Its state is that of its points' runs."""

    snapshot = models.ForeignKey(Snapshot, related_name="learning_curves", on_delete=models.PROTECT)
    base_model = models.ForeignKey("training.BaseModel", related_name="learning_curves", on_delete=models.PROTECT)
    split = models.CharField(max_length=16, choices=Split.choices, default=Split.VALIDATION,
                             help_text="The split every point's model version is evaluated on.")
    hyperparameters = models.JSONField(default=dict, blank=True, help_text="As requested, for every run.")
    seed = models.IntegerField(default=0, help_text="The seed of the nested train shares (ftml.subsets).")
    generation = models.JSONField(default=dict, help_text="The evaluations' generation settings.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Learning curve {self.pk} of snapshot {self.snapshot_id} [{self.split}]"


class LearningCurvePoint(models.Model):
    """One point of a learning curve: the training run on a share of the train split and, once its model
    version exists, the evaluation of that version."""

    curve = models.ForeignKey(LearningCurve, related_name="points", on_delete=models.CASCADE)
    train_fraction = models.FloatField(help_text="The share of the train split's distinct inputs (0-1].")
    training_run = models.OneToOneField("training.TrainingRun", related_name="learning_curve_point",
                                        on_delete=models.PROTECT)
    eval_run = models.OneToOneField(EvalRun, null=True, blank=True, related_name="learning_curve_point",
                                    on_delete=models.PROTECT)
    error = models.TextField(blank=True, help_text="Why the evaluation could not start, when it could not.")

    class Meta:
        ordering = ["curve", "train_fraction"]
        constraints = [models.UniqueConstraint(fields=["curve", "train_fraction"], name="one_point_per_share")]

    def __str__(self):
        return f"{self.train_fraction:.0%} of learning curve {self.curve_id}"
