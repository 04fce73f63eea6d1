from django.contrib.auth import get_user_model
from rest_framework import serializers

from .choices import ExportLayout, ImportFormat, QueueOrder, Split, SuggestionOutcome
from .formats import check_json_value
from .models import (
    FROZEN_DATASET_SETTINGS,
    Dataset,
    Example,
    ImportBatch,
    PreferencePair,
    Review,
    Snapshot,
    SnapshotExport,
    SnapshotItem,
    SnapshotJob,
    Suggestion,
)
from .schemas import check_evaluation_settings, output_schema_validator
from .snapshot_diff import DEFAULT_DIFF_LIMIT, MAX_DIFF_LIMIT
from .splits import MAX_SEED


class DatasetSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted

    def validate_output_json_schema(self, value):
        if value is None:
            return value
        try:
            check_json_value(value)
            output_schema_validator(value)
        except ValueError as exc:  # FormatError is a ValueError too
            raise serializers.ValidationError(str(exc)) from exc
        return value

    def validate(self, attrs):
        current = {name: attrs.get(name, getattr(self.instance, name, default)) for name, default in
                   (("language", "en"), ("regex_checks", {}), ("primary_metric", ""), ("output_json_schema", None))}
        try:
            check_evaluation_settings(**current)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return attrs

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "licence", "system_prompt", "guidelines", "output_json_schema",
                  "language", "regex_checks", "primary_metric", "approvals_required", "reviewers", "blind_annotation",
                  "created_by", "created_at"]
        read_only_fields = ["created_by", "created_at"]


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.StringRelatedField()

    class Meta:
        model = Review
        fields = ["id", "reviewer", "decision", "comment", "example_version", "created_at"]


class ExampleSerializer(serializers.ModelSerializer):
    reviews = ReviewSerializer(many=True, read_only=True)
    author = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted
    assignee = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted
    reserved_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted

    class Meta:
        model = Example
        fields = ["id", "dataset", "messages", "tool_settings", "content_hash", "input_hash", "status", "author",
                  "assignee", "version",
                  "review_round", "reserved_by", "reserved_until", "metadata", "source", "import_batch", "created_at",
                  "updated_at", "reviews"]
        read_only_fields = fields


class QueueRequestSerializer(serializers.Serializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all(), required=False,
                                                 help_text="Limit the queue to one dataset.")
    order = serializers.ChoiceField(choices=QueueOrder.choices, default=QueueOrder.OLDEST,
                                    help_text="Which example comes first (curation.work_queues.ordered).")


class SuggestionSerializer(serializers.ModelSerializer):
    decided_by = serializers.StringRelatedField(allow_null=True)  # null: not yet submitted, or the user was deleted
    # "" until the example is first submitted: declared, or the schema's enum would leave the blank out.
    outcome = serializers.ChoiceField(choices=SuggestionOutcome.choices, allow_blank=True, read_only=True,
                                      help_text="Empty until the example is first submitted.")

    class Meta:
        model = Suggestion
        fields = ["id", "example", "model_version_id", "model_name", "preannotation_run_id", "text", "confidence",
                  "prefilled", "disagreement", "outcome", "submitted_text", "edit_distance", "normalized_distance",
                  "decided_by", "decided_at", "created_at"]
        read_only_fields = fields


class SuggestionStatisticsSerializer(serializers.Serializer):
    """One model version's row of curation.selectors.suggestion_statistics."""

    model_version_id = serializers.IntegerField()
    model_name = serializers.CharField()
    suggestions = serializers.IntegerField(help_text="Suggestions annotators started from (prefilled).")
    submitted = serializers.IntegerField(help_text="Of those, submitted (judged).")
    accepted = serializers.IntegerField()
    edited = serializers.IntegerField()
    rewritten = serializers.IntegerField()
    acceptance_rate = serializers.FloatField(allow_null=True, help_text="accepted unchanged / submitted")
    rewritten_share = serializers.FloatField(allow_null=True, help_text="rewritten / submitted")
    mean_normalized_distance = serializers.FloatField(allow_null=True, help_text="0 (unchanged) .. 1")
    mean_edit_distance = serializers.FloatField(allow_null=True, help_text="characters")
    mean_confidence = serializers.FloatField(allow_null=True, help_text="mean token log-probability")


class ExampleCreateSerializer(serializers.Serializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    messages = serializers.JSONField(help_text="The whole conversation, OpenAI chat format.")
    submit = serializers.BooleanField(default=False, help_text="Submit for review at once (default: a draft).")


class ExampleEditSerializer(serializers.Serializer):
    messages = serializers.JSONField(help_text="The whole conversation, OpenAI chat format.")
    expected_version = serializers.IntegerField(min_value=1, help_text="The version the edit was made on.")


class AssignSerializer(serializers.Serializer):
    assignee = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.all(), allow_null=True,
                                                  help_text="The annotator's user id; null takes it back.")
    expected_version = serializers.IntegerField(required=False, min_value=1)


class EditAndApproveSerializer(ExampleEditSerializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class SubmitSerializer(serializers.Serializer):
    expected_version = serializers.IntegerField(required=False, min_value=1)


class DecisionSerializer(serializers.Serializer):
    expected_version = serializers.IntegerField(min_value=1, help_text="The version the decision was made on.")
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class ImportBatchSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted
    progress = serializers.FloatField(read_only=True, help_text="rows_done / rows_total, 0..1.")

    class Meta:
        model = ImportBatch
        fields = ["id", "dataset", "format", "filename", "hf_split", "created_by", "skip_invalid", "column_mapping",
                  "status", "rows_done", "rows_total", "progress", "total_lines", "created_count", "duplicate_count",
                  "error_count", "errors", "duplicates", "error", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class ImportUploadSerializer(serializers.Serializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    format = serializers.ChoiceField(choices=ImportFormat.choices, default=ImportFormat.CHAT_JSONL,
                                     help_text="hf_dataset: the file is a .tar, .tar.gz or .zip of a save_to_disk "
                                               "folder.")
    file = serializers.FileField()
    hf_split = serializers.CharField(required=False, default="", allow_blank=True,
                                     help_text="hf_dataset only: the split of a DatasetDict with several.")
    skip_invalid = serializers.BooleanField(default=False)
    column_mapping = serializers.JSONField(
        binary=True, required=False, default=None,
        help_text='CSV/TSV only: {"prompt": column, "completion": column, "system": column (optional)}',
    )


class SnapshotSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted
    reviewed_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted

    class Meta:
        model = Snapshot
        fields = ["id", "dataset", "content_hash", "hash_version", "seed", "split_fractions", "split_counts",
                  "example_count", *FROZEN_DATASET_SETTINGS, "quality_report", "status", "created_by", "created_at",
                  "reviewed_by", "reviewed_at", "review_comment"]
        read_only_fields = fields


class SnapshotItemSerializer(serializers.ModelSerializer):
    """One frozen example of a snapshot, as training and evaluation read it."""

    example = serializers.IntegerField(source="example_id", allow_null=True, read_only=True,
                                       help_text="The example it was frozen from (null if since deleted).")
    messages = serializers.JSONField(read_only=True, help_text="The conversation as frozen (not the example's "
                                     "current text); the snapshot's system_prompt applies when it has no system "
                                     "message.")

    class Meta:
        model = SnapshotItem
        fields = ["id", "example", "example_content_hash", "input_hash", "split", "messages", "tool_settings",
                  "metadata"]
        read_only_fields = fields


class PreferencePairSerializer(serializers.ModelSerializer):
    """One pairwise preference, as imported from OpenAI's DPO format."""

    created_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted

    class Meta:
        model = PreferencePair
        fields = ["id", "dataset", "input_messages", "tool_settings", "preferred_output", "non_preferred_output",
                  "metadata", "content_hash", "input_hash", "created_by", "created_at"]
        read_only_fields = fields


class PreferenceImportUploadSerializer(serializers.Serializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    file = serializers.FileField(help_text="JSONL, one OpenAI DPO line each.")
    skip_invalid = serializers.BooleanField(default=False)


class LineProblemSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    reason = serializers.CharField()


class LineDuplicateSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    duplicate_of = serializers.CharField(help_text='"line 3" or "preference pair 12".')


class PreferenceImportSerializer(serializers.Serializer):
    """What an import of preference pairs did (curation.preferences.PreferenceImport)."""

    total_lines = serializers.IntegerField()
    created = serializers.IntegerField()
    imported = serializers.BooleanField(help_text="False: invalid lines and no skip_invalid; nothing was written.")
    errors = LineProblemSerializer(many=True)
    duplicates = LineDuplicateSerializer(many=True)


class PreferenceExportQuerySerializer(serializers.Serializer):
    dataset = serializers.IntegerField(help_text="The dataset whose preference pairs to export.")


class SnapshotItemQuerySerializer(serializers.Serializer):
    split = serializers.ChoiceField(choices=Split.choices, required=False, help_text="Only this split's items.")


class SnapshotCreateSerializer(serializers.Serializer):
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    seed = serializers.IntegerField(default=0, min_value=0, max_value=MAX_SEED)
    split_fractions = serializers.DictField(child=serializers.FloatField(), required=False)


class SnapshotJobSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted

    class Meta:
        model = SnapshotJob
        fields = ["id", "dataset", "seed", "split_fractions", "status", "stage", "done", "total", "snapshot",
                  "created", "cancel_requested", "error", "created_by", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class SnapshotDiffQuerySerializer(serializers.Serializer):
    previous = serializers.IntegerField(required=False, help_text="Compare with this snapshot of the same dataset "
                                        "(default: its latest approved snapshot created before this one).")
    limit = serializers.IntegerField(default=DEFAULT_DIFF_LIMIT, min_value=1, max_value=MAX_DIFF_LIMIT,
                                     help_text="Entries per list; counts are always complete.")


class DiffEntrySerializer(serializers.Serializer):
    example_id = serializers.IntegerField(allow_null=True)
    content_hash = serializers.CharField()
    split = serializers.CharField()


class MessageChangeSerializer(serializers.Serializer):
    position = serializers.IntegerField(help_text="1-based message position.")
    change = serializers.ChoiceField(choices=["changed", "added", "removed"])
    role = serializers.CharField(allow_null=True)
    previous_role = serializers.CharField(allow_null=True)
    diff = serializers.CharField(help_text="Unified diff of the contents (difflib).")


class ChangedEntrySerializer(serializers.Serializer):
    example_id = serializers.IntegerField(allow_null=True)
    split = serializers.CharField()
    previous_split = serializers.CharField()
    content_hash = serializers.CharField()
    previous_content_hash = serializers.CharField()
    messages = MessageChangeSerializer(many=True)


class MovedEntrySerializer(serializers.Serializer):
    example_id = serializers.IntegerField(allow_null=True)
    content_hash = serializers.CharField()
    to = serializers.CharField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.CharField()  # a keyword: declared here
        return fields


class SettingChangeSerializer(serializers.Serializer):
    setting = serializers.ChoiceField(choices=list(FROZEN_DATASET_SETTINGS))
    previous = serializers.JSONField(allow_null=True, help_text="The previous snapshot's frozen value.")
    value = serializers.JSONField(allow_null=True, help_text="This snapshot's frozen value.")


class SnapshotDiffSerializer(serializers.Serializer):
    """The shape of curation.snapshot_diff.snapshot_diff (documentation for the schema)."""

    snapshot = serializers.IntegerField()
    previous = serializers.IntegerField(allow_null=True)
    previous_content_hash = serializers.CharField(allow_null=True)
    counts = serializers.DictField(child=serializers.IntegerField(),
                                   help_text="added, removed, changed, moved, unchanged")
    limit = serializers.IntegerField()
    added = DiffEntrySerializer(many=True)
    removed = DiffEntrySerializer(many=True)
    changed = ChangedEntrySerializer(many=True)
    moved = MovedEntrySerializer(many=True)
    settings_changed = SettingChangeSerializer(many=True, help_text="Frozen dataset settings that differ.")


class SnapshotReviewSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class SnapshotExportSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted

    class Meta:
        model = SnapshotExport
        fields = ["id", "snapshot", "layout", "status", "counts", "error", "created_by", "created_at", "finished_at"]
        read_only_fields = fields


class SnapshotExportRequestSerializer(serializers.Serializer):
    layout = serializers.ChoiceField(
        choices=ExportLayout.choices, default=ExportLayout.FOLDER,
        help_text="folder: chat JSONL per split and a save_to_disk folder; hub_parquet / hub_jsonl: also a Hugging "
                  "Face Hub dataset repo (data files per split and a dataset card), downloaded from hub-dataset/.")
