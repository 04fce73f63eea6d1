from rest_framework import serializers

from curation.choices import Split
from curation.models import Snapshot
from training.models import ModelVersion

from .models import EvalRun, Prediction


class EvalRunSerializer(serializers.ModelSerializer):
    snapshot_hash = serializers.CharField(source="snapshot.content_hash", read_only=True)
    created_by = serializers.StringRelatedField()

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
