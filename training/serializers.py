from rest_framework import serializers

from curation.models import Snapshot

from .models import BaseModel, ModelVersion, TrainingEvent, TrainingRun


class BaseModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = BaseModel
        fields = ["id", "name", "source_kind", "source", "gguf_file", "context_length", "parameter_count",
                  "licence", "chat_template", "created_at"]
        read_only_fields = fields


class TrainingEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingEvent
        fields = ["id", "kind", "step", "message", "payload", "created_at"]


class TrainingRunSerializer(serializers.ModelSerializer):
    """A run without its events (lists); TrainingRunDetailSerializer adds them."""

    progress = serializers.FloatField(read_only=True)
    snapshot_hash = serializers.CharField(source="snapshot.content_hash", read_only=True)
    created_by = serializers.StringRelatedField()

    class Meta:
        model = TrainingRun
        fields = ["id", "snapshot", "snapshot_hash", "base_model", "hyperparameters", "seed", "status",
                  "cancel_requested", "step", "total_steps", "progress", "error", "metrics", "environment",
                  "trained_tokens", "artifact_path", "created_by", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class TrainingRunDetailSerializer(TrainingRunSerializer):
    events = TrainingEventSerializer(many=True, read_only=True)

    class Meta(TrainingRunSerializer.Meta):
        fields = [*TrainingRunSerializer.Meta.fields, "events"]
        read_only_fields = fields


class TrainingRunCreateSerializer(serializers.Serializer):
    snapshot = serializers.PrimaryKeyRelatedField(queryset=Snapshot.objects.all())
    base_model = serializers.PrimaryKeyRelatedField(
        queryset=BaseModel.objects.all(), required=False, help_text="Default: the configured default base model."
    )
    hyperparameters = serializers.DictField(required=False, default=dict)


class PromptedVersionCreateSerializer(serializers.Serializer):
    base_model = serializers.PrimaryKeyRelatedField(
        queryset=BaseModel.objects.all(), required=False, help_text="Default: the configured default base model."
    )
    system_prompt = serializers.CharField(allow_blank=True, trim_whitespace=False,
                                          help_text="Usually the dataset's system prompt.")


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name", "kind", "base_model", "training_run", "system_prompt", "adapter_path", "created_at"]
        read_only_fields = fields
