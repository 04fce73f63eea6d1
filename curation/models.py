"""Curation data: datasets, examples and their reviews, imports, and frozen snapshots."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords

from ftplatform.jobrows import JobRow

from .choices import (
    ExampleSource,
    ExampleStatus,
    ExportLayout,
    ImportFormat,
    ReviewDecision,
    SnapshotStatus,
    Split,
    SuggestionOutcome,
)


class Dataset(models.Model):
    """A task: what the model should learn, with the prompt and guidelines people work from."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    licence = models.CharField(
        max_length=100, blank=True,
        help_text="The examples' licence (an SPDX id such as cc-by-4.0, or a name); exports' dataset cards state it.")
    system_prompt = models.TextField(
        blank=True, help_text="Prepended to inputs that have no system message (training and evaluation)."
    )
    guidelines = models.TextField(blank=True, help_text="Annotation guidelines (Markdown).")
    output_json_schema = models.JSONField(null=True, blank=True)
    language = models.CharField(max_length=16, default="en",
                                help_text="ISO 639-1 code of the outputs: BLEU's tokenizer, exact match's articles.")
    regex_checks = models.JSONField(default=dict, blank=True,
                                    help_text='Evaluation checks on every output: {"name": "regex", ...}.')
    primary_metric = models.CharField(
        max_length=100, blank=True,
        help_text="The metric verdicts and reports are decided on: exact_match, bleu, chrf, rouge_l, json_valid, "
                  "json_schema_valid or regex:<check>. Blank: proposed from the outputs' shape when a snapshot is "
                  "made (ftml.metrics.propose_primary_metric).",
    )
    approvals_required = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Distinct reviewers who must approve an example (in one review round).",
    )
    reviewers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="reviewed_datasets",
        help_text="Members of the reviewer group who review this dataset; empty: every reviewer.",
    )
    blind_annotation = models.BooleanField(
        default=False,
        help_text="Annotators never see other annotators' examples on the same input (independent references).",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Example(models.Model):
    """One input/output pair as OpenAI-style chat ``messages``; the last assistant turn is the output."""

    dataset = models.ForeignKey(Dataset, related_name="examples", on_delete=models.CASCADE)
    messages = models.JSONField()
    tool_settings = models.JSONField(
        default=dict, blank=True,
        help_text='The line\'s "tools", "parallel_tool_calls" and legacy "functions" (OpenAI chat format), as given.')
    content_hash = models.CharField(max_length=64, help_text="sha256 of the canonical JSON of messages (and "
                                                             "tool settings, when any).")
    input_hash = models.CharField(max_length=64, help_text="sha256 of the messages before the final assistant turn "
                                                           "(and tool settings, when any).")
    status = models.CharField(max_length=16, choices=ExampleStatus.choices, default=ExampleStatus.DRAFT, db_index=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="authored_examples", on_delete=models.SET_NULL
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="assigned_examples", on_delete=models.SET_NULL
    )
    version = models.PositiveIntegerField(default=1, help_text="Incremented on every change (optimistic locking).")
    review_round = models.PositiveIntegerField(
        default=1, help_text="Incremented when a rejected example is resubmitted."
    )
    reserved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="reserved_examples", on_delete=models.SET_NULL,
        help_text="Who the queue handed this example to, until reserved_until.",
    )
    reserved_until = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=16, choices=ExampleSource.choices, default=ExampleSource.MANUAL)
    import_batch = models.ForeignKey(
        "ImportBatch", null=True, blank=True, related_name="examples", on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(excluded_fields=["updated_at", "reserved_by", "reserved_until"])

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "content_hash"], name="example_unique_content_per_dataset"),
        ]
        indexes = [
            models.Index(fields=["dataset", "input_hash"]),
            # The example list: filter by dataset and state, walk by id (cursor pagination).
            models.Index(fields=["dataset", "status", "id"], name="example_dataset_status_id"),
        ]
        permissions = [
            ("review_example", "Can approve or reject examples"),
            ("view_all_examples", "Can see every example, not only their own and those assigned to them"),
        ]

    def __str__(self):
        return f"Example {self.pk} ({self.status})"

    @property
    def output_text(self) -> str:
        """The answer ('' while the input still needs one)."""
        if not self.messages or self.messages[-1]["role"] != "assistant":
            return ""
        return self.messages[-1].get("content") or ""


class Suggestion(models.Model):
    """An answer a model version drafted for an example (pre-annotation), with its confidence; once the
    example is first submitted, how far the submitted answer is from it (edit distance) and so whether
    the annotator accepted, edited or rewrote it.

    The model version lives in the training app, which curation may not import: its id and name are
    copied here (the pre-annotation run in the evaluation app holds the foreign key).
    """

    example = models.ForeignKey(Example, related_name="suggestions", on_delete=models.CASCADE)
    model_version_id = models.PositiveIntegerField(help_text="The training.ModelVersion that answered.")
    model_name = models.CharField(max_length=200, help_text="That model version's name.")
    preannotation_run_id = models.PositiveIntegerField(
        null=True, blank=True, help_text="The evaluation.PreannotationRun that drafted it.")
    text = models.TextField(help_text="The suggested answer.")
    confidence = models.FloatField(
        null=True, blank=True,
        help_text="Mean log-probability of the answer's tokens (natural log, <= 0; higher is surer); "
                  "empty when the model gave none.")
    prefilled = models.BooleanField(
        default=False, help_text="It became the draft's answer: the annotator started from it.")
    disagreement = models.FloatField(
        null=True, blank=True,
        help_text="Normalized edit distance (0..1) to the most different suggestion of another model version "
                  "for the same example; empty while it is the only one.")
    outcome = models.CharField(max_length=16, choices=SuggestionOutcome.choices, blank=True)
    submitted_text = models.TextField(blank=True, help_text="The answer submitted first (for prefilled ones).")
    edit_distance = models.PositiveIntegerField(
        null=True, blank=True, help_text="Levenshtein distance (characters) from the suggestion to the submitted "
                                         "answer.")
    normalized_distance = models.FloatField(
        null=True, blank=True, help_text="edit_distance / length of the longer text (0: unchanged, 1: all changed).")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, related_name="+",
                                   on_delete=models.SET_NULL)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["example", "id"]
        indexes = [models.Index(fields=["model_version_id", "outcome"])]

    def __str__(self):
        return f"{self.model_name}'s suggestion for example {self.example_id}"


class Review(models.Model):
    """An append-only decision on an example."""

    example = models.ForeignKey(Example, related_name="reviews", on_delete=models.CASCADE)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="reviews", on_delete=models.PROTECT)
    decision = models.CharField(max_length=16, choices=ReviewDecision.choices)
    comment = models.TextField(blank=True)
    example_version = models.PositiveIntegerField(help_text="The example version the decision was made on.")
    review_round = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{self.decision} by {self.reviewer} on example {self.example_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("Reviews are append-only; record a new decision instead of editing one.")
        super().save(*args, **kwargs)


class ImportBatch(JobRow):
    """One uploaded file and its import job: what it held, what was created, what was skipped and why.

    The job (curation.jobs.run_import) reads the stored upload and moves ``status`` from
    queued to running to succeeded or failed, with ``rows_done`` of ``rows_total`` as progress.
    Failed means nothing was imported: either the file was refused for its invalid records
    (listed in ``errors``), or ``error`` says why the file could not be read or the job stopped.
    """

    dataset = models.ForeignKey(Dataset, related_name="import_batches", on_delete=models.CASCADE)
    format = models.CharField(max_length=32, choices=ImportFormat.choices)
    filename = models.CharField(max_length=255, blank=True)
    upload_path = models.CharField(
        max_length=500, blank=True,
        help_text="The stored upload (a file, or a folder for hf_dataset) until the job has read it.",
    )
    hf_split = models.CharField(max_length=100, blank=True, help_text="hf_dataset: the split of a DatasetDict folder.")
    skip_invalid = models.BooleanField(default=False)
    column_mapping = models.JSONField(
        null=True, blank=True, help_text="CSV/TSV: header names of the prompt, completion and system columns."
    )
    rows_total = models.PositiveIntegerField(
        null=True, blank=True, help_text="Records in the file, counted when the job starts."
    )
    rows_done = models.PositiveIntegerField(default=0, help_text="Records read so far (updated every chunk).")
    total_lines = models.PositiveIntegerField(default=0, help_text="Non-empty lines (or rows) read.")
    created_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text='[{"line": n, "reason": "..."}]')
    duplicates = models.JSONField(
        default=list, blank=True, help_text='[{"line": n, "duplicate_of": "example 12" | "line 3"}]'
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "import batches"

    def __str__(self):
        return f"Import {self.pk} of {self.filename or 'upload'} ({self.status})"

    @property
    def progress(self) -> float:
        """Fraction of the file's records read, 0..1 (0 until the records are counted)."""
        return min(1.0, self.rows_done / self.rows_total) if self.rows_total else 0.0


class FrozenError(ValidationError):
    """A write to a snapshot's frozen content (its identity, split or items)."""


# The dataset settings training and evaluation read, frozen into every snapshot (Snapshot fields of these names).
FROZEN_DATASET_SETTINGS = ("system_prompt", "language", "output_json_schema", "regex_checks", "primary_metric")
SNAPSHOT_FROZEN_FIELDS = ("dataset", "content_hash", "hash_version", "seed", "split_fractions", "split_counts",
                          "example_count", "quality_report", *FROZEN_DATASET_SETTINGS, "created_by", "created_at")
# Version 1 hashed the items, seed and fractions only; version 2 also the frozen dataset settings
# (curation.splits.snapshot_hash). Snapshots made before the settings were frozen keep version 1.
SNAPSHOT_HASH_VERSION = 2


class SnapshotQuerySet(models.QuerySet):
    def update(self, **kwargs):
        frozen = sorted(set(kwargs) & {*SNAPSHOT_FROZEN_FIELDS, "dataset_id", "created_by_id"})
        if frozen:
            raise FrozenError(f"snapshot {', '.join(frozen)} cannot change; create a new snapshot instead")
        return super().update(**kwargs)

    def delete(self):
        raise FrozenError("snapshots are never deleted: training runs and reports cite them")


class SnapshotItemQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise FrozenError("snapshot items are frozen; create a new snapshot instead")

    def delete(self):
        raise FrozenError("snapshot items are frozen; create a new snapshot instead")


class Snapshot(models.Model):
    """An immutable, content-addressed freeze of a dataset's approved examples with a seeded split,
    and of every dataset setting training and evaluation read (FROZEN_DATASET_SETTINGS): runs,
    evaluations, exports and reports read these copies, never the dataset's current values.

    Only the review (status, reviewer, time, comment) changes after creation; every other
    write, and any delete, raises FrozenError, through instances and querysets alike.
    """

    objects = SnapshotQuerySet.as_manager()

    dataset = models.ForeignKey(Dataset, related_name="snapshots", on_delete=models.PROTECT)
    content_hash = models.CharField(max_length=64)
    hash_version = models.PositiveSmallIntegerField(
        default=SNAPSHOT_HASH_VERSION,
        help_text="2: the hash covers the items, seed, fractions and frozen settings; 1: items, seed and fractions "
                  "only (snapshots made before settings were frozen).",
    )
    seed = models.IntegerField()
    split_fractions = models.JSONField(help_text='{"train": 0.8, "validation": 0.1, "test": 0.1} of distinct inputs.')
    split_counts = models.JSONField(default=dict, help_text="Examples per split.")
    example_count = models.PositiveIntegerField()
    quality_report = models.JSONField(
        default=dict, blank=True,
        help_text="The quality gate's settings, summary (token statistics, near-duplicate groups) and warnings "
                  "(curation.quality.quality_report); empty for snapshots made before the gate.",
    )
    system_prompt = models.TextField(
        blank=True, help_text="The dataset's system prompt, prepended to items without a system message.")
    language = models.CharField(max_length=16, default="en", help_text="The dataset's language (ISO 639).")
    output_json_schema = models.JSONField(null=True, blank=True, help_text="The dataset's output JSON Schema.")
    regex_checks = models.JSONField(default=dict, blank=True, help_text="The dataset's regex checks.")
    primary_metric = models.CharField(
        max_length=100, blank=True,
        help_text="The metric verdicts and reports use: the dataset's, or proposed from the outputs' shape.")
    status = models.CharField(max_length=16, choices=SnapshotStatus.choices, default=SnapshotStatus.PENDING_REVIEW)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, related_name="created_snapshots", on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="reviewed_snapshots", on_delete=models.SET_NULL
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)
    # The report and settings are frozen with the snapshot: a copy in every history row would only repeat them.
    history = HistoricalRecords(excluded_fields=["quality_report", *FROZEN_DATASET_SETTINGS])

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "content_hash"], name="snapshot_unique_hash_per_dataset"),
        ]
        permissions = [("review_snapshot", "Can approve or reject snapshots")]

    def __str__(self):
        return f"{self.dataset} @ {self.content_hash[:12]}"

    @property
    def frozen_settings(self) -> dict:
        """{setting: value} of FROZEN_DATASET_SETTINGS as this snapshot froze them."""
        return {name: getattr(self, name) for name in FROZEN_DATASET_SETTINGS}

    def save(self, *args, **kwargs):
        if self.pk is not None:
            stored = Snapshot.objects.filter(pk=self.pk).values(*(f"{f}_id" if f in ("dataset", "created_by") else f
                                                                for f in SNAPSHOT_FROZEN_FIELDS)).first()
            changed = [name for name, value in (stored or {}).items() if getattr(self, name) != value]
            if changed:
                raise FrozenError(f"snapshot {self.pk}: {', '.join(changed)} cannot change; create a new snapshot")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise FrozenError(f"snapshot {self.pk} is never deleted: training runs and reports cite it")


class SnapshotItem(models.Model):
    """A frozen copy of one approved example inside a snapshot. Never changes once written."""

    objects = SnapshotItemQuerySet.as_manager()

    snapshot = models.ForeignKey(Snapshot, related_name="items", on_delete=models.CASCADE)
    example = models.ForeignKey(Example, null=True, related_name="snapshot_items", on_delete=models.SET_NULL)
    example_content_hash = models.CharField(max_length=64)
    input_hash = models.CharField(max_length=64)
    messages = models.JSONField()
    tool_settings = models.JSONField(default=dict, blank=True, help_text="The example's tool settings, frozen.")
    metadata = models.JSONField(default=dict, blank=True, help_text="The example's metadata, frozen.")
    split = models.CharField(max_length=16, choices=Split.choices, db_index=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot", "example_content_hash"], name="snapshot_item_unique_example"
            ),
        ]

    def __str__(self):
        return f"{self.split} item {self.pk} of snapshot {self.snapshot_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise FrozenError("snapshot items are frozen; create a new snapshot instead")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise FrozenError("snapshot items are frozen; create a new snapshot instead")


class SnapshotExport(JobRow):
    """A snapshot written out as OpenAI chat JSONL, one file per split, and as a Hugging Face dataset (an RQ job)."""

    snapshot = models.ForeignKey(Snapshot, related_name="exports", on_delete=models.PROTECT)
    path = models.CharField(max_length=500, blank=True,
                            help_text="Folder holding <split>.jsonl, hf_dataset/ and hf_dataset.tar.")
    counts = models.JSONField(default=dict, blank=True, help_text="Examples written per split.")
    layout = models.CharField(
        max_length=16, choices=ExportLayout.choices, default=ExportLayout.FOLDER,
        help_text="hub_parquet / hub_jsonl: also hub_dataset/ (a Hub dataset repo with its card) and hub_dataset.tar.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Export {self.pk} of snapshot {self.snapshot_id} ({self.status})"


class SnapshotJob(JobRow):
    """A snapshot made by a worker (curation.snapshots.submit_snapshot: datasets with more approved examples
    than SNAPSHOT_INLINE_MAX_EXAMPLES): the request, its progress by stage, and the snapshot it made. Failed
    with ``error`` when the snapshot was refused (blocking quality findings, a rejected identical one)."""

    dataset = models.ForeignKey(Dataset, related_name="snapshot_jobs", on_delete=models.CASCADE)
    seed = models.PositiveIntegerField(default=0)
    split_fractions = models.JSONField(null=True, blank=True, help_text="Null: the default 80/10/10.")
    stage = models.CharField(max_length=40, blank=True, help_text="What the job is doing now.")
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(null=True, blank=True)
    snapshot = models.ForeignKey(Snapshot, null=True, blank=True, related_name="+", on_delete=models.SET_NULL)
    created = models.BooleanField(null=True, blank=True,
                                  help_text="False: an identical snapshot existed and is the result.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Snapshot job {self.pk} for {self.dataset} ({self.status})"


class PreferencePair(models.Model):
    """One pairwise preference in OpenAI's DPO format: an input conversation (and its tool settings), the
    preferred and the non-preferred assistant output. Stored as imported, exported back unchanged
    (curation.preferences)."""

    dataset = models.ForeignKey(Dataset, related_name="preference_pairs", on_delete=models.CASCADE)
    input_messages = models.JSONField(help_text='input.messages of the line.')
    tool_settings = models.JSONField(default=dict, blank=True,
                                     help_text='input.tools, input.parallel_tool_calls and input.functions, as given.')
    preferred_output = models.JSONField(help_text="A list of one assistant message.")
    non_preferred_output = models.JSONField(help_text="A list of one assistant message.")
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64, help_text="sha256 of the canonical JSON of the line without "
                                                             "its metadata.")
    input_hash = models.CharField(max_length=64, help_text="sha256 of the canonical JSON of the input.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "content_hash"], name="preference_pair_unique_content"),
        ]
        indexes = [models.Index(fields=["dataset", "input_hash"])]

    def __str__(self):
        return f"Preference pair {self.pk} of {self.dataset}"
