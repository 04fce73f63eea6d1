from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from curation.models import Snapshot

from .choices import FailureReason
from .models import BaseModel, Checkpoint, ModelVersion, TrainingEvent, TrainingRun


class BaseModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = BaseModel
        fields = ["id", "name", "source_kind", "source", "gguf_file", "context_length", "parameter_count",
                  "licence", "hub_id", "chat_template", "created_at"]
        read_only_fields = fields


class TrainingEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingEvent
        fields = ["id", "kind", "step", "message", "payload", "created_at"]


class CheckpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["step", "epoch", "path", "created_at"]
        read_only_fields = fields


class TrainingRunSerializer(serializers.ModelSerializer):
    """A run without its events (lists); TrainingRunDetailSerializer adds them."""

    progress = serializers.FloatField(read_only=True)
    # "" until the run fails: the schema's enum must hold it too.
    failure_reason = serializers.ChoiceField(choices=FailureReason.choices, allow_blank=True, read_only=True)
    snapshot_hash = serializers.CharField(source="snapshot.content_hash", read_only=True)
    created_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted

    class Meta:
        model = TrainingRun
        fields = ["id", "snapshot", "snapshot_hash", "base_model", "hyperparameters", "seed", "system_prompt",
                  "prompt_prefix", "status",
                  "cancel_requested", "step", "total_steps", "progress", "epoch", "tokens_per_second",
                  "elapsed_seconds", "eta_seconds", "heartbeat_at", "worker", "attempts", "timeout_seconds",
                  "error", "failure_reason", "metrics", "environment", "trained_tokens", "artifact_path",
                  "train_fraction", "train_subset_seed", "train_examples",
                  "created_by", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class TrainingRunDetailSerializer(TrainingRunSerializer):
    """A run with its pre-flight report, checkpoints and its first 1,000 events (``events/`` pages on)."""

    events = serializers.SerializerMethodField()
    checkpoints = CheckpointSerializer(many=True, read_only=True)

    class Meta(TrainingRunSerializer.Meta):
        fields = [*TrainingRunSerializer.Meta.fields, "preflight", "checkpoints", "events"]
        read_only_fields = fields

    @extend_schema_field(TrainingEventSerializer(many=True))
    def get_events(self, run):
        return TrainingEventSerializer(run.events.all()[:1000], many=True).data


class TrainingRunCreateSerializer(serializers.Serializer):
    snapshot = serializers.PrimaryKeyRelatedField(queryset=Snapshot.objects.all())
    base_model = serializers.PrimaryKeyRelatedField(
        queryset=BaseModel.objects.all(), required=False, help_text="Default: the configured default base model."
    )
    hyperparameters = serializers.DictField(required=False, default=dict)
    timeout_minutes = serializers.IntegerField(
        required=False, min_value=1, max_value=30 * 24 * 60,
        help_text="Fail the run as timed out after this long (default: settings.TRAINING_TIMEOUT_SECONDS).")


class PriceField(serializers.FloatField):
    """A price: a number, never true/false (DRF's FloatField reads them as 1.0 and 0.0); the service
    (training.model_versions.remote_model_version) checks the range."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class PromptedVersionCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["prompted_base", "openai_compatible"], default="prompted_base",
                                   help_text="prompted_base: a local base model with a system prompt; "
                                             "openai_compatible: a chat-completions endpoint.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    base_url = serializers.CharField(required=False, max_length=500, help_text="openai_compatible: e.g. http://vllm:8000/v1")
    remote_model = serializers.CharField(required=False, max_length=200)
    api_key_env = serializers.CharField(required=False, allow_blank=True, max_length=100,
                                        help_text="The NAME of the environment variable holding the key.")
    price_per_gpu_hour = PriceField(required=False, min_value=0)
    price_per_million_input_tokens = PriceField(required=False, min_value=0)
    price_per_million_output_tokens = PriceField(required=False, min_value=0)
    base_model = serializers.PrimaryKeyRelatedField(
        queryset=BaseModel.objects.all(), required=False, help_text="Default: the configured default base model."
    )
    system_prompt = serializers.CharField(allow_blank=True, trim_whitespace=False,
                                          help_text="Usually the dataset's system prompt.")
    few_shot_snapshot = serializers.PrimaryKeyRelatedField(
        queryset=Snapshot.objects.all(), required=False,
        help_text="prompted_base: show worked examples from this approved snapshot's train split before every input.")
    few_shot_k = serializers.IntegerField(required=False, default=3, help_text="How many examples (1-16).")
    few_shot_seed = serializers.IntegerField(required=False, default=0, help_text="Which train examples.")


class ModelVersionUpdateSerializer(serializers.Serializer):
    """PATCH model-versions/{id}/: the display name and the prices (null clears a price)."""

    name = serializers.CharField(required=False, max_length=200)
    price_per_gpu_hour = PriceField(required=False, allow_null=True, min_value=0)
    price_per_million_input_tokens = PriceField(required=False, allow_null=True, min_value=0)
    price_per_million_output_tokens = PriceField(required=False, allow_null=True, min_value=0)


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name", "kind", "base_model", "training_run", "system_prompt", "few_shot", "adapter_path",
                  "base_url",
                  "remote_model", "api_key_env", "price_per_gpu_hour", "price_per_million_input_tokens",
                  "price_per_million_output_tokens", "created_at"]
        read_only_fields = fields
