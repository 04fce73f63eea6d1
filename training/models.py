"""Base models, training runs with their event stream, and the model versions they produce."""
from django.db import models

from curation.models import Snapshot
from ftplatform.liveness import LiveJobRow

from .choices import BaseModelSource, EventKind, FailureReason, ModelVersionKind


class BaseModel(models.Model):
    """A pretrained causal LM that runs can fine-tune and prompted versions can wrap."""

    name = models.CharField(max_length=200, unique=True)
    source_kind = models.CharField(max_length=16, choices=BaseModelSource.choices)
    source = models.CharField(
        max_length=500, help_text="Folder path, GGUF file path, or the Python package holding the GGUF file."
    )
    gguf_file = models.CharField(max_length=255, blank=True, help_text="GGUF file name (GGUF sources only).")
    chat_template = models.TextField(blank=True, help_text="Recorded when the model is first loaded.")
    context_length = models.PositiveIntegerField(null=True, blank=True)
    parameter_count = models.BigIntegerField(null=True, blank=True)
    licence = models.CharField(max_length=100, blank=True)
    hub_id = models.CharField(
        max_length=200, blank=True,
        help_text="The Hugging Face Hub repo id of these weights (e.g. HuggingFaceTB/SmolLM2-135M-Instruct): what an "
                  "exported adapter's adapter_config.json and model card name as base model, so it loads elsewhere.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class TrainingRun(LiveJobRow):
    """LoRA fine-tuning of a base model on an approved snapshot's train split (an RQ job)."""

    snapshot = models.ForeignKey(Snapshot, related_name="training_runs", on_delete=models.PROTECT)
    base_model = models.ForeignKey(BaseModel, related_name="training_runs", on_delete=models.PROTECT)
    hyperparameters = models.JSONField(help_text="Resolved LoRA and optimiser settings (ftml.config).")
    seed = models.IntegerField(default=0)
    failure_reason = models.CharField(max_length=16, choices=FailureReason.choices, blank=True)
    timeout_seconds = models.PositiveIntegerField(
        default=24 * 3600, help_text="A run still going after this long fails as timed out.")
    preflight = models.JSONField(default=dict, blank=True, help_text="The pre-flight report made at creation.")
    system_prompt = models.TextField(
        null=True, blank=True,
        help_text="The system prompt prepended to train examples without their own: the snapshot's frozen one. "
                  "Runs from before snapshots froze it: the dataset's as of the run's start (its history); "
                  "null: not known.")
    prompt_prefix = models.TextField(
        blank=True,
        help_text="What the chat template renders before the user's text of such an example, default system "
                  "prompt included (ftml.data.prompt_prefix); blank for runs from before it was recorded.")
    train_fraction = models.FloatField(
        default=1.0, help_text="The share of the train split's distinct inputs trained on, all their outputs "
                               "(ftml.subsets: seeded and nested; learning curves): 1 trains on the whole split.")
    train_subset_seed = models.IntegerField(default=0, help_text="The seed of that share's inputs.")
    train_examples = models.PositiveIntegerField(
        null=True, blank=True, help_text="Train examples in that share, counted when the run was created "
                                         "(null: runs from before it was recorded).")
    follow_up_job = models.CharField(
        max_length=200, blank=True, help_text="A job (dotted path) enqueued with the run's id once the run "
                                              "succeeds and its model version exists: a learning curve's evaluation.")
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker started the run (resumes add one).")
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(default=0.0)
    tokens_per_second = models.FloatField(null=True, blank=True, help_text="Non-padding input tokens per second.")
    elapsed_seconds = models.FloatField(null=True, blank=True, help_text="Time in the training loop so far.")
    eta_seconds = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="train_loss, eval_loss, ...")
    environment = models.JSONField(default=dict, blank=True, help_text="Library versions and device.")
    trained_tokens = models.BigIntegerField(default=0, help_text="Target (label) tokens seen, summed over epochs.")
    artifact_path = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Training run {self.pk} ({self.status})"

    @property
    def progress(self) -> float:
        """Fraction of steps done, 0..1."""
        return self.step / self.total_steps if self.total_steps else 0.0

    @property
    def final_loss(self):
        return self.metrics.get("train_loss")

    @property
    def output_dir(self):
        """The run's output folder: its id and creation time, so databases sharing one artifacts
        root (a quick-start SQLite file and a PostgreSQL server) never write into each other's."""
        from django.conf import settings

        return settings.ARTIFACTS_ROOT / "runs" / f"run-{self.pk}-{self.created_at:%Y%m%dT%H%M%S%f}"

    @property
    def checkpoint_dir(self):
        """Where this run's checkpoints go (they outlive a failure, so the run can resume)."""
        return self.output_dir.with_name(self.output_dir.name + ".checkpoints")


class Checkpoint(models.Model):
    """A complete checkpoint folder of a run (adapter, optimizer, scheduler, RNG states, data position).

    Rows are written only after the folder is complete, so resume never reads a half-written one.
    """

    run = models.ForeignKey(TrainingRun, related_name="checkpoints", on_delete=models.CASCADE)
    step = models.PositiveIntegerField()
    epoch = models.FloatField(default=0.0)
    path = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "-step"]
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="one_checkpoint_per_run_step")]

    def __str__(self):
        return f"run {self.run_id} checkpoint @ step {self.step}"


class TrainingEvent(models.Model):
    """One entry in a run's log and metric stream (e.g. the loss at a logging step)."""

    run = models.ForeignKey(TrainingRun, related_name="events", on_delete=models.CASCADE)
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    step = models.PositiveIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        where = f" @ step {self.step}" if self.step is not None else ""
        return f"{self.kind}{where}: {self.message}"


class ModelVersion(models.Model):
    """Something that can answer: a base model with a system prompt (and optionally few-shot
    examples), a base model + LoRA adapter, or an OpenAI-compatible endpoint."""

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=24, choices=ModelVersionKind.choices)
    base_model = models.ForeignKey(BaseModel, related_name="model_versions", on_delete=models.PROTECT)
    training_run = models.OneToOneField(
        TrainingRun, null=True, blank=True, related_name="model_version", on_delete=models.PROTECT
    )
    system_prompt = models.TextField(blank=True, help_text="Prepended to inputs without a system message.")
    few_shot = models.JSONField(default=list, blank=True,
                                help_text="Worked examples shown before every input (in-context learning): "
                                          "conversations from the snapshot's train split, each ending in its answer.")
    few_shot_key = models.CharField(max_length=64, blank=True,
                                    help_text="SHA-256 of the few-shot examples ('' for none): part of a prompted "
                                              "version's identity.")
    adapter_path = models.CharField(max_length=500, blank=True)
    base_url = models.CharField(max_length=500, blank=True,
                                help_text="OpenAI-compatible endpoints: the API's base URL, ending in /v1.")
    remote_model = models.CharField(max_length=200, blank=True, help_text="OpenAI-compatible endpoints: model name.")
    api_key_env = models.CharField(max_length=100, blank=True,
                                   help_text="Name of the environment variable holding the API key (never the key).")
    price_per_gpu_hour = models.FloatField(null=True, blank=True, help_text="Self-hosted: cost of one GPU-hour.")
    price_per_million_input_tokens = models.FloatField(null=True, blank=True, help_text="API models.")
    price_per_million_output_tokens = models.FloatField(null=True, blank=True, help_text="API models.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["base_model", "system_prompt", "few_shot_key"],
                condition=models.Q(kind="prompted_base"),
                name="one_prompted_version_per_base_prompt_and_shots",
            )
        ]

    def __str__(self):
        return self.name
