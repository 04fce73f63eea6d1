from rest_framework import serializers

from curation.choices import Split
from curation.models import Dataset, Snapshot
from training.models import ModelVersion

from .models import EvalRun, PreannotationRun, Prediction, RatingCriterion


class EvalRunSerializer(serializers.ModelSerializer):
    snapshot_hash = serializers.CharField(source="snapshot.content_hash", read_only=True)
    created_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted

    class Meta:
        model = EvalRun
        fields = ["id", "model_version", "snapshot", "snapshot_hash", "split", "generation", "status", "done",
                  "total", "metrics", "signatures", "error", "worker", "heartbeat_at", "created_by", "created_at",
                  "started_at", "finished_at"]
        read_only_fields = fields


class EvalRunCreateSerializer(serializers.Serializer):
    model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
    snapshot = serializers.PrimaryKeyRelatedField(queryset=Snapshot.objects.all())
    split = serializers.ChoiceField(choices=Split.choices, default=Split.TEST)
    generation = serializers.DictField(required=False, default=dict)


class PredictionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prediction
        fields = ["id", "input_hash", "input_messages", "references", "output", "latency_ms", "prompt_tokens",
                  "output_tokens", "scores"]


class RatingCriterionSerializer(serializers.ModelSerializer):
    class Meta:
        model = RatingCriterion
        fields = ["name", "description", "anchors"]
        read_only_fields = fields


class BlindPredictionSerializer(serializers.ModelSerializer):
    """What a rater sees of a prediction: the input and the output, never the model or its scores."""

    class Meta:
        model = Prediction
        fields = ["id", "input_messages", "output"]
        read_only_fields = fields


class RatingCreateSerializer(serializers.Serializer):
    prediction = serializers.PrimaryKeyRelatedField(queryset=Prediction.objects.filter(eval_run__status="succeeded"))
    scores = serializers.DictField(help_text='{"<criterion name>": 1-5, ...}: every criterion of the dataset.')
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)


class JudgmentCreateSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="The token of the pair from GET judgments/next/.")
    choice = serializers.ChoiceField(choices=["left", "right", "tie"])


class PreannotationRunSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField(allow_null=True)  # null: none, or the user was deleted

    class Meta:
        model = PreannotationRun
        fields = ["id", "model_version", "dataset", "example_ids", "generation", "status", "done", "total",
                  "suggested", "prefilled", "skipped", "environment", "error", "created_by", "created_at",
                  "started_at", "finished_at"]
        read_only_fields = fields


class PreannotationRunCreateSerializer(serializers.Serializer):
    model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
    example_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, default=list, max_length=100_000,
        help_text="Drafts of the dataset to answer; empty: every draft still needing its answer.")
    generation = serializers.DictField(required=False, default=dict)
